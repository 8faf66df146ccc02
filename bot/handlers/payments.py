"""Money in and out of the ledger from chat: /paid (/回款) records a payment, /writeoff (/核销)
asks for a bad-debt write-off, /approve (/批准) and /reject (/驳回) decide it.

/paid: ``<invoice|customer> <amount> [date] [reference]``. An invoice named gets the payment
first, then the customer's oldest open invoices; a customer named: oldest due first (both by
``storage.ledger.record_payment``). The date defaults to today and may not lie in the future; a
bank reference already recorded is reported and nothing changes. A payment on a written-off
invoice is a recovery (``storage.ledger.record_recovery``): it reverses that much of the loss.

/writeoff: the whole open balance of one invoice; the approvers follow the amount in the
reporting currency: up to ``[permissions] writeoff_small_limit`` the finance head AND the sales
director, above it the general manager (person ids in ``[permissions]``). They are asked in chat;
only they may /approve or /reject; when every one of them has approved, the write-off is booked
and the requester is told. One rejection closes the request.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select

from bot import notify
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import ALL, EDITORS
from bot.core.router import Router
from bot.dates import DateError, parse_date
from bot.money import AmountError, parse_amount
from bot.render import render
from storage import audit, ledger
from storage.fx import convert, rates_for
from storage.customers import find_customer, open_receivables, receivable_by_invoice
from storage.models import Customer, Payment, Person, Receivable, WriteOff
from storage.scope import Scope

router = Router("payments")
ZERO = Decimal("0.00")



def split_paid_args(args: str, today: date) -> tuple[str, Decimal, date, str | None]:
    """``上海恒信 5万 12月5日 LS001`` → (target, amount, date, reference).

    The target may contain spaces (``Harbor Lighting Ltd``): the amount is the first word after
    it that reads as money. After the amount: a date and/or a reference; with one word, a word
    that reads as a date is the date, anything else the reference."""
    parts = args.split()
    if len(parts) < 2:
        raise UsageError("missing_argument")
    for i in range(1, len(parts)):
        try:
            amount = parse_amount(parts[i])
        except AmountError:
            continue
        target, rest = " ".join(parts[:i]), parts[i + 1:]
        break
    else:
        raise UsageError("bad_amount", value=" ".join(parts[1:]))
    if amount <= ZERO:
        raise UsageError("bad_amount", value=parts[i])
    when, reference = today, None
    if len(rest) > 2:
        raise UsageError("too_many_arguments", extra=" ".join(rest[2:]))
    if len(rest) == 2:
        try:
            when = parse_date(rest[0], today)
        except DateError:
            raise UsageError("bad_date", value=rest[0]) from None
        reference = rest[1]
    elif len(rest) == 1:
        try:
            when = parse_date(rest[0], today)
        except DateError:
            reference = rest[0]
    if when > today:
        raise UsageError("date_in_future", value=when)
    return target, amount, when, reference


async def _target(session, scope: Scope, target: str) -> tuple[Customer, Receivable | None]:
    r = await receivable_by_invoice(session, target)
    if r is not None:
        if not scope.allows_receivable(r):
            raise UserError("not_in_scope", what=target)
        return await session.get(Customer, r.customer_id), r
    match = await find_customer(session, target, scope)
    if match.exact is None:
        if match.candidates:
            raise UserError("ambiguous_customer", query=target, candidates=[c.name for c in match.candidates])
        raise UserError("unknown_invoice_or_customer", query=target)
    if not scope.allows_customer(match.exact):
        raise UserError("not_in_scope", what=target)
    return match.exact, None


@router.command("paid", aliases=("回款",), roles=EDITORS)
async def paid_cmd(session, scope, args, person, clock, message) -> Reply:
    """Record a payment and allocate it (the named invoice first, then oldest due first)."""
    today, now = clock.today(), clock.now()
    target, amount, when, reference = split_paid_args(args, today)
    customer, named = await _target(session, scope, target)
    if reference:
        existing = (await session.execute(select(Payment).where(Payment.reference == reference))).scalar_one_or_none()
        if existing is not None and (existing.amount != amount or existing.customer_id != customer.id):
            raise UserError("reference_conflict", reference=reference, amount=existing.amount,
                            paid_on=existing.paid_on)
    if named is not None and named.status == "written_off":
        try:
            rec = await ledger.record_recovery(session, receivable=named, amount=amount, paid_on=when,
                                               reference=reference, actor=person.id, channel=message.platform,
                                               now=now)
        except ledger.LedgerError:
            raise UserError("nothing_to_recover", invoice=named.invoice_no) from None
        payment, allocations, duplicate, recovered = rec.payment, rec.allocations, rec.duplicate, rec.recovered
    else:
        currency = named.currency if named is not None else _customer_currency(await open_receivables(session, customer.id))
        try:
            res = await ledger.record_payment(session, customer=customer, amount=amount, paid_on=when,
                                              reference=reference, invoice_no=named.invoice_no if named else "",
                                              currency=currency, actor=person.id, channel=message.platform, now=now)
        except ledger.LedgerError as e:
            raise UserError("ledger", reason=str(e)) from None
        payment, allocations, duplicate, recovered = res.payment, res.allocations, res.duplicate, ZERO
    remaining = await open_receivables(session, customer.id)
    by_currency: dict[str, Decimal] = {}
    for r in remaining:
        by_currency[r.currency] = by_currency.get(r.currency, ZERO) + r.open_amount
    return Reply("payments/paid.md.j2", {"customer": customer, "payment": payment, "allocations": allocations,
                                         "duplicate": duplicate, "recovered": recovered, "named": named,
                                         "remaining": by_currency})


def _customer_currency(open_items: list[Receivable]) -> str:
    """A payment named by customer is in the currency of its open invoices when they all share
    one (a USD customer pays in USD); otherwise in yuan."""
    currencies = {r.currency for r in open_items}
    return currencies.pop() if len(currencies) == 1 else "CNY"


def approver_tiers(config, amount_cny: Decimal) -> list[tuple[str, str]]:
    """(role, person id) of those who must approve a write-off of this size."""
    p = config.permissions
    if amount_cny <= p.writeoff_small_limit:
        return [("finance_head", p.finance_head), ("sales_director", p.sales_director)]
    return [("general_manager", p.general_manager)]


def approver_roles(config) -> list[tuple[str, str]]:
    """Every approver role and its person id (to label an approval by the role it fills)."""
    p = config.permissions
    return [("finance_head", p.finance_head), ("sales_director", p.sales_director),
            ("general_manager", p.general_manager)]


@router.command("writeoff", aliases=("核销",), roles=EDITORS)
async def writeoff_cmd(session, scope, args, person, clock, config, services, message) -> Reply:
    """Ask for a bad-debt write-off of an invoice's open balance; the approvers are asked in chat."""
    invoice, _, reason = args.strip().partition(" ")
    reason = reason.strip()
    if not invoice or not reason:
        raise UsageError("missing_argument")
    r = await receivable_by_invoice(session, invoice)
    if r is None:
        raise UserError("unknown_invoice", invoice=invoice)
    if not scope.allows_receivable(r):
        raise UserError("not_in_scope", what=invoice)
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
    if not raw.isdigit():
        raise UserError("unknown_writeoff", id=raw)
    wo = await session.get(WriteOff, int(raw))
    if wo is None or wo.amount <= ZERO:          # negative rows are recoveries, not requests
        raise UserError("unknown_writeoff", id=raw)
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
