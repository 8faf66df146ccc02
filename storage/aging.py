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

Whether stored open balances can be used ("as of" today or later, nothing dated after as_of) is
decided by three ``max()`` look-ups that the indexes on issue_date, applied_on and
written_off_on (migration 0003) answer without a scan.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, case, func, literal, literal_column, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from storage.fx import convert, rates_for
from storage.models import Allocation, Customer, Person, Receivable, WriteOff
from storage.scope import Scope
from storage.types import from_cents

CENT = Decimal("0.01")
BY_COLUMNS = {"rep": Receivable.rep_id, "team": Person.team, "customer": Receivable.customer_id,
              "region": Customer.region}


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
    as_of: date
    buckets: list[Bucket]
    groups: dict[str, list[Bucket]] = field(default_factory=dict)    # by rep/team/customer/region key
    unconverted: dict[str, Decimal] = field(default_factory=dict)    # currency → open amount without a rate

    @property
    def total(self) -> Decimal:
        return sum((b.amount for b in self.buckets), Decimal("0.00"))

    @property
    def count(self) -> int:
        return sum(b.count for b in self.buckets)

    @property
    def overdue(self) -> Decimal:
        return sum((b.amount for b in self.buckets[1:]), Decimal("0.00"))

    def group_total(self, key: str) -> Decimal:
        return sum((b.amount for b in self.groups.get(key, [])), Decimal("0.00"))


def _bucket_case(as_of: date, bounds):
    whens = [(Receivable.due_date >= as_of, 0)]
    for i, days in enumerate(bounds, start=1):
        whens.append((Receivable.due_date >= as_of - timedelta(days=days), i))
    return case(*whens, else_=len(bounds) + 1)


async def _history_is_settled(session: AsyncSession, as_of: date) -> bool:
    """True when nothing is dated after as_of, so stored open balances equal balances as of then.

    One round trip; each ``max()`` is answered from an index (migration 0003)."""
    row = (await session.execute(select(select(func.max(Allocation.applied_on)).scalar_subquery(),
                                        select(func.max(WriteOff.written_off_on)).scalar_subquery(),
                                        select(func.max(Receivable.issue_date)).scalar_subquery()))).one()
    return all(d is None or _as_date(d) <= as_of for d in row)


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
                 fx_rates: dict[str, str] | None, base_currency: str, by_day: bool) -> AgingReport:
    """``by_day``: group by due date in SQL and bucket in Python (the fast path, ``by`` must be
    None); otherwise bucket with ``CASE`` in SQL (the original statement, kept for ``by`` and as
    the reference the tests compare the fast path with)."""
    if by_day and by:
        raise ValueError("by_day groups by due date only")
    labels = bucket_labels(list(bounds))
    if await _history_is_settled(session, as_of):
        open_cents = Receivable.open_amount
        is_open = Receivable.open_amount > literal_column("0")     # literal: matches the partial index
        src = None
    else:
        alloc = (select(Allocation.receivable_id.label("rid"), func.sum(type_coerce(Allocation.amount, BigInteger)).label("s"))
                 .where(Allocation.applied_on <= as_of).group_by(Allocation.receivable_id).subquery())
        wo = (select(WriteOff.receivable_id.label("rid"), func.sum(type_coerce(WriteOff.amount, BigInteger)).label("s"))
              .where(WriteOff.status == "approved", WriteOff.written_off_on <= as_of)
              .group_by(WriteOff.receivable_id).subquery())
        src = (alloc, wo)
        open_cents = type_coerce(Receivable.amount, BigInteger) - func.coalesce(alloc.c.s, 0) - func.coalesce(wo.c.s, 0)
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
    stmt = stmt.group_by(Receivable.due_date, Receivable.currency) if by_day else \
        stmt.group_by(first, Receivable.currency, group_col)
    rows = (await session.execute(stmt)).all()

    rates = rates_for(fx_rates, base_currency)
    report = AgingReport(as_of, [Bucket(lbl) for lbl in labels])
    if by_day:
        # the day rows are summed per (bucket, currency) in integer cents first, so the amounts
        # convert exactly as the per-bucket rows of the SQL path do
        per: dict[tuple[int, str], list[int]] = {}
        for due, currency, _grp, cents, n in rows:
            acc = per.setdefault((_bucket_of(as_of, bounds, _as_date(due)), currency), [0, 0])
            acc[0] += int(cents)
            acc[1] += n
        rows = [(b_idx, currency, "", cents, n) for (b_idx, currency), (cents, n) in sorted(per.items())]
    for b_idx, currency, grp, cents, n in rows:
        amount = from_cents(cents)
        converted = convert(amount, currency, rates)
        if converted is None:
            report.unconverted[currency] = report.unconverted.get(currency, Decimal("0.00")) + amount
            continue
        target = report.buckets[b_idx]
        target.amount += converted
        target.count += n
        if by:
            key = str(grp) if grp is not None else ""
            groups = report.groups.setdefault(key, [Bucket(lbl) for lbl in labels])
            groups[b_idx].amount += converted
            groups[b_idx].count += n
    return report


@dataclass
class TopCustomer:
    customer_id: int
    name: str
    overdue: Decimal
    max_days: int


async def top_overdue_customers(session: AsyncSession, as_of: date, scope: Scope = Scope(), limit: int = 5,
                                fx_rates: dict[str, str] | None = None, base_currency: str = "CNY") -> list[TopCustomer]:
    """The customers with the most overdue (open, past due) balance now, in the reporting currency."""
    rates = rates_for(fx_rates, base_currency)
    stmt = (select(Customer.id, Customer.name, Receivable.currency,
                   func.sum(type_coerce(Receivable.open_amount, BigInteger)), func.min(Receivable.due_date))
            .join(Customer, Customer.id == Receivable.customer_id)
            .where(Receivable.open_amount > 0, Receivable.due_date < as_of, Receivable.status != "written_off"))
    stmt = scope.apply(stmt, joined_customer=True).group_by(Customer.id, Customer.name, Receivable.currency)
    totals: dict[int, TopCustomer] = {}
    for cid, name, currency, cents, oldest in (await session.execute(stmt)).all():
        amount = convert(from_cents(cents), currency, rates)
        if amount is None:
            continue
        days = (as_of - _as_date(oldest)).days
        t = totals.setdefault(cid, TopCustomer(cid, name, Decimal("0.00"), 0))
        t.overdue += amount
        t.max_days = max(t.max_days, days)
    return sorted(totals.values(), key=lambda t: (-t.overdue, t.name))[:limit]
