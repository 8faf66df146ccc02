"""What the payment profiles, expected dates and the cash-in forecast read from the ledger:
paid invoices (due date, day paid in full), closed promises, open invoices with their live
promises, and whole invoice histories for the backtest. Session first, reads only."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import payment_plan
from domain import payment_profile as pp
from storage import ledger, plans, scan
from domain.cash_forecast import InvoiceHistory, OpenInvoice
from storage.fx import convert, rates_for
from storage.models import Allocation, Customer, Payment, Promise, Receivable
from storage.scope import Scope

# a customer's habits are read from the money it paid: a credit note (红字发票) corrects an
# invoice, it is not a payment, and is left out as the KPIs and the commission leave it out
_RECEIPT = Payment.kind == "receipt"


HISTORY_DAYS = 365         # a profile reads the invoices due in the last year: habits change


def _day(v) -> date:
    return v if isinstance(v, date) else date.fromisoformat(v)


def _chunks(ids: list[int] | None, n: int = 500):
    """``ids`` a few hundred at a time; ``None`` (every customer): once, unfiltered."""
    if ids is None:
        yield None
        return
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def _of(column, chunk: list[int] | None) -> list:
    """The filter on ``column`` for a chunk of ``_chunks``: none for every customer. Reading
    every customer in one statement scans each table once; by chunks of ids it went through the
    customer index row by row (the morning push reads them all: ~10 s at 1M receivables)."""
    return [] if chunk is None else [column.in_(chunk)]


async def paid_history(session: AsyncSession, customer_ids: list[int] | None, since: date | None = None
                       ) -> dict[int, list[pp.PaidInvoice]]:
    """Each customer's invoices paid in full (due on or after ``since``): the due date and the
    day of the last allocation. ``customer_ids`` None: every customer's."""
    out: dict[int, list[pp.PaidInvoice]] = {}
    for chunk in _chunks(None if customer_ids is None else sorted(customer_ids)):
        stmt = (select(Receivable.customer_id, Receivable.due_date, func.max(Allocation.applied_on))
                .join(Allocation, Allocation.receivable_id == Receivable.id)
                .join(Payment, Payment.id == Allocation.payment_id)
                .where(*_of(Receivable.customer_id, chunk), Receivable.status == "paid", _RECEIPT,
                       *([Receivable.due_date >= since] if since is not None else []))
                .group_by(Receivable.id, Receivable.customer_id, Receivable.due_date))
        async for rows in scan.in_parts(session, stmt):
            for cid, due, paid_on in rows:
                out.setdefault(cid, []).append(pp.PaidInvoice(_day(due), _day(paid_on)))
    return out


async def promise_counts(session: AsyncSession, customer_ids: list[int] | None) -> dict[int, tuple[int, int]]:
    """(kept, broken) promises per customer (``customer_ids`` None: every customer)."""
    out: dict[int, list[int]] = {}
    for chunk in _chunks(None if customer_ids is None else sorted(customer_ids)):
        stmt = (select(Receivable.customer_id, Promise.status, func.count())
                .join(Receivable, Receivable.id == Promise.receivable_id)
                .where(*_of(Receivable.customer_id, chunk), Promise.status.in_(("kept", "broken")))
                .group_by(Receivable.customer_id, Promise.status))
        for cid, status, n in await session.execute(stmt):
            out.setdefault(cid, [0, 0])[0 if status == "kept" else 1] += n
    return {cid: (k, b) for cid, (k, b) in out.items()}


async def grade_pools(session: AsyncSession, sample: int = 20_000) -> dict[str, pp.PaymentProfile]:
    """What customers with little history borrow: the profile of each grade's recent paid
    invoices (the newest ``sample`` of them), and of everyone's under ``""``."""
    recent = (select(Receivable.id, Receivable.customer_id, Receivable.due_date)
              .where(Receivable.status == "paid").order_by(Receivable.id.desc()).limit(sample).subquery())
    stmt = (select(Customer.grade, recent.c.due_date, func.max(Allocation.applied_on))
            .select_from(recent).join(Allocation, Allocation.receivable_id == recent.c.id)
            .join(Payment, Payment.id == Allocation.payment_id).where(_RECEIPT)
            .join(Customer, Customer.id == recent.c.customer_id)
            .group_by(recent.c.id, recent.c.due_date, Customer.grade))
    by_grade: dict[str, list[pp.PaidInvoice]] = {}
    for grade, due, paid_on in await session.execute(stmt):
        by_grade.setdefault(grade, []).append(pp.PaidInvoice(_day(due), _day(paid_on)))
    everyone = pp.pool((p for ps in by_grade.values() for p in ps), "all")
    pools = {g: pp.pool(ps, "grade") if len(ps) >= 5 * pp.MIN_HISTORY else everyone for g, ps in by_grade.items()}
    pools[""] = everyone
    return pools


async def profiles_of(session: AsyncSession, grades: dict[int, str], as_of: date,
                      pools: dict[str, pp.PaymentProfile] | None = None, *, every: bool = False
                      ) -> dict[int, pp.PaymentProfile]:
    """The profiles on ``as_of`` of the customers in ``grades`` (id → grade), from their invoices
    due in the ``HISTORY_DAYS`` before; a new customer borrows its grade's pool (``pools``, from
    ``grade_pools``; read here when not given). ``every``: ``grades`` holds (nearly) every
    customer, so the histories are read whole rather than by ids."""
    ids = list(grades)
    history = await paid_history(session, None if every else ids, since=as_of - timedelta(days=HISTORY_DAYS))
    promises = await promise_counts(session, None if every else ids)
    if pools is None and any(len(history.get(c, ())) < pp.MIN_HISTORY for c in ids):
        pools = await grade_pools(session)
    pools = pools or {}
    out = {}
    for i, (cid, grade) in enumerate(grades.items()):
        if i % 500 == 499:
            await asyncio.sleep(0)      # 20,000 customers' profiles are ~0.3 s: chat gets turns
        fallback = pools.get(grade) or pools.get("")
        if fallback is not None and not fallback.invoices:
            fallback = None
        out[cid] = pp.profile(history.get(cid, ()), *promises.get(cid, (0, 0)), pool=fallback)
    return out


async def month_end_payers(session: AsyncSession, grades: dict[int, str], as_of: date) -> set[int]:
    """Which of the customers in ``grades`` (id → grade) have a month-end habit of their own."""
    if not grades:
        return set()
    # pools={}: a customer with too little history borrows no habit (and no pool is read for it)
    profiles = await profiles_of(session, grades, as_of, pools={})
    return {cid for cid, p in profiles.items() if p.month_end_habit and not p.borrowed}


async def open_invoices(session: AsyncSession, as_of: date, scope: Scope, fx_rates: dict | None,
                        base_currency: str) -> tuple[list[OpenInvoice], dict[int, str], dict[str, Decimal]]:
    """The open invoices in ``scope`` (amounts in ``base_currency``, their live promise's date),
    their customers' grades, and what could not be converted (per currency).

    An invoice under a payment plan comes as one piece per instalment still unpaid (its amount,
    on its date) and one for what the plan does not cover (no promise): the plan's money is
    expected when the plan says, not all of it on one date."""
    rates = rates_for(fx_rates, base_currency)
    promised = (select(Promise.receivable_id, func.max(Promise.id).label("pid"))
                .where(Promise.status == "open").group_by(Promise.receivable_id).subquery())
    stmt = (select(Receivable.id, Receivable.customer_id, Customer.grade, Receivable.due_date, Receivable.open_amount,
                   Receivable.currency, Promise.promised_date)
            .join(Customer, Customer.id == Receivable.customer_id)
            .outerjoin(promised, promised.c.receivable_id == Receivable.id)
            .outerjoin(Promise, Promise.id == promised.c.pid)
            .where(Receivable.open_amount > 0, Receivable.status != "written_off", Receivable.disputed.is_(False)))
    stmt = scope.apply(stmt, joined_customer=True)
    out, grades, unconverted = [], {}, {}
    rows = (await session.execute(stmt)).all()
    promised = {rid for rid, *_, pdate in rows if pdate is not None}
    by_plan = await plans.open_plans(session, sorted(promised)) if promised else {}
    for rid, cid, grade, due, amount, cur, pdate in rows:
        value = convert(amount, cur, rates)
        if value is None:
            unconverted[cur] = unconverted.get(cur, Decimal("0.00")) + amount
            continue
        grades[cid] = grade
        plan = by_plan.get(rid)
        if plan is None:
            out.append(OpenInvoice(cid, due, value, pdate if pdate is not None and pdate >= as_of else None))
            continue
        paid = await ledger.paid_since(session, rid, plan[0].made_at.date())
        pieces = [(d, a) for d, a in payment_plan.unpaid([(p.promised_date, p.amount) for p in plan], paid) if a > 0]
        uncovered = amount - sum((a for _, a in pieces), Decimal("0"))
        for d, a in pieces + ([(None, uncovered)] if uncovered > 0 else []):
            out.append(OpenInvoice(cid, due, convert(a, cur, rates), d if d is not None and d >= as_of else None))
    return out, grades, unconverted


async def invoice_histories(session: AsyncSession, scope: Scope, fx_rates: dict | None,
                            base_currency: str) -> tuple[list[InvoiceHistory], dict[int, str]]:
    """Every invoice in ``scope`` with its payments (allocations by day), in ``base_currency``,
    and the customers' grades: the backtest's replay of the ledger. Written-off and disputed
    invoices are left out, as the forecast leaves them out."""
    rates = rates_for(fx_rates, base_currency)
    stmt = (select(Receivable.id, Receivable.customer_id, Customer.grade, Receivable.issue_date,
                   Receivable.due_date, Receivable.amount, Receivable.currency)
            .join(Customer, Customer.id == Receivable.customer_id)
            .where(Receivable.status != "written_off", Receivable.disputed.is_(False)))
    rows = (await session.execute(scope.apply(stmt, joined_customer=True))).all()
    pays: dict[int, dict[date, Decimal]] = {}
    for chunk in _chunks([r[0] for r in rows], 2000):
        for rid, day, amount in await session.execute(
                select(Allocation.receivable_id, Allocation.applied_on, Allocation.amount)
                .join(Payment, Payment.id == Allocation.payment_id)
                .where(Allocation.receivable_id.in_(chunk), _RECEIPT)):
            by_day = pays.setdefault(rid, {})
            by_day[_day(day)] = by_day.get(_day(day), Decimal("0")) + amount
    out, grades = [], {}
    for rid, cid, grade, issue, due, amount, cur in rows:
        rate = Decimal("1") if cur == base_currency else rates.get(cur)
        if rate is None:
            continue
        grades[cid] = grade
        payments = tuple(sorted((d, a * rate) for d, a in pays.get(rid, {}).items()))
        out.append(InvoiceHistory(cid, _day(issue), _day(due), amount * rate, payments))
    return out, grades


@dataclass(frozen=True, slots=True)
class Standing:
    """What the priority formula reads of a customer besides its profile."""
    grade: str
    broken_promises: int
    credit_usage: float | None          # open balance (in the company's currency) / credit limit


async def standings(session: AsyncSession, customer_ids: list[int] | None, fx_rates: dict | None,
                    base_currency: str) -> dict[int, Standing]:
    """Grade, broken promises and credit usage of each customer in ``customer_ids`` (None: every
    customer; open balances converted; a currency without a rate is left out of the usage)."""
    rates = rates_for(fx_rates, base_currency)
    out: dict[int, Standing] = {}
    for chunk in _chunks(None if customer_ids is None else sorted(customer_ids)):
        open_by: dict[int, Decimal] = {}
        for cid, cur, total in await session.execute(
                select(Receivable.customer_id, Receivable.currency, func.sum(Receivable.open_amount))
                .where(*_of(Receivable.customer_id, chunk), Receivable.open_amount > 0)
                .group_by(Receivable.customer_id, Receivable.currency)):
            value = convert(Decimal(total), cur, rates)
            if value is not None:
                open_by[cid] = open_by.get(cid, Decimal("0")) + value
        for cid, grade, limit, broken in await session.execute(
                select(Customer.id, Customer.grade, Customer.credit_limit, Customer.broken_promises)
                .where(*_of(Customer.id, chunk))):
            usage = float(open_by.get(cid, 0) / limit) if limit else None
            out[cid] = Standing(grade, broken or 0, usage)
    return out
