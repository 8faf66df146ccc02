"""/credit (/红字): finance records a credit note (红字发票) against the invoice it corrects.

``/credit <original invoice> <amount> <credit note number> [date] [reason…]``. The amount is what
the note takes off; it may be written as the note shows it, negative (``-2,000.00``,
``(500.00)``), or plainly (``2000``). The original's open balance drops by it from the note's
date (storage.ledger.record_credit_note); a note above what is still open leaves the rest on the
customer's account as a credit, shown with unapplied cash. Notes above the invoice's amount, on
written-off invoices, or under a number already used are refused. A note booked in error is
reversed like a payment: ``/reverse <credit note number> <reason>``.
"""
from __future__ import annotations

from decimal import Decimal

from bot.core.arguments import InvoiceArg, happened_on
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import EDITORS
from bot.core.router import Router
from domain.money import AmountError, parse_money
from storage import ledger
from storage.models import Customer

router = Router("credit_notes")
ZERO = Decimal("0.00")


@router.command("credit", aliases=("红字",), roles=EDITORS, args=InvoiceArg())
async def credit_cmd(session, receivable, rest, person, clock, message) -> Reply:
    """Record a credit note (红字发票) against an invoice: its open balance drops by the amount."""
    words = rest.split()
    if len(words) < 2:
        raise UsageError("missing_argument")
    try:
        amount, currency = parse_money(words[0])
    except AmountError:
        raise UsageError("bad_amount", value=words[0]) from None
    if currency is not None and currency != receivable.currency:
        raise UserError("credit_currency", invoice=receivable.invoice_no, currency=receivable.currency)
    amount = abs(amount)                 # as printed on the note (negative) or as what it takes off
    if amount == ZERO:
        raise UsageError("bad_amount", value=words[0])
    number = words[1]
    on, tail = happened_on(words[2:], clock.today())
    open_before = receivable.open_amount
    try:
        res = await ledger.record_credit_note(session, original=receivable, number=number, amount=amount,
                                              issued_on=on, reason=" ".join(tail), actor=person.id,
                                              channel=message.platform, now=clock.now())
    except ledger.CreditAboveInvoice as e:
        raise UserError("credit_above_invoice", invoice=e.invoice_no, room=e.room,
                        currency=receivable.currency) from None
    except ledger.LedgerError as e:
        raise UserError("ledger", reason=str(e)) from None
    customer = await session.get(Customer, receivable.customer_id)
    return Reply("payments/credit_note.md.j2", {"res": res, "r": receivable, "customer": customer,
                                                "open_before": open_before, "reason": " ".join(tail)})
