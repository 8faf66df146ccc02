"""Who may do what, and which part of the ledger they see: the one place it is decided.

Roles: rep (own customers), supervisor (their team), finance (everything, edits), legal
(everything; collection actions), manager and auditor (everything, read only), admin.
Each command names its roles (below, as sets); the pipeline refuses anything else before the
handler runs, and hands the handler the caller's ``Scope`` so every query is narrowed.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Person
from storage.scope import Scope

ALL = frozenset({"rep", "supervisor", "finance", "legal", "manager", "auditor", "admin"})
READERS = ALL
# follow-ups, promises, disputes: the people who collect
COLLECTORS = frozenset({"rep", "supervisor", "finance", "legal", "admin"})
# money in and out of the ledger
EDITORS = frozenset({"finance", "admin"})
# undoing a booked payment (冲销): finance alone, who answers for the bank reconciliation
REVERSERS = frozenset({"finance"})


async def scope_for(session: AsyncSession, person: Person) -> Scope:
    if person.role == "rep":
        return Scope(rep_ids=frozenset({person.id}))
    if person.role == "supervisor":
        reps = (await session.execute(select(Person.id).where(
            (Person.supervisor_id == person.id) | ((Person.team == person.team) & (Person.team != ""))))).scalars()
        return Scope(rep_ids=frozenset(reps) | {person.id})
    return Scope.everything()


def may_use(person: Person, roles: frozenset[str]) -> bool:
    return person.active and person.role in roles
