"""Digest items: the notifications a job decided for a person, kept until they go out as lines of
one digest (bot/digests.py composes and queues it). Session first, never commits."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DigestItem


def item_row(*, item_key: str, job: str, fire: str, person_id: str, kind: str, rank: int, label: str,
             customer_key: str, customer_name: str, subject: str, currency: str | None, amount, line: str,
             now: datetime, not_before: datetime, day: date) -> dict:
    return dict(item_key=item_key, job=job, fire=fire, person_id=person_id, kind=kind, rank=rank, label=label,
                customer_key=customer_key, customer_name=customer_name, subject=subject, currency=currency,
                amount=amount,
                line=line, created_at=now, not_before=max(now, not_before), day=day, digest_key=None,
                listed=False)


async def record(session: AsyncSession, rows: list[dict]) -> None:
    """Insert items; an item whose key exists already (the same step decided again by a re-run)
    is left as it is: it was sent, or it will be, once."""
    if not rows:
        return
    ins = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = ins(DigestItem.__table__).on_conflict_do_nothing(index_elements=["item_key"])
    for i in range(0, len(rows), 5_000):
        await session.execute(stmt, rows[i:i + 5_000])


async def unsent(session: AsyncSession, job: str) -> list[DigestItem]:
    """Items of ``job`` not in a digest yet — this fire's and any a fire that failed left behind —
    by person, customer and kind."""
    return list((await session.execute(
        select(DigestItem).where(DigestItem.job == job, DigestItem.digest_key.is_(None))
        .order_by(DigestItem.person_id, DigestItem.customer_name, DigestItem.customer_key, DigestItem.rank,
                  DigestItem.id))).scalars())


async def listed_on(session: AsyncSession, person_id: str, day: date) -> int:
    """How many lines the person's digests showed on ``day`` (the per-morning cap)."""
    return (await session.execute(select(func.count()).select_from(DigestItem).where(
        DigestItem.person_id == person_id, DigestItem.day == day, DigestItem.listed.is_(True)))).scalar_one()


async def mark_sent(session: AsyncSession, marks: list[tuple[int, str, bool]]) -> None:
    """(item id, digest key, listed) for items now in a queued digest: in the digest's transaction."""
    if not marks:
        return
    t = DigestItem.__table__
    await session.execute(update(t).where(t.c.id == bindparam("iid"), t.c.digest_key.is_(None))
                          .values(digest_key=bindparam("dk"), listed=bindparam("ls")),
                          [{"iid": i, "dk": k, "ls": listed} for i, k, listed in marks])


async def of_person(session: AsyncSession, person_id: str, day: date, *, unlisted_only: bool) -> list[DigestItem]:
    """A person's items of ``day`` (the ones the digests did not list, with ``unlisted_only``):
    what ``/通知`` shows."""
    q = select(DigestItem).where(DigestItem.person_id == person_id, DigestItem.day == day,
                                 DigestItem.digest_key.is_not(None))
    if unlisted_only:
        q = q.where(DigestItem.listed.is_(False))
    return list((await session.execute(q.order_by(DigestItem.customer_name, DigestItem.customer_key,
                                                  DigestItem.rank, DigestItem.id))).scalars())
