"""Receivables, payments and their allocation, write-offs: the ledger's commands.

Invariant kept by every function here, in the caller's transaction:
    receivable.open_amount = amount − Σ allocations − Σ approved write-offs  (never below 0)
    payment.unallocated   = amount − Σ its allocations                        (never below 0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, claims
from storage.models import Allocation, Customer, Payment, Promise, Receivable, WriteOff

ZERO = Decimal("0.00")


class LedgerError(ValueError):
    """A ledger command that cannot be carried out as asked (nothing was changed)."""


class WrittenOffSince(LedgerError):
    """A payment cannot be reversed: an invoice it paid was written off afterwards."""

    def __init__(self, invoice_no: str):
        super().__init__(f"{invoice_no} was written off after this payment; reverse the write-off first")
        self.invoice_no = invoice_no


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
    claims_closed: int = 0        # reps' "customer paid" claims on the invoices it paid (storage/claims.py)
    # what was left after the open invoices, recovered on written-off ones (核销后追偿), not 预收
    recoveries: list[tuple[Receivable, Decimal]] = field(default_factory=list)


async def record_payment(session: AsyncSession, *, customer: Customer, amount: Decimal, paid_on: date,
                         reference: str | None, invoice_no: str = "", currency: str = "CNY",
                         actor: str, channel: str, now: datetime,
                         received: tuple[Decimal, str, str] | None = None,
                         first: tuple[str, ...] = ()) -> PaymentResult:
    """Record a payment and allocate it: the named invoice first, then oldest due first.
    ``first``: more invoices to pay before the oldest, in this order (a bank line naming several,
    or the set of invoices its amount adds up to exactly: storage/bank.py).

    Re-recording the same bank reference changes nothing (imports are re-run); the same reference
    with a different amount or customer is refused, since that is a typo, not a re-run.
    ``received``: (amount, currency, rate) when the money came in another currency than ``currency``
    and was converted at ``rate`` (yuan per unit of the foreign one); kept on the payment and audited.
    """
    if amount <= ZERO:
        raise LedgerError("amount must be positive")
    if reference:
        existing = (await session.execute(select(Payment).where(Payment.reference == reference))).scalar_one_or_none()
        if existing is not None:
            if existing.amount != amount or existing.customer_id != customer.id or existing.kind != "receipt":
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
    if received is not None:
        payment.received_amount, payment.received_currency, payment.fx_rate = received
    session.add(payment)
    await session.flush()
    open_items = (await session.execute(
        select(Receivable).where(Receivable.customer_id == customer.id, Receivable.open_amount > 0,
                                 Receivable.currency == currency, Receivable.status != "written_off")
        .order_by(Receivable.due_date, Receivable.issue_date, Receivable.id))).scalars().all()
    if named is not None:
        open_items = [named] + [r for r in open_items if r.id != named.id]
    if first:
        rank = {no: i for i, no in enumerate(first)}
        open_items = sorted(open_items, key=lambda r: rank.get(r.invoice_no, len(rank)))    # stable: the rest stay oldest first
    allocations = await allocate(session, payment, open_items)
    # a customer still owes what was written off (核销后仍保留追偿权): money left after the open
    # invoices recovers those losses, oldest due first, before anything is kept as an advance
    recoveries = []
    if payment.unallocated > ZERO:
        for r in (await session.execute(select(Receivable).where(
                Receivable.customer_id == customer.id, Receivable.currency == currency,
                Receivable.status == "written_off").order_by(Receivable.due_date, Receivable.id))).scalars().all():
            took, _ = await _recover(session, payment, r, payment.unallocated, actor=actor, now=now)
            if took > ZERO:
                recoveries.append((r, took))
            if payment.unallocated <= ZERO:
                break
    audit.record(session, at=now, actor=actor, channel=channel, action="payment.record", entity="payment",
                 entity_id=payment.id, customer=customer.code, amount=amount, paid_on=paid_on,
                 reference=reference, allocations={r.invoice_no: a for r, a in allocations},
                 recovered={r.invoice_no: a for r, a in recoveries},
                 unallocated=payment.unallocated, currency=currency,
                 **({"received": received[0], "received_currency": received[1], "fx_rate": received[2]}
                    if received else {}))
    # booked money answers the claims on what it paid, whether typed in chat or imported from the bank
    closed = await claims.close_paid(session, payment, [r.id for r, _ in allocations + recoveries], actor=actor,
                                     now=now)
    return PaymentResult(payment, allocations, claims_closed=len(closed), recoveries=recoveries)


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
    claims_closed: int = 0


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
            if existing.amount != amount or existing.customer_id != receivable.customer_id or existing.kind != "receipt":
                raise LedgerError(f"reference {reference} already recorded with another amount or customer")
            return RecoveryResult(existing, ZERO, [], duplicate=True)
    if await recoverable(session, receivable) <= ZERO:
        raise LedgerError(f"{receivable.invoice_no} has no written-off amount left to recover")
    payment = Payment(customer_id=receivable.customer_id, amount=amount, unallocated=amount, paid_on=paid_on,
                      reference=reference or None, invoice_no=receivable.invoice_no, currency=receivable.currency,
                      recorded_by=actor, created_at=now)
    session.add(payment)
    await session.flush()
    take, sources = await _recover(session, payment, receivable, amount, actor=actor, now=now)
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
    closed = await claims.close_paid(session, payment, [receivable.id] + [r.id for r, _ in rest], actor=actor, now=now)
    return RecoveryResult(payment, take, rest, claims_closed=len(closed))


async def _recover(session: AsyncSession, payment: Payment, receivable: Receivable, most: Decimal, *, actor: str,
                   now: datetime) -> tuple[Decimal, list[int]]:
    """Recover up to ``most`` of the payment on a written-off invoice, booked as record_recovery
    says (a reversing approved write-off row and an allocation; the open balance stays 0):
    (the amount taken, the write-offs it came from)."""
    write_offs = (await session.execute(select(WriteOff).where(
        WriteOff.receivable_id == receivable.id, WriteOff.status == "approved", WriteOff.amount > 0)
        .order_by(WriteOff.id))).scalars().all()
    take = min(most, sum((w.amount - w.recovered_amount for w in write_offs), ZERO))
    if take <= ZERO:
        return ZERO, []
    left, sources = take, []
    for w in write_offs:
        part = min(left, w.amount - w.recovered_amount)
        if part > ZERO:
            w.recovered_amount += part
            sources.append(w.id)
            left -= part
    session.add(WriteOff(receivable_id=receivable.id, amount=-take, reason="recovery of " + ", ".join(f"#{i}" for i in sources),
                         status="approved", requested_by=actor, requested_at=now, approvals={}, approvers_needed=[],
                         written_off_on=payment.paid_on, recovered_amount=ZERO))
    session.add(Allocation(payment_id=payment.id, receivable_id=receivable.id, amount=take, applied_on=payment.paid_on))
    payment.unallocated -= take          # reinstated by the reversal and collected at once: open stays 0
    return take, sources


# -- credit notes (红字发票) ------------------------------------------------------------------------

@dataclass
class CreditNoteResult:
    credit_note: Payment                               # kind "credit_note", reference = its number
    original: Receivable
    applied: Decimal                                   # taken off the original invoice
    duplicate: bool = False                            # this number was already recorded: nothing changed


async def record_credit_note(session: AsyncSession, *, original: Receivable, number: str, amount: Decimal,
                             issued_on: date, reason: str = "", actor: str, channel: str,
                             now: datetime) -> CreditNoteResult:
    """A credit note (红字发票) numbered ``number`` for ``amount`` (positive: how much it takes off)
    against ``original``. It reduces the original's open balance from ``issued_on`` on (an
    allocation of the note, so aging as of any date follows it); what exceeds that balance (the
    invoice was paid already) stays on the customer's account as a credit, like unapplied cash.
    Refused: a note above the original's amount less earlier notes, a note on a written-off
    invoice, a number already used by a receipt or for another invoice or amount. The same number
    with the same invoice and amount again changes nothing (imports are re-run)."""
    if amount <= ZERO:
        raise LedgerError("a credit note takes a positive amount off the invoice")
    if not number:
        raise LedgerError("a credit note needs its own number")
    existing = (await session.execute(select(Payment).where(Payment.reference == number))).scalar_one_or_none()
    if existing is not None:
        if existing.kind == "credit_note" and existing.invoice_no == original.invoice_no and existing.amount == amount:
            return CreditNoteResult(existing, original, ZERO, duplicate=True)
        raise LedgerError(f"number {number} is already recorded ({existing.kind} of {existing.amount})")
    if original.status == "written_off":
        raise LedgerError(f"{original.invoice_no} is written off")
    credited = Decimal(int((await session.execute(
        select(func.coalesce(func.sum(type_coerce(Payment.amount, BigInteger)), 0)).where(
            Payment.kind == "credit_note", Payment.invoice_no == original.invoice_no,
            Payment.reversed_at.is_(None)))).scalar_one())) / 100
    if credited + amount > original.amount:
        raise CreditAboveInvoice(original.invoice_no, original.amount - credited)
    note = Payment(kind="credit_note", customer_id=original.customer_id, amount=amount, unallocated=amount,
                   paid_on=issued_on, reference=number, invoice_no=original.invoice_no, currency=original.currency,
                   recorded_by=actor, created_at=now)
    session.add(note)
    await session.flush()
    done = await allocate(session, note, [original])
    applied = sum((a for _, a in done), ZERO)
    audit.record(session, at=now, actor=actor, channel=channel, action="credit_note.record", entity="receivable",
                 entity_id=original.invoice_no, credit_note=number, amount=amount, currency=original.currency,
                 issued_on=issued_on, applied=applied, on_account=note.unallocated, reason=reason, payment=note.id)
    return CreditNoteResult(note, original, applied)


class CreditAboveInvoice(LedgerError):
    def __init__(self, invoice_no: str, room: Decimal):
        super().__init__(f"credit notes on {invoice_no} would exceed its amount (room {room})")
        self.invoice_no, self.room = invoice_no, room


# -- checks before booking, and reversal ---------------------------------------------------------

async def open_capacity(session: AsyncSession, *, customer_id: int, currency: str,
                        named: Receivable | None = None) -> Decimal:
    """What a payment in ``currency`` can settle for this customer before any of it is left on
    account: the open balance of its invoices in that currency (written-off ones excluded), plus
    the losses still to recover on its written-off invoices in that currency. (``named`` is kept
    for the callers; a named written-off invoice is among those.)"""
    cents = (await session.execute(select(func.coalesce(func.sum(type_coerce(Receivable.open_amount, BigInteger)), 0))
                                   .where(Receivable.customer_id == customer_id, Receivable.currency == currency,
                                          Receivable.open_amount > 0, Receivable.status != "written_off"))).scalar_one()
    total = Decimal(int(cents)) / 100
    # money beyond the open invoices recovers written-off losses (record_payment, record_recovery)
    total += await recoverable_total(session, customer_id=customer_id, currency=currency)
    return total.quantize(Decimal("0.01"))


async def recoverable_total(session: AsyncSession, *, customer_id: int, currency: str) -> Decimal:
    """The customer's written-off losses in ``currency`` not yet recovered."""
    total = ZERO
    for r in (await session.execute(select(Receivable).where(
            Receivable.customer_id == customer_id, Receivable.currency == currency,
            Receivable.status == "written_off"))).scalars():
        total += await recoverable(session, r)
    return total


async def recoverable(session: AsyncSession, receivable: Receivable) -> Decimal:
    """The written-off loss on an invoice not yet recovered."""
    wos = (await session.execute(select(WriteOff).where(WriteOff.receivable_id == receivable.id,
                                                       WriteOff.status == "approved", WriteOff.amount > 0))).scalars().all()
    return sum((w.amount - w.recovered_amount for w in wos), ZERO)


async def likely_duplicate(session: AsyncSession, *, customer_id: int, amount: Decimal, currency: str,
                           paid_on: date, reference: str | None) -> Payment | None:
    """A payment already booked for the same customer, amount, currency and day where at least one of
    the two has no bank serial: most likely the same money entered twice (two different serials
    are two receipts)."""
    stmt = select(Payment).where(Payment.customer_id == customer_id, Payment.amount == amount,
                                 Payment.currency == currency, Payment.paid_on == paid_on,
                                 Payment.reversed_at.is_(None), Payment.kind == "receipt")
    if reference:
        stmt = stmt.where(Payment.reference.is_(None))
    return (await session.execute(stmt.order_by(Payment.id))).scalars().first()


@dataclass
class ReversalResult:
    payment: Payment
    undone: list[tuple[Receivable, Decimal]]     # allocations removed, receivable reopened by that much
    recovery_undone: Decimal = ZERO              # a recovery on a written-off invoice, written off again
    claims_reopened: int = 0                     # claims this payment had closed, open again


async def reverse_payment(session: AsyncSession, payment: Payment, *, reason: str, actor: str, channel: str,
                          now: datetime) -> ReversalResult:
    """Reverse (冲销) a payment booked in error or returned by the bank.

    Its allocations are removed and each receivable gets that much back (status recomputed), so
    the ledger, aging as of any date and the KPIs are what they would have been without it; a
    recovery on a written-off invoice is undone too (its reversing write-off row removed and the
    recovered amount taken back); claims it closed and promises judged kept since it was booked are
    open again. The payment row stays, marked reversed with who, when and why,
    and the audit entry keeps every allocation that was undone. Reversing twice is refused."""
    if payment.reversed_at is not None:
        raise LedgerError(f"payment {payment.id} already reversed")
    rows = (await session.execute(select(Allocation, Receivable).join(Receivable, Receivable.id == Allocation.receivable_id)
                                  .where(Allocation.payment_id == payment.id).order_by(Allocation.id))).all()
    undone: list[tuple[Receivable, Decimal]] = []
    recovery = ZERO
    for alloc, r in rows:
        if r.status == "written_off":
            rec = await _undo_recovery(session, payment, r, alloc.amount)
            if rec is None:
                raise WrittenOffSince(r.invoice_no)
            recovery += rec
        else:
            r.open_amount += alloc.amount
            refresh_status(r)
            undone.append((r, alloc.amount))
        await session.delete(alloc)
    payment.unallocated = ZERO
    payment.reversed_at, payment.reversed_by, payment.reversal_reason = now, actor, reason
    reopened = await claims.reopen_for_reversal(session, payment)
    # promises judged kept since this payment was booked were judged on money that did not stay:
    # open again, so the promise watch judges them anew
    if undone and payment.created_at is not None:
        for p in (await session.execute(select(Promise).where(
                Promise.receivable_id.in_([r.id for r, _ in undone]), Promise.status == "kept",
                Promise.closed_at >= payment.created_at))).scalars():
            p.status, p.closed_at = "open", None
    await session.flush()
    audit.record(session, at=now, actor=actor, channel=channel, action="payment.reverse", entity="payment",
                 entity_id=payment.id, amount=payment.amount, currency=payment.currency, paid_on=payment.paid_on,
                 reference=payment.reference, reason=reason, recovery_undone=recovery,
                 allocations={r.invoice_no: a for r, a in undone})
    return ReversalResult(payment, undone, recovery, reopened)


async def _undo_recovery(session: AsyncSession, payment: Payment, r: Receivable, amount: Decimal) -> Decimal | None:
    """The reversing write-off row ``record_recovery`` booked for this payment (same invoice, day,
    amount and moment); removed, and the recovered amount taken back from the write-offs, newest
    first. None when there is no such row (the invoice was written off after the payment)."""
    row = (await session.execute(select(WriteOff).where(
        WriteOff.receivable_id == r.id, WriteOff.status == "approved", WriteOff.amount == -amount,
        WriteOff.written_off_on == payment.paid_on, WriteOff.requested_at == payment.created_at))).scalars().first()
    if row is None:
        return None
    left = amount
    for w in (await session.execute(select(WriteOff).where(WriteOff.receivable_id == r.id, WriteOff.status == "approved",
                                                          WriteOff.amount > 0).order_by(WriteOff.id.desc()))).scalars():
        part = min(left, w.recovered_amount)
        w.recovered_amount -= part
        left -= part
    await session.delete(row)
    return amount
