"""The collection loop's records: overdue lists, pushes and their numbered items, the
follow-up log (催收记录), promises to pay and disputes. Session first, never commits."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.models import (Customer, Dispute, FollowUp, Promise, Push, PushItem, Receivable)
from storage.scope import Scope


@dataclass
class OverdueItem:
    receivable: Receivable
    customer: Customer
    days_overdue: int
    last_followup: FollowUp | None
    promise: Promise | None

    @property
    def disputed(self) -> bool:
        return self.receivable.disputed


async def overdue_items(session: AsyncSession, as_of: date, scope: Scope) -> list[OverdueItem]:
    """Open receivables past due on ``as_of``, grouped by customer then oldest first."""
    stmt = (select(Receivable, Customer).join(Customer, Customer.id == Receivable.customer_id)
            .where(Receivable.open_amount > 0, Receivable.due_date < as_of, Receivable.status != "written_off"))
    stmt = scope.apply(stmt, joined_customer=True).order_by(Customer.name, Receivable.due_date, Receivable.id)
    rows = (await session.execute(stmt)).all()
    if not rows:
        return []
    ids = [r.id for r, _ in rows]
    last_fu = await _last_followups(session, ids)
    promises = await open_promises(session, ids)
    return [OverdueItem(r, c, (as_of - r.due_date).days, last_fu.get(r.id), promises.get(r.id)) for r, c in rows]


@dataclass(frozen=True, slots=True)
class OverdueReceivable:
    """The columns of a receivable an overdue list shows (read-only, not an ORM object)."""
    id: int
    invoice_no: str
    customer_id: int
    rep_id: str | None
    due_date: date
    open_amount: Decimal
    currency: str
    disputed: bool


@dataclass(frozen=True, slots=True)
class OverdueCustomer:
    id: int
    name: str


async def overdue_items_by_rep(session: AsyncSession, as_of: date, rep_ids: list[str]) -> dict[str, list[OverdueItem]]:
    """``overdue_items`` for several reps at once (the morning push): one query for the items,
    one for the last follow-ups and one for the open promises, whatever the number of items.
    Each rep's list is in ``overdue_items``' order (customer name, due date, id). The items carry
    ``OverdueReceivable`` / ``OverdueCustomer`` records instead of ORM objects, read through Core
    columns: a push lists hundreds of thousands of them, and ORM loading cost more than the query."""
    if not rep_ids:
        return {}
    r, c = Receivable.__table__.c, Customer.__table__.c
    stmt = (select(r.id, r.invoice_no, r.customer_id, r.rep_id, r.due_date, r.open_amount, r.currency, r.disputed,
                   c.name)
            .join_from(Receivable.__table__, Customer.__table__, c.id == r.customer_id)
            .where(r.open_amount > 0, r.due_date < as_of, r.status != "written_off", r.rep_id.in_(rep_ids))
            .order_by(r.rep_id, c.name, r.due_date, r.id))
    rows = (await session.execute(stmt)).all()
    if not rows:
        return {}
    # follow-ups and promises of these reps' receivables (the rep index alone finds them; the
    # few that are not overdue are simply not looked up below)
    of_reps = select(r.id).where(r.rep_id.in_(rep_ids))
    latest = (select(func.max(FollowUp.id).label("fid")).where(FollowUp.receivable_id.in_(of_reps))
              .group_by(FollowUp.receivable_id).subquery())
    last_fu = {fu.receivable_id: fu for fu in
               (await session.execute(select(FollowUp).join(latest, latest.c.fid == FollowUp.id))).scalars()}
    promises: dict[int, Promise] = {}
    for p in (await session.execute(select(Promise).where(Promise.receivable_id.in_(of_reps), Promise.status == "open")
                                    .order_by(Promise.id))).scalars():
        promises[p.receivable_id] = p          # the newest open one, as open_promises
    out: dict[str, list[OverdueItem]] = {}
    customers: dict[int, OverdueCustomer] = {}
    for rid, inv, cid, rep, due, amount, cur, disputed, cname in rows:
        cust = customers.get(cid)
        if cust is None:
            cust = customers[cid] = OverdueCustomer(cid, cname)
        rec = OverdueReceivable(rid, inv, cid, rep, due, amount, cur, bool(disputed))
        out.setdefault(rep, []).append(OverdueItem(rec, cust, (as_of - due).days, last_fu.get(rid), promises.get(rid)))
    return out


async def _last_followups(session: AsyncSession, ids: list[int]) -> dict[int, FollowUp]:
    out: dict[int, FollowUp] = {}
    for chunk in _chunks(ids):
        latest = (select(FollowUp.receivable_id, func.max(FollowUp.id).label("fid"))
                  .where(FollowUp.receivable_id.in_(chunk)).group_by(FollowUp.receivable_id).subquery())
        for fu in (await session.execute(select(FollowUp).join(latest, latest.c.fid == FollowUp.id))).scalars():
            out[fu.receivable_id] = fu
    return out


async def open_promises(session: AsyncSession, ids: list[int]) -> dict[int, Promise]:
    out: dict[int, Promise] = {}
    for chunk in _chunks(ids):
        for p in (await session.execute(select(Promise).where(Promise.receivable_id.in_(chunk), Promise.status == "open")
                                        .order_by(Promise.id))).scalars():
            out[p.receivable_id] = p
    return out


def _chunks(ids: list[int], n: int = 500):
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


async def pushed_reps(session: AsyncSession, for_date: date) -> set[str]:
    """Reps who already have their push for ``for_date``."""
    return set((await session.execute(select(Push.rep_id).where(Push.for_date == for_date))).scalars())


async def create_pushes(session: AsyncSession, *, for_date: date, now: datetime, window_hours: int,
                        items: dict[str, list[OverdueItem]]) -> dict[str, Push]:
    """Pushes for several reps: the pushes, then all their numbered items, as bulk
    INSERTs (executemany) in the caller's transaction. Returns the pushes by rep id."""
    if not items:
        return {}
    closes = now + timedelta(hours=window_hours)
    await session.execute(insert(Push.__table__), [
        dict(rep_id=rep_id, for_date=for_date, sent_at=now, window_closes_at=closes, closed=False) for rep_id in items])
    pushes = {p.rep_id: p for p in (await session.execute(
        select(Push).where(Push.for_date == for_date, Push.rep_id.in_(list(items))))).scalars()}
    rows = [dict(push_id=pushes[rep_id].id, seq=seq, receivable_id=it.receivable.id,
                 open_amount=it.receivable.open_amount, days_overdue=it.days_overdue, replied_at=None, escalated=False)
            for rep_id, its in items.items() for seq, it in enumerate(its, start=1)]
    for i in range(0, len(rows), 20_000):
        await session.execute(insert(PushItem.__table__), rows[i:i + 20_000])
    return pushes


async def latest_push(session: AsyncSession, rep_id: str, now: datetime) -> Push | None:
    """The push a rep's reply refers to: their most recent one sent before now."""
    return (await session.execute(select(Push).where(Push.rep_id == rep_id, Push.sent_at <= now)
                                  .order_by(Push.sent_at.desc(), Push.id.desc()).limit(1))).scalar_one_or_none()


async def push_items(session: AsyncSession, push_id: int) -> list[tuple[PushItem, Receivable, Customer]]:
    return list((await session.execute(
        select(PushItem, Receivable, Customer).join(Receivable, Receivable.id == PushItem.receivable_id)
        .join(Customer, Customer.id == Receivable.customer_id).where(PushItem.push_id == push_id)
        .order_by(PushItem.seq))).all())


async def log_followup(session: AsyncSession, *, receivable: Receivable, person_id: str, at: datetime, channel: str,
                       outcome: str, text: str, parse: dict | None = None, promised_date: date | None = None,
                       promised_amount: Decimal | None = None, push_item: PushItem | None = None,
                       late: bool = False, corrects: FollowUp | None = None, counterpart: str = "") -> FollowUp:
    fu = FollowUp(receivable_id=receivable.id, customer_id=receivable.customer_id, person_id=person_id, at=at,
                  channel=channel, outcome=outcome, text=text, parse=parse or {}, promised_date=promised_date,
                  promised_amount=promised_amount, push_item_id=push_item.id if push_item else None, late=late,
                  corrects_id=corrects.id if corrects else None, counterpart=counterpart)
    session.add(fu)
    if push_item is not None and push_item.replied_at is None:
        push_item.replied_at = at
    await session.flush()
    audit.record(session, at=at, actor=person_id, channel=channel, action="followup.log", entity="receivable",
                 entity_id=receivable.invoice_no, outcome=outcome, late=late, followup=fu.id)
    return fu


async def last_followup_for_item(session: AsyncSession, push_item_id: int) -> FollowUp | None:
    return (await session.execute(select(FollowUp).where(FollowUp.push_item_id == push_item_id)
                                  .order_by(FollowUp.id.desc()).limit(1))).scalar_one_or_none()


async def make_promise(session: AsyncSession, *, receivable: Receivable, promised_date: date, amount: Decimal | None,
                       person_id: str, at: datetime, channel: str, followup: FollowUp | None = None) -> Promise:
    """A new promise supersedes any open one on the same invoice."""
    for old in (await session.execute(select(Promise).where(Promise.receivable_id == receivable.id,
                                                            Promise.status == "open"))).scalars():
        old.status, old.closed_at = "superseded", at
    p = Promise(receivable_id=receivable.id, promised_date=promised_date, amount=amount, status="open",
                made_by=person_id, made_at=at, followup_id=followup.id if followup else None)
    session.add(p)
    await session.flush()
    audit.record(session, at=at, actor=person_id, channel=channel, action="promise.make", entity="receivable",
                 entity_id=receivable.invoice_no, promised_date=promised_date, amount=amount)
    return p


async def open_dispute(session: AsyncSession, *, receivable: Receivable, reason: str, person_id: str, at: datetime,
                       channel: str) -> Dispute:
    d = Dispute(receivable_id=receivable.id, reason=reason, opened_by=person_id, opened_at=at)
    receivable.disputed = True
    session.add(d)
    await session.flush()
    audit.record(session, at=at, actor=person_id, channel=channel, action="dispute.open", entity="receivable",
                 entity_id=receivable.invoice_no, reason=reason)
    return d


async def resolve_disputes(session: AsyncSession, *, receivable: Receivable, person_id: str, at: datetime,
                           channel: str) -> int:
    n = 0
    for d in (await session.execute(select(Dispute).where(Dispute.receivable_id == receivable.id,
                                                           Dispute.resolved_at.is_(None)))).scalars():
        d.resolved_at, d.resolved_by = at, person_id
        n += 1
    receivable.disputed = False
    audit.record(session, at=at, actor=person_id, channel=channel, action="dispute.resolve", entity="receivable",
                 entity_id=receivable.invoice_no, resolved=n)
    return n


async def expiring_windows(session: AsyncSession, now: datetime) -> list[Push]:
    return list((await session.execute(select(Push).where(Push.closed.is_(False), Push.window_closes_at <= now)
                                       .order_by(Push.id))).scalars())


async def unanswered_items(session: AsyncSession, push_id: int) -> list[tuple[PushItem, Receivable, Customer]]:
    return [row for row in await push_items(session, push_id) if row[0].replied_at is None]


async def due_promises(session: AsyncSession, on_or_before: date) -> list[Promise]:
    return list((await session.execute(select(Promise).where(Promise.status == "open",
                                                             Promise.promised_date <= on_or_before))).scalars())
