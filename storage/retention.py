"""What the bot may forget, and when: delivered messages, handled events and the digest lines
already sent, once they are older than ``[retention]`` says. Without this the outbox and the
event store grow by every message and every click for as long as the bot runs.

Kept for good, whatever their age: the ledger, follow-ups, promises, the audit log, customer
messages (the statute's record of written notices), job fires (they make a missed fire run once)
and anything still to do — a pending or claimed message, an event not yet handled, a digest line
not yet sent. A message is kept while a customer message still waits on it (its status is read
from the outbox when the reminders job next looks).

Each call deletes at most ``BATCH`` rows in the caller's transaction, so the job commits in short
steps and never holds SQLite's write lock for long.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import CustomerMessage, DigestItem, InboundEvent, OutboxMessage

BATCH = 1000
FINISHED_MESSAGES = ("sent", "dead", "split", "cancelled")
FINISHED_EVENTS = ("handled", "dead")


async def _delete_ids(session: AsyncSession, model, ids: list[int]) -> int:
    if ids:
        await session.execute(delete(model).where(model.id.in_(ids)))
    return len(ids)


async def waiting_keys(session: AsyncSession) -> set[str]:
    """Outbox keys a queued customer message still waits on (few: messages held for a slot)."""
    return set((await session.execute(select(CustomerMessage.outbox_key)
                                      .where(CustomerMessage.status == "queued"))).scalars())


async def forget_messages(session: AsyncSession, before: datetime, *, after_id: int = 0,
                          keep: set[str] = frozenset()) -> tuple[int, int | None]:
    """Finished outbox messages last touched before ``before``, among the next BATCH ids after
    ``after_id``: (how many were deleted, the last id looked at — None when there are no more).
    A message whose key, or whose parent's key (a part ``key:2`` of a split), is in ``keep`` stays."""
    rows = (await session.execute(
        select(OutboxMessage.id, OutboxMessage.idem_key)
        .where(OutboxMessage.id > after_id, OutboxMessage.status.in_(FINISHED_MESSAGES),
               func.coalesce(OutboxMessage.sent_at, OutboxMessage.created_at) < before)
        .order_by(OutboxMessage.id).limit(BATCH))).all()
    if not rows:
        return 0, None
    ids = [i for i, key in rows if key not in keep and key.rpartition(":")[0] not in keep]
    return await _delete_ids(session, OutboxMessage, ids), rows[-1][0]


async def forget_events(session: AsyncSession, before: datetime) -> int:
    """Up to BATCH incoming events handled (or dead-lettered) and received before ``before``. A
    platform's retry of an event this old is not a retry any more: none retries for days."""
    ids = (await session.execute(
        select(InboundEvent.id)
        .where(InboundEvent.status.in_(FINISHED_EVENTS), InboundEvent.received_at < before)
        .limit(BATCH))).scalars().all()
    return await _delete_ids(session, InboundEvent, list(ids))


async def forget_digest_lines(session: AsyncSession, before: datetime) -> int:
    """Up to BATCH digest lines already carried by a digest and written before ``before``."""
    ids = (await session.execute(
        select(DigestItem.id)
        .where(DigestItem.digest_key.is_not(None), DigestItem.created_at < before)
        .limit(BATCH))).scalars().all()
    return await _delete_ids(session, DigestItem, list(ids))
