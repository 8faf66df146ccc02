"""Questions the bot asks before it changes the ledger, and their answers.

A command that would do something surprising (a payment above the open balance, which would
leave money on account; the same payment twice) does not do it: it stores what it would do
(``ask``) and answers with a question. The person answers ``确认`` (or ``确认 N`` when several
questions are open); ``take`` hands the stored action back exactly once, so a repeated 确认
changes nothing, and not after it expired. Session first, never commits.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Confirmation

TTL = timedelta(minutes=30)


class ConfirmationError(LookupError):
    """Nothing to confirm as asked: ``code`` says why (none, several, unknown, expired, done, other)."""

    def __init__(self, code: str, **data):
        super().__init__(code)
        self.code, self.data = code, data


async def ask(session: AsyncSession, *, person_id: str, kind: str, payload: dict, reasons: list[str],
              now: datetime, ttl: timedelta = TTL) -> Confirmation:
    # the same command typed again replaces its unanswered question, so a bare 确认 still finds one
    for old in await open_for(session, person_id, now):
        if old.kind == kind and old.payload == payload:
            old.status, old.done_at = "superseded", now
    c = Confirmation(person_id=person_id, kind=kind, payload=payload, reasons=reasons, asked_at=now,
                     expires_at=now + ttl, status="open", result={})
    session.add(c)
    await session.flush()
    return c


async def open_for(session: AsyncSession, person_id: str, now: datetime) -> list[Confirmation]:
    return list((await session.execute(select(Confirmation).where(
        Confirmation.person_id == person_id, Confirmation.status == "open", Confirmation.expires_at > now)
        .order_by(Confirmation.id))).scalars())


async def take(session: AsyncSession, *, person_id: str, number: int | None, now: datetime) -> Confirmation:
    """The open question this person confirms (``number`` None: their only open one), marked done."""
    if number is None:
        pending = await open_for(session, person_id, now)
        if not pending:
            raise ConfirmationError("none")
        if len(pending) > 1:
            raise ConfirmationError("several", numbers=[c.id for c in pending])
        c = pending[0]
    else:
        c = await session.get(Confirmation, number)
        if c is None:
            raise ConfirmationError("unknown", number=number)
        if c.person_id != person_id:
            raise ConfirmationError("other", number=number)
        if c.status == "done":
            raise ConfirmationError("done", number=number, result=c.result)
        if c.status == "superseded":
            raise ConfirmationError("superseded", number=number)
        if c.expires_at <= now:
            raise ConfirmationError("expired", number=number)
    c.status, c.done_at = "done", now
    return c
