"""Payment plans (分期回款计划) on the ledger: the instalments of a plan are promises, one per
date, all made by the same follow-up on the same invoice (the rep said the plan once). A
promise alone is a plan of one. So everything that watches promises watches instalments — the
ladder holds while one is open, a new promise supersedes all of them, undoing the reply takes
all of them back — and this module only adds what needs the plan as a whole (domain/payment_plan.py
has the rules). Session first, never commits."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.payment_plan import Plan
from storage import audit
from storage.models import FollowUp, Promise, Receivable


async def make_plan(session: AsyncSession, *, receivable: Receivable, plan: Plan, person_id: str, at: datetime,
                    channel: str, followup: FollowUp) -> list[Promise]:
    """The plan's instalments as open promises (in date order); they supersede any open promise
    (or plan) on the invoice."""
    for old in (await session.execute(select(Promise).where(Promise.receivable_id == receivable.id,
                                                            Promise.status == "open"))).scalars():
        old.status, old.closed_at = "superseded", at
    made = [Promise(receivable_id=receivable.id, promised_date=d, amount=a, status="open", made_by=person_id,
                    made_at=at, followup_id=followup.id) for d, a in plan.instalments]
    session.add_all(made)
    await session.flush()
    audit.record(session, at=at, actor=person_id, channel=channel, action="plan.make", entity="receivable",
                 entity_id=receivable.invoice_no, instalments=[[d, a] for d, a in plan.instalments],
                 uncovered=plan.uncovered)
    return made


async def instalments(session: AsyncSession, promise: Promise) -> list[Promise]:
    """The plan ``promise`` belongs to, in date order (just ``promise`` when it stands alone)."""
    if promise.followup_id is None:
        return [promise]
    return list((await session.execute(
        select(Promise).where(Promise.receivable_id == promise.receivable_id,
                              Promise.followup_id == promise.followup_id)
        .order_by(Promise.promised_date, Promise.id))).scalars())


@dataclass(frozen=True)
class Progress:
    """Where an invoice's live plan stands: its next instalment, and how many are still to come."""
    count: int                     # instalments in the plan
    seq: int                       # the next one's number (1-based)
    next_date: date
    next_amount: Decimal
    left: int                      # open instalments, the next one included
    left_amount: Decimal


async def open_plans(session: AsyncSession, receivable_ids: list[int]) -> dict[int, list[Promise]]:
    """The instalments (date order, whatever their status) of each invoice's open plan of two or
    more, among ``receivable_ids``."""
    out: dict[int, list[Promise]] = {}
    for i in range(0, len(receivable_ids), 500):
        chunk = receivable_ids[i:i + 500]
        live = (select(Promise.followup_id).where(Promise.receivable_id.in_(chunk), Promise.status == "open",
                                                  Promise.followup_id.is_not(None)))
        groups: dict[tuple[int, int], list[Promise]] = defaultdict(list)
        for p in (await session.execute(select(Promise).where(Promise.receivable_id.in_(chunk),
                                                              Promise.followup_id.in_(live))
                                        .order_by(Promise.promised_date, Promise.id))).scalars():
            groups[(p.receivable_id, p.followup_id)].append(p)
        for (rid, _), ps in groups.items():
            if len(ps) > 1:
                out[rid] = ps
    return out


def progress(plan: list[Promise]) -> Progress | None:
    """The plan's progress (None once nothing in it is open)."""
    left = [p for p in plan if p.status == "open"]
    if not left:
        return None
    nxt = left[0]
    return Progress(len(plan), plan.index(nxt) + 1, nxt.promised_date, nxt.amount or Decimal("0"), len(left),
                    sum((p.amount or Decimal("0") for p in left), Decimal("0")))


async def progress_of(session: AsyncSession, receivable_ids: list[int]) -> dict[int, Progress]:
    """:func:`progress` of each invoice's open plan, for the lists (/overdue, /customer)."""
    return {rid: pr for rid, plan in (await open_plans(session, receivable_ids)).items()
            if (pr := progress(plan)) is not None}
