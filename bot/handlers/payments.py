"""Money in and out of the ledger from chat: /paid (/回款) records a payment, /writeoff (/核销)
asks for a bad-debt write-off, /approve (/批准) and /reject (/驳回) decide it.

/paid: ``<invoice|customer> <amount>[currency] [date] [reference] [汇率x] [确认]``, or paid with an
acceptance bill ``<invoice|customer> <amount> [date] 承兑 <票号> <银承|商承> <承兑人> <到期日>`` (booked
as /承兑 books it, received on the date). An invoice named
gets the payment first, then the customer's oldest open invoices; a customer named: oldest due
first (both by ``storage.ledger.record_payment``). The date defaults to today and may not lie in
the future; a bank reference already recorded is reported and nothing changes. A payment on a
written-off invoice is a recovery (``storage.ledger.record_recovery``): it reverses that much of
the loss. The amount is in the company currency unless a currency is written; on invoices in
another currency it is converted at a stated rate and the answer says so.

Nothing surprising is booked silently: a payment above what the customer owes (the rest would sit
on account as 预收) or the same customer, amount and day again without two different bank serials
is answered with a question (storage/confirmations.py), booked only on ``确认``. The payment closes
the open payment claims (称已付款, storage/claims.py) on the invoices it pays (in the ledger, so an
imported bank statement closes them too).

/writeoff: the whole open balance of one invoice; the approvers follow the amount in the
reporting currency: up to ``[permissions] writeoff_small_limit`` the finance head AND the sales
director, above it the finance head AND the general manager (person ids in ``[permissions]``).
They are asked in chat; only they may /approve or /reject; when every one of them has approved,
the write-off is booked and the requester is told. One rejection closes the request. Duties are
separated: whoever asks for a write-off gives none of its approvals (a request by one of its
approvers is refused: another finance person asks), and cannot decide it either.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import select

from bot import notify
from bot.core.arguments import InvoiceArg, row_number, target_named
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import ALL, EDITORS
from bot.core.router import Router
from bot.handlers.bills import BillTerms, bill_terms, receive_bill
from domain.dates import DateError, parse_date
from domain.money import AmountError, currency_word, parse_money
from bot.render import render
from storage import audit, confirmations, ledger
from storage.fx import convert, rates_for
from storage.customers import open_receivables
from storage.models import Customer, Payment, Person, Receivable, WriteOff

router = Router("payments")
ZERO = Decimal("0.00")
CENT = Decimal("0.01")



@dataclass(frozen=True)
class PaidArgs:
    target: str
    amount: Decimal
    currency: str | None          # as written (US$2000, 2000 USD); None: the company currency
    when: date
    reference: str | None
    rate: Decimal | None          # 汇率7.10 / @7.10: CNY per unit of the foreign currency
    confirmed: bool               # a trailing 确认: the questions below are answered in advance
    bill: BillTerms | None = None  # paid with an acceptance bill: ``承兑 <票号> <银承|商承> <承兑人> <到期日>``


BILL_WORDS = ("承兑", "汇票", "承兑汇票", "bill")


def split_paid_args(args: str, today: date) -> PaidArgs:
    """``上海恒信 5万 12月5日 LS001``, ``深圳宏达 US$2000``, ``深圳宏达 2000 USD 汇率7.10 确认``.

    The target may contain spaces (``Harbor Lighting Ltd``): the amount is the first word after
    it that reads as money (a currency may be glued to it or follow as its own word). After it:
    a currency word, a rate (``汇率7.1`` / ``@7.1``), ``确认``, and a date and/or a reference; with
    one such word, a word that reads as a date is the date, anything else the reference."""
    parts = args.split()
    if len(parts) < 2:
        raise UsageError("missing_argument")
    for i in range(1, len(parts)):
        try:
            amount, currency = parse_money(parts[i])
        except AmountError:
            continue
        target, rest = " ".join(parts[:i]), parts[i + 1:]
        break
    else:
        raise UsageError("bad_amount", value=" ".join(parts[1:]))
    if amount < ZERO:
        raise UserError("negative_payment", value=parts[i])
    if amount == ZERO:
        raise UsageError("bad_amount", value=parts[i])
    bill = None
    at = next((k for k, word in enumerate(rest) if word in BILL_WORDS), None)
    if at is not None:
        # paid with a bill: its four terms follow the word, as in /承兑 (bot/handlers/bills.py)
        bill = bill_terms(rest[at + 1:at + 5], today)
        rest = rest[:at] + rest[at + 5:]
    rate, confirmed, plain = None, False, []
    for word in rest:
        if currency is None and currency_word(word):
            currency = currency_word(word)
        elif word in ("确认", "confirm"):
            confirmed = True
        elif word.startswith(("汇率", "@")):
            try:
                rate = Decimal(word.removeprefix("汇率").removeprefix("@").strip(":："))
            except InvalidOperation:
                raise UsageError("bad_rate", value=word) from None
            if not rate.is_finite() or rate <= 0:
                raise UsageError("bad_rate", value=word)
        else:
            plain.append(word)
    when, reference = today, None
    if len(plain) > 2:
        raise UsageError("too_many_arguments", extra=" ".join(plain[2:]))
    if len(plain) == 2:
        try:
            when = parse_date(plain[0], today)
        except DateError:
            raise UsageError("bad_date", value=plain[0]) from None
        reference = plain[1]
    elif len(plain) == 1:
        try:
            when = parse_date(plain[0], today)
        except DateError:
            reference = plain[0]
    if when > today:
        raise UsageError("date_in_future", value=when)
    if bill is not None and reference is not None:
        # the bill number is the payment's reference: a bank serial besides it is a mistake
        raise UsageError("too_many_arguments", extra=reference)
    return PaidArgs(target, amount, currency, when, reference, rate, confirmed, bill)


@dataclass(frozen=True)
class Booking:
    """The amount in the invoices' currency, and the receipt as it came in when that differs."""
    amount: Decimal
    currency: str
    received: Decimal | None = None
    received_currency: str | None = None
    rate: Decimal | None = None       # CNY per unit of the foreign currency of the pair


def book_in(a: PaidArgs, book_currency: str, config) -> Booking:
    """A receipt is in the company currency unless written otherwise; booked on invoices in another
    currency it is converted at the rate written (汇率…) or configured ([company] fx_rates), half up
    to the cent. With no rate the bot asks for one rather than guess."""
    base = config.company.currency
    received_currency = a.currency or base
    if received_currency == book_currency:
        return Booking(a.amount, book_currency)
    if base not in (received_currency, book_currency):
        raise UserError("cross_currency", received=received_currency, book=book_currency)
    foreign = book_currency if received_currency == base else received_currency
    rate = a.rate
    if rate is None:
        configured = rates_for(config.company.fx_rates, base).get(foreign)
        if configured is None:
            raise UserError("paid_needs_rate", currency=foreign, received_currency=received_currency,
                            amount=a.amount, target=a.target)
        rate = configured
    if received_currency == base:          # yuan in, foreign invoice: divide
        amount = (a.amount / rate).quantize(CENT, ROUND_HALF_UP)
    else:                                  # foreign money in, yuan invoice: multiply
        amount = (a.amount * rate).quantize(CENT, ROUND_HALF_UP)
    if amount <= ZERO:
        raise UsageError("bad_amount", value=str(a.amount))
    return Booking(amount, book_currency, a.amount, received_currency, rate)


@router.command("paid", aliases=("回款",), roles=EDITORS)
async def paid_cmd(session, scope, args, person, clock, config, services, message) -> Reply:
    """Record a payment and allocate it (the named invoice first, then oldest due first)."""
    return await book_paid(session, scope, args, person, clock, config, services, message)


async def book_paid(session, scope, args: str, person, clock, config, services, message, *,
                    accepted: frozenset[str] = frozenset(), today: date | None = None) -> Reply:
    """/paid, and its confirmation (``accepted``: the questions already answered yes)."""
    today, now = today or clock.today(), clock.now()
    a = split_paid_args(args, today)
    customer, named = await target_named(session, scope, a.target)   # where the amount begins, so not a filter
    if a.bill is not None:
        # a bill is booked the way /承兑 books it (storage/bills.receive), in the company currency
        if (a.currency and a.currency != config.company.currency) or a.rate is not None:
            raise UserError("bill_currency", base=config.company.currency)
        return await receive_bill(session, person, message, clock, customer=customer, invoice=named,
                                  amount=a.amount, terms=a.bill, received_on=a.when)
    existing = None
    if a.reference:
        existing = (await session.execute(select(Payment).where(Payment.reference == a.reference))).scalar_one_or_none()
        if existing is not None and (existing.customer_id != customer.id or existing.kind != "receipt"):
            raise UserError("reference_conflict", reference=a.reference, amount=existing.amount,
                            currency=existing.currency, paid_on=existing.paid_on)
    open_items = await open_receivables(session, customer.id) if named is None else []
    if named is not None:
        book_currency = named.currency
    elif a.currency and any(r.currency == a.currency for r in open_items):
        book_currency = a.currency            # US$ from a customer with yuan and dollar invoices: the dollar ones
    else:
        book_currency = _customer_currency(open_items, config.company.currency)
    bk = book_in(a, book_currency, config)
    if a.reference and existing is not None and existing.amount != bk.amount:
        raise UserError("reference_conflict", reference=a.reference, amount=existing.amount,
                        currency=existing.currency, paid_on=existing.paid_on)
    rerun = a.reference is not None and existing is not None      # a recorded serial again: answered, not booked
    if not rerun and named is not None and named.status == "written_off" \
            and await ledger.recoverable(session, named) <= ZERO:
        raise UserError("nothing_to_recover", invoice=named.invoice_no)
    if not rerun:
        questions = {}
        capacity = await ledger.open_capacity(session, customer_id=customer.id, currency=bk.currency, named=named)
        if bk.amount > capacity:
            questions["over_balance"] = {"open": capacity, "excess": bk.amount - capacity,
                                         "recoverable": await ledger.recoverable_total(
                                             session, customer_id=customer.id, currency=bk.currency)}
        dup = await ledger.likely_duplicate(session, customer_id=customer.id, amount=bk.amount, currency=bk.currency,
                                            paid_on=a.when, reference=a.reference)
        if dup is not None:
            questions["duplicate"] = {"payment": dup}
        unanswered = [q for q in questions if q not in accepted]
        if unanswered and not a.confirmed:
            c = await confirmations.ask(session, person_id=person.id, kind="paid",
                                        payload={"args": args, "today": today.isoformat()},
                                        reasons=sorted(questions), now=now)
            return Reply("payments/confirm_paid.md.j2", {
                "c": c, "customer": customer, "named": named, "bk": bk, "when": a.when, "questions": questions,
                "expires": c.expires_at.astimezone(config.tz), "base": config.company.currency})
    if named is not None and named.status == "written_off":
        try:
            rec = await ledger.record_recovery(session, receivable=named, amount=bk.amount, paid_on=a.when,
                                               reference=a.reference, actor=person.id, channel=message.platform,
                                               now=now)
        except ledger.LedgerError:
            raise UserError("nothing_to_recover", invoice=named.invoice_no) from None
        payment, allocations, duplicate, recovered = rec.payment, rec.allocations, rec.duplicate, rec.recovered
        closed, recoveries = rec.claims_closed, []
    else:
        try:
            res = await ledger.record_payment(session, customer=customer, amount=bk.amount, paid_on=a.when,
                                              reference=a.reference, invoice_no=named.invoice_no if named else "",
                                              currency=bk.currency, actor=person.id, channel=message.platform, now=now,
                                              received=None if bk.received is None else
                                              (bk.received, bk.received_currency, str(bk.rate)))
        except ledger.LedgerError as e:
            raise UserError("ledger", reason=str(e)) from None
        payment, allocations, duplicate, recovered = res.payment, res.allocations, res.duplicate, ZERO
        closed, recoveries = res.claims_closed, res.recoveries
    if not duplicate and bk.received is not None and recovered:       # record_payment keeps it itself
        payment.received_amount, payment.received_currency = bk.received, bk.received_currency
        payment.fx_rate = str(bk.rate)
    remaining = await open_receivables(session, customer.id)
    by_currency: dict[str, Decimal] = {}
    for r in remaining:
        by_currency[r.currency] = by_currency.get(r.currency, ZERO) + r.open_amount
    return Reply("payments/paid.md.j2", {"customer": customer, "payment": payment, "allocations": allocations,
                                         "duplicate": duplicate, "recovered": recovered, "named": named,
                                         "remaining": by_currency, "base": config.company.currency,
                                         "claims_closed": closed, "recoveries": recoveries})


def _customer_currency(open_items: list[Receivable], base: str = "CNY") -> str:
    """A payment named by customer pays invoices in the currency of its open invoices when they all
    share one (a USD customer's invoices are paid in USD, converted if the receipt was yuan);
    otherwise in the company currency."""
    currencies = {r.currency for r in open_items}
    return currencies.pop() if len(currencies) == 1 else base


def approver_tiers(config, amount_cny: Decimal) -> list[tuple[str, str]]:
    """(role, person id) of those who must approve a write-off of this size."""
    p = config.permissions
    if amount_cny <= p.writeoff_small_limit:
        return [("finance_head", p.finance_head), ("sales_director", p.sales_director)]
    # above the limit the general manager as well, not instead: the finance head sees every write-off
    return [("finance_head", p.finance_head), ("general_manager", p.general_manager)]


def approver_roles(config) -> list[tuple[str, str]]:
    """Every approver role and its person id (to label an approval by the role it fills)."""
    p = config.permissions
    return [("finance_head", p.finance_head), ("sales_director", p.sales_director),
            ("general_manager", p.general_manager)]


@router.command("writeoff", aliases=("核销",), roles=EDITORS, args=InvoiceArg())
async def writeoff_cmd(session, receivable, rest, person, clock, config, services, message) -> Reply:
    """Ask for a bad-debt write-off of an invoice's open balance; the approvers are asked in chat."""
    r, reason, invoice = receivable, rest, receivable.invoice_no
    if r.open_amount <= ZERO or r.status == "written_off":
        raise UserError("nothing_open", what=invoice)
    pending = (await session.execute(select(WriteOff).where(WriteOff.receivable_id == r.id,
                                                            WriteOff.status == "pending"))).scalars().first()
    if pending is not None:
        raise UserError("writeoff_pending", invoice=invoice, id=pending.id)
    amount_cny = convert(r.open_amount, r.currency, rates_for(config.company.fx_rates, config.company.currency))
    if amount_cny is None:
        raise UserError("no_fx_rate", currency=r.currency)
    tiers = approver_tiers(config, amount_cny)
    own = [role for role, pid in tiers if pid == person.id]
    if own:
        # separation of duties: the requester's approval would be one of the two
        raise UserError("writeoff_requester_approves", role=own[0])
    approvers: dict[str, Person] = {}
    for role, pid in tiers:
        p = await session.get(Person, pid) if pid else None
        if p is None or not p.active:
            raise UserError("no_approvers", role=role)
        approvers[pid] = p
    now = clock.now()
    customer = await session.get(Customer, r.customer_id)
    wo = WriteOff(receivable_id=r.id, amount=r.open_amount, reason=reason, status="pending", requested_by=person.id,
                  requested_at=now, approvals={}, approvers_needed=list(approvers))
    session.add(wo)
    await session.flush()
    audit.record(session, at=now, actor=person.id, channel=message.platform, action="writeoff.request",
                 entity="receivable", entity_id=r.invoice_no, writeoff=wo.id, amount=r.open_amount,
                 currency=r.currency, reason=reason, approvers=list(approvers))
    text = render("payments/writeoff_request.md.j2", wo=wo, r=r, customer=customer, requester=person,
                  amount_cny=amount_cny, tiers=tiers, approvers=approvers)
    for p in approvers.values():
        await notify.to_person(session, p, text, key=f"writeoff:{wo.id}:request", now=now,
                               platforms=services.platforms)
    return Reply("payments/writeoff_requested.md.j2", {"wo": wo, "r": r, "customer": customer,
                                                       "approvers": list(approvers.values()), "amount_cny": amount_cny,
                                                       "tiers": tiers})


async def _decidable(session, person, args: str) -> WriteOff:
    raw = args.strip().lstrip("#")
    if not raw:
        raise UsageError("missing_argument")
    number = row_number(raw)
    if number is None:
        raise UserError("unknown_writeoff", id=raw[:30])
    wo = await session.get(WriteOff, number)
    if wo is None or wo.amount <= ZERO:          # negative rows are recoveries, not requests
        raise UserError("unknown_writeoff", id=raw)
    if wo.requested_by == person.id:
        raise UserError("writeoff_own_request", id=wo.id)
    if person.id not in (wo.approvers_needed or []):
        raise UserError("not_approver", id=wo.id)
    if wo.status != "pending":
        raise UserError("writeoff_closed", id=wo.id)
    return wo


@router.command("approve", aliases=("批准",), roles=ALL)
async def approve_cmd(session, args, person, clock, config, services, message) -> Reply:
    """Approve a write-off request you were asked to approve; the last approval books it."""
    wo = await _decidable(session, person, args)
    approvals = dict(wo.approvals or {})
    if person.id in approvals.values():
        raise UserError("already_approved", id=wo.id)
    r = await session.get(Receivable, wo.receivable_id)
    now = clock.now()
    roles = [role for role, pid in approver_roles(config) if pid == person.id and role not in approvals]
    approvals[roles[0] if roles else person.id] = person.id
    wo.approvals = approvals                       # a new dict, so the JSON column is written
    audit.record(session, at=now, actor=person.id, channel=message.platform, action="writeoff.approve",
                 entity="receivable", entity_id=r.invoice_no, writeoff=wo.id)
    waiting = [pid for pid in wo.approvers_needed if pid not in approvals.values()]
    if waiting:
        names = [(await session.get(Person, pid)) for pid in waiting]
        return Reply("payments/approved.md.j2", {"wo": wo, "r": r, "booked": False,
                                                 "waiting": [p.name if p else pid for p, pid in zip(names, waiting)]})
    if r.open_amount <= ZERO or r.status == "written_off":
        raise UserError("nothing_open", what=r.invoice_no)
    await ledger.apply_write_off(session, wo, on=clock.today(), actor=person.id, channel=message.platform, now=now)
    requester = await session.get(Person, wo.requested_by)
    if requester is not None:
        await notify.to_person(session, requester, render("payments/writeoff_done.md.j2", wo=wo, r=r, approved=True,
                                                          by=person),
                               key=f"writeoff:{wo.id}:decided", now=now, platforms=services.platforms)
    return Reply("payments/approved.md.j2", {"wo": wo, "r": r, "booked": True, "waiting": []})


@router.command("reject", aliases=("驳回",), roles=ALL)
async def reject_cmd(session, args, person, clock, services, message) -> Reply:
    """Reject a write-off request you were asked to approve: it closes, nothing is booked."""
    wo = await _decidable(session, person, args)
    r = await session.get(Receivable, wo.receivable_id)
    now = clock.now()
    wo.status = "rejected"
    audit.record(session, at=now, actor=person.id, channel=message.platform, action="writeoff.reject",
                 entity="receivable", entity_id=r.invoice_no, writeoff=wo.id)
    requester = await session.get(Person, wo.requested_by)
    if requester is not None:
        await notify.to_person(session, requester, render("payments/writeoff_done.md.j2", wo=wo, r=r, approved=False,
                                                          by=person),
                               key=f"writeoff:{wo.id}:decided", now=now, platforms=services.platforms)
    return Reply("payments/rejected.md.j2", {"wo": wo, "r": r})
