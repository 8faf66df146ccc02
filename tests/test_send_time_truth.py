"""A customer message says what is true on the day it leaves (issue #19).

Messages to customers wait in the outbox for their slot (working hours, the frequency cap). Here
the sender is kept from running for days — the bot was down, the mail server unreachable — and
then drains its backlog, as it would on a restart. Each case with the figures a finance clerk
would check by hand:

- a statement for ¥26,000.00 queued on Friday evening; the customer pays ¥20,000.00 on Saturday;
  Monday's statement says 应付金额 ¥6,000.00 (26,000 − 20,000);
- a d7 overdue letter queued for Monday 11/23 leaves on Wednesday 12/2: it says 逾期19天
  (12/2 − 11/13 due) and its late-fee estimate is 20,000 × 19 × 0.05% = ¥190.00;
- a statement announcing "将于11月30日到期" that could only leave on 12/3 is not sent at all:
  dropped with the reason ``past_due_date``, in the register and the audit log;
- three customers with four statements each, queued 11/2, 11/5, 11/9 and 11/12 (one per three
  days, the configured cap) and all drained on 11/13: each contact gets one mail that day and
  the others on 11/16, 11/19 and 11/23 — never two within three days.
"""
from __future__ import annotations

import base64
import io
import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import pypdf
from sqlalchemy import select

from bot.channels.customer import install_customer_channels
from bot.jobs.scheduler import run_job
from storage import ledger
from storage.models import AuditEntry, Contact, Customer, CustomerMessage, OutboxMessage, Person, Receivable
from tests.conftest import at
from tests.harness import Bot
from tests.ledger_fixture import accounts
from tests.test_ladder_timeline import Recorder

D = Decimal


async def _ledger(db, customers: list[tuple[str, str]], invoices: list[tuple[str, str, date, str]]) -> None:
    async with db.session() as s, s.begin():
        s.add(Person(id="rep1", name="张伟", role="rep", accounts=accounts(wecom="wx_rep1")))
        await s.flush()
        ids = {}
        for code, name in customers:
            c = Customer(code=code, name=name, grade="B", credit_limit=D("1000000"), rep_id="rep1")
            s.add(c)
            await s.flush()
            s.add(Contact(customer_id=c.id, name="财务" + code, channel="email", email=f"ap-{code.lower()}@example.com"))
            ids[code] = c.id
        for inv, code, due, amount in invoices:
            s.add(Receivable(invoice_no=inv, contract_no="HT-" + inv, customer_id=ids[code], rep_id="rep1",
                             issue_date=due - timedelta(days=30), due_date=due, amount=D(amount),
                             open_amount=D(amount), created_at=at("2026-10-01 10:00")))


async def _start(aiohttp_client, db, now: datetime, **sections) -> tuple[Bot, Recorder]:
    bot = await Bot.start(aiohttp_client, db, now, **sections)
    email = Recorder("email")
    install_customer_channels(bot.state, email=email)
    return bot, email


async def _queue(bot: Bot, job: str, when: datetime) -> None:
    """Run a job without letting the sender run (the backlog builds up)."""
    bot.clock.set(when)
    await run_job(bot.services, job, when, claim_fire=True)


async def _drain(bot: Bot, when: datetime) -> None:
    bot.clock.set(when)
    await bot.state.sender.drain()


async def test_a_statement_queued_before_a_part_payment_states_the_balance_left(aiohttp_client, db):
    await _ledger(db, [("C1", "上海恒信机电有限公司")], [("INV-26", "C1", date(2026, 12, 18), "26000.00")])
    bot, email = await _start(aiohttp_client, db, at("2026-12-04 20:00"))
    # 15 days before 12/18 is Thursday 12/3: the statement is due; at 20:00 it waits for Monday
    await _queue(bot, "customer_reminders", at("2026-12-04 20:00"))
    async with db.session() as s, s.begin():
        c = (await s.execute(select(Customer))).scalar_one()
        await ledger.record_payment(s, customer=c, amount=D("20000.00"), paid_on=date(2026, 12, 5),
                                    reference="LS-20000", invoice_no="INV-26", actor="fin1", channel="test",
                                    now=at("2026-12-05 10:00"))
    await _drain(bot, at("2026-12-07 09:00"))
    [mail] = email.sent
    assert "应付金额¥6,000.00，将于2026-12-18到期" in mail.text
    assert "26,000" not in mail.text
    async with db.session() as s:
        row = (await s.execute(select(OutboxMessage).where(OutboxMessage.idem_key == "remind:INV-26:pre_statement"))
               ).scalar_one()
        assert row.status == "sent" and "¥6,000.00" in row.text     # the outbox keeps what left


def _pdf_text(data: bytes) -> str:
    return re.sub(r"\s+", "", "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages))


async def test_a_letter_that_waited_nine_days_states_the_days_overdue_when_it_left(aiohttp_client, db):
    await _ledger(db, [("C1", "上海恒信机电有限公司")], [("INV-9", "C1", date(2026, 11, 13), "20000.00")])
    async with db.session() as s, s.begin():
        (await s.execute(select(Customer).where(Customer.code == "C1"))).scalar_one().late_fee_rate = "0.05%"
    bot, email = await _start(aiohttp_client, db, at("2026-11-20 20:00"))
    await _queue(bot, "escalations", at("2026-11-20 20:00"))          # d7, queued for Monday 11/23 09:00
    async with db.session() as s:
        row = (await s.execute(select(OutboxMessage).where(OutboxMessage.idem_key == "ladder:INV-9:d7"))).scalar_one()
        assert "逾期7天" in row.text
    await _drain(bot, at("2026-12-02 10:00"))                        # the mail server was down until Wednesday
    [mail] = email.sent
    assert "目前尚有¥20,000.00未付（逾期19天）" in mail.text
    # the attached letter (a PDF), rendered when it left; the contract has a late-fee clause of
    # 0.05% a day: 20000 × 19 × 0.05% = 190.00
    letter = _pdf_text(base64.b64decode(mail.extra["attachment"]["content"]))
    # the table row: invoice, due date, open amount, days overdue, late fee
    assert "截至2026-12-02" in letter and "INV-92026-11-13¥20,000.0019¥190.00" in letter, letter


async def test_a_statement_that_would_arrive_after_its_due_date_is_dropped_with_the_reason(aiohttp_client, db):
    await _ledger(db, [("C1", "上海恒信机电有限公司")], [("INV-30", "C1", date(2026, 11, 30), "8000.00")])
    bot, email = await _start(aiohttp_client, db, at("2026-11-13 20:00"))
    # 15 days before 11/30 is Sunday 11/15: the statement goes the Friday before, queued for Monday 11/16
    await _queue(bot, "customer_reminders", at("2026-11-13 20:00"))
    async with db.session() as s:
        row = (await s.execute(select(OutboxMessage))).scalars().all()
        assert [r.title for r in row] == ["【示例公司】对账提醒：发票INV-30将于11月30日到期"]
    await _drain(bot, at("2026-12-03 09:30"))
    assert email.sent == []
    async with db.session() as s:
        cm = (await s.execute(select(CustomerMessage))).scalar_one()
        assert (cm.status, cm.cancel_reason, cm.sent_at) == ("cancelled", "past_due_date", None)
        row = (await s.execute(select(OutboxMessage))).scalar_one()
        assert row.status == "cancelled" and "past_due_date" in row.last_error
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "customer_message.drop"))).scalar_one()
        assert entry.entity_id == "remind:INV-30:pre_statement" and entry.detail["reason"] == "past_due_date"
    # and it stays dropped: a later pass sends nothing
    await _drain(bot, at("2026-12-04 09:30"))
    assert email.sent == []


async def test_a_paid_invoice_s_queued_letter_is_dropped_even_when_paid_behind_the_orm(aiohttp_client, db):
    await _ledger(db, [("C1", "上海恒信机电有限公司")], [("INV-9", "C1", date(2026, 11, 13), "20000.00")])
    bot, email = await _start(aiohttp_client, db, at("2026-11-20 20:00"))
    await _queue(bot, "escalations", at("2026-11-20 20:00"))
    async with db.session() as s, s.begin():
        from sqlalchemy import update
        await s.execute(update(Receivable).values(open_amount=D("0.00"), status="paid"))   # no ORM hook
    await _drain(bot, at("2026-11-23 09:30"))
    assert email.sent == []
    async with db.session() as s:
        cm = (await s.execute(select(CustomerMessage))).scalar_one()
        assert (cm.status, cm.cancel_reason) == ("cancelled", "paid")


async def test_a_drained_backlog_keeps_each_contact_to_one_mail_in_three_days(aiohttp_client, db):
    customers = [("C1", "上海恒信机电有限公司"), ("C2", "苏州明达电子科技有限公司"), ("C3", "广州顺发贸易有限公司")]
    invoices = [(f"INV-{code}-{n}", code, date(2026, 12, 2), "1000.00") for code, _ in customers for n in range(1, 5)]
    await _ledger(db, customers, invoices)
    bot, email = await _start(aiohttp_client, db, at("2026-11-02 08:00"), policy={"statement_days": 30},
                              conduct={"max_messages": 1, "per_days": 3})
    # Monday 11/2: four statements per customer, queued one per three days (working days only)
    await _queue(bot, "customer_reminders", at("2026-11-02 08:00"))
    async with db.session() as s:
        slots = sorted({r.next_attempt_at.astimezone(bot.services.config.tz).date()
                        for r in (await s.execute(select(OutboxMessage))).scalars()})
        assert slots == [date(2026, 11, 2), date(2026, 11, 5), date(2026, 11, 9), date(2026, 11, 12)]

    # the sender was stopped until Friday 11/13 10:00; then it drains everything due at once
    await _drain(bot, at("2026-11-13 10:00"))
    assert sorted(m.target for m in email.sent) == ["ap-c1@example.com", "ap-c2@example.com", "ap-c3@example.com"]
    # and every working morning after, until all twelve are out
    day = date(2026, 11, 14)
    while day <= date(2026, 12, 1):
        await _drain(bot, datetime.combine(day, datetime.min.time(), tzinfo=at("2026-11-13 10:00").tzinfo)
                     .replace(hour=9, minute=30))
        day += timedelta(days=1)
    async with db.session() as s:
        sent = (await s.execute(select(OutboxMessage).where(OutboxMessage.status == "sent"))).scalars().all()
    tz = bot.services.config.tz
    by_contact: dict[str, list[date]] = {}
    for r in sent:
        by_contact.setdefault(r.target, []).append(r.sent_at.astimezone(tz).date())
    expected = [date(2026, 11, 13), date(2026, 11, 16), date(2026, 11, 19), date(2026, 11, 23)]
    assert {k: sorted(v) for k, v in by_contact.items()} == {
        "ap-c1@example.com": expected, "ap-c2@example.com": expected, "ap-c3@example.com": expected}
    assert len(email.sent) == 12
