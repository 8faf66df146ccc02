"""Reminders timed to a customer's habit (issue #17): a customer that pays at month-end is reminded
``[policy] month_end_days`` working days before the month's last working day, once per invoice,
instead of ten days before each due date; a customer without the habit is reminded as before.

October 2026 ends on a Saturday: its last working day is Friday 10/30, three working days before
it is Tuesday 10/27. Both customers are grade C (the grade whose reminder writes to the customer).

  customer            habit (own history)               open invoice  due     what happens
  M 月末贸易 (e-mail)  paid three invoices on 6/29,      INV-M1        10/20   reminded 10/27 (not 10/10)
                      7/30, 8/28: month-end payer       INV-M2        10/31   the cap (1 per 3 days) puts it on 10/30
                                                        INV-M3        11/16   not due by October's end: nothing
                                                        INV-M4        10/16   disputed: nothing
                                                        INV-M5        10/05   promised for 11/10: nothing
  N 准时机电 (e-mail)  paid three invoices 5 days late   INV-N1        10/20   reminded 10/10, as before
                      in mid-month: no habit
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from bot.channels.customer import install_customer_channels
from bot.jobs.month_end_reminders import window
from domain.workdays import WorkCalendar
from storage import collection, ledger
from storage.models import Contact, Customer, DigestItem, LadderStep, OutboxMessage, Person, Receivable
from tests.conftest import at
from tests.harness import Bot
from tests.ledger_fixture import accounts
from tests.test_ladder_timeline import Recorder

D = Decimal
E_M, E_N = "ap-m@example.com", "ap-n@example.com"
HISTORY = {"M": [(date(2026, 6, 10), date(2026, 6, 29)), (date(2026, 7, 10), date(2026, 7, 30)),
                 (date(2026, 8, 10), date(2026, 8, 28))],
           "N": [(date(2026, 6, 10), date(2026, 6, 15)), (date(2026, 7, 10), date(2026, 7, 15)),
                 (date(2026, 8, 10), date(2026, 8, 14))]}
OPEN = [("INV-M1", "M", date(2026, 10, 20)), ("INV-M2", "M", date(2026, 10, 31)), ("INV-M3", "M", date(2026, 11, 16)),
        ("INV-M4", "M", date(2026, 10, 16)), ("INV-M5", "M", date(2026, 10, 5)), ("INV-N1", "N", date(2026, 10, 20))]


def test_the_window_follows_the_chinese_calendar():
    cal = WorkCalendar()
    # October 2026 ends on a Saturday
    assert window(cal, date(2026, 10, 12), 3) == (date(2026, 10, 27), date(2026, 10, 30))
    # September 2026 ends on a Wednesday, but Mid-autumn (9/25) and the weekend fall in the three days
    assert window(cal, date(2026, 9, 1), 3) == (date(2026, 9, 24), date(2026, 9, 30))
    # February 2026: Saturday the 28th is a make-up working day (调休), the month's last
    assert window(cal, date(2026, 2, 2), 3) == (date(2026, 2, 25), date(2026, 2, 28))
    assert window(cal, date(2026, 10, 12), 0) is None


async def _ledger(db, now: datetime) -> None:
    async with db.session() as s, s.begin():
        s.add(Person(id="rep1", name="张伟", role="rep", accounts=accounts(wecom="wx_rep1")))
        await s.flush()
        cs = {}
        for code, name, email in (("M", "杭州月末贸易有限公司", E_M), ("N", "宁波准时机电有限公司", E_N)):
            c = Customer(code=code, name=name, grade="C", credit_limit=D("1000000"), rep_id="rep1")
            s.add(c)
            await s.flush()
            s.add(Contact(customer_id=c.id, name="财务" + code, channel="email", email=email))
            cs[code] = c
        n = 0
        for code, paid in HISTORY.items():
            for due, paid_on in paid:
                n += 1
                s.add(Receivable(invoice_no=f"OLD-{n}", customer_id=cs[code].id, rep_id="rep1",
                                 issue_date=due - timedelta(days=30), due_date=due, amount=D("1000.00"),
                                 open_amount=D("1000.00"), terms="月结30天", created_at=now))
                await s.flush()
                await ledger.record_payment(s, customer=cs[code], amount=D("1000.00"), paid_on=paid_on,
                                            reference=f"LS-{n}", invoice_no=f"OLD-{n}", actor="rep1",
                                            channel="test", now=now)
        rs = {}
        for inv, code, due in OPEN:
            rs[inv] = Receivable(invoice_no=inv, contract_no="HT-" + inv[4:], customer_id=cs[code].id, rep_id="rep1",
                                 issue_date=due - timedelta(days=30), due_date=due, amount=D("5000.00"),
                                 open_amount=D("5000.00"), terms="月结30天", created_at=now)
            s.add(rs[inv])
        await s.flush()
        await collection.open_dispute(s, receivable=rs["INV-M4"], reason="数量不符", person_id="rep1", at=now,
                                      channel="test")
        await collection.make_promise(s, receivable=rs["INV-M5"], promised_date=date(2026, 11, 10),
                                      amount=D("5000.00"), person_id="rep1", at=now, channel="test")


async def test_a_month_end_payer_is_reminded_before_month_end_once(aiohttp_client, db):
    start = at("2026-10-01 08:00")
    await _ledger(db, start)
    bot = await Bot.start(aiohttp_client, db, start, policy={"statement_days": 0})
    email = Recorder("email")
    install_customer_channels(bot.state, email=email)
    tz = bot.services.config.tz
    day = date(2026, 10, 8)
    while day <= date(2026, 11, 3):
        run_at = datetime.combine(day, datetime.min.time(), tzinfo=start.tzinfo).replace(hour=9, minute=30)
        await bot.run("customer_reminders", run_at)
        await bot.run("month_end_reminders", run_at)
        day += timedelta(days=1)

    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.platform == "email")
                                .order_by(OutboxMessage.id))).scalars().all()
        sent = sorted((r.sent_at.astimezone(tz).date(), r.idem_key, r.target) for r in rows if r.status == "sent")
        assert sent == [
            (date(2026, 10, 10), "remind:INV-N1:pre_due", E_N),        # no habit: 10 days before, unchanged
            (date(2026, 10, 27), "month_end:INV-M1:2026-10", E_M),     # 3 working days before Fri 10/30
            (date(2026, 10, 30), "month_end:INV-M2:2026-10", E_M),     # the cap: one message per 3 days
        ]
        assert all(r.status == "sent" for r in rows)
        # each invoice once this month, however often the job ran in the window
        steps = (await s.execute(select(Receivable.invoice_no, LadderStep.step).join(
            LadderStep, LadderStep.receivable_id == Receivable.id).where(LadderStep.step.like("month_end:%")))).all()
        assert sorted(steps) == [("INV-M1", "month_end:2026-10"), ("INV-M2", "month_end:2026-10")]
        # the rep hears of it in the job's digest
        item = (await s.execute(select(DigestItem).where(
            DigestItem.item_key == "month_end:INV-M1:2026-10:rep1"))).scalar_one()
        assert "客户习惯月底付，本月最后工作日10月30日" in item.line and "自动提醒客户联系人财务M" in item.line

    m1 = next(o for o in email.sent if o.extra["customer_message"] == "month_end:INV-M1:2026-10")
    assert m1.title == "【示例公司】月末付款提醒：发票INV-M1"
    # rendered on the day it left: INV-M1 fell due on 10/20
    assert "临近月末，贵司HT-M1订单账款¥5,000.00已于10月20日到期，烦请纳入本月付款安排" in m1.text
    m2 = next(o for o in email.sent if o.extra["customer_message"] == "month_end:INV-M2:2026-10")
    assert "将于10月31日到期" in m2.text

    # a second run in the window changes nothing
    async with db.session() as s:
        before = len((await s.execute(select(OutboxMessage.id))).all())
    await bot.run("month_end_reminders", at("2026-10-30 10:00"), claim=False)
    async with db.session() as s:
        assert len((await s.execute(select(OutboxMessage.id))).all()) == before


async def test_off_when_month_end_days_is_zero(aiohttp_client, db):
    """With ``month_end_days = 0`` the month-end payer is reminded by its grade like everyone."""
    start = at("2026-10-01 08:00")
    await _ledger(db, start)
    bot = await Bot.start(aiohttp_client, db, start, policy={"statement_days": 0, "month_end_days": 0})
    install_customer_channels(bot.state, email=Recorder("email"))
    await bot.run("customer_reminders", at("2026-10-10 09:30"))
    assert "not in a month-end reminder window" in await bot.run("month_end_reminders", at("2026-10-27 09:30"))
    async with db.session() as s:
        keys = set((await s.execute(select(OutboxMessage.idem_key).where(OutboxMessage.platform == "email"))).scalars())
    assert keys == {"remind:INV-M1:pre_due", "remind:INV-N1:pre_due"}
