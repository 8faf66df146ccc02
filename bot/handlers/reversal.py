"""/reverse (/冲销): finance undoes a payment booked in error or returned by the bank.

``/reverse <payment #|bank serial> <reason>``. The payment's allocations are removed, every invoice
it paid gets that much back (status and aging follow), a recovery on a written-off invoice is
written off again, and payment claims it had closed are open again (storage.ledger.reverse_payment,
storage.claims). The payment stays in the ledger marked reversed; the audit log keeps who, when,
why and what was undone. Only finance may do it (bot.core.permissions.REVERSERS).
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from bot.core.arguments import row_number
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import REVERSERS
from bot.core.router import Router
from storage import ledger
from storage.customers import open_receivables
from storage.models import Customer, Payment

router = Router("reversal")
ZERO = Decimal("0.00")


async def find_payment(session, key: str) -> Payment | None:
    """``#12`` is payment 12; otherwise a bank serial first, then a bare number as the payment's id."""
    if key.startswith("#"):
        number = row_number(key[1:])
        return await session.get(Payment, number) if number is not None else None
    p = (await session.execute(select(Payment).where(Payment.reference == key))).scalar_one_or_none()
    if p is None and row_number(key) is not None:
        p = await session.get(Payment, row_number(key))
    return p


@router.command("reverse", aliases=("冲销",), roles=REVERSERS)
async def reverse_cmd(session, args, person, clock, message) -> Reply:
    """Reverse a payment (by its number or bank serial) with the reason: its allocations are undone."""
    key, _, reason = args.strip().partition(" ")
    reason = reason.strip()
    if not key or not reason:
        raise UsageError("missing_argument")
    payment = await find_payment(session, key)
    if payment is None:
        raise UserError("unknown_payment", key=key)
    if payment.reversed_at is not None:
        raise UserError("already_reversed", id=payment.id, at=payment.reversed_at, reason=payment.reversal_reason)
    now = clock.now()
    try:
        res = await ledger.reverse_payment(session, payment, reason=reason, actor=person.id, channel=message.platform,
                                           now=now)
    except ledger.WrittenOffSince as e:
        raise UserError("reverse_written_off", id=payment.id, invoice=e.invoice_no) from None
    except ledger.LedgerError as e:
        raise UserError("ledger", reason=str(e)) from None
    customer = await session.get(Customer, payment.customer_id)
    remaining: dict[str, Decimal] = {}
    for r in await open_receivables(session, customer.id):
        remaining[r.currency] = remaining.get(r.currency, ZERO) + r.open_amount
    return Reply("payments/reversed.md.j2", {"payment": payment, "customer": customer, "undone": res.undone,
                                             "recovery": res.recovery_undone, "reopened": res.claims_reopened,
                                             "remaining": remaining, "reason": reason})
