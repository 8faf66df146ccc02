"""Reminders, the escalation ladder, customer messages, credit alerts and the statute: the
queries and records behind ``bot/jobs/reminders.py``. Session first, never commits.

Stopping customer messages at once
----------------------------------
A customer message is queued in the outbox for the next allowed slot (working hours, frequency
cap), so it may wait overnight or over a weekend. If, meanwhile, the invoice is disputed, paid in
full, written off or gets a fresh promise to pay, the message must not go out. Two guards:

1. **Cancel in the same transaction** (primary). A ``before_flush`` hook on every ORM session
   sees a receivable becoming disputed / paid / written off, or a new open promise, and cancels
   that invoice's queued customer messages (``customer_messages.status = cancelled`` and the
   outbox row's status ``cancelled``, which the sender never claims) in the transaction that
   made the change: the dispute and the cancellation commit together or not at all.
2. **Check at send time** (every customer channel). The sender's send-time check
   (``bot/send_time_check.py``) looks at the ledger again just before a customer message leaves:
   it drops one that is no longer true (with the reason), defers one the cap or the hours do not
   allow now, and renders the rest again from the ledger of that day.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import bindparam, event, func, inspect, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage import audit, scan
from storage import statute as statute_events
from storage.fx import convert, rates_for
from storage.outbox_parts import part_keys
from storage.models import (Allocation, Contact, CreditAlert, Customer, CustomerMessage, DigestItem, LadderStep,
                            OutboxMessage, Promise, Receivable)

ZERO = Decimal("0.00")
# a contact's channel "<platform>_group" is a group robot on that platform, named by channel_target
GROUP_SUFFIX = "_group"


# -- which invoices --------------------------------------------------------------------------

def open_select(*, due_before: date | None = None, due_on_or_after: date | None = None):
    """The open invoices (something left to collect, not written off), due in the range."""
    stmt = select(Receivable).where(Receivable.open_amount > 0, Receivable.status != "written_off")
    if due_before is not None:
        stmt = stmt.where(Receivable.due_date < due_before)
    if due_on_or_after is not None:
        stmt = stmt.where(Receivable.due_date >= due_on_or_after)
    return stmt


async def open_receivables(session: AsyncSession, *, due_before: date | None = None,
                           due_on_or_after: date | None = None) -> list[tuple[Receivable, Customer]]:
    stmt = open_select(due_before=due_before, due_on_or_after=due_on_or_after) \
        .add_columns(Customer).join(Customer, Customer.id == Receivable.customer_id)
    return list((await session.execute(stmt.order_by(Receivable.due_date, Receivable.id))).all())


async def fired_steps(session: AsyncSession, receivable_ids: list[int]) -> dict[int, dict[str, str]]:
    """The recorded steps of each invoice: step name → status (fired, skipped or held)."""
    out: dict[int, dict[str, str]] = defaultdict(dict)
    for i in range(0, len(receivable_ids), 500):
        chunk = receivable_ids[i:i + 500]
        for rid, step, status in (await session.execute(
                select(LadderStep.receivable_id, LadderStep.step, LadderStep.status)
                .where(LadderStep.receivable_id.in_(chunk)))).all():
            out[rid][step] = status
    return out


STEP_ACTIONS = {"fired": "ladder.fire", "skipped": "ladder.skip", "held": "ladder.hold"}


async def fire_step(session: AsyncSession, receivable: Receivable, step: str, now: datetime, *,
                    status: str = "fired", **detail) -> bool:
    """Record a step for an invoice (and audit it). False if it was already recorded: steps fire
    once, and a skipped step never fires later. A held step (deferred by a promise) may still
    fire, once: its row turns from held to fired."""
    row = (await session.execute(select(LadderStep).where(LadderStep.receivable_id == receivable.id,
                                                          LadderStep.step == step))).scalar_one_or_none()
    if row is not None and not (row.status == "held" and status == "fired"):
        return False
    if row is None:
        session.add(LadderStep(receivable_id=receivable.id, step=step, fired_at=now, status=status))
    else:
        row.status, row.fired_at = status, now
    audit.record(session, at=now, actor="bot", channel="job", action=STEP_ACTIONS[status], entity="receivable",
                 entity_id=receivable.invoice_no, step=step, **detail)
    await session.flush()
    return True


def step_row(receivable_id: int, step: str, now: datetime, status: str = "fired") -> dict:
    return {"receivable_id": receivable_id, "step": step, "fired_at": now, "status": status}


async def record_steps(session: AsyncSession, new: list[dict], held_fired: list[dict]) -> None:
    """:func:`fire_step`'s writes for many steps decided at once: ``new`` rows (from
    :func:`step_row`; a step recorded meanwhile is left as it is) and held steps that fire now
    (``receivable_id``, ``step``, ``fired_at``). The audit entries are the caller's."""
    if new:
        await session.execute(_insert_ignoring(session, LadderStep.__table__, ["receivable_id", "step"]), new)
    if held_fired:
        t = LadderStep.__table__
        await session.execute(update(t).where(t.c.receivable_id == bindparam("rid"), t.c.step == bindparam("st"),
                                              t.c.status == "held").values(status="fired", fired_at=bindparam("at")),
                              [{"rid": h["receivable_id"], "st": h["step"], "at": h["fired_at"]} for h in held_fired])


def customer_message_row(*, customer_id: int, contact: Contact, receivable_id: int | None, step: str, kind: str,
                         outbox_key: str, now: datetime, send_at: datetime) -> dict:
    """A queued customer message's row, for :func:`record_customer_messages`."""
    return {"customer_id": customer_id, "contact_id": contact.id, "receivable_id": receivable_id, "step": step,
            "kind": kind, "channel": contact.channel, "outbox_key": outbox_key, "status": "queued",
            "cancel_reason": "", "queued_at": now, "send_at": send_at, "sent_at": None}


async def record_customer_messages(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(_insert_ignoring(session, CustomerMessage.__table__, ["outbox_key"]), rows)


async def freeze(session: AsyncSession, customer_ids: list[int]) -> None:
    """New orders paused for these customers (those still active)."""
    if customer_ids:
        await session.execute(update(Customer).where(Customer.id.in_(customer_ids), Customer.status == "active")
                              .values(status="frozen"))


async def blocked_now(session: AsyncSession, receivable_ids: list[int], today: date, grace_days: int,
                      calendar) -> set[int]:
    """Which of these invoices nothing may be sent about as the ledger stands in this
    transaction (:func:`blocking_reason` for many): a job that decided from an earlier read
    checks again where it writes, so a dispute or promise that came in between wins."""
    out: set[int] = set()
    for i in range(0, len(receivable_ids), 500):
        for r in (await session.execute(select(Receivable.id, Receivable.status, Receivable.open_amount,
                                               Receivable.disputed)
                                        .where(Receivable.id.in_(receivable_ids[i:i + 500])))).all():
            if ledger_block(r):
                out.add(r.id)
    return out | await promised(session, receivable_ids, today, grace_days, calendar)


def _insert_ignoring(session: AsyncSession, table, keys: list[str]):
    ins = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    return ins(table).on_conflict_do_nothing(index_elements=keys)


def promise_deadline(promised: date, grace_days: int, calendar) -> date:
    """The last day a promise may still be kept: its date plus ``grace_days`` working days (a
    promise for Friday with one day's grace holds through Monday; payments do not clear at the
    weekend)."""
    return calendar.add_workdays(promised, grace_days) if grace_days > 0 else promised


def earliest_live_promise(today: date, grace_days: int, calendar) -> date:
    """The earliest promised date whose promise is still live on ``today`` (the inverse of
    ``promise_deadline``: a promise for this date or later has not run out)."""
    return calendar.add_workdays(today, -grace_days) if grace_days > 0 else today


async def live_promise(session: AsyncSession, receivable_id: int, today: date, grace_days: int,
                       calendar) -> Promise | None:
    """An open promise whose date (plus the grace working days promise_watch allows) has not passed."""
    p = (await session.execute(select(Promise).where(Promise.receivable_id == receivable_id, Promise.status == "open")
                               .order_by(Promise.id.desc()).limit(1))).scalar_one_or_none()
    if p is not None and today <= promise_deadline(p.promised_date, grace_days, calendar):
        return p
    return None


async def blocking_reason(session: AsyncSession, r: Receivable, today: date, grace_days: int,
                          calendar) -> str | None:
    """Why nothing may be sent about this invoice now: paid, written_off, disputed, promise (or None)."""
    reason = ledger_block(r)
    if reason is None and await live_promise(session, r.id, today, grace_days, calendar) is not None:
        return "promise"
    return reason


def ledger_block(r) -> str | None:
    """The part of :func:`blocking_reason` the invoice row alone decides (a Receivable, or a row
    with its status, open_amount and disputed)."""
    if r.status == "written_off":
        return "written_off"
    if r.open_amount <= ZERO or r.status == "paid":
        return "paid"
    if r.disputed:
        return "disputed"
    return None


async def promised(session: AsyncSession, receivable_ids: list[int], today: date, grace_days: int,
                   calendar) -> set[int]:
    """Which of these invoices a live promise holds (:func:`live_promise` for many at once)."""
    latest: dict[int, date] = {}
    for i in range(0, len(receivable_ids), 500):
        for rid, promised_date in (await session.execute(
                select(Promise.receivable_id, Promise.promised_date)
                .where(Promise.receivable_id.in_(receivable_ids[i:i + 500]), Promise.status == "open")
                .order_by(Promise.id))).all():
            latest[rid] = promised_date
    return {rid for rid, d in latest.items() if today <= promise_deadline(d, grace_days, calendar)}


# -- when customer messages may go -------------------------------------------------------------

def next_slot(now: datetime, conduct, calendar) -> datetime:
    """The earliest moment at or after ``now`` inside working hours (on a working day)."""
    start, end = conduct.start_time, conduct.end_time

    def allowed(d: date) -> bool:
        return calendar.is_workday(d) if conduct.working_days_only else True

    d = now.date()
    if allowed(d):
        if now.time() < start:
            return datetime.combine(d, start, tzinfo=now.tzinfo)
        if now.time() < end:
            return now
    d += timedelta(days=1)
    while not allowed(d):
        d += timedelta(days=1)
    return datetime.combine(d, start, tzinfo=now.tzinfo)


async def message_days(session: AsyncSession, customer_ids: list[int], now: datetime,
                       conduct) -> dict[int, list[date]]:
    """The days (company time) of each customer's messages queued or sent that can count against
    the cap for a message sent from ``now`` on."""
    out: dict[int, list[date]] = defaultdict(list)
    tz = now.tzinfo
    for i in range(0, len(customer_ids), 500):
        for cid, send_at in (await session.execute(select(CustomerMessage.customer_id, CustomerMessage.send_at).where(
                CustomerMessage.customer_id.in_(customer_ids[i:i + 500]),
                CustomerMessage.status.in_(("queued", "sending", "sent")),
                CustomerMessage.send_at >= now - timedelta(days=conduct.per_days + 1)))).all():
            out[cid].append(send_at.astimezone(tz).date())
    return out


def slot_within_cap(taken: list[date], now: datetime, conduct, calendar) -> datetime:
    """The next allowed slot at which one more message keeps ``max_messages`` per ``per_days``,
    given the days already ``taken``."""
    tz = now.tzinfo
    n, days = conduct.max_messages, conduct.per_days
    slot = next_slot(now, conduct, calendar)
    for _ in range(400):
        d = slot.date()
        full = any(sum(1 for t in taken if w <= t < w + timedelta(days=days)) >= n
                   for w in (d - timedelta(days=k) for k in range(days)))
        if not full:
            return slot
        slot = next_slot(datetime.combine(d + timedelta(days=1), conduct.start_time, tzinfo=tz), conduct, calendar)
    return slot


async def contacts(session: AsyncSession, customer_ids: list[int]) -> dict[int, tuple[list[Contact], Contact | None]]:
    """Each customer's contacts in order, and the first one with a usable channel."""
    out: dict[int, tuple[list[Contact], Contact | None]] = {}
    for i in range(0, len(customer_ids), 500):
        for c in (await session.execute(select(Contact).where(Contact.customer_id.in_(customer_ids[i:i + 500]))
                                        .order_by(Contact.customer_id, Contact.id))).scalars():
            listed, usable = out.get(c.customer_id, ([], None))
            listed.append(c)
            if usable is None and _usable(c):
                usable = c
            out[c.customer_id] = (listed, usable)
    return out


def _usable(c: Contact) -> bool:
    return bool((c.channel == "email" and c.email) or (c.channel == "sms" and c.mobile) or
                (c.channel.endswith(GROUP_SUFFIX) and c.channel_target))


async def sync_sent(session: AsyncSession) -> int:
    """Copy delivery from the outbox to queued customer messages (group robots report only there)."""
    rows = (await session.execute(select(CustomerMessage, OutboxMessage.status, OutboxMessage.sent_at)
                                  .join(OutboxMessage, OutboxMessage.idem_key == CustomerMessage.outbox_key)
                                  .where(CustomerMessage.status.in_(("queued", "sending")),
                                         OutboxMessage.status.in_(("sent", "dead", "cancelled", "split"))))).all()
    rows = [(cm, *((await _parts_outcome(session, cm.outbox_key)) if status == "split" else (status, sent_at)))
            for cm, status, sent_at in rows]
    rows = [(cm, status, sent_at) for cm, status, sent_at in rows if status is not None]
    for cm, status, sent_at in rows:
        if status == "sent":
            cm.status, cm.sent_at = "sent", sent_at
        elif status == "dead":
            cm.status = "failed"
        else:
            cm.status = "cancelled"
    return len(rows)


async def _parts_outcome(session: AsyncSession, key: str) -> tuple[str | None, datetime | None]:
    """A message sent in parts (storage/outbox_parts.py): sent when every part is, failed when one
    is dead, cancelled when one is; None while parts are under way."""
    parts = (await session.execute(select(OutboxMessage.status, OutboxMessage.sent_at)
                                   .where(OutboxMessage.idem_key.in_(part_keys(key))))).all()
    states = {st for st, _ in parts}
    if not parts or states - {"sent", "dead", "cancelled"}:
        return None, None
    if "dead" in states:
        return "dead", None
    if "cancelled" in states:
        return "cancelled", None
    return "sent", max(at for _, at in parts)


def _cancel_sync(conn_session: Session, reasons: dict[int, str]) -> None:
    for rid, reason in reasons.items():
        keys = list(conn_session.execute(select(CustomerMessage.outbox_key).where(
            CustomerMessage.receivable_id == rid, CustomerMessage.status.in_(("queued", "sending")))).scalars())
        if not keys:
            continue
        conn_session.execute(update(CustomerMessage.__table__).where(
            CustomerMessage.__table__.c.outbox_key.in_(keys)).values(status="cancelled", cancel_reason=reason))
        # the message, or its parts when it went out in several (those not sent yet)
        keys += [k for key in keys for k in part_keys(key)]
        conn_session.execute(update(OutboxMessage.__table__).where(
            OutboxMessage.__table__.c.idem_key.in_(keys), OutboxMessage.__table__.c.status == "pending")
            .values(status="cancelled", last_error=f"cancelled: {reason}"))


@event.listens_for(Session, "before_flush")
def _stop_customer_messages(session: Session, flush_context, instances) -> None:
    """Guard 1 (see the module docstring): cancel queued customer messages in the transaction
    that disputes, pays in full, writes off, or promises to pay the invoice."""
    reasons: dict[int, str] = {}
    for obj in session.dirty:
        if not isinstance(obj, Receivable) or obj.id is None:
            continue
        state = inspect(obj)
        if obj.disputed and state.attrs.disputed.history.added:
            reasons[obj.id] = "disputed"
        elif obj.status == "written_off" and state.attrs.status.history.added:
            reasons[obj.id] = "written_off"
        elif obj.open_amount is not None and obj.open_amount <= ZERO and state.attrs.open_amount.history.added:
            reasons[obj.id] = "paid"
    for obj in session.new:
        if isinstance(obj, Promise) and obj.status in (None, "open") and obj.receivable_id is not None:
            reasons.setdefault(obj.receivable_id, "promise")
    if reasons:
        _cancel_sync(session, reasons)


async def mark_message(session: AsyncSession, outbox_key: str, *, sent_at: datetime | None = None,
                       cancelled: str | None = None) -> None:
    values: dict = {"status": "sent", "sent_at": sent_at} if cancelled is None else \
        {"status": "cancelled", "cancel_reason": cancelled}
    await session.execute(update(CustomerMessage).where(CustomerMessage.outbox_key == outbox_key).values(**values))


async def told(session: AsyncSession, key: str) -> bool:
    """A notification with this key (to anyone) was already decided (its digest items)."""
    return (await session.execute(select(DigestItem.id).where(DigestItem.item_key.like(key + ":%")).limit(1))
            ).first() is not None


# -- statute of limitations --------------------------------------------------------------------

def record_confirmation(session: AsyncSession, *, receivable: Receivable, signed_on: date, actor: str,
                        channel: str, now: datetime, reference: str = "") -> None:
    """The customer signed a balance confirmation (账款确认函): the debtor's acknowledgement."""
    statute_events.record_evidence(session, receivable=receivable, evidence="signed_confirmation", on=signed_on,
                                   reference=reference, actor=actor, channel=channel, now=now)


# -- credit ------------------------------------------------------------------------------------

@dataclass
class CreditPosition:
    customer: Customer
    balance: Decimal                 # open balance in the reporting currency (CNY)
    largest_invoice: Decimal         # largest open invoice, CNY
    unconverted: list[str]           # currencies without an fx rate (left out of the balance)

    def usage(self) -> Decimal | None:
        if self.customer.credit_limit <= 0:
            return None
        return self.balance / self.customer.credit_limit


async def credit_positions(session: AsyncSession, fx_rates: dict) -> list[CreditPosition]:
    customers = (await session.execute(select(Customer).order_by(Customer.id))).scalars().all()
    pos = {c.id: CreditPosition(c, ZERO, ZERO, []) for c in customers}
    rates = rates_for(fx_rates)
    open_by: dict[tuple[int, str], Decimal] = {}
    # every open invoice: 800,000 rows at 1M receivables, read in parts (storage/scan.py)
    async for rows in scan.in_parts(session, select(Receivable.customer_id, Receivable.currency,
                                                    Receivable.open_amount, Receivable.amount)
                                    .where(Receivable.open_amount > 0, Receivable.status != "written_off")):
        for cid, cur, open_amount, amount in rows:
            p = pos[cid]
            if cur not in rates:
                if cur not in p.unconverted:
                    p.unconverted.append(cur)
                continue
            open_by[(cid, cur)] = open_by.get((cid, cur), ZERO) + open_amount
            p.largest_invoice = max(p.largest_invoice, convert(amount, cur, rates))
    # the balance by the one rounding rule (storage.aging.AgingReport): per currency, converted once, half up
    for (cid, cur), total in sorted(open_by.items()):
        pos[cid].balance += convert(total, cur, rates)
    return list(pos.values())


async def consecutive_overdue(session: AsyncSession, customer_id: int, today: date, n: int) -> bool:
    """The customer's last ``n`` invoices that fell due were all overdue (still open past due,
    paid after the due date, or written off)."""
    return customer_id in await overdue_streaks(session, today, n, customer_id=customer_id)


async def overdue_streaks(session: AsyncSession, today: date, n: int, *, customer_id: int | None = None) -> set[int]:
    """The customers whose last ``n`` invoices that fell due were all overdue (see
    :func:`consecutive_overdue`), for every customer in two queries."""
    ranked = select(Receivable.id, Receivable.customer_id, Receivable.due_date, Receivable.status,
                    Receivable.open_amount,
                    func.row_number().over(partition_by=Receivable.customer_id,
                                           order_by=(Receivable.due_date.desc(), Receivable.id.desc())).label("k")
                    ).where(Receivable.due_date < today)
    if customer_id is not None:
        ranked = ranked.where(Receivable.customer_id == customer_id)
    ranked = ranked.subquery()
    count: dict[int, int] = defaultdict(int)
    settled: dict[int, tuple[int, date]] = {}          # paid invoices: their lateness decides
    broken: set[int] = set()
    async for rows in scan.in_parts(session, select(ranked.c.id, ranked.c.customer_id, ranked.c.due_date,
                                                    ranked.c.status, ranked.c.open_amount).where(ranked.c.k <= n)):
        for rid, cid, due, status, open_amount in rows:
            count[cid] += 1
            if not (status == "written_off" or open_amount > 0):
                settled[rid] = (cid, due)
    ids = list(settled)
    for i in range(0, len(ids), 500):
        last = dict((await session.execute(select(Allocation.receivable_id, func.max(Allocation.applied_on))
                                           .where(Allocation.receivable_id.in_(ids[i:i + 500]))
                                           .group_by(Allocation.receivable_id))).all())
        for rid in ids[i:i + 500]:
            cid, due = settled[rid]
            if last.get(rid) is None or last[rid] <= due:
                broken.add(cid)
    return {cid for cid, k in count.items() if k >= n and cid not in broken}


async def open_alerts(session: AsyncSession) -> dict[tuple[int, str], int]:
    """The id of every open credit alert by (customer, level)."""
    return {(cid, level): aid for aid, cid, level in (await session.execute(
        select(CreditAlert.id, CreditAlert.customer_id, CreditAlert.level)
        .where(CreditAlert.cleared_at.is_(None)))).all()}


async def clear_alerts(session: AsyncSession, alert_ids: list[int], now: datetime) -> None:
    if alert_ids:
        await session.execute(update(CreditAlert).where(CreditAlert.id.in_(alert_ids)).values(cleared_at=now))
