"""The heart of the product, end to end through the local chat with a fixed clock over two
working days: push → replies (a correction, some missing, one late) → follow-up log → window
close → supervisor escalation. Messages are checked as the people would read them."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select

from storage.models import FollowUp, Promise, Push, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot


async def _bot(aiohttp_client, db, when):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at(when), company={"fx_rates": ledger_fixture.FX})


async def test_two_working_days_of_collection(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-23 08:00")

    # Monday 09:00: each rep gets one numbered list, grouped by customer, disputed items apart
    assert "pushed 2 rep(s)" in await bot.run("overdue_push", at("2026-11-23 09:00"))
    [push1] = await bot.inbox("rep1")
    lines = push1.splitlines()
    assert lines[0] == "**张伟，早上好：以下是您今天（11月23日）的逾期账款**"
    assert "**上海恒信机电有限公司**（合计 ¥45,000.00）" in lines
    assert "1. INV-A3 ¥30,000.00，逾期60天" in lines
    assert "2. INV-A2 ¥15,000.00，逾期10天" in lines
    assert "3. INV-B2 ¥12,345.67，逾期206天" in lines
    assert "- 苏州明达电子科技有限公司 INV-B1 ¥8,000.50，逾期90天" in lines      # disputed, apart
    assert "合计：3笔，¥57,345.67；另有异议1笔，¥8,000.50" in lines
    assert "请在 11-24 09:00 前逐条回复跟进情况，例如：" in lines
    [push2] = await bot.inbox("rep2")
    assert "1. INV-D1 US$1,000.00，逾期20天" in push2 and "2. INV-C1 ¥5,000.00，逾期30天" in push2
    assert "合计：2笔，¥5,000.00 + US$1,000.00" in push2

    # the same job again (a second instance, a re-fire) sends nothing twice
    assert "already ran for 2026-11-23" in await bot.run("overdue_push", at("2026-11-23 09:00"))
    # and even without the fire claim (arbot jobs run by hand), the job itself sends nothing twice
    assert "pushed 0 rep(s)" in await bot.run("overdue_push", at("2026-11-23 09:30"), claim=False)
    assert len(await bot.inbox("rep1")) == 1

    # rep1 answers two items in one message, then corrects the first
    bot.clock.set(at("2026-11-23 11:00"))
    [ack] = await bot.say("rep1", "1 已电话联系王总，答应下周五前付一半\n2 联系不上，电话关机")
    assert "1. 上海恒信机电有限公司 INV-A3：承诺付款，承诺12月4日付 ¥15,000.00" in ack
    assert "2. 上海恒信机电有限公司 INV-A2：联系不上" in ack
    assert "更正 1" in ack
    [ack] = await bot.say("rep1", "更正 1 客户答应月底付全款")
    assert "1. 上海恒信机电有限公司 INV-A3：承诺付款，承诺11月30日付 ¥30,000.00（已更正）" in ack
    # a reply the bot cannot place is kept as a note, with a hint
    [hint] = await bot.say("rep1", "今天下雨，明天再跑")
    assert "已作为备注记录" in hint and "共3笔" in hint

    # Tuesday 09:00: the window closes; rep1's item 3 and both of rep2's go to the supervisors
    assert "escalated 3 item(s) to 2 supervisor(s)" in await bot.run("reply_window_close", at("2026-11-24 09:00"))
    [esc1] = await bot.inbox("sup1")
    assert "**张伟**（11月23日清单，未回复1笔）" in esc1
    assert "- 苏州明达电子科技有限公司 INV-B2 ¥12,345.67，逾期206天" in esc1
    assert "INV-A3" not in esc1 and "INV-A2" not in esc1
    [esc2] = await bot.inbox("sup2")
    assert "**李娜**（11月23日清单，未回复2笔）" in esc2 and "INV-D1" in esc2 and "INV-C1" in esc2
    nudge = (await bot.inbox("rep2"))[-1]
    assert "以下2笔未回复，已报告给您的主管" in nudge
    # closing again changes nothing
    assert "closed 0 window(s)" in await bot.run("reply_window_close", at("2026-11-24 09:10"))
    assert len(await bot.inbox("sup1")) == 1

    # rep2 answers late: still logged, marked late
    bot.clock.set(at("2026-11-24 09:05"))
    ack, claim = await bot.say("rep2", "2 已付2千，剩下的12月20号")
    assert "已过回复时限，标记为逾期回复" in ack
    assert "已转财务核实到账（称已付款1笔）" in claim        # the 2,000 is finance's to confirm

    async with db.session() as s:
        log = (await s.execute(select(FollowUp, Receivable.invoice_no)
                               .outerjoin(Receivable, Receivable.id == FollowUp.receivable_id)
                               .order_by(FollowUp.id))).all()
        entries = [(inv, fu.outcome, fu.promised_date, fu.promised_amount, fu.late, fu.corrects_id is not None)
                   for fu, inv in log if fu.channel == "local"]
        assert entries == [
            ("INV-A3", "promised", date(2026, 12, 4), Decimal("15000.00"), False, False),
            ("INV-A2", "unreachable", None, None, False, False),
            ("INV-A3", "promised", date(2026, 11, 30), Decimal("30000.00"), False, True),
            (None, "other", None, None, False, False),
            ("INV-C1", "promised", date(2026, 12, 20), Decimal("3000.00"), True, False),
        ]
        raw = [fu.text for fu, _ in log if fu.channel == "local"]
        assert raw[0] == "1 已电话联系王总，答应下周五前付一半"
        promises = (await s.execute(select(Promise).order_by(Promise.id))).scalars().all()
        assert [(p.status, p.promised_date) for p in promises if p.made_by == "rep1"] == [
            ("superseded", date(2026, 12, 4)), ("open", date(2026, 11, 30))]
        pushes = (await s.execute(select(Push))).scalars().all()
        assert all(p.closed for p in pushes)


async def test_no_push_on_weekends_and_holidays_but_on_makeup_saturday(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-28 08:00")
    assert "not a working day" in await bot.run("overdue_push", at("2026-11-28 09:00"))   # Saturday
    assert "not a working day" in await bot.run("overdue_push", at("2026-10-01 09:00"))   # National Day
    assert await bot.inbox("rep1") == []
    # 2026-10-10 is a Saturday worked in exchange for the National Day holiday (调休)
    assert "pushed" in await bot.run("overdue_push", at("2026-10-10 09:00"))
    assert len(await bot.inbox("rep1")) == 1
