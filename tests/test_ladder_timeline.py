"""120 days of reminders and escalations on a small ledger, with a fixed clock stepping day by
day at 09:30 (once at 20:00): every message is checked as (date sent, step, invoice, recipient).

The ledger (all amounts CNY; rep1 → sup1 owns C1 and C2, rep2 → sup2 owns C3):

  invoice  customer          grade  due          what happens
  INV-C1   C3 顺发 (e-mail)  C      2026-09-18   never paid: the whole ladder (d60 freezes C3)
  INV-C2   C3 顺发 (e-mail)  C      2026-09-21   its pre-due messages are pushed back by the cap; paid 9/18
  INV-A2   C1 恒信 (e-mail)  A      2026-09-25   paid in full 10/9: nothing after d7
  INV-B1   C2 明达 (SMS)     B      2026-10-30   d7 fires at 20:00 on Fri 11/6: queued for Monday;
                                                 disputed Sat 11/7: the customer SMS never leaves
  INV-A1   C1 恒信 (e-mail)  A      2026-11-20   promise on 11/24 for 12/4 defers d7 and d15; broken 12/8 (grace: 1 working day)

Calendar: 9/20 (Sun) is a make-up working day, 9/25 (Mid-autumn) and 10/1-10/7 (National Day)
are holidays, 10/10 (Sat) is a make-up working day.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.channels.customer import install_customer_channels
from bot.core.channel import Capabilities
from domain.workdays import WorkCalendar
from storage import collection, ledger
from storage.models import (AuditEntry, Contact, Customer, CustomerMessage, DigestItem, LadderStep, OutboxMessage, Person,
                            Receivable)
from tests.conftest import at
from tests.harness import Bot
from tests.ledger_fixture import accounts

# the timeline is the point here, not the letters' pages (read back in test_letters.py)
pytestmark = pytest.mark.usefixtures("placeholder_pdfs")
D = Decimal
PEOPLE = [("rep1", "张伟", "rep", "sup1"), ("rep2", "李娜", "rep", "sup2"), ("sup1", "王主管", "supervisor", None),
          ("sup2", "赵主管", "supervisor", None), ("fin1", "钱会计", "finance", None),
          ("legal1", "孙律师", "legal", None), ("dir1", "刘总监", "manager", None)]
CUSTOMERS = [("C1", "上海恒信机电有限公司", "A", "rep1", "email", "ap-c1@example.com"),
             ("C2", "苏州明达电子科技有限公司", "B", "rep1", "sms", "13900000002"),
             ("C3", "广州顺发贸易有限公司", "C", "rep2", "email", "ap-c3@example.com")]
INVOICES = [("INV-C1", "C3", date(2026, 9, 18), "8000.00"), ("INV-C2", "C3", date(2026, 9, 21), "3000.00"),
            ("INV-A2", "C1", date(2026, 9, 25), "20000.00"), ("INV-B1", "C2", date(2026, 10, 30), "12345.67"),
            ("INV-A1", "C1", date(2026, 11, 20), "45000.00")]


class Recorder:
    """A customer transport that keeps what it was given."""

    def __init__(self, platform: str):
        self.platform, self.sent = platform, []
        self.capabilities = Capabilities(targets=frozenset({platform}))

    def reply_route(self, msg):
        raise NotImplementedError

    async def deliver(self, out) -> None:
        self.sent.append(out)


async def build(session, now: datetime) -> dict:
    for pid, name, role, sup in sorted(PEOPLE, key=lambda p: p[3] is not None):
        session.add(Person(id=pid, name=name, role=role, supervisor_id=sup, accounts=accounts(wecom="wx_" + pid)))
        await session.flush()
    cs = {}
    for code, name, grade, rep, channel, target in CUSTOMERS:
        # every contract here has the company's standard late-fee clause
        c = Customer(code=code, name=name, grade=grade, credit_limit=D("1000000"), rep_id=rep, late_fee_rate="standard")
        session.add(c)
        await session.flush()
        session.add(Contact(customer_id=c.id, name="财务" + code, channel=channel,
                            email=target if channel == "email" else "", mobile=target if channel == "sms" else ""))
        cs[code] = c
    rs = {}
    for inv, code, due, amount in INVOICES:
        c = cs[code]
        r = Receivable(invoice_no=inv, contract_no="HT-" + inv[4:], customer_id=c.id, rep_id=c.rep_id,
                       issue_date=due - timedelta(days=30), due_date=due, amount=D(amount), open_amount=D(amount),
                       terms="月结30天", created_at=now)
        session.add(r)
        rs[inv] = r
    await session.flush()
    return {"customers": cs, "receivables": rs}


async def _pay(db, inv: str, when: datetime) -> None:
    async with db.session() as s, s.begin():
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == inv))).scalar_one()
        c = await s.get(Customer, r.customer_id)
        await ledger.record_payment(s, customer=c, amount=r.open_amount, paid_on=when.date(), reference="LS-" + inv,
                                    invoice_no=inv, actor="fin1", channel="test", now=when)


async def _dispute(db, inv: str, when: datetime) -> None:
    async with db.session() as s, s.begin():
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == inv))).scalar_one()
        await collection.open_dispute(s, receivable=r, reason="货物质量问题", person_id="rep1", at=when, channel="test")


async def _promise(db, inv: str, when: datetime, promised: date) -> None:
    async with db.session() as s, s.begin():
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == inv))).scalar_one()
        await collection.make_promise(s, receivable=r, promised_date=promised, amount=r.open_amount,
                                      person_id="rep1", at=when, channel="test")


EVENTS = {  # things people do, at these times
    at("2026-09-18 15:00"): lambda db, t: _pay(db, "INV-C2", t),
    at("2026-10-09 15:00"): lambda db, t: _pay(db, "INV-A2", t),
    at("2026-11-07 10:00"): lambda db, t: _dispute(db, "INV-B1", t),
    at("2026-11-24 10:00"): lambda db, t: _promise(db, "INV-A1", t, date(2026, 12, 4)),
}
NIGHT_RUN = date(2026, 11, 6)    # this day the jobs run at 20:00 instead of 09:30

E_C1, E_C3, SMS_C2 = "ap-c1@example.com", "ap-c3@example.com", "13900000002"
EXPECTED = [
    # before the due date: statements (15 days) to the customer, grade reminders
    (date(2026, 9, 3), "pre_statement", "INV-C1", E_C3),
    (date(2026, 9, 7), "pre_statement", "INV-C2", E_C3),     # due 9/4, capped (9/3 sent): Mon 9/7
    (date(2026, 9, 10), "pre_due", "INV-C1", E_C3),          # C: 10 days before (9/8), capped: 9/10
    (date(2026, 9, 10), "pre_statement", "INV-A2", E_C1),
    (date(2026, 9, 14), "pre_due", "INV-C2", E_C3),          # due 9/11, capped to Sat 9/12: Mon 9/14
    (date(2026, 9, 18), "pre_due", "INV-A2", "dir1"),        # A: 7 days before, the director
    # INV-C1's ladder: d7 fell on Mid-autumn (9/25), sent the next working day
    (date(2026, 9, 28), "d7", "INV-C1", "rep2"),
    (date(2026, 9, 28), "d7", "INV-C1", "sup2"),
    (date(2026, 9, 28), "d7", "INV-C1", E_C3),
    # National Day: INV-A2's d7 (10/2) and INV-C1's d15 (10/3) wait for Thursday 10/8
    (date(2026, 10, 8), "d7", "INV-A2", "rep1"),
    (date(2026, 10, 8), "d7", "INV-A2", "sup1"),
    (date(2026, 10, 8), "d7", "INV-A2", E_C1),
    (date(2026, 10, 8), "d15", "INV-C1", "fin1"),
    (date(2026, 10, 8), "d15:doc", "C3", "fin1"),            # the balance confirmation letter (per customer)
    # INV-A2 paid 10/9: no d15 on 10/10
    (date(2026, 10, 15), "pre_statement", "INV-B1", SMS_C2),
    (date(2026, 10, 19), "d30", "INV-C1", "sup2"),           # d30 on Sunday 10/18
    (date(2026, 10, 27), "pre_due", "INV-B1", "rep1"),       # B: 3 working days before 10/30
    (date(2026, 11, 5), "pre_statement", "INV-A1", E_C1),
    # INV-B1's d7 fired Friday 20:00: staff on Monday; the SMS was cancelled by Saturday's dispute
    (date(2026, 11, 9), "d7", "INV-B1", "rep1"),
    (date(2026, 11, 9), "d7", "INV-B1", "sup1"),
    (date(2026, 11, 13), "pre_due", "INV-A1", "dir1"),
    (date(2026, 11, 17), "d60", "INV-C1", "legal1"),
    (date(2026, 11, 17), "d60:doc", "C3", "legal1"),         # lawyer's letter draft; C3 frozen
    # INV-A1: the promise for Friday 12/4 (+1 grace working day: Monday 12/7) held d7 (11/27) and
    # d15 (12/5); broken on Tuesday 12/8, when both held steps fire
    (date(2026, 12, 8), "d7", "INV-A1", "rep1"),
    (date(2026, 12, 8), "d7", "INV-A1", "sup1"),
    (date(2026, 12, 8), "d7", "INV-A1", E_C1),
    (date(2026, 12, 8), "d15", "INV-A1", "fin1"),
    (date(2026, 12, 8), "d15:doc", "C1", "fin1"),
    (date(2026, 12, 17), "d90", "INV-C1", "legal1"),
    (date(2026, 12, 21), "d30", "INV-A1", "sup1"),           # d30 on Sunday 12/20
]


def _tuple(row: OutboxMessage, tz) -> tuple:
    prefix, inv, step, *rest = row.idem_key.split(":")
    if rest[:1] == ["doc"]:
        step, rest = step + ":doc", rest[1:]
    recipient = rest[-1] if rest else row.target
    return (row.sent_at.astimezone(tz).date(), step, inv, recipient)


async def _staff_lines(s, tz) -> list[tuple]:
    """Staff notifications are lines of digests (issue #15): (the day their digest was sent, step,
    invoice, person) for each line whose digest went out."""
    out = []
    for item, sent_at in (await s.execute(select(DigestItem, OutboxMessage.sent_at).join(
            OutboxMessage, OutboxMessage.idem_key == DigestItem.digest_key + ":1")
            .where(DigestItem.item_key.like("ladder:%") | DigestItem.item_key.like("remind:%")))).all():
        if sent_at is not None:
            out.append((sent_at.astimezone(tz).date(), item.kind, item.subject, item.person_id))
    return out


async def _digest_of(s, item_key: str) -> str:
    """The text of the digest that carried a staff notification."""
    item = (await s.execute(select(DigestItem).where(DigestItem.item_key == item_key))).scalar_one()
    return "\n".join((await s.execute(select(OutboxMessage.text).where(
        OutboxMessage.idem_key.like(item.digest_key + ":%")))).scalars())


async def test_120_days_of_reminders_and_escalations(aiohttp_client, db):
    start = at("2026-08-31 08:00")
    async with db.session() as s, s.begin():
        await build(s, start)
    bot = await Bot.start(aiohttp_client, db, start, policy={"director": "dir1"})
    email, sms = Recorder("email"), Recorder("sms")
    install_customer_channels(bot.state, email=email, sms=sms)
    tz = bot.services.config.tz
    events = sorted(EVENTS.items())

    day = start.date()
    for _ in range(120):
        when = datetime.combine(day, datetime.min.time(), tzinfo=start.tzinfo)
        await bot.run("promise_watch", when.replace(hour=8, minute=30))
        run_at = when.replace(hour=20) if day == NIGHT_RUN else when.replace(hour=9, minute=30)
        await bot.run("customer_reminders", run_at)
        await bot.run("escalations", run_at)
        if day == NIGHT_RUN:
            async with db.session() as s:   # nothing left at night: all of it waits for Monday 09:00
                queued = (await s.execute(select(OutboxMessage).where(OutboxMessage.status == "pending"))).scalars().all()
                assert {r.next_attempt_at.astimezone(tz) for r in queued} == {at("2026-11-09 09:00")}
                assert len(queued) == 3
        for t, fn in [e for e in events if e[0].date() == day]:
            bot.clock.set(t)
            await fn(db, t)
        day += timedelta(days=1)

    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage).where(
            OutboxMessage.idem_key.like("ladder:%") | OutboxMessage.idem_key.like("remind:%"))
            .order_by(OutboxMessage.id))).scalars().all()
        sent = [r for r in rows if r.status == "sent"]
        assert sorted([_tuple(r, tz) for r in sent] + await _staff_lines(s, tz)) == sorted(EXPECTED)
        digests = (await s.execute(select(OutboxMessage).where(
            OutboxMessage.idem_key.like("digest:escalations:%") | OutboxMessage.idem_key.like("digest:customer_reminders:%"))
            )).scalars().all()
        assert digests and all(d.status == "sent" for d in digests)
        sent += digests

        # none on a weekend or holiday, none outside 09:00-18:00, none twice
        cal = WorkCalendar()
        for r in sent:
            local = r.sent_at.astimezone(tz)
            assert cal.is_workday(local.date()) and 9 <= local.hour < 18, (r.idem_key, local)
        assert len({r.idem_key for r in sent}) == len(sent)

        # the one customer message that did not go: INV-B1's SMS, cancelled by the dispute
        [cancelled] = [r for r in rows if r.status != "sent"]
        assert cancelled.idem_key == "ladder:INV-B1:d7" and cancelled.status == "cancelled"
        cm = (await s.execute(select(CustomerMessage).where(CustomerMessage.outbox_key == "ladder:INV-B1:d7"))
              ).scalar_one()
        assert (cm.status, cm.cancel_reason, cm.sent_at) == ("cancelled", "disputed", None)
        assert sms.sent and all(o.target == SMS_C2 for o in sms.sent) and len(sms.sent) == 1   # the statement only
        assert len(email.sent) == len([e for e in EXPECTED if "@" in e[3]])

        # each step once, logged and audited; nothing after the dispute or the payments
        recorded = (await s.execute(select(Receivable.invoice_no, LadderStep.step, LadderStep.status).join(
            LadderStep, LadderStep.receivable_id == Receivable.id))).all()
        steps = [(inv, step) for inv, step, status in recorded if status == "fired"]
        assert len(steps) == len(set(steps))
        by_inv: dict[str, set] = {}
        for inv, step in steps:
            by_inv.setdefault(inv, set()).add(step)
        # INV-B1 passed d15 while disputed: recorded as skipped once d30 came, never sent
        assert [(inv, step, status) for inv, step, status in recorded if status != "fired"] == [
            ("INV-B1", "d15", "skipped")]
        assert by_inv == {
            "INV-C1": {"pre_statement", "pre_due", "d7", "d15", "d30", "d60", "d90"},
            "INV-C2": {"pre_statement", "pre_due"},
            "INV-A2": {"pre_statement", "pre_due", "d7"},
            "INV-B1": {"pre_statement", "pre_due", "d7"},
            "INV-A1": {"pre_statement", "pre_due", "d7", "d15", "d30"},
        }
        fired_audit = (await s.execute(select(AuditEntry).where(AuditEntry.action == "ladder.fire"))).scalars().all()
        assert len(fired_audit) == len(steps)
        # the promise held INV-A1's d7 until it was broken: it fired on Tuesday 12/8
        a1_d7 = (await s.execute(select(LadderStep).join(Receivable, Receivable.id == LadderStep.receivable_id)
                                 .where(Receivable.invoice_no == "INV-A1", LadderStep.step == "d7"))).scalar_one()
        assert (a1_d7.fired_at.astimezone(tz), a1_d7.status) == (at("2026-12-08 09:30"), "fired")
        # d60 froze C3 (new orders paused); the others stay active
        statuses = dict((await s.execute(select(Customer.code, Customer.status))).all())
        assert statuses == {"C1": "active", "C2": "active", "C3": "frozen"}

    # what the people read
    c3_d7 = next(o for o in email.sent if o.extra["customer_message"] == "ladder:INV-C1:d7")
    assert c3_d7.title == "【示例公司】付款提醒函：发票INV-C1"
    # the d7 step came due on Mid-autumn (9/25) and the mail left on Monday 9/28: it says the days
    # overdue of the day it left, 9/28 - 9/18 = 10, not those of the day it was queued
    assert "发票INV-C1已于2026-09-18到期，目前尚有¥8,000.00未付（逾期10天）" in c3_d7.text
    assert c3_d7.extra["attachment"]["filename"] == "付款提醒函.pdf"
    assert "附：付款提醒函。" in c3_d7.text
    statement = next(o for o in email.sent if o.extra["customer_message"] == "remind:INV-A1:pre_statement")
    assert "应付金额¥45,000.00，将于2026-11-20到期" in statement.text
    assert "逾期第1天起每日0.05%，第31天起每日0.1%" in statement.text
    async with db.session() as s:
        legal = await _digest_of(s, "ladder:INV-C1:d60:legal1")
        assert "**逾期升级汇总（11月17日）**" in legal and "> 逾期第60天（法务）：1条" in legal
        assert "- 逾期第60天 INV-C1（合同HT-C1）¥8,000.00，逾期60天" in legal and "已冻结客户（暂停新订单）" in legal and "律师函底稿另发" in legal
        draft = (await s.execute(select(OutboxMessage.text).where(
            OutboxMessage.idem_key == "ladder:C3:d60:doc:2026-11-17:legal1"))).scalar_one()
        # 8000 × (30 × 0.05% + 30 × 0.1%) = 360.00 late fee after 60 days
        assert "| HT-C1 | INV-C1 | 2026-09-18 | ¥8,000.00 | 60 | ¥360.00 |" in draft
        director = await _digest_of(s, "remind:INV-A1:pre_due:dir1")
        assert "> 到期提醒（A类客户：请亲自与客户确认付款安排）：1条" in director and "11月20日到期（还有7天）" in director
        b_rep = await _digest_of(s, "remind:INV-B1:pre_due:rep1")
        assert "- 到期提醒 INV-B1（合同HT-B1）¥12,345.67，10月30日到期（还有3天）；客户未付合计¥12,345.67，1张" in b_rep

    # a second pass over the whole period changes nothing: every step fires once
    async with db.session() as s:
        before = len((await s.execute(select(OutboxMessage.id))).all())
    await bot.run("escalations", at("2026-12-28 09:30"), claim=False)
    await bot.run("customer_reminders", at("2026-12-28 09:30"), claim=False)
    async with db.session() as s:
        assert len((await s.execute(select(OutboxMessage.id))).all()) == before
