"""Who may do what, and which part of the ledger they see: the one place it is decided.

Roles: rep (own customers), supervisor (their team), finance (everything, edits), legal
(everything; collection actions), manager and auditor (everything, read only), admin.
Each command names its roles (below, as sets); the pipeline refuses anything else before the
handler runs, and hands the handler the caller's ``Scope`` so every query is narrowed.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Customer, Person, Receivable
from storage.scope import Scope

ALL = frozenset({"rep", "supervisor", "finance", "legal", "manager", "auditor", "admin"})
READERS = ALL
# follow-ups, promises, disputes: the people who collect
COLLECTORS = frozenset({"rep", "supervisor", "finance", "legal", "admin"})
# money in and out of the ledger
EDITORS = frozenset({"finance", "admin"})
# undoing a booked payment (冲销): finance alone, who answers for the bank reconciliation
REVERSERS = frozenset({"finance"})
# next year's holidays (/calendar): finance, whose reminders and deadlines count working days
CALENDAR_KEEPERS = frozenset({"finance"})
# reading the audit log in chat (/audit): the auditors, and finance who answers for the ledger
AUDIT_READERS = frozenset({"auditor", "finance"})
# evidence for the statute of limitations (a signed confirmation, a registered letter…): finance and legal
STATUTE_RECORDERS = frozenset({"finance", "legal", "admin"})


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


def may_see_customer(scope: Scope, customer: Customer) -> bool:
    """May a caller see or act on this customer (/customer, /followup, /paid)? An exact name
    outside the caller's scope is found, then refused here before any figure is read."""
    return scope.allows_customer(customer)


def may_see_receivable(scope: Scope, receivable: Receivable) -> bool:
    """May a caller see or act on this invoice (/promise, /dispute, /writeoff, ...)?"""
    return scope.allows_receivable(receivable)


async def may_narrow_to(session: AsyncSession, scope: Scope, *, team: str | None = None,
                        region: str | None = None, rep_id: str | None = None) -> bool:
    """May a caller name this team, region or rep in a question (/aging 华南, /kpi @张伟)?

    Everyone who reads everything may. A caller confined to some reps (a rep: themself; a
    supervisor: their team) may name only what is theirs: one of their reps, a team one of their
    reps is in, a region one of their customers is in. Narrowing to another team would only ever
    answer ¥0.00, which reads as "nothing owed there" instead of "not yours to see"."""
    if scope.rep_ids is None:
        return True
    reps = sorted(scope.rep_ids)
    if rep_id is not None and rep_id not in scope.rep_ids:
        return False
    if team is not None and (await session.execute(
            select(Person.id).where(Person.id.in_(reps), Person.team == team).limit(1))).first() is None:
        return False
    if region is not None and (await session.execute(
            select(Customer.id).where(Customer.rep_id.in_(reps), Customer.region == region).limit(1))).first() is None:
        return False
    return True
