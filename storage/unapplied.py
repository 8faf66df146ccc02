"""Unapplied cash (未核销 / 预收): money a customer paid that no invoice has taken yet — an
over-payment, a receipt before the invoice, the rest of a credit note above what was open — and
applying it to the customer's invoices when finance confirms.

It is kept where it arises, as ``payments.unallocated`` (receipts and credit notes alike; a
reversed payment has none), never netted into an invoice, so every balance shows it beside the
open receivables: ``on_account`` gives it per currency for a scope as of a date. Exactly:

    on account as of D = Σ over payments dated ≤ D, not reversed, of
                         (amount − its allocations applied on or before D)
                       = Σ their unallocated now + Σ their allocations applied after D

The second form reads only the payments with money unallocated now (a partial index, migration
0018) and the allocations dated after D (the applied_on index), not the whole payments table.

Applying (``apply_on_account``) allocates each payment's unallocated money, oldest payment first,
to the customer's open invoices in its currency, oldest due first, dated the day it is applied
(the invoices were not paid before that day in the ledger's eyes); it is undone with the payment
(/reverse) like any allocation.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, func, select, text, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.ledger import refresh_status
from storage.models import Allocation, Customer, Payment, Person, Receivable
from storage.scope import Scope
from storage.types import from_cents

ZERO = Decimal("0.00")


def _scoped(stmt, scope: Scope):
    """Narrow a select over payments to a caller's scope, by the customer's rep, team and region."""
    if scope.customer_ids is not None:
        stmt = stmt.where(Payment.customer_id.in_(sorted(scope.customer_ids)))
    if scope.rep_ids is None and scope.region is None and scope.team is None:
        return stmt
    stmt = stmt.join(Customer, Customer.id == Payment.customer_id)
    if scope.rep_ids is not None:
        stmt = stmt.where(Customer.rep_id.in_(sorted(scope.rep_ids)))
    if scope.region is not None:
        stmt = stmt.where(Customer.region == scope.region)
    if scope.team is not None:
        stmt = stmt.join(Person, Person.id == Customer.rep_id).where(Person.team == scope.team)
    return stmt


async def on_account(session: AsyncSession, as_of: date, scope: Scope = Scope()) -> dict[str, Decimal]:
    """Unapplied cash per currency as of ``as_of`` (see the module docstring); zero currencies left out."""
    cents: dict[str, int] = {}
    now_part = _scoped(select(Payment.currency, func.sum(type_coerce(Payment.unallocated, BigInteger)))
                       .where(text("payments.unallocated > 0"), Payment.paid_on <= as_of,
                              Payment.reversed_at.is_(None)), scope).group_by(Payment.currency)
    later = _scoped(select(Payment.currency, func.sum(type_coerce(Allocation.amount, BigInteger)))
                    .select_from(Allocation).join(Payment, Payment.id == Allocation.payment_id)
                    .where(Allocation.applied_on > as_of, Payment.paid_on <= as_of,
                           Payment.reversed_at.is_(None)), scope).group_by(Payment.currency)
    for stmt in (now_part, later):
        for cur, c in (await session.execute(stmt)).all():
            cents[cur] = cents.get(cur, 0) + int(c or 0)
    return {cur: from_cents(c) for cur, c in sorted(cents.items()) if c}


async def by_customer(session: AsyncSession, customer_ids: list[int]) -> dict[int, dict[str, Decimal]]:
    """Unapplied cash now, per customer and currency, for these customers (one query)."""
    out: dict[int, dict[str, Decimal]] = {}
    for i in range(0, len(customer_ids), 500):
        for cid, cur, c in (await session.execute(
                select(Payment.customer_id, Payment.currency, func.sum(type_coerce(Payment.unallocated, BigInteger)))
                .where(text("payments.unallocated > 0"), Payment.reversed_at.is_(None),
                       Payment.customer_id.in_(customer_ids[i:i + 500]))
                .group_by(Payment.customer_id, Payment.currency))).all():
            out.setdefault(cid, {})[cur] = from_cents(int(c))
    return out


async def customers_with_cash(session: AsyncSession) -> list[Customer]:
    """The customers with unapplied cash now (the partial index: only payments with money on account)."""
    ids = select(Payment.customer_id).where(text("payments.unallocated > 0"), Payment.reversed_at.is_(None)).distinct()
    return list((await session.execute(select(Customer).where(Customer.id.in_(ids)).order_by(Customer.id))).scalars())


@dataclass
class Application:
    payment: Payment
    receivable: Receivable
    amount: Decimal


async def plan_on_account(session: AsyncSession, customer_id: int) -> list[tuple[Payment, Receivable, Decimal]]:
    """What applying the customer's unapplied cash would do now, without doing it."""
    payments = (await session.execute(select(Payment).where(
        Payment.customer_id == customer_id, Payment.unallocated > 0, Payment.reversed_at.is_(None))
        .order_by(Payment.paid_on, Payment.id))).scalars().all()
    if not payments:
        return []
    open_items = (await session.execute(select(Receivable).where(
        Receivable.customer_id == customer_id, Receivable.open_amount > 0, Receivable.status != "written_off")
        .order_by(Receivable.due_date, Receivable.issue_date, Receivable.id))).scalars().all()
    left = {r.id: r.open_amount for r in open_items}
    plan = []
    for p in payments:
        money = p.unallocated
        for r in open_items:
            if money <= ZERO:
                break
            if r.currency != p.currency or left[r.id] <= ZERO:
                continue
            take = min(money, left[r.id])
            plan.append((p, r, take))
            left[r.id] -= take
            money -= take
    return plan


async def apply_on_account(session: AsyncSession, customer: Customer, *, on: date, actor: str, channel: str,
                           now: datetime) -> list[Application]:
    """Apply the customer's unapplied cash to its open invoices (see the module docstring)."""
    done = []
    for p, r, take in await plan_on_account(session, customer.id):
        session.add(Allocation(payment_id=p.id, receivable_id=r.id, amount=take, applied_on=max(on, p.paid_on)))
        p.unallocated -= take
        r.open_amount -= take
        refresh_status(r)
        done.append(Application(p, r, take))
    if done:
        audit.record(session, at=now, actor=actor, channel=channel, action="payment.apply_on_account",
                     entity="customer", entity_id=customer.code, on=on,
                     applied=[{"payment": a.payment.id, "invoice": a.receivable.invoice_no, "amount": a.amount,
                               "currency": a.receivable.currency} for a in done])
    return done
