"""The records behind the send-time check of customer messages (``bot/send_time_check.py``).

A queued customer message (``customer_messages``, status ``queued``) is looked at again just
before it leaves. It is then either

* **released** (status ``sending``, ``send_at`` = the moment of release) and goes out — its row
  counts against the customer's frequency cap from that moment, delivered or still retrying;
* **deferred** (status stays ``queued``, ``send_at`` = the new slot): outside working hours, or
  the cap is full because other messages went first (a backlog drained at once);
* **dropped** (status ``cancelled`` with the reason, audited): no longer true.

Session first, never commits.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.models import CustomerMessage, OutboxMessage, Receivable

# queued messages whose slot is still ahead hold it; released and sent ones count from when they went
COUNTING = ("sending", "sent")


async def by_keys(session: AsyncSession, keys: list[str]) -> dict[str, CustomerMessage]:
    out: dict[str, CustomerMessage] = {}
    for i in range(0, len(keys), 500):
        for cm in (await session.execute(select(CustomerMessage).where(
                CustomerMessage.outbox_key.in_(keys[i:i + 500])))).scalars():
            out[cm.outbox_key] = cm
    return out


async def by_ids(session: AsyncSession, model, ids) -> dict:
    """Rows of ``model`` (Receivable, Contact, Customer) by id, a few queries for a whole batch."""
    ids = sorted({i for i in ids if i is not None})
    out: dict = {}
    for i in range(0, len(ids), 500):
        out.update({x.id: x for x in (await session.execute(select(model).where(model.id.in_(ids[i:i + 500])))).scalars()})
    return out


async def open_receivables(session: AsyncSession, customer_ids) -> dict[int, list[Receivable]]:
    """Each customer's open invoices by due date (what a statement or letter lists)."""
    ids = sorted(set(customer_ids))
    out: dict[int, list[Receivable]] = {cid: [] for cid in ids}
    for i in range(0, len(ids), 500):
        for r in (await session.execute(select(Receivable).where(
                Receivable.customer_id.in_(ids[i:i + 500]), Receivable.open_amount > 0,
                Receivable.status != "written_off").order_by(Receivable.due_date, Receivable.id))).scalars():
            out[r.customer_id].append(r)
    return out


@dataclass
class CapRow:
    id: int
    status: str
    send_at: datetime
    went_at: datetime


async def cap_rows(session: AsyncSession, customer_ids, now: datetime, per_days: int) -> dict[int, list[CapRow]]:
    """The customers' messages that may count against their cap around ``now`` (see :func:`taken_days`)."""
    ids = sorted(set(customer_ids))
    since, until = now - timedelta(days=per_days + 1), now + timedelta(days=per_days + 1)
    went = func.coalesce(CustomerMessage.sent_at, CustomerMessage.send_at)
    out: dict[int, list[CapRow]] = {cid: [] for cid in ids}
    for i in range(0, len(ids), 500):
        for mid, cid, status, send_at, went_at in (await session.execute(select(
                CustomerMessage.id, CustomerMessage.customer_id, CustomerMessage.status, CustomerMessage.send_at, went)
                .where(CustomerMessage.customer_id.in_(ids[i:i + 500]),
                       CustomerMessage.status.in_(("queued", *COUNTING)),
                       CustomerMessage.send_at >= since, CustomerMessage.send_at <= until))).all():
            out[cid].append(CapRow(mid, status, send_at, went_at))
    return out


def taken_days(rows: list[CapRow], now: datetime, exclude: int) -> list[date]:
    """The days (company time) that count against the customer's cap for a message sent at
    ``now``: messages released or sent within the window around it, and queued ones holding a
    slot after ``now``. A queued message whose slot has passed unsent is not counted: it is part
    of a backlog and competes for the slot now, checked in its turn."""
    tz = now.tzinfo
    out: list[date] = []
    for x in rows:
        if x.id == exclude:
            continue
        if x.status in COUNTING:
            out.append(x.went_at.astimezone(tz).date())
        elif x.send_at > now:
            out.append(x.send_at.astimezone(tz).date())
    return out


async def release(session: AsyncSession, cm_id: int, now: datetime) -> bool:
    """Mark a message as leaving now. False if it was cancelled meanwhile (a dispute or payment
    committed between the check's read and this write)."""
    done = await session.execute(update(CustomerMessage).where(
        CustomerMessage.id == cm_id, CustomerMessage.status.in_(("queued", "sending")))
        .values(status="sending", send_at=now))
    return done.rowcount == 1


async def defer(session: AsyncSession, cm_id: int, slot: datetime) -> None:
    await session.execute(update(CustomerMessage).where(CustomerMessage.id == cm_id,
                                                        CustomerMessage.status == "queued").values(send_at=slot))


async def drop(session: AsyncSession, cm: CustomerMessage, reason: str, now: datetime, **detail) -> None:
    """Cancel a message at send time, with its reason, in the register and the audit log."""
    await session.execute(update(CustomerMessage).where(CustomerMessage.id == cm.id)
                          .values(status="cancelled", cancel_reason=reason))
    audit.record(session, at=now, actor="bot", channel="outbox", action="customer_message.drop",
                 entity="customer_message", entity_id=cm.outbox_key, reason=reason, step=cm.step, **detail)


async def rewrite(session: AsyncSession, outbox_id: int, *, text: str, title: str, target: str, extra: dict) -> None:
    """The outbox row keeps the text that actually left (rendered at send time)."""
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == outbox_id)
                          .values(text=text, title=title, target=target, extra=extra))
