"""The collection loop's records: overdue lists, pushes and their numbered items, the
follow-up log (催收记录), promises to pay and disputes. Session first, never commits."""
from __future__ import annotations

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
from storage import plans
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


# Every overdue item of every rep, in the push's order (rep, then ``overdue_items``' order:
# customer name, due date, id). The push reads most of the open ledger, so on SQLite the table
# is scanned in rowid order (NOT INDEXED) and sorted once: through an index (rep_id, or the
# due-date index the planner picks otherwise) each row is a random page read, which made the
# read 2-3 times slower at 1M receivables. Plain SQL, not Core, for that clause; the values come
# back as the driver gives them (converted in ``_overdue_rows``).
_OVERDUE_SCAN = """
SELECT r.id, r.invoice_no, r.customer_id, c.name, r.rep_id, r.due_date, r.open_amount, r.currency, r.disputed
FROM receivables r {hint} JOIN customers c ON c.id = r.customer_id
WHERE r.open_amount > 0 AND r.due_date < :as_of AND r.status != 'written_off' AND r.rep_id IS NOT NULL
ORDER BY r.rep_id, c.name, r.due_date, r.id"""


async def overdue_batches(session: AsyncSession, as_of: date, rep_ids: set[str],
                          reps_per_batch: int, items_per_batch: int | None = None
                          ) -> AsyncIterator[dict[str, list[OverdueItem]]]:
    """``overdue_items`` of the reps in ``rep_ids`` (those with any), ``reps_per_batch`` reps at a
    time — fewer when they have more than ``items_per_batch`` items together (a batch is built,
    rendered and written in one piece each) — in rep id order: the morning push. One statement streams every overdue item; per batch,
    one query for the last follow-ups and one for the open promises. Memory grows with a batch,
    not with the ledger. The caller may write (in the same transaction) between batches.

    The items carry small read-only records (``OverdueReceivable``, ``OverdueCustomer``,
    ``LastFollowUp``, ``OpenPromise``) instead of ORM objects: a push lists hundreds of
    thousands of them, and ORM loading cost more than the query."""
    batch: dict[str, list] = {}
    items = 0
    async with aclosing(_overdue_scan(session, as_of)) as scan:
        async for rows in scan:
            for row in rows:
                rep = row[4]
                if rep not in rep_ids:
                    continue
                rows_of_rep = batch.get(rep)
                if rows_of_rep is None:
                    # rows come in rep order: the reps in the batch are complete
                    if len(batch) == reps_per_batch or items_per_batch and items >= items_per_batch:
                        yield await _overdue_rows(session, as_of, batch)
                        batch, items = {}, 0
                    rows_of_rep = batch[rep] = []
                rows_of_rep.append(row)
                items += 1
    if batch:
        yield await _overdue_rows(session, as_of, batch)


async def _overdue_scan(session: AsyncSession, as_of: date) -> AsyncIterator[list[tuple]]:
    """``_OVERDUE_SCAN``'s rows as plain tuples (untracked by the GC, unlike Rows), a few
    thousand at a time. On SQLite through aiosqlite's own cursor, on the session's connection
    (so in its transaction): SQLAlchemy's result processing cost ~1 s of CPU at 750k rows for
    values it passes through unchanged anyway. Elsewhere (asyncpg) a streamed SQLAlchemy result."""
    conn = await session.connection()
    if conn.dialect.driver == "aiosqlite":
        raw = (await conn.get_raw_connection()).driver_connection
        sql = _OVERDUE_SCAN.format(hint="NOT INDEXED").replace(":as_of", "?")
        async with raw.execute(sql, (as_of.isoformat(),)) as cur:     # how SQLAlchemy stores a Date
            while rows := await cur.fetchmany(5_000):
                yield rows
        return
    stmt = text(_OVERDUE_SCAN.format(hint="")).bindparams(bindparam("as_of", type_=Date))
    result = await conn.stream(stmt, {"as_of": as_of})
    try:
        async for rows in result.partitions(5_000):
            yield [tuple(row) for row in rows]
    finally:
        await result.close()


async def _overdue_rows(session: AsyncSession, as_of: date, batch: dict[str, list]) -> dict[str, list[OverdueItem]]:
    """The streamed rows of a batch of reps as ``OverdueItem``s, with their follow-ups and promises."""
    reps = list(batch)
    f, p = FollowUp.__table__, Promise.__table__
    last_fu = {rid: LastFollowUp(at, outcome) for rid, at, outcome in await session.execute(
        _newest_of_reps(f, reps, f.c.receivable_id, f.c.at, f.c.outcome))}
    promises = {rid: OpenPromise(promised_date, amount) for rid, promised_date, amount in await session.execute(
        _newest_of_reps(p, reps, p.c.receivable_id, p.c.promised_date, p.c.amount, where=lambda t: t.status == "open",
                        pick=func.min))}          # of a plan, the next instalment (storage/plans.py)
    customers: dict[int, OverdueCustomer] = {}
    dues: dict = {}                  # driver value → (date, days overdue): a few hundred distinct
    out: dict[str, list[OverdueItem]] = {}
    for rep, rows in batch.items():
        items = out[rep] = []
        for rid, inv, cid, cname, _, due, cents, cur, disputed in rows:
            cust = customers.get(cid)
            if cust is None:
                cust = customers[cid] = OverdueCustomer(cid, cname)
            d = dues.get(due)
            if d is None:
                day = due if isinstance(due, date) else date.fromisoformat(due)    # SQLite gives text
                d = dues[due] = (day, (as_of - day).days)
            # Money is stored as integer cents: scaleb gives the same Decimal as Money's reader
            rec = OverdueReceivable(rid, inv, cid, rep, d[0], Decimal(cents).scaleb(-2), cur, bool(disputed))
            items.append(OverdueItem(rec, cust, d[1], last_fu.get(rid) if last_fu else None,
                                     promises.get(rid) if promises else None))
    return out


def _newest_of_reps(table, reps: list[str], *columns, where=None, pick=func.max):
    """``columns`` of the newest row (highest id) of ``table`` (follow-ups, promises) for each
    receivable of ``reps``, among the rows ``where(table's columns)`` admits (``pick=func.min``: the
    oldest instead). Driven from the
    receivables (rep index), one probe of ``table``'s receivable index each: ``receivable_id IN
    (receivables of these reps)`` made SQLite build a list of some 50,000 ids for each query
    (~1.5 s of a 1M push); a join lets it scan ``table`` whole, and follow-ups grow with every reply."""
    r, t = Receivable.__table__.c, table.alias().c
    cond = [t.receivable_id == r.id] + ([where(t)] if where is not None else [])
    newest = select(pick(t.id)).where(*cond).scalar_subquery()     # correlated with r
    ids = select(newest.label("id")).where(r.rep_id.in_(reps)).subquery()
    return select(*columns).select_from(ids.join(table, table.c.id == ids.c.id))


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
