"""Per-minute send limits counted in the database, so that every instance sharing it keeps them.

A slot is a row (limit key, when the platform counts the message). Taking slots is one short
write for a whole batch of sends: old slots of those keys are deleted, and each wanted slot is
taken only if its key has fewer than ``cap`` slots in the window. It is a check and an insert
that must not interleave with another instance's:

* SQLite: the transaction holds the write lock from its first statement (BEGIN IMMEDIATE,
  storage/db.py), so no other writer counts between our count and our insert;
* PostgreSQL: ``pg_advisory_xact_lock`` on each key (taken in sorted order, so two batches never
  wait on each other crosswise) serialises the takers of one key until their commit; each count
  then sees the slots committed before it (READ COMMITTED, PostgreSQL's default and storage/db.py's:
  under REPEATABLE READ the snapshot would predate the lock, and two instances could both count
  room that only one has).

Wall-clock epoch seconds: the instances share no monotonic clock.
"""
from __future__ import annotations

import hashlib

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RateSlot

KEY_MAX = 300


def limit_key(*parts: str) -> str:
    key = "|".join(parts)
    return key if len(key) <= KEY_MAX else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


async def take(session: AsyncSession, wanted: list[tuple[str, int]], *, now: float, window: float,
               stamp: float) -> tuple[list[int | None], dict[str, float]]:
    """Slots for ``wanted`` [(key, cap)], in order: each slot's id, or None where the key is at its
    cap. ``stamp``: the time the new slots count from (the latest the platform can count them).
    Also returns, for each key refused, the seconds until its oldest slot leaves the window."""
    keys = sorted({k for k, _ in wanted})
    if not keys:
        return [], {}
    if session.get_bind().dialect.name == "postgresql":
        for key in keys:
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
    await session.execute(delete(RateSlot).where(RateSlot.limit_key.in_(keys), RateSlot.at <= now - window))
    counts = dict((await session.execute(select(RateSlot.limit_key, func.count()).where(RateSlot.limit_key.in_(keys))
                                         .group_by(RateSlot.limit_key))).all())
    taken: list[int | None] = []
    refused: set[str] = set()
    for key, cap in wanted:
        if counts.get(key, 0) >= cap:
            taken.append(None)
            refused.add(key)
            continue
        slot = RateSlot(limit_key=key, at=stamp)
        session.add(slot)
        await session.flush()
        counts[key] = counts.get(key, 0) + 1
        taken.append(slot.id)
    waits: dict[str, float] = {}
    for key in refused:
        oldest = (await session.execute(select(func.min(RateSlot.at)).where(RateSlot.limit_key == key))).scalar()
        waits[key] = max(0.0, (oldest or now) + window - now)
    return taken, waits


def restamp_statement():
    """UPDATE setting a slot's time to when the platform answered (bind ``slot_id``, ``slot_at``)."""
    from sqlalchemy import bindparam
    return update(RateSlot.__table__).where(RateSlot.__table__.c.id == bindparam("slot_id")).values(
        at=bindparam("slot_at"))


async def release(session: AsyncSession, slot_ids: list[int]) -> None:
    """Give slots back (taken for sends that did not start)."""
    if slot_ids:
        await session.execute(delete(RateSlot).where(RateSlot.id.in_(slot_ids)))
