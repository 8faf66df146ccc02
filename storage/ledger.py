"""Receivables, payments and their allocation, write-offs: the ledger's commands.

Invariant kept by every function here, in the caller's transaction:
    receivable.open_amount = amount − Σ allocations − Σ approved write-offs  (never below 0)
    payment.unallocated   = amount − Σ its allocations                        (never below 0)
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.models import Allocation, Customer, Payment, Receivable, WriteOff

ZERO = Decimal("0.00")


class LedgerError(ValueError):
    """A ledger command that cannot be carried out as asked (nothing was changed)."""


def refresh_status(r: Receivable) -> None:
    """Payment state follows the open balance; legal and written-off states are kept."""
    if r.status in ("written_off",):
        return
    if r.open_amount <= ZERO:
        r.status = "paid"
    elif r.status == "in_legal":
        return
    elif r.open_amount < r.amount:
        r.status = "partially_paid"
    else:
        r.status = "open"


@dataclass
class PaymentResult:
    payment: Payment
    allocations: list[tuple[Receivable, Decimal]]
    duplicate: bool = False       # the same reference was already recorded: nothing changed


async def record_payment(session: AsyncSession, *, customer: Customer, amount: Decimal, paid_on: date,
                         reference: str | None, invoice_no: str = "", currency: str = "CNY",
                         actor: str, channel: str, now: datetime) -> PaymentResult:
    """Record a payment and allocate it: the named invoice first, then oldest due first.

    Re-recording the same bank reference changes nothing (imports are re-run); the same reference
    with a different amount or customer is refused, since that is a typo, not a re-run.
    """
    if amount <= ZERO:
        raise LedgerError("amount must be positive")
    if reference:
        existing = (await session.execute(select(Payment).where(Payment.reference == reference))).scalar_one_or_none()
        if existing is not None:
            if existing.amount != amount or existing.customer_id != customer.id:
                raise LedgerError(f"reference {reference} already recorded with another amount or customer")
            return PaymentResult(existing, [], duplicate=True)
    named: Receivable | None = None
    if invoice_no:
        named = (await session.execute(select(Receivable).where(Receivable.invoice_no == invoice_no))).scalar_one_or_none()
        if named is None:
            raise LedgerError(f"invoice {invoice_no} not found")
        if named.customer_id != customer.id:
            raise LedgerError(f"invoice {invoice_no} belongs to another customer")
        if named.currency != currency:
            raise LedgerError(f"invoice {invoice_no} is in {named.currency}, the payment in {currency}")
    payment = Payment(customer_id=customer.id, amount=amount, unallocated=amount, paid_on=paid_on,
                      reference=reference or None, invoice_no=invoice_no, currency=currency,
                      recorded_by=actor, created_at=now)
    session.add(payment)
    await session.flush()
    open_items = (await session.execute(
        select(Receivable).where(Receivable.customer_id == customer.id, Receivable.open_amount > 0,
                                 Receivable.currency == currency, Receivable.status != "written_off")
        .order_by(Receivable.due_date, Receivable.issue_date, Receivable.id))).scalars().all()
    if named is not None:
        open_items = [named] + [r for r in open_items if r.id != named.id]
    allocations = await allocate(session, payment, open_items)
    audit.record(session, at=now, actor=actor, channel=channel, action="payment.record", entity="payment",
                 entity_id=payment.id, customer=customer.code, amount=amount, paid_on=paid_on,
                 reference=reference, allocations={r.invoice_no: a for r, a in allocations},
                 unallocated=payment.unallocated)
    return PaymentResult(payment, allocations)


async def allocate(session: AsyncSession, payment: Payment, receivables: list[Receivable]) -> list[tuple[Receivable, Decimal]]:
    """Apply the payment's unallocated amount to the receivables in the given order."""
    done: list[tuple[Receivable, Decimal]] = []
    for r in receivables:
        if payment.unallocated <= ZERO:
            break
        if r.open_amount <= ZERO or r.status == "written_off":
            continue
        take = min(r.open_amount, payment.unallocated)
        session.add(Allocation(payment_id=payment.id, receivable_id=r.id, amount=take, applied_on=payment.paid_on))
        r.open_amount -= take
        payment.unallocated -= take
        refresh_status(r)
        done.append((r, take))
    return done


async def apply_write_off(session: AsyncSession, wo: WriteOff, *, on: date, actor: str, channel: str,
                          now: datetime) -> None:
    """Book an approved write-off: the open balance goes to the write-off register, recovery continues."""
    r = await session.get(Receivable, wo.receivable_id)
    if r is None:
        raise LedgerError("receivable not found")
    amount = min(wo.amount, r.open_amount)
    if amount <= ZERO:
        raise LedgerError(f"{r.invoice_no} has no open balance to write off")
    wo.amount = amount
    wo.status = "approved"
    wo.written_off_on = on
    r.open_amount -= amount
    r.status = "written_off"
    audit.record(session, at=now, actor=actor, channel=channel, action="writeoff.apply", entity="receivable",
                 entity_id=r.invoice_no, amount=amount, reason=wo.reason)


async def balance_check(session: AsyncSession, receivable_id: int) -> Decimal:
    """Recompute a receivable's open balance from its parts (for tests and `arbot check`)."""
    r = await session.get(Receivable, receivable_id)
    alloc = (await session.execute(select(func.coalesce(func.sum(type_coerce(Allocation.amount, BigInteger)), 0))
                                   .where(Allocation.receivable_id == receivable_id))).scalar_one()
    wo = (await session.execute(select(func.coalesce(func.sum(type_coerce(WriteOff.amount, BigInteger)), 0))
                                .where(WriteOff.receivable_id == receivable_id, WriteOff.status == "approved"))).scalar_one()
    # sums are taken over raw cents (type_coerce) so they stay exact integers
    return r.amount - Decimal(int(alloc)) / 100 - Decimal(int(wo)) / 100


async def paid_since(session: AsyncSession, receivable_id: int, since: date) -> Decimal:
    """What was allocated to a receivable from payments dated on or after ``since``."""
    cents = (await session.execute(select(func.coalesce(func.sum(type_coerce(Allocation.amount, BigInteger)), 0))
                                   .where(Allocation.receivable_id == receivable_id,
                                          Allocation.applied_on >= since))).scalar_one()
    return Decimal(int(cents)) / 100


@dataclass
class RecoveryResult:
    payment: Payment
    recovered: Decimal                                    # the part that went to the written-off invoice
    allocations: list[tuple[Receivable, Decimal]]         # any rest, to the customer's other open invoices
    duplicate: bool = False


async def record_recovery(session: AsyncSession, *, receivable: Receivable, amount: Decimal, paid_on: date,
                          reference: str | None, actor: str, channel: str, now: datetime) -> RecoveryResult:
    """A payment on a written-off invoice (核销后追偿): it reverses that much of the loss.

    Booked as the textbook entry, reinstate then collect: the recovered part is a reversing
    approved ``WriteOff`` row (negative amount, dated the payment day, reason ``recovery of #id``)
    and an allocation of the payment to the invoice, so the open balance stays 0 and both
    invariants above, ``balance_check`` and aging as of any date stay exact. The original
    write-off keeps its amount in the register and counts the recovery in ``recovered_amount``
    (net loss = amount − recovered_amount). What exceeds the loss still to recover is allocated
    like any payment (the customer's other open invoices in that currency, oldest due first) and
    the rest stays on account. The same bank reference twice changes nothing, as in ``record_payment``.
    """
    if amount <= ZERO:
        raise LedgerError("amount must be positive")
    if reference:
        existing = (await session.execute(select(Payment).where(Payment.reference == reference))).scalar_one_or_none()
        if existing is not None:
            if existing.amount != amount or existing.customer_id != receivable.customer_id:
                raise LedgerError(f"reference {reference} already recorded with another amount or customer")
            return RecoveryResult(existing, ZERO, [], duplicate=True)
    write_offs = (await session.execute(select(WriteOff).where(
        WriteOff.receivable_id == receivable.id, WriteOff.status == "approved", WriteOff.amount > 0)
        .order_by(WriteOff.id))).scalars().all()
    recoverable = sum((w.amount - w.recovered_amount for w in write_offs), ZERO)
    if recoverable <= ZERO:
        raise LedgerError(f"{receivable.invoice_no} has no written-off amount left to recover")
    payment = Payment(customer_id=receivable.customer_id, amount=amount, unallocated=amount, paid_on=paid_on,
                      reference=reference or None, invoice_no=receivable.invoice_no, currency=receivable.currency,
                      recorded_by=actor, created_at=now)
    session.add(payment)
    await session.flush()
    take = min(amount, recoverable)
    left, sources = take, []
    for w in write_offs:
        part = min(left, w.amount - w.recovered_amount)
        if part > ZERO:
            w.recovered_amount += part
            sources.append(w.id)
            left -= part
    session.add(WriteOff(receivable_id=receivable.id, amount=-take, reason="recovery of " + ", ".join(f"#{i}" for i in sources),
                         status="approved", requested_by=actor, requested_at=now, approvals={}, approvers_needed=[],
                         written_off_on=paid_on, recovered_amount=ZERO))
    session.add(Allocation(payment_id=payment.id, receivable_id=receivable.id, amount=take, applied_on=paid_on))
    payment.unallocated -= take          # reinstated by the reversal and collected at once: open stays 0
    rest: list[tuple[Receivable, Decimal]] = []
    if payment.unallocated > ZERO:
        others = (await session.execute(
            select(Receivable).where(Receivable.customer_id == receivable.customer_id, Receivable.open_amount > 0,
                                     Receivable.currency == receivable.currency, Receivable.status != "written_off")
            .order_by(Receivable.due_date, Receivable.issue_date, Receivable.id))).scalars().all()
        rest = await allocate(session, payment, list(others))
    await session.flush()
    audit.record(session, at=now, actor=actor, channel=channel, action="payment.recovery", entity="receivable",
                 entity_id=receivable.invoice_no, amount=amount, paid_on=paid_on, reference=reference,
                 recovered=take, write_offs=sources, allocations={r.invoice_no: a for r, a in rest},
                 unallocated=payment.unallocated)
    return RecoveryResult(payment, take, rest)
