"""Payment claims (称已付款): a rep says the customer paid; finance confirms it against the bank.

A claim is a question for finance, never a payment: the ledger changes only when finance books
the receipt with /paid, which closes the claims on the invoices it pays (``close_paid``). A
claimed figure above the invoice's open balance is kept as written and flagged (``over``), so it
is checked rather than accepted. Session first, never commits.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.models import Customer, Payment, PaymentClaim, Person, Receivable
from storage.scope import Scope

ZERO = Decimal("0.00")


def excess(amount: Decimal | None, open_amount: Decimal) -> Decimal:
    """How much a claimed or promised amount exceeds the open balance (0 when it does not)."""
    if amount is None or amount <= open_amount:
        return ZERO
    return amount - open_amount


async def record_claim(session: AsyncSession, *, receivable: Receivable, amount: Decimal | None, person_id: str,
                       at: datetime, channel: str, followup_id: int | None = None) -> PaymentClaim:
    """Record "the customer paid" for finance; a second claim on an invoice with one still open
    updates that one (the rep repeating themselves is one question for finance, not two)."""
    existing = (await session.execute(select(PaymentClaim).where(
        PaymentClaim.receivable_id == receivable.id, PaymentClaim.status == "open"))).scalars().first()
    claim = existing or PaymentClaim(receivable_id=receivable.id, status="open", note="")
    claim.amount, claim.open_then = amount, receivable.open_amount
    claim.claimed_by, claim.claimed_at, claim.followup_id = person_id, at, followup_id
    if existing is None:
        session.add(claim)
    await session.flush()
    audit.record(session, at=at, actor=person_id, channel=channel, action="claim.record", entity="receivable",
                 entity_id=receivable.invoice_no, claim=claim.id, amount=amount, open=receivable.open_amount)
    return claim


@dataclass
class OpenClaim:
    claim: PaymentClaim
    receivable: Receivable
    customer: Customer
    rep: Person | None

    @property
    def over(self) -> Decimal:
        return excess(self.claim.amount, self.claim.open_then)


async def open_claims(session: AsyncSession, scope: Scope = Scope(), limit: int = 50) -> list[OpenClaim]:
    stmt = (select(PaymentClaim, Receivable, Customer).join(Receivable, Receivable.id == PaymentClaim.receivable_id)
            .join(Customer, Customer.id == Receivable.customer_id).where(PaymentClaim.status == "open"))
    stmt = scope.apply(stmt, joined_customer=True).order_by(PaymentClaim.claimed_at, PaymentClaim.id).limit(limit)
    out = []
    for claim, r, c in (await session.execute(stmt)).all():
        out.append(OpenClaim(claim, r, c, await session.get(Person, claim.claimed_by)))
    return out


async def close_paid(session: AsyncSession, payment: Payment, receivable_ids: list[int], *, actor: str,
                     now: datetime) -> list[PaymentClaim]:
    """Close the open claims on the invoices this payment paid: finance has booked the money."""
    if not receivable_ids:
        return []
    claims = list((await session.execute(select(PaymentClaim).where(
        PaymentClaim.receivable_id.in_(receivable_ids), PaymentClaim.status == "open"))).scalars())
    for c in claims:
        c.status, c.payment_id, c.closed_by, c.closed_at = "closed", payment.id, actor, now
    return claims


async def reopen_for_reversal(session: AsyncSession, payment: Payment) -> int:
    """A reversed payment did not settle the claims it closed: they are open again."""
    res = await session.execute(update(PaymentClaim).where(PaymentClaim.payment_id == payment.id,
                                                           PaymentClaim.status == "closed")
                                .values(status="open", payment_id=None, closed_by=None, closed_at=None))
    return res.rowcount or 0


async def withdraw(session: AsyncSession, receivable: Receivable, *, actor: str, now: datetime) -> int:
    """The rep corrected their reply and no longer says it was paid: the open claim closes."""
    res = await session.execute(update(PaymentClaim).where(PaymentClaim.receivable_id == receivable.id,
                                                           PaymentClaim.status == "open")
                                .values(status="withdrawn", closed_by=actor, closed_at=now))
    return res.rowcount or 0


async def dismiss(session: AsyncSession, claim: PaymentClaim, *, actor: str, note: str, now: datetime,
                  channel: str) -> None:
    """Finance found no such receipt: the claim closes without a payment, with the reason."""
    claim.status, claim.closed_by, claim.closed_at, claim.note = "dismissed", actor, now, note
    r = await session.get(Receivable, claim.receivable_id)
    audit.record(session, at=now, actor=actor, channel=channel, action="claim.dismiss", entity="receivable",
                 entity_id=r.invoice_no, claim=claim.id, note=note)
