"""The morning push ranked by priority and capped: the rep gets the items that matter most
numbered, one line for the rest, the three to chase first named with their reason; replies by
number land on the pushed invoices, and the window escalates only what was pushed."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from storage.models import Customer, FollowUp, PushItem, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal


async def _bot(aiohttp_client, db, cap: int):
    async with db.session() as s, s.begin():
        customers = await ledger_fixture.build(s, at("2026-11-20 10:00"))
        c2 = customers["C2"]                 # 苏州明达, rep1, credit limit 200,000
        # a big fresh invoice far over the customer's credit, and ten small ones
        s.add(Receivable(invoice_no="INV-BIG", customer_id=c2.id, rep_id="rep1", issue_date=date(2026, 10, 21),
                         due_date=date(2026, 11, 20), amount=D("300000.00"), open_amount=D("300000.00"), currency="CNY"))
        for k in range(10):
            s.add(Receivable(invoice_no=f"INV-S{k}", customer_id=c2.id, rep_id="rep1", issue_date=date(2026, 10, 18),
                             due_date=date(2026, 11, 18) - timedelta(days=k), amount=D("100.00"),
                             open_amount=D("100.00"), currency="CNY"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                           collection={"push_max_items": cap})


async def test_capped_push_numbers_the_top_items_and_counts_the_rest(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, cap=3)
    assert "pushed 2 rep(s)" in await bot.run("overdue_push", at("2026-11-23 09:00"))
    [push] = await bot.inbox("rep1")
    lines = push.splitlines()
    # the three of highest priority, numbered in the list's order (customer, then due date)
    assert "1. INV-A3 ¥30,000.00，逾期60天" in lines
    assert "2. INV-B2 ¥12,345.67，逾期206天" in lines
    assert "3. INV-BIG ¥300,000.00，逾期3天" in lines
    assert "INV-A2" not in push and "INV-S0" not in push       # lower priority: not numbered today
    assert "合计：3笔，¥342,345.67；另有异议1笔，¥8,000.50" in lines
    assert "另有 11 笔共 ¥16,000.00，发送 /overdue 查看" in lines   # A2's 15,000 and ten of 100
    focus = next(line for line in lines if line.startswith("今天先催："))
    # B2 first: half a year late, escalated to the last step; then A3; BIG for its size and the credit
    assert focus.startswith("今天先催：2号 苏州明达电子科技有限公司（")
    assert focus.index("1号") < focus.index("3号")

    # replies by number land on the pushed invoices
    bot.clock.set(at("2026-11-23 11:00"))
    [ack] = await bot.say("rep1", "3 已电话联系刘总，说下周对账")
    assert "3. 苏州明达电子科技有限公司 INV-BIG：已联系" in ack
    async with db.session() as s:
        fu = (await s.execute(select(FollowUp, Receivable).join(Receivable, Receivable.id == FollowUp.receivable_id)
                              .where(FollowUp.person_id == "rep1"))).one()
        assert fu[1].invoice_no == "INV-BIG"
        items = (await s.execute(select(Receivable.invoice_no).join(PushItem, PushItem.receivable_id == Receivable.id)
                                 .where(Receivable.rep_id == "rep1").order_by(PushItem.seq))).scalars().all()
        assert items == ["INV-A3", "INV-B2", "INV-BIG"]          # the window covers exactly these

    # the window closes: only the pushed items nobody answered go to the supervisor
    assert "escalated" in await bot.run("reply_window_close", at("2026-11-24 09:00"))
    [esc] = await bot.inbox("sup1")
    assert "**张伟**（11月23日清单，未回复2笔）" in esc
    assert "INV-A3" in esc and "INV-B2" in esc
    assert "INV-BIG" not in esc and "INV-A2" not in esc and "INV-S" not in esc


async def test_under_the_cap_nothing_is_left_out(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, cap=20)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    [push] = await bot.inbox("rep1")
    assert "另有" not in push.replace("另有异议", "")
    assert sum(1 for line in push.splitlines() if line[:1].isdigit()) == 14


async def test_a_broken_promise_pulls_a_customer_up(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, cap=3)
    async with db.session() as s, s.begin():
        c1 = (await s.execute(select(Customer).where(Customer.code == "C1"))).scalar_one()
        c1.broken_promises = 5
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    [push] = await bot.inbox("rep1")
    # A2 (15,000, 10 days) now outranks BIG: its customer broke five promises
    assert "2. INV-A2 ¥15,000.00，逾期10天" in push.splitlines() and "INV-BIG" not in push
    focus = next(line for line in push.splitlines() if line.startswith("今天先催："))
    assert "多次失信" in focus


async def test_a_month_end_payers_items_say_so_in_the_months_last_week(aiohttp_client, db):
    """恒信 paid its last three invoices in the last days of their months: in November's last week
    (from the 24th) its lines say 习惯月底付; before it, and for 明达 (no habit), nothing."""
    from storage import ledger
    bot = await _bot(aiohttp_client, db, cap=20)
    async with db.session() as s, s.begin():
        c1 = (await s.execute(select(Customer).where(Customer.code == "C1"))).scalar_one()
        for k, (due, paid_on) in enumerate([(date(2026, 6, 16), date(2026, 6, 28)), (date(2026, 7, 17), date(2026, 7, 29)),
                                            (date(2026, 8, 17), date(2026, 8, 29))]):
            s.add(Receivable(invoice_no=f"OLD-{k}", customer_id=c1.id, rep_id="rep1", issue_date=due - timedelta(days=30),
                             due_date=due, amount=D("1000.00"), open_amount=D("1000.00"), currency="CNY"))
            await s.flush()
            await ledger.record_payment(s, customer=c1, amount=D("1000.00"), paid_on=paid_on, reference=f"LS-OLD-{k}",
                                        invoice_no=f"OLD-{k}", actor="fin1", channel="test", now=at("2026-11-20 10:00"))
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    [before] = await bot.inbox("rep1")
    assert "习惯月底付" not in before
    await bot.run("overdue_push", at("2026-11-25 09:00"))
    [push] = [p for p in await bot.inbox("rep1") if p != before]
    lines = push.splitlines()
    assert "1. INV-A3 ¥30,000.00，逾期62天，习惯月底付" in lines
    assert "2. INV-A2 ¥15,000.00，逾期12天，习惯月底付" in lines
    assert not any("INV-B2" in line and "习惯月底付" in line for line in lines)
    focus = next(line for line in lines if line.startswith("今天先催："))
    hengxin = focus.split("上海恒信机电有限公司（", 1)[1].split("）", 1)[0]
    assert "习惯月底付" in hengxin
