"""/bill (/承兑, /汇票): acceptance bills (承兑汇票) customers pay with.

``/承兑`` lists the bills held, soonest maturity first (scoped like the ledger).
``/承兑 <发票号或客户> <金额> <票号> <银承|商承> <承兑人> <到期日>`` records a bill received: it is
booked as the customer's payment (the named invoice first, then the oldest) and watched until
maturity (bot/jobs/bills.py reminds finance a week before and on the day).
``/承兑 托收|背书|贴现 <票号> …`` records how it left our hands: collected at maturity, endorsed on
(``背书 <票号> <受让人>``) or discounted (``贴现 <票号> [贴现息]``). Writing is finance's.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bot.core.arguments import target_named
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import EDITORS, READERS, may_use
from bot.core.router import Router
from domain.dates import DateError, parse_date
from domain.money import AmountError, parse_amount
from storage import bills

router = Router("bills")
DISPOSALS = {"托收": "collected", "collect": "collected", "背书": "endorsed", "背书转让": "endorsed",
             "endorse": "endorsed", "贴现": "discounted", "discount": "discounted"}


@router.command("bill", aliases=("承兑", "汇票", "承兑汇票"), roles=READERS)
async def bill_cmd(session, scope, args, person, clock, message) -> Reply:
    """Acceptance bills: list those held; record one received; collected, endorsed or discounted."""
    words = args.split()
    if not words:
        return Reply("bills/list.md.j2", {"rows": await bills.held(session, scope), "today": clock.today()})
    if not may_use(person, EDITORS):
        raise UserError("forbidden", command="bill")
    now, today = clock.now(), clock.today()
    try:
        if words[0] in DISPOSALS:
            how = DISPOSALS[words[0]]
            if len(words) < 2:
                raise UsageError("missing_argument")
            bill = await bills.by_no(session, words[1])
            interest = None
            if how == "discounted" and len(words) > 2:
                interest = _amount(words[2])
            await bills.dispose(session, bill, how=how, on=today, actor=person.id, channel=message.platform, now=now,
                                endorsed_to=" ".join(words[2:]) if how == "endorsed" else "", interest=interest)
            return Reply("bills/disposed.md.j2", {"bill": bill})
        if len(words) < 6:
            raise UsageError("missing_argument")
        target, amount_word = words[:2]
        terms = bill_terms(words[2:6], today)
        customer, invoice = await target_named(session, scope, target)
        amount = _amount(amount_word)
    except bills.BillError as e:
        raise UserError(e.code, **e.data) from e
    return await receive_bill(session, person, message, clock, customer=customer, invoice=invoice, amount=amount,
                              terms=terms, received_on=today)


@dataclass(frozen=True)
class BillTerms:
    """What a bill says on its face, as written after the amount (in /承兑 and in /paid … 承兑)."""
    bill_no: str
    kind: str                 # bank | commercial
    acceptor: str
    maturity: date


def bill_terms(words: list[str], today: date) -> BillTerms:
    """``<票号> <银承|商承> <承兑人> <到期日>``."""
    if len(words) < 4:
        raise UsageError("missing_argument")
    bill_no, kind_word, acceptor, maturity_word = words[:4]
    kind = bills.kind_of(kind_word)
    if kind is None:
        raise UsageError("bad_bill_kind", value=kind_word)
    try:
        maturity = parse_date(maturity_word, today)
    except (DateError, ValueError):
        raise UsageError("bad_date", value=maturity_word) from None
    return BillTerms(bill_no, kind, acceptor, maturity)


async def receive_bill(session, person, message, clock, *, customer, invoice, amount, terms: BillTerms,
                       received_on: date) -> Reply:
    """A bill received (/承兑, /paid … 承兑): booked by ``storage.bills.receive``, the one place."""
    try:
        result = await bills.receive(session, customer=customer, amount=amount, bill_no=terms.bill_no,
                                     kind=terms.kind, acceptor=terms.acceptor, maturity=terms.maturity,
                                     received_on=received_on, invoice_no=invoice.invoice_no if invoice else "",
                                     actor=person.id, channel=message.platform, now=clock.now())
    except bills.BillError as e:
        raise UserError(e.code, **e.data) from e
    return Reply("bills/received.md.j2", {"bill": result.bill, "customer": customer, "paid": result.payment})


def _amount(word: str):
    try:
        amount = parse_amount(word)
    except AmountError:
        raise UsageError("bad_amount", value=word) from None
    if amount <= 0:
        raise UsageError("bad_amount", value=word)
    return amount
