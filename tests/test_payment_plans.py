"""Payment plans (分期回款计划) through the chat: a plan written in /promise and in a reply to the
morning push, bad plans refused with nothing changed, each instalment judged by the promise watch
on its date plus the grace working days (across a holiday and a weekend), the broken one told to
the rep and the supervisor once, and the plan in /overdue, /customer and the forecast."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select

from domain.expected_dates import PROMISE_TRUST
from domain.workdays import WorkCalendar
from storage import reminders
from storage.models import Customer, Promise, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal


async def _bot(aiohttp_client, db, when: str) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-09-01 10:00"))
    return await Bot.start(aiohttp_client, db, at(when), company={"fx_rates": ledger_fixture.FX})


async def _promises(db, invoice: str) -> list[tuple[date, Decimal | None, str]]:
    async with db.session() as s:
        rows = (await s.execute(select(Promise).join(Receivable, Receivable.id == Promise.receivable_id)
                                .where(Receivable.invoice_no == invoice).order_by(Promise.id))).scalars()
        return [(p.promised_date, p.amount, p.status) for p in rows]


async def _ladder_held(db, invoice: str, day: date) -> bool:
    """Whether a live promise holds the invoice's ladder steps on ``day`` (1 grace working day)."""
    async with db.session() as s:
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == invoice))).scalar_one()
        return r.id in await reminders.promised(s, [r.id], day, 1, WorkCalendar())


async def test_a_plan_kept_then_broken_across_a_holiday_is_told_once(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-09-28 10:00")
    # the day before 国庆 (10/1-10/7 off): instalment 1's one day of grace is 10/8
    [ok] = await bot.say("rep1", "/promise INV-A3 9月30日 1万，10月17日 1万；11月20日 余款")
    assert "已记录分期回款计划：INV-A3（未付余额 ¥30,000.00）共3期" in ok
    assert "- 第1期 9月30日前付 ¥10,000.00" in ok and "- 第3期 11月20日前付 ¥10,000.00" in ok
    assert "未覆盖" not in ok
    assert await _promises(db, "INV-A3") == [(date(2026, 9, 30), D("10000.00"), "open"),
                                            (date(2026, 10, 17), D("10000.00"), "open"),
                                            (date(2026, 11, 20), D("10000.00"), "open")]

    bot.clock.set(at("2026-09-29 15:00"))
    await bot.say("fin1", "/paid INV-A3 1万 LS-P1")                 # instalment 1, in time
    for day in ("2026-10-01", "2026-10-05", "2026-10-08"):          # the holiday, then the grace day
        assert await bot.run("promise_watch", at(f"{day} 08:30")) == "0 promise(s) kept, 0 broken"
    assert await bot.run("promise_watch", at("2026-10-09 08:30")) == "1 promise(s) kept, 0 broken"

    bot.clock.set(at("2026-10-09 10:00"))
    [overdue] = await bot.say("rep1", "/overdue")
    line = next(x for x in overdue.splitlines() if "INV-A3" in x)
    assert "分期计划第2/3期10月17日付 ¥10,000.00，还剩2期共 ¥20,000.00" in line
    [card] = await bot.say("rep1", "/customer 恒信")
    assert "分期计划第2/3期10月17日付 ¥10,000.00，还剩2期共 ¥20,000.00" in card
    assert "- INV-A3：10月17日前付 ¥10,000.00（分期）" in card

    # instalment 2 falls on a Saturday: the grace working day is Monday 10/19
    bot.clock.set(at("2026-10-15 15:00"))
    await bot.say("fin1", "/paid INV-A3 4000 LS-P2")                # short of the 20,000 due by then
    for day in ("2026-10-17", "2026-10-18", "2026-10-19"):
        assert await bot.run("promise_watch", at(f"{day} 08:30")) == "0 promise(s) kept, 0 broken"
    assert await _ladder_held(db, "INV-A3", date(2026, 10, 20))      # the plan is live: steps wait
    sup_before, rep_before = len(await bot.inbox("sup1")), len(await bot.inbox("rep1"))
    assert await bot.run("promise_watch", at("2026-10-20 08:30")) == "0 promise(s) kept, 1 broken"
    told = {who: [m for m in (await bot.inbox(who))[before:] if "INV-A3" in m]
            for who, before in (("rep1", rep_before), ("sup1", sup_before))}
    for who, msgs in told.items():
        assert len(msgs) == 1, (who, msgs)
        assert "分期计划第2/3期，承诺10月17日前累计付¥20,000.00，计划开始后仅到账¥14,000.00，其后1期随之作废" in msgs[0]
    # the same run again, and the next day: nothing is judged or sent twice
    assert await bot.run("promise_watch", at("2026-10-20 08:30"), claim=False) == "0 promise(s) kept, 0 broken"
    assert await bot.run("promise_watch", at("2026-10-21 08:30")) == "0 promise(s) kept, 0 broken"
    assert len(await bot.inbox("sup1")) == sup_before + 1 and len(await bot.inbox("rep1")) == rep_before + 1
    # the plan is over: the last instalment is not watched, and no longer holds the ladder
    assert [s for _, _, s in await _promises(db, "INV-A3")] == ["kept", "broken", "superseded"]
    assert not await _ladder_held(db, "INV-A3", date(2026, 10, 20))
    async with db.session() as s:
        c1 = (await s.execute(select(Customer).where(Customer.code == "C1"))).scalar_one()
        assert c1.broken_promises == 1
    bot.clock.set(at("2026-10-21 10:00"))
    [overdue] = await bot.say("rep1", "/overdue")
    assert "分期计划" not in overdue
    # the customer's profile counts instalments: one kept, one broken (the dropped one is neither)
    [card] = await bot.say("rep1", "/customer 恒信")
    assert "承诺兑现 1/2" in card


async def test_a_plan_written_in_a_reply_to_the_push(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-23 08:00")
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 11:00"))
    # item 1 INV-A3 (30,000), item 2 INV-A2 (15,000), item 3 INV-B2 (12,345.67)
    [ack] = await bot.say("rep1", "1 已联系王总，12月20日付1万，1月20日付余款\n"
                                  "2 11月30日 5000、12月15日 5000;12月31日 5000\n"
                                  "3 12月10日 3000，12月24日 3000")
    assert ("1. 上海恒信机电有限公司 INV-A3：分期回款计划2期，12月20日付 ¥10,000.00、1月20日付 ¥20,000.00"
            in ack.splitlines())
    assert "2. 上海恒信机电有限公司 INV-A2：分期回款计划3期，11月30日付 ¥5,000.00、12月15日付 ¥5,000.00、12月31日付 ¥5,000.00" in ack
    assert ("3. 苏州明达电子科技有限公司 INV-B2：分期回款计划2期，12月10日付 ¥3,000.00、12月24日付 ¥3,000.00"
            "（未覆盖 ¥6,345.67，仍按逾期跟进）") in ack
    assert await _promises(db, "INV-A3") == [(date(2026, 12, 20), D("10000.00"), "open"),
                                            (date(2027, 1, 20), D("20000.00"), "open")]
    assert len(await _promises(db, "INV-A2")) == 3

    # a plain promise afterwards supersedes the whole plan, as a promise supersedes a promise
    [ok] = await bot.say("rep1", "/promise INV-A2 12月4日")
    assert [s for _, _, s in await _promises(db, "INV-A2")] == ["superseded"] * 3 + ["open"]

    # /followup reads a plan the same way
    [ok] = await bot.say("rep1", "/followup INV-B2 客户答应12月10日付2000；12月24日付余款")
    assert "已记录分期回款计划：INV-B2（未付余额 ¥12,345.67）共2期" in ok and "- 第2期 12月24日前付 ¥10,345.67" in ok
    assert [s for _, _, s in await _promises(db, "INV-B2")] == ["superseded"] * 2 + ["open"] * 2

    # 撤销 takes the reply back, every instalment with it
    [undone] = await bot.say("rep1", "撤销")
    assert await _promises(db, "INV-A3") == []


async def test_bad_plans_are_refused_and_change_nothing(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-23 10:00")
    await bot.say("rep1", "/promise INV-A3 12月4日")
    before = await _promises(db, "INV-A3")
    refusals = {
        "12月20日 2万，1月20日 2万": "各期金额合计 ¥40,000.00，超过了未付余额 ¥30,000.00",
        "12月20日 3万，1月20日 余款": "各期金额合计 ¥30,000.00，已不少于未付余额 ¥30,000.00，没有余款可付",
        "1月20日 1万，12月20日 余款": "“12月20日 余款”不晚于“1月20日 1万”",
        "2026-11-20 1万，12月20日 余款": "日期11月20日已经过去了",
        "12月20日 余款，1月20日 1万": "余款只能是最后一期",
        "12月20日 1万，1月20日": "分期“1月20日”看不懂：每一期请写一个日期和一个金额",
    }
    for plan, why in refusals.items():
        [reply] = await bot.say("rep1", f"/promise INV-A3 {plan}")
        assert why in reply and "未记录分期计划，原有承诺不变" in reply, (plan, reply)
    [reply] = await bot.say("rep1", "/promise INV-A3 " + "，".join(f"{2027 + m // 12}-{m % 12 + 1:02d}-01 100" for m in range(13)))
    assert "分期计划要有2到12期，您写了13期" in reply
    assert await _promises(db, "INV-A3") == before

    # in a reply to the push: kept as a note, the rep is told why, no promise changes
    await bot.run("overdue_push", at("2026-11-24 09:00"))
    bot.clock.set(at("2026-11-24 10:00"))
    [ack] = await bot.say("rep1", "1 12月20日付2万，1月20日付2万")
    assert "第1笔 INV-A3：各期金额合计 ¥40,000.00，超过了未付余额 ¥30,000.00" in ack
    assert "未记录承诺" in ack
    assert await _promises(db, "INV-A3") == before


async def test_the_forecast_takes_each_instalment_on_its_date(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-23 10:00")

    def week(reply: str, start: str) -> Decimal:
        line = next(x for x in reply.splitlines() if x.startswith(f"- {start}起：¥"))
        return D(line.split("¥")[1].split("（")[0].replace(",", ""))

    async def forecast_with(promise: str) -> str:
        await bot.say("rep1", f"/promise INV-A3 {promise}")
        [reply] = await bot.say("rep1", "/forecast")
        return reply

    on_one_date = await forecast_with("12月20日")                 # all 30,000 promised for 12/20
    at_the_end = await forecast_with("1月20日")                   # all 30,000 promised for 1/20
    planned = await forecast_with("12月20日 1万，1月20日 余款")
    trust = D(str(PROMISE_TRUST))          # a customer with no kept or broken promise yet
    # each instalment's trusted share lands in its own week, the rest stays where the habit puts it
    assert abs(week(on_one_date, "12月14日") - week(planned, "12月14日") - trust * 20000) <= D("0.05")
    assert abs(week(planned, "12月14日") - week(at_the_end, "12月14日") - trust * 10000) <= D("0.05")
    assert abs(week(planned, "1月18日") - week(on_one_date, "1月18日") - trust * 20000) <= D("0.05")
