"""Aging (账龄): open balance per bucket of days past due, as of a date — the one function
that /aging, reports, the dashboard and the KPIs all use.

Buckets are computed by comparing due_date with boundary *dates* (as_of − 30, as_of − 60 ...),
which is portable between SQLite and PostgreSQL. Amounts are summed per currency in integer cents
(exact), then converted to the reporting currency with the configured rates; a currency without a
rate is reported apart, not guessed.

Fast path (no ``by``): the database sums open cents per **due date and currency** — a few hundred
to a few thousand rows whatever the ledger size — and the rows are put into buckets here, in
Python. Over the partial covering index ``ix_receivables_open_aging (due_date, currency,
open_amount) WHERE open_amount > 0`` (migration 0003) that is one ordered index scan with no
table lookups and no sort; the ``open_amount > 0`` condition is written as a literal so SQLite
can match the partial index. With ``by`` (rep, team, customer, region) the buckets are still
computed in SQL (``CASE`` on due_date), since a group-by-day per customer would return more rows
than it saves. Both give the same report (tests/test_aging_fast.py checks it on random ledgers).

Company-wide (no ``by``, an unrestricted scope — what /aging asks most) the per-day sums are not
even summed: they are read from ``aging_totals`` (migration 0004), open cents and count per due
date and currency that triggers on receivables keep exact in the transaction of every change, so
the cost is a few hundred rows whatever the ledger size. A scope that restricts rows (a rep, a
team, a region, customers) cannot use them and sums over the partial index as above.
``SOURCES`` counts which source the per-day sums came from.

Whether stored open balances can be used ("as of" today or later, nothing dated after as_of) is
decided by three ``max()`` look-ups that the indexes on issue_date, applied_on and
written_off_on (migration 0003) answer without a scan.

Past dates ("as of" before the last payment, write-off or invoice — /aging's "same day last
week"), no ``by``: the stored balances are right for every receivable that nothing touched after
as_of, so the fast per-day sum over all currently open receivables is taken and then **corrected
exactly for the touched set** T = receivables with an allocation dated after as_of, an approved
write-off dated after as_of (recoveries are negative approved rows; undated approved rows count
as "after", as the reference ignores them) or issued after as_of. For r in T,
``open_as_of(r) = open_amount(r) + Σ those later allocations + Σ those later write-offs``
(``open_amount = amount − Σ allocations − Σ approved write-offs`` is kept by every ledger
writer, storage/ledger.py). The per-day sums are aging_totals' for the whole company, the
partial index's otherwise. One statement collects T from the three date indexes, looks each
receivable up by primary key and returns, per due date and currency, T's as-of contribution
(when issued ≤ as_of and open then) minus its current one, cents and counts; it is a
``UNION ALL`` with the per-day sum, so both read one snapshot. Its cost grows with |T|, not with
the ledger. When T is large (a date far back) the
full recomputation is cheaper: the bound on |T| (capped index-range counts, the same round trip
as the ``max()`` look-ups) is compared with ``PAST_TOUCHED_MAX`` (50,000) and
``PAST_TOUCHED_MAX_SHARE`` (20 %) of the ledger (estimated as ``max(receivables.id)``); above
either, the original exact statement (a join over all allocations and write-offs) runs. Which
path ran is counted in ``PATHS`` (tests assert on it).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, and_, case, func, literal, literal_column, or_, select, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage.fx import convert, rates_for
from storage.models import AgingDelta, AgingTotal, Allocation, Customer, Person, Receivable, WriteOff
from storage.scope import Scope
from storage.types import from_cents

CENT = Decimal("0.01")
BY_COLUMNS = {"rep": Receivable.rep_id, "team": Person.team, "customer": Receivable.customer_id,
              "region": Customer.region}
# a past as-of date is answered by correcting the stored balances for the receivables touched
# after it, unless (an upper bound of) their number exceeds either limit: then full recomputation
PAST_TOUCHED_MAX = 50_000
PAST_TOUCHED_MAX_SHARE = 0.20
PATHS: Counter[str] = Counter()      # which path answered: "stored", "corrected", "recomputed"
SOURCES: Counter[str] = Counter()    # where its stored per-day sums came from: "totals", "receivables"


def bucket_labels(bounds: tuple[int, ...] | list[int]) -> list[str]:
    """[30, 60, 90] → ["not_due", "1-30", "31-60", "61-90", "90+"] (templates translate them)."""
    labels, lo = ["not_due"], 1
    for hi in bounds:
        labels.append(f"{lo}-{hi}")
        lo = hi + 1
    labels.append(f"{bounds[-1]}+")
    return labels


@dataclass
class Bucket:
    label: str
    amount: Decimal = Decimal("0.00")
    count: int = 0

    def share(self, total: Decimal) -> Decimal:
        return (self.amount / total * 100).quantize(Decimal("0.1"), ROUND_HALF_UP) if total else Decimal("0.0")


@dataclass
class AgingReport:
    """Buckets in the reporting currency. One rounding rule for every figure (see ``to_base``):
    a figure is the sum of its own per-currency cents, each currency converted once, half up to
    the cent — never a sum of amounts already converted and rounded. So /aging's total, /kpi's
    open balance and a report's are the same figure on the same data; a bucket or a rep's line is
    converted from its own sums, so with foreign currencies the lines may differ from the total
    by a cent, as a converted statement does."""
    as_of: date
    buckets: list[Bucket]
    groups: dict[str, list[Bucket]] = field(default_factory=dict)    # by rep/team/customer/region key
    unconverted: dict[str, Decimal] = field(default_factory=dict)    # currency → open amount without a rate
    rates: dict[str, Decimal] = field(default_factory=dict)
    # integer cents per currency, per bucket (and per group and bucket): what every figure is made of
    cents: list[dict[str, int]] = field(default_factory=list)
    group_cents: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    # unapplied cash (未核销/预收) of the same scope and date, per currency, when the caller asked
    # for it (storage/unapplied.py); not part of the buckets: a customer's money, not a receivable
    unapplied: dict[str, Decimal] = field(default_factory=dict)

    @property
    def unapplied_base(self) -> Decimal:
        """The unapplied cash in the reporting currency (a currency without a rate left out)."""
        return sum((convert(v, cur, self.rates) for cur, v in sorted(self.unapplied.items()) if cur in self.rates),
                   Decimal("0.00"))

    @property
    def net(self) -> Decimal:
        """Open receivables less unapplied cash: what the customers owe on balance."""
        return self.total - self.unapplied_base

    def to_base(self, per_bucket: list[dict[str, int]], first: int = 0) -> Decimal:
        summed: dict[str, int] = {}
        for per in per_bucket[first:]:
            for cur, c in per.items():
                summed[cur] = summed.get(cur, 0) + c
        return sum((convert(from_cents(c), cur, self.rates) for cur, c in sorted(summed.items())), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        return self.to_base(self.cents)

    @property
    def count(self) -> int:
        return sum(b.count for b in self.buckets)

    @property
    def overdue(self) -> Decimal:
        return self.to_base(self.cents, first=1)

    def group_total(self, key: str) -> Decimal:
        return self.to_base(self.group_cents.get(key, []))

    @property
    def foreign_rates(self) -> dict[str, Decimal]:
        """The rates this report converted with (currency → yuan per unit), for saying so."""
        used = {cur for per in self.cents for cur, c in per.items() if c}
        return {cur: self.rates[cur] for cur in sorted(used) if self.rates.get(cur) != Decimal("1")}

    def group_overdue(self, key: str) -> Decimal:
        return self.to_base(self.group_cents.get(key, []), first=1)


def _bucket_case(as_of: date, bounds):
    whens = [(Receivable.due_date >= as_of, 0)]
    for i, days in enumerate(bounds, start=1):
        whens.append((Receivable.due_date >= as_of - timedelta(days=days), i))
    return case(*whens, else_=len(bounds) + 1)


def _approved_write_offs_after(as_of: date):
    # undated approved rows: the reference statement never subtracts them, the stored balance does
    return and_(WriteOff.status == "approved", or_(WriteOff.written_off_on > as_of, WriteOff.written_off_on.is_(None)))


async def _history_after(session: AsyncSession, as_of: date) -> tuple[bool, int, int]:
    """(settled, bound on the receivables touched after as_of, ledger size estimate), one round trip.

    Each ``max()`` is answered from an index (migration 0003); each count is a range of the same
    indexes, capped at ``PAST_TOUCHED_MAX + 1`` rows so a date far back costs no more than that;
    ``max(id)`` (the primary key) stands in for the number of receivables."""
    cap = PAST_TOUCHED_MAX + 1

    def capped(stmt):
        return select(func.count()).select_from(stmt.limit(cap).subquery()).scalar_subquery()

    row = (await session.execute(select(
        select(func.max(Allocation.applied_on)).scalar_subquery(),
        select(func.max(WriteOff.written_off_on)).scalar_subquery(),
        select(func.max(Receivable.issue_date)).scalar_subquery(),
        capped(select(Allocation.id).where(Allocation.applied_on > as_of)),
        capped(select(WriteOff.id).where(_approved_write_offs_after(as_of))),
        capped(select(Receivable.id).where(Receivable.issue_date > as_of)),
        select(func.max(Receivable.id)).scalar_subquery()))).one()
    settled = all(d is None or _as_date(d) <= as_of for d in row[:3])
    return settled, int(row[3] or 0) + int(row[4] or 0) + int(row[5] or 0), int(row[6] or 0)


def _as_date(v) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v))


def _bucket_of(as_of: date, bounds, due: date) -> int:
    """The bucket index of a due date, exactly as ``_bucket_case`` computes it in SQL."""
    if due >= as_of:
        return 0
    late = (as_of - due).days
    for i, days in enumerate(bounds, start=1):
        if late <= days:
            return i
    return len(bounds) + 1


async def aging(session: AsyncSession, as_of: date, bounds=(30, 60, 90), *, scope: Scope = Scope(),
                by: str | None = None, fx_rates: dict[str, str] | None = None,
                base_currency: str = "CNY") -> AgingReport:
    return await _aging(session, as_of, bounds, scope=scope, by=by, fx_rates=fx_rates,
                        base_currency=base_currency, by_day=by is None)


async def _aging(session: AsyncSession, as_of: date, bounds, *, scope: Scope, by: str | None,
                 fx_rates: dict[str, str] | None, base_currency: str, by_day: bool,
                 past: str = "auto") -> AgingReport:
    """``by_day``: group by due date in SQL and bucket in Python (the fast path, ``by`` must be
    None); otherwise bucket with ``CASE`` in SQL (the original statement, kept for ``by`` and as
    the reference the tests compare the fast path with).

    ``past`` (only with ``by_day``, for a date that is not settled): "auto" chooses by the size of
    the touched set, "corrected" / "recomputed" force a path (tests and the benchmark)."""
    if by_day and by:
        raise ValueError("by_day groups by due date only")
    if past not in ("auto", "corrected", "recomputed"):
        raise ValueError(f"past: {past!r}")
    labels = bucket_labels(list(bounds))
    settled, touched, size = await _history_after(session, as_of)
    if not settled and by_day and (past == "corrected" or past == "auto" and touched <= PAST_TOUCHED_MAX
                                   and touched <= PAST_TOUCHED_MAX_SHARE * size):
        PATHS["corrected"] += 1
        rows = await _corrected_day_rows(session, as_of, scope)
    elif settled and by_day and scope == Scope():
        PATHS["stored"] += 1
        SOURCES["totals"] += 1
        rows = _merge_day_rows((await session.execute(union_all(*_totals_selects(session)))).all())
    else:
        PATHS["stored" if settled else "recomputed"] += 1
        if settled:
            SOURCES["receivables"] += 1
        rows = await _day_or_bucket_rows(session, as_of, bounds, scope=scope, by=by, by_day=by_day,
                                         settled=settled)
    return _report(rows, as_of, bounds, labels, by=by, by_day=by_day, fx_rates=fx_rates,
                   base_currency=base_currency)


def _open_rows_stmt(scope: Scope, *, by: str | None = None, by_day: bool = True, as_of: date | None = None,
                    bounds=(), src=None):
    """The aging statement over receivables; ``src`` None: stored balances (the partial index)."""
    if src is None:
        open_cents = Receivable.open_amount
        is_open = Receivable.open_amount > literal_column("0")     # literal: matches the partial index
    else:
        open_cents = open_cents_as_of(src)
        is_open = open_cents > 0
    group_col = BY_COLUMNS[by] if by else literal("")
    first = Receivable.due_date if by_day else _bucket_case(as_of, bounds).label("bucket")
    stmt = select(first, Receivable.currency, group_col.label("grp"),
                  func.sum(type_coerce(open_cents, BigInteger)).label("cents"), func.count().label("n")).select_from(Receivable)
    joined_customer = joined_person = False
    if by == "region" or scope.region is not None:
        stmt = stmt.join(Customer, Customer.id == Receivable.customer_id)
        joined_customer = True
    if by == "team" or scope.team is not None:
        stmt = stmt.outerjoin(Person, Person.id == Receivable.rep_id)
        joined_person = True
    if src is not None:
        alloc, wo = src
        stmt = (stmt.outerjoin(alloc, alloc.c.rid == Receivable.id).outerjoin(wo, wo.c.rid == Receivable.id)
                .where(Receivable.issue_date <= as_of))
    stmt = stmt.where(is_open)
    stmt = scope.apply(stmt, joined_customer=joined_customer, joined_person=joined_person)
    return stmt.group_by(Receivable.due_date, Receivable.currency) if by_day else \
        stmt.group_by(first, Receivable.currency, group_col)


def _totals_selects(session: AsyncSession) -> list:
    """The stored per-day sums of the whole ledger from aging_totals (migration 0004), as selects
    of rows (due_date, currency, "", cents, n) to ``UNION ALL``; a key may be in several rows
    (``_merge_day_rows`` sums them)."""
    totals = select(AgingTotal.due_date, AgingTotal.currency, literal("").label("grp"),
                    type_coerce(AgingTotal.open_cents, BigInteger).label("cents"), AgingTotal.open_count.label("n"))
    if session.bind.dialect.name != "postgresql":
        return [totals]
    # PostgreSQL: this transaction's own changes wait in aging_deltas until its commit, so they
    # are added; other transactions' uncommitted deltas are invisible anyway, and
    # txid_current_if_assigned() is NULL (no rows, no transaction id taken) in a read-only one
    pending = (select(AgingDelta.due_date, AgingDelta.currency, literal(""), type_coerce(AgingDelta.open_cents, BigInteger),
                      AgingDelta.open_count)
               .where(AgingDelta.txid == func.txid_current_if_assigned()))
    return [totals, pending]


def _merge_day_rows(rows) -> list:
    """Sum rows (due_date, currency, grp, cents, n) per due date and currency; keys left with no
    open receivable are dropped (they would add a zero entry for a currency without a rate)."""
    per: dict[tuple[date, str], list[int]] = {}
    for due, currency, _grp, cents, n in rows:
        acc = per.setdefault((_as_date(due), currency), [0, 0])
        acc[0] += int(cents or 0)
        acc[1] += int(n or 0)
    return [(due, currency, "", cents, n) for (due, currency), (cents, n) in per.items() if n]


async def _day_or_bucket_rows(session: AsyncSession, as_of: date, bounds, *, scope: Scope, by: str | None,
                              by_day: bool, settled: bool) -> list:
    """Stored balances (settled) or the full recomputation from allocations and write-offs."""
    src = None if settled else as_of_sources(as_of)
    stmt = _open_rows_stmt(scope, by=by, by_day=by_day, as_of=as_of, bounds=bounds, src=src)
    return list((await session.execute(stmt)).all())


def as_of_sources(as_of: date):
    """Per receivable, the payments applied and the approved write-offs booked by ``as_of`` (in
    cents): ``amount − both`` is its open balance on that day (subqueries with ``rid`` and ``s``)."""
    alloc = (select(Allocation.receivable_id.label("rid"), func.sum(type_coerce(Allocation.amount, BigInteger)).label("s"))
             .where(Allocation.applied_on <= as_of).group_by(Allocation.receivable_id).subquery())
    wo = (select(WriteOff.receivable_id.label("rid"), func.sum(type_coerce(WriteOff.amount, BigInteger)).label("s"))
          .where(WriteOff.status == "approved", WriteOff.written_off_on <= as_of)
          .group_by(WriteOff.receivable_id).subquery())
    return alloc, wo


def open_cents_as_of(src):
    """The open balance in cents on the day of :func:`as_of_sources` (joined by the caller)."""
    alloc, wo = src
    return type_coerce(Receivable.amount, BigInteger) - func.coalesce(alloc.c.s, 0) - func.coalesce(wo.c.s, 0)


async def _corrected_day_rows(session: AsyncSession, as_of: date, scope: Scope) -> list:
    """Day rows (due_date, currency, "", cents, n) as of a past date: the stored per-day sums,
    corrected for the receivables touched after as_of (see the module docstring).

    The sums and their corrections are one statement (``UNION ALL``), so they read one snapshot:
    a payment committed between two statements would be counted once in one and not the other."""
    later = union_all(
        select(Allocation.receivable_id.label("rid"), type_coerce(Allocation.amount, BigInteger).label("s"))
        .where(Allocation.applied_on > as_of),
        select(WriteOff.receivable_id, type_coerce(WriteOff.amount, BigInteger)).where(_approved_write_offs_after(as_of)),
        select(Receivable.id, literal(0, BigInteger)).where(Receivable.issue_date > as_of),
    ).subquery("later")
    touched = select(later.c.rid, func.sum(later.c.s).label("s")).group_by(later.c.rid).subquery("touched")
    stored = type_coerce(Receivable.open_amount, BigInteger)
    then = stored + touched.c.s
    open_now = stored > 0
    open_then = and_(Receivable.issue_date <= as_of, then > 0)
    # per receivable of T: + its as-of contribution (issued by then and open then) − its stored one
    delta_cents = case((open_then, then), else_=0) - case((open_now, stored), else_=0)
    delta_n = case((open_then, 1), else_=0) - case((open_now, 1), else_=0)
    correction = (select(Receivable.due_date, Receivable.currency, literal("").label("grp"),
                         func.sum(delta_cents).label("cents"), func.sum(delta_n).label("n"))
                  .select_from(touched).join(Receivable, Receivable.id == touched.c.rid))
    correction = scope.apply(correction).group_by(Receivable.due_date, Receivable.currency)
    if scope == Scope():
        SOURCES["totals"] += 1
        stored = _totals_selects(session)
    else:
        SOURCES["receivables"] += 1
        stored = [_open_rows_stmt(scope)]
    return _merge_day_rows((await session.execute(union_all(*stored, correction))).all())


def _report(rows, as_of: date, bounds, labels, *, by: str | None, by_day: bool,
            fx_rates: dict[str, str] | None, base_currency: str) -> AgingReport:
    rates = rates_for(fx_rates, base_currency)
    report = AgingReport(as_of, [Bucket(lbl) for lbl in labels], rates=rates, cents=[{} for _ in labels])
    if by_day:
        # the day rows are summed per (bucket, currency) in integer cents first
        per: dict[tuple[int, str], list[int]] = {}
        for due, currency, _grp, cents, n in rows:
            acc = per.setdefault((_bucket_of(as_of, bounds, _as_date(due)), currency), [0, 0])
            acc[0] += int(cents)
            acc[1] += n
        rows = [(b_idx, currency, "", cents, n) for (b_idx, currency), (cents, n) in sorted(per.items())]
    for b_idx, currency, grp, cents, n in rows:
        if currency not in rates:
            report.unconverted[currency] = report.unconverted.get(currency, Decimal("0.00")) + from_cents(cents)
            continue
        per_cur = report.cents[b_idx]
        per_cur[currency] = per_cur.get(currency, 0) + int(cents)
        report.buckets[b_idx].count += n
        if by:
            key = str(grp) if grp is not None else ""
            if key not in report.groups:
                report.groups[key] = [Bucket(lbl) for lbl in labels]
                report.group_cents[key] = [{} for _ in labels]
            g = report.group_cents[key][b_idx]
            g[currency] = g.get(currency, 0) + int(cents)
            report.groups[key][b_idx].count += n
    # each bucket converted from its own per-currency sums, once
    for i, b in enumerate(report.buckets):
        b.amount = report.to_base(report.cents[i:i + 1])
    for key, buckets in report.groups.items():
        for i, b in enumerate(buckets):
            b.amount = report.to_base(report.group_cents[key][i:i + 1])
    return report


@dataclass
class TopCustomer:
    customer_id: int
    name: str
    overdue: Decimal
    max_days: int


async def top_overdue_customers(session: AsyncSession, as_of: date, scope: Scope = Scope(), limit: int = 5,
                                fx_rates: dict[str, str] | None = None, base_currency: str = "CNY") -> list[TopCustomer]:
    """The customers with the most overdue (open, past due) balance as of ``as_of``, in the
    reporting currency: the same balances as :func:`aging` of that date (a monthly report run on
    the 5th ranks by the month-end balances, not by what was paid since).

    The database ranks the customers (sums converted with the rates as floating point, enough to
    rank); the exact figures are computed for the few at the top only. Summing every customer in
    Python took seconds at 200k invoices, on every /aging."""
    rates = rates_for(fx_rates, base_currency)
    if not rates or limit <= 0:
        return []
    settled, _, _ = await _history_after(session, as_of)
    if not settled:
        return await _top_overdue_past(session, as_of, scope, limit, rates)
    cents = func.sum(type_coerce(Receivable.open_amount, BigInteger))
    overdue = (Receivable.open_amount > 0, Receivable.due_date < as_of, Receivable.status != "written_off")
    weight = case(*((Receivable.currency == cur, float(rate)) for cur, rate in rates.items()), else_=None)
    # ranked from the open-invoice index alone: joining customers for their names cost a quarter
    # of the time at 1M invoices (a lookup per invoice); names order the exact figures below
    ranked = (select(Receivable.customer_id).where(*overdue, Receivable.currency.in_(list(rates))))
    ranked = (scope.apply(ranked).group_by(Receivable.customer_id)
              # a few more than asked: floating point may swap two nearly equal sums
              .order_by(func.sum(type_coerce(Receivable.open_amount, BigInteger) * weight).desc(),
                        Receivable.customer_id)
              .limit(limit * 3 + 5))
    candidates = list((await session.execute(ranked)).scalars())
    if not candidates:
        return []
    stmt = (select(Customer.id, Customer.name, Receivable.currency, cents, func.min(Receivable.due_date))
            .join(Customer, Customer.id == Receivable.customer_id)
            .where(*overdue, Receivable.customer_id.in_(candidates))
            .group_by(Customer.id, Customer.name, Receivable.currency))
    totals: dict[int, TopCustomer] = {}
    for cid, name, currency, cents_sum, oldest in (await session.execute(stmt)).all():
        amount = convert(from_cents(cents_sum), currency, rates)
        if amount is None:
            continue
        days = (as_of - _as_date(oldest)).days
        t = totals.setdefault(cid, TopCustomer(cid, name, Decimal("0.00"), 0))
        t.overdue += amount
        t.max_days = max(t.max_days, days)
    return sorted(totals.values(), key=lambda t: (-t.overdue, t.name))[:limit]


async def _top_overdue_past(session: AsyncSession, as_of: date, scope: Scope, limit: int, rates) -> list[TopCustomer]:
    """:func:`top_overdue_customers` for a date something was paid, written off or issued after:
    every customer's overdue balance recomputed as of that day (a report's date, not /aging's)."""
    src = as_of_sources(as_of)
    alloc, wo = src
    open_cents = open_cents_as_of(src)
    stmt = (select(Customer.id, Customer.name, Receivable.currency, func.sum(open_cents), func.min(Receivable.due_date))
            .select_from(Receivable).join(Customer, Customer.id == Receivable.customer_id)
            .outerjoin(alloc, alloc.c.rid == Receivable.id).outerjoin(wo, wo.c.rid == Receivable.id)
            .where(Receivable.issue_date <= as_of, Receivable.due_date < as_of, open_cents > 0,
                   Receivable.currency.in_(list(rates))))
    stmt = scope.apply(stmt, joined_customer=True).group_by(Customer.id, Customer.name, Receivable.currency)
    totals: dict[int, TopCustomer] = {}
    for cid, name, currency, cents_sum, oldest in (await session.execute(stmt)).all():
        t = totals.setdefault(cid, TopCustomer(cid, name, Decimal("0.00"), 0))
        t.overdue += convert(from_cents(cents_sum), currency, rates)
        t.max_days = max(t.max_days, (as_of - _as_date(oldest)).days)
    return sorted(totals.values(), key=lambda t: (-t.overdue, t.name))[:limit]
