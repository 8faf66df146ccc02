"""Acceptance bills (承兑汇票): a customer pays with a bill instead of a transfer.

Received, the bill is booked as the customer's payment (``ledger.record_payment``, reference
``承兑:<票号>``): it settles the invoices like money does, since the customer's debt is discharged
by the bill. What the company then holds is the bill, watched until it is collected at maturity
(托收), endorsed on to a supplier (背书转让) or discounted at a bank (贴现). Session first, never
commits; every change audited.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, ledger
from storage.models import AcceptanceBill, Customer
from storage.scope import Scope

KINDS = {"bank": ("银承", "银行承兑", "银行承兑汇票", "bank"), "commercial": ("商承", "商业承兑", "商业承兑汇票", "commercial")}


def kind_of(word: str) -> str | None:
    w = word.strip().lower()
    return next((k for k, words in KINDS.items() if w in words), None)


class BillError(ValueError):
    def __init__(self, code: str, **data):
        super().__init__(code)
        self.code, self.data = code, data


@dataclass
class BillResult:
    bill: AcceptanceBill
    payment: ledger.PaymentResult


async def receive(session: AsyncSession, *, customer: Customer, amount: Decimal, bill_no: str, kind: str,
                  acceptor: str, maturity: date, received_on: date, invoice_no: str = "", actor: str,
                  channel: str, now: datetime, reference: str = "") -> BillResult:
    """Record a bill received from a customer and book it as their payment, under ``reference``
    (an imported row's own 收款单号, so that importing the file again finds it) else ``承兑:<票号>``."""
    if (await session.execute(select(AcceptanceBill).where(AcceptanceBill.bill_no == bill_no))).scalar_one_or_none():
        raise BillError("bill_exists", bill_no=bill_no)
    if maturity <= received_on:
        raise BillError("bill_matured", maturity=maturity)
    paid = await ledger.record_payment(session, customer=customer, amount=amount, paid_on=received_on,
                                       reference=reference or f"承兑:{bill_no}", invoice_no=invoice_no, actor=actor,
                                       channel=channel, now=now)
    bill = AcceptanceBill(bill_no=bill_no, kind=kind, acceptor=acceptor, amount=amount, received_on=received_on,
                          maturity=maturity, customer_id=customer.id, payment_id=paid.payment.id, status="held",
                          endorsed_to="", recorded_by=actor, created_at=now)
    session.add(bill)
    await session.flush()
    audit.record(session, at=now, actor=actor, channel=channel, action="bill.receive", entity="acceptance_bill",
                 entity_id=bill_no, customer=customer.code, kind=kind, acceptor=acceptor, amount=amount,
                 maturity=maturity, payment=paid.payment.id)
    return BillResult(bill, paid)


async def by_no(session: AsyncSession, bill_no: str) -> AcceptanceBill:
    bill = (await session.execute(select(AcceptanceBill).where(AcceptanceBill.bill_no == bill_no))).scalar_one_or_none()
    if bill is None:
        raise BillError("unknown_bill", bill_no=bill_no)
    return bill


async def dispose(session: AsyncSession, bill: AcceptanceBill, *, how: str, on: date, actor: str, channel: str,
                  now: datetime, endorsed_to: str = "", interest: Decimal | None = None) -> AcceptanceBill:
    """The bill leaves our hands: ``collected`` (托收, at or after maturity), ``endorsed`` (背书转让
    to ``endorsed_to``) or ``discounted`` (贴现, ``interest`` the bank kept). Only a held bill."""
    if bill.status != "held":
        raise BillError("bill_not_held", bill_no=bill.bill_no, status=bill.status)
    if how == "collected" and on < bill.maturity:
        raise BillError("bill_not_due", bill_no=bill.bill_no, maturity=bill.maturity)
    if how == "endorsed" and not endorsed_to:
        raise BillError("bill_endorsee_missing", bill_no=bill.bill_no)
    bill.status, bill.disposed_on = how, on
    bill.endorsed_to = endorsed_to
    bill.discount_interest = interest
    audit.record(session, at=now, actor=actor, channel=channel, action=f"bill.{how}", entity="acceptance_bill",
                 entity_id=bill.bill_no, on=on, endorsed_to=endorsed_to, interest=interest)
    return bill


async def held(session: AsyncSession, scope: Scope) -> list[tuple[AcceptanceBill, Customer]]:
    rows = (await session.execute(select(AcceptanceBill, Customer).join(Customer, Customer.id == AcceptanceBill.customer_id)
                                  .where(AcceptanceBill.status == "held").order_by(AcceptanceBill.maturity,
                                                                                   AcceptanceBill.id))).all()
    return [(b, c) for b, c in rows if scope.allows_customer(c)]


async def to_remind(session: AsyncSession, today: date, days: int) -> list[tuple[AcceptanceBill, Customer, str]]:
    """Held bills to remind finance of, with the stage: ``soon`` (maturing within ``days``, once)
    and ``due`` (matured and still held: collect it; once, on or after the maturity day)."""
    rows = (await session.execute(select(AcceptanceBill, Customer).join(Customer, Customer.id == AcceptanceBill.customer_id)
                                  .where(AcceptanceBill.status == "held",
                                         AcceptanceBill.maturity <= today + timedelta(days=days))
                                  .order_by(AcceptanceBill.maturity, AcceptanceBill.id))).all()
    out = []
    for b, c in rows:
        if b.maturity <= today and (b.reminded_on is None or b.reminded_on < b.maturity):
            out.append((b, c, "due"))
        elif b.maturity > today and b.reminded_on is None:
            out.append((b, c, "soon"))
    return out
