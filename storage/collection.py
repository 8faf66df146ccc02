"""The collection loop's records: overdue lists, pushes and their numbered items, the
follow-up log (催收记录), promises to pay and disputes. Session first, never commits."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import NamedTuple

from sqlalchemy import Date, bindparam, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage import plans, scan
from storage.plans import Progress
from storage.models import (Customer, Dispute, FollowUp, Promise, Push, PushItem, Receivable)
from storage.scope import Scope


@dataclass(slots=True)             # slots: the push builds one per overdue item
class OverdueItem:
    receivable: Receivable | OverdueReceivable
    customer: Customer | OverdueCustomer
    days_overdue: int
    last_followup: FollowUp | LastFollowUp | None
    promise: Promise | OpenPromise | None
    # set by the morning push's ranking (bot/jobs/push_ranking.py): the item's priority, the
    # term that weighs most in it, and when its money is expected
    priority: float = 0.0
    reason: str = ""
    expected: date | None = None
    month_end: bool = False       # a month-end payer in the month's last week: the push says so
    plan: Progress | None = None   # a live payment plan's progress (/overdue shows it)

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
    plan_of = await plans.progress_of(session, ids)
    return [OverdueItem(r, c, (as_of - r.due_date).days, last_fu.get(r.id), promises.get(r.id), plan=plan_of.get(r.id))
            for r, c in rows]


# Read-only records for the push (NamedTuples: built by the hundred thousand, and a frozen
# dataclass costs four times as much to build)
class OverdueReceivable(NamedTuple):
    """The columns of a receivable an overdue list shows (not an ORM object)."""
    id: int
    invoice_no: str
    customer_id: int
    rep_id: str | None
    due_date: date
    open_amount: Decimal
    currency: str
    disputed: bool


class OverdueCustomer(NamedTuple):
    id: int
    name: str


class LastFollowUp(NamedTuple):
    """What a push line shows of an item's newest follow-up."""
    at: datetime
    outcome: str


class OpenPromise(NamedTuple):
    """What a push line shows of an item's newest open promise."""
    promised_date: date
    amount: Decimal | None


# The morning push's scan: every overdue item of every rep, only the columns its priority needs.
# No join and no ORDER BY: the push keeps each rep's few highest items as the rows come
# (bot/jobs/push_ranking.py), so the order the rows come in does not matter, and sorting 750,000
# rows by rep and customer name was most of what the read cost at 1M receivables. On SQLite the
# table is scanned in rowid order (NOT INDEXED): through an index (rep_id, or the due-date index
# the planner picks otherwise) each row is a random page read, 2-3 times slower. Plain SQL, not
# Core, for that clause; the values come back as the driver gives them (due date as text on
# SQLite, the amount in integer cents as ``Money`` stores it).
_OVERDUE_KEYS = """
SELECT r.id, r.customer_id, r.rep_id, r.due_date, r.open_amount, r.currency, r.disputed
FROM receivables r {hint}
WHERE r.open_amount > 0 AND r.due_date < :as_of AND r.status != 'written_off' AND r.rep_id IS NOT NULL"""


class OverdueKey(NamedTuple):
    """One row of ``overdue_keys``: what ranking an overdue item needs (driver values)."""
    id: int
    customer_id: int
    rep_id: str
    due_date: date | str          # SQLite gives the ISO text
    cents: int
    currency: str
    disputed: bool | int


async def overdue_keys(session: AsyncSession, as_of: date) -> AsyncIterator[list[tuple]]:
    """Every overdue item of every rep (open, past due on ``as_of``, not written off) as
    ``OverdueKey``-shaped plain tuples, a few thousand at a time, in no particular order."""
    async with aclosing(_stream(session, _OVERDUE_KEYS, as_of)) as rows:
        async for chunk in rows:
            yield chunk


async def _stream(session: AsyncSession, sql: str, as_of: date) -> AsyncIterator[list[tuple]]:
    """``sql``'s rows as plain tuples (untracked by the GC, unlike Rows), a few thousand at a
    time. On SQLite through aiosqlite's own cursor, on the session's connection (so in its
    transaction): SQLAlchemy's result processing cost ~1 s of CPU at 750k rows for values it
    passes through unchanged anyway. Elsewhere (asyncpg) ``scan.in_parts``."""
    conn = await session.connection()
    if conn.dialect.driver == "aiosqlite":
        raw = (await conn.get_raw_connection()).driver_connection
        text_sql = sql.format(hint="NOT INDEXED").replace(":as_of", "?")
        async with raw.execute(text_sql, (as_of.isoformat(),)) as cur:     # how SQLAlchemy stores a Date
            # the next rows are fetched (in aiosqlite's thread, SQLite without the GIL) while the
            # caller works on these: on two cores the scan then costs the caller little wall time
            ahead = asyncio.ensure_future(cur.fetchmany(5_000))
            try:
                while rows := await ahead:
                    ahead = asyncio.ensure_future(cur.fetchmany(5_000))
                    yield rows
            finally:
                if not ahead.done():
                    await asyncio.wait([ahead])        # the cursor closes after the fetch under way
        return
    stmt = text(sql.format(hint="")).bindparams(bindparam("as_of", value=as_of, type_=Date))
    async with aclosing(scan.in_parts(session, stmt)) as parts:
        async for rows in parts:
            yield rows


async def customer_name_ranks(session: AsyncSession) -> dict[int, int]:
    """Each customer's place in the overdue list's order (by name, as the database sorts names;
    customers of the same name share a place): the push numbers its items in that order without
    asking the database to sort every overdue item."""
    out: dict[int, int] = {}
    rank, prev = -1, None
    for cid, name in await session.execute(select(Customer.id, Customer.name).order_by(Customer.name)):
        if name != prev:
            rank, prev = rank + 1, name
        out[cid] = rank
    return out


async def overdue_details(session: AsyncSession, as_of: date, ids: list[int]) -> dict[int, OverdueItem]:
    """The receivables ``ids`` as ``OverdueItem``s, with their customer, newest follow-up and
    open promise (a plan's next instalment): what a push line shows, for the few items a push shows. One statement
    per thousand ids (three, one per table, cost three times the statement overhead)."""
    r, c = Receivable.__table__.c, Customer.__table__
    f, p = FollowUp.__table__.alias(), Promise.__table__.alias()
    newest_fu = select(func.max(f.c.id)).where(f.c.receivable_id == r.id).scalar_subquery()
    # of a payment plan's open instalments, the next one (the oldest open: storage/plans.py)
    newest_promise = select(func.min(p.c.id)).where(p.c.receivable_id == r.id, p.c.status == "open").scalar_subquery()
    fu, pr = FollowUp.__table__, Promise.__table__
    stmt = (select(r.id, r.invoice_no, r.customer_id, c.c.name, r.rep_id, r.due_date, r.open_amount, r.currency,
                   r.disputed, fu.c.at, fu.c.outcome, pr.c.promised_date, pr.c.amount)
            .join(c, c.c.id == r.customer_id)
            .outerjoin(fu, fu.c.id == newest_fu)
            .outerjoin(pr, pr.c.id == newest_promise))
    out: dict[int, OverdueItem] = {}
    customers: dict[int, OverdueCustomer] = {}
    for chunk in _chunks(sorted(ids), 1000):
        for rid, inv, cid, cname, rep, due, amount, cur, disputed, fu_at, outcome, promised, promised_amount \
                in await session.execute(stmt.where(r.id.in_(chunk))):
            cust = customers.get(cid)
            if cust is None:
                cust = customers[cid] = OverdueCustomer(cid, cname)
            rec = OverdueReceivable(rid, inv, cid, rep, due, amount, cur, bool(disputed))
            out[rid] = OverdueItem(rec, cust, (as_of - due).days,
                                   LastFollowUp(fu_at, outcome) if fu_at is not None else None,
                                   OpenPromise(promised, promised_amount) if promised is not None else None)
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
    """Each invoice's open promise; of a payment plan, the next instalment (the earliest open)."""
    out: dict[int, Promise] = {}
    for chunk in _chunks(ids):
        for p in (await session.execute(select(Promise).where(Promise.receivable_id.in_(chunk), Promise.status == "open")
                                        .order_by(Promise.promised_date.desc(), Promise.id))).scalars():
            out[p.receivable_id] = p
    return out


def _chunks(ids: list[int], n: int = 500):
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


async def pushed_reps(session: AsyncSession, for_date: date) -> set[str]:
    """Reps who already have their push for ``for_date``."""
    return set((await session.execute(select(Push.rep_id).where(Push.for_date == for_date))).scalars())


async def create_pushes(session: AsyncSession, *, for_date: date, now: datetime, closes_at: datetime,
                        items: dict[str, list[OverdueItem]]) -> dict[str, Push]:
    """Pushes for several reps, their reply windows closing at ``closes_at``: the pushes, then
    all their numbered items, as bulk INSERTs (executemany) in the caller's transaction.
    Returns the pushes by rep id."""
    if not items:
        return {}
    closes = closes_at
    await session.execute(insert(Push.__table__), [
        dict(rep_id=rep_id, for_date=for_date, sent_at=now, window_closes_at=closes, closed=False) for rep_id in items])
    pushes = {p.rep_id: p for p in (await session.execute(
        select(Push).where(Push.for_date == for_date, Push.rep_id.in_(list(items))))).scalars()}
    # in receivable order: the receivable_id index (and the foreign key check) then takes its
    # pages in order instead of at random, which is most of what these inserts cost at 1M
    rows: list[tuple] = []
    for rep_id, its in items.items():
        push_id = pushes[rep_id].id
        rows += [(push_id, seq, it.receivable.id, _cents(it.receivable.open_amount), it.days_overdue, None, False)
                 for seq, it in enumerate(its, start=1)]
    rows.sort(key=itemgetter(2))
    await _insert_many(session, PushItem.__table__,
                       ("push_id", "seq", "receivable_id", "open_amount", "days_overdue", "replied_at", "escalated"), rows)
    return pushes


def _cents(amount: Decimal) -> int:
    """What ``Money`` stores: integer cents (amounts read from the ledger are exact to the cent)."""
    return int(amount.scaleb(2))


async def _insert_many(session: AsyncSession, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """INSERT ``rows`` (tuples of database values, in ``columns`` order) with the driver's own
    executemany: SQLAlchemy's per-row parameter handling cost about as much as SQLite's insert."""
    conn = await session.connection()
    if conn.dialect.paramstyle == "qmark":                 # sqlite3 / aiosqlite
        marks = ", ".join("?" for _ in columns)
    else:                                                   # asyncpg (numeric_dollar): storage/db.py's other driver
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
    for i in range(0, len(rows), 50_000):
        await conn.exec_driver_sql(sql, rows[i:i + 50_000])


async def latest_push(session: AsyncSession, rep_id: str, now: datetime) -> Push | None:
    """The push a rep's reply refers to: their most recent one sent before now."""
    return (await session.execute(select(Push).where(Push.rep_id == rep_id, Push.sent_at <= now)
                                  .order_by(Push.sent_at.desc(), Push.id.desc()).limit(1))).scalar_one_or_none()


async def push_items(session: AsyncSession, push_id: int) -> list[tuple[PushItem, Receivable, Customer]]:
    return list((await session.execute(
        select(PushItem, Receivable, Customer).join(Receivable, Receivable.id == PushItem.receivable_id)
        .join(Customer, Customer.id == Receivable.customer_id).where(PushItem.push_id == push_id)
        .order_by(PushItem.seq))).all())


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


async def unanswered_at_close(session: AsyncSession, push: Push, *, live_from: date
                              ) -> list[tuple[PushItem, Receivable, Customer]]:
    """The items of ``push`` nobody answered, when its window closes. An item counts as answered
    by a reply to the push; by a follow-up (/followup), a promise (/promise) or a dispute
    (/dispute) on its invoice since the push was sent; by an open promise that is still live (its
    date on or after ``live_from``, see ``storage.reminders.earliest_live_promise``); or because
    the invoice no longer needs an answer (paid, written off, disputed).

    An item answered by a follow-up, promise or dispute gets the time of the first of them as
    its ``replied_at`` (the reply-timeliness figure counts it); one answered only by an older
    promise, or by the invoice's state, keeps none: nobody replied, but nothing is missing."""
    item_rid = PushItem.receivable_id
    since = push.sent_at
    fu_at = (select(func.min(FollowUp.at)).where(FollowUp.receivable_id == item_rid, FollowUp.at >= since)
             .scalar_subquery())
    promised_at = (select(func.min(Promise.made_at)).where(Promise.receivable_id == item_rid,
                                                           Promise.made_at >= since).scalar_subquery())
    disputed_at = (select(func.min(Dispute.opened_at)).where(Dispute.receivable_id == item_rid,
                                                             Dispute.opened_at >= since).scalar_subquery())
    live = (select(Promise.id).where(Promise.receivable_id == item_rid, Promise.status == "open",
                                     Promise.promised_date >= live_from).exists())
    rows = (await session.execute(
        select(PushItem, Receivable, Customer, fu_at, promised_at, disputed_at, live)
        .join(Receivable, Receivable.id == PushItem.receivable_id)
        .join(Customer, Customer.id == Receivable.customer_id)
        .where(PushItem.push_id == push.id, PushItem.replied_at.is_(None))
        .order_by(PushItem.seq))).all()
    missing = []
    for item, r, c, *answers, promise_live in rows:
        times = [t for t in answers if t is not None]
        if times:
            item.replied_at = min(times)
        elif not (promise_live or r.disputed or r.open_amount <= 0 or r.status == "written_off"):
            missing.append((item, r, c))
    return missing


async def due_promises(session: AsyncSession, on_or_before: date) -> list[Promise]:
    """Open promises dated on or before ``on_or_before``, earliest first: a plan's instalments
    are judged in their order (an earlier one broken closes the later ones)."""
    return list((await session.execute(select(Promise).where(Promise.status == "open",
                                                             Promise.promised_date <= on_or_before)
                                       .order_by(Promise.promised_date, Promise.id))).scalars())
