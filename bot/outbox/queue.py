"""Putting messages in the outbox: a row per message, written in the caller's transaction (the
ledger change and the message that tells people about it commit together). The idempotency key
makes a second enqueue of the same message a no-op."""
from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.messages import OutgoingMessage
from storage.models import OutboxMessage


# the sender claims higher first; an answer to a person's own message also has room kept for it
# in each per-member minute (rate_limits.RateLimiter), so it never waits behind notifications
NOTICE, REPLY = 0, 1


async def enqueue(session: AsyncSession, out: OutgoingMessage, key: str, now: datetime,
                  not_before: datetime | None = None, *, priority: int = NOTICE) -> bool:
    """Add a message to the outbox unless one with the same key exists. True if added.
    ``not_before``: the message waits until then (e.g. the next working-hours slot for a customer).
    ``priority``: REPLY for the answer to a person's message, NOTICE (default) for the rest."""
    first = max(now, not_before) if not_before is not None else now
    result = await session.execute(_insert_statement(session.bind.dialect.name),
                                   _row(out, key, now, first, priority))
    return result.rowcount == 1


async def enqueue_many(session: AsyncSession, messages: list[tuple[OutgoingMessage, str]], now: datetime,
                       not_before: datetime | None = None) -> int:
    """``enqueue`` for several (message, key) pairs in one executemany INSERT, in the caller's
    transaction, with the same rule: a key that exists already is skipped. Returns how many rows
    the driver reports inserted (on drivers that report no count for executemany: how many were given)."""
    return await enqueue_rows(session, [pending_row(out, key, now, not_before) for out, key in messages])


def pending_row(out: OutgoingMessage, key: str, now: datetime, not_before: datetime | None = None) -> dict:
    """The outbox row ``enqueue`` would write, for :func:`enqueue_rows` (messages with their own times)."""
    return _row(out, key, now, max(now, not_before) if not_before is not None else now)


async def enqueue_rows(session: AsyncSession, rows: list[dict]) -> int:
    """Write rows from :func:`pending_row` with executemany, skipping keys that exist already."""
    if not rows:
        return 0
    stmt = _insert_statement(session.bind.dialect.name)
    added = 0
    for i in range(0, len(rows), 5_000):
        result = await session.execute(stmt, rows[i:i + 5_000])
        added += result.rowcount if result.rowcount >= 0 else len(rows[i:i + 5_000])
    return added


def _row(out: OutgoingMessage, key: str, now: datetime, first: datetime, priority: int = NOTICE) -> dict:
    return dict(idem_key=key, platform=out.platform, target_kind=out.target_kind, target=out.target,
                format=out.format, title=out.title, text=out.text, extra=out.extra, status="pending",
                attempts=0, next_attempt_at=first, created_at=now, last_error="", priority=priority)


@functools.cache
def _insert_statement(dialect: str):
    """INSERT … ON CONFLICT (idem_key) DO NOTHING, built once: the values go as parameters
    (building ``.values(...)`` per message was ~7 % of handling an incoming command)."""
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    return ins(OutboxMessage.__table__).on_conflict_do_nothing(index_elements=["idem_key"])


def to_outgoing(row: OutboxMessage) -> OutgoingMessage:
    return OutgoingMessage(platform=row.platform, target_kind=row.target_kind, target=row.target,
                           text=row.text, format=row.format, title=row.title, extra=row.extra or {},
                           key=row.idem_key)


async def backlog(session: AsyncSession) -> dict[str, int]:
    rows = (await session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all()
    out = {"pending": 0, "sent": 0, "dead": 0}   # and "split", once a row was
    out.update({k: v for k, v in rows})
    return out
