"""Everything /customer shows about one customer, as of a date: credit usage, open items,
aging, the follow-up log, promises, disputes, the statute of limitations and a late-fee
estimate. Session first, pure queries, never commits; the handler only formats.

Rules (decisions, documented here and in the reply):

* **Credit usage** = open balance in the reporting currency (foreign invoices converted with
  ``[company] fx_rates``) / credit limit. Level: ``red`` ≥ 90%, ``yellow`` ≥ 70%, else ``ok``;
  no limit set (0) → no usage figure.
* **Statute of limitations** (诉讼时效): the period is counted from the day after its anchor and
  its last day is the anchor's corresponding date N years on (Feb 29 → Feb 28), N = 3, or 4 for a
  ``cross_border`` customer — the same reckoning as ``domain/statute.py``. The anchor is the later of
  the *latest* due date among the customer's open invoices and the latest restart: the
  customer's last payment, the last written notice delivered about one of those invoices (an
  e-mail, or a letter on any channel: ``storage.reminders.WRITTEN_CHANNELS/KINDS``, the same
  rule the statute_watch job applies per invoice) and the last signed balance confirmation
  (``record_confirmation``). The date shown is the last day a claim can be brought, with what it
  is counted from. A last day on a rest day moves to the next working day
  (``[statute] roll_to_workday``).
* **Late fee** (滞纳金): ``domain.late_fees.contract_fee`` with the tiers of the customer's contract
  clause on each overdue invoice's balance day by day, capped; none without a clause; disputed
  invoices are left out (the claim is contested); an estimate for the conversation, never booked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timezone
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import aging as aging_q
from storage import balance_history
from domain.late_fees import contract_fee
from domain.statute import last_day
from storage.fx import convert, rates_for
from storage.models import (AuditEntry, Customer, CustomerMessage, Dispute, FollowUp, Payment, Person, Promise,
                            Receivable)
from storage.reminders import WRITTEN_CHANNELS, WRITTEN_KINDS
from storage.scope import Scope

CENT = Decimal("0.01")


def statute_anchor(latest_due: date | None, last_payment: date | None = None, last_notice: date | None = None,
                   last_confirmation: date | None = None) -> tuple[date | None, str]:
    """(the day the period runs from the day after, what that day is: ``due`` — the latest due
    date — or the restart that came later: ``payment``, ``notice`` or ``confirmation``)."""
    if latest_due is None:
        return None, "due"
    anchor, reason = latest_due, "due"
    for day, why in ((last_payment, "payment"), (last_notice, "notice"), (last_confirmation, "confirmation")):
        if day is not None and day > anchor:
            anchor, reason = day, why
    return anchor, reason


def credit_level(usage: Decimal | None, yellow: Decimal = Decimal("0.7"), red: Decimal = Decimal("0.9")) -> str:
    """usage in percent; thresholds as fractions, as in ``[credit]``."""
    if usage is None:
        return "none"
    if usage >= red * 100:
        return "red"
    if usage >= yellow * 100:
        return "yellow"
    return "ok"


@dataclass
class OpenItem:
    receivable: Receivable
    days_overdue: int             # 0 when not yet due
    promise: Promise | None
    late_fee: Decimal             # in the invoice's currency

    @property
    def disputed(self) -> bool:
        return self.receivable.disputed


@dataclass
class CustomerCard:
    customer: Customer
    rep: Person | None
    as_of: date
    open_total: Decimal                        # reporting currency
    usage: Decimal | None                      # percent of the credit limit
    level: str                                 # ok | yellow | red | none
    items: list[OpenItem]
    aging: aging_q.AgingReport
    followups: list[FollowUp]
    promises: list[tuple[Promise, Receivable]]
    disputes: list[tuple[Dispute, Receivable]]
    last_payment: date | None
    statute: date | None                       # the last day a claim can be brought
    statute_anchor: date | None                # counted from the day after this day
    statute_reason: str                        # due | payment | notice | confirmation (statute_anchor)
    late_fee_total: Decimal                    # reporting currency
    unconverted: dict[str, Decimal] = field(default_factory=dict)
    unapplied: dict[str, Decimal] = field(default_factory=dict)   # on account (预收), per currency


async def unapplied_cash(session: AsyncSession, customer_id: int) -> dict[str, Decimal]:
    """What the customer paid and no invoice has taken yet (预收), per currency; reversed payments aside."""
    rows = (await session.execute(select(Payment.currency, Payment.unallocated).where(
        Payment.customer_id == customer_id, Payment.unallocated > 0, Payment.reversed_at.is_(None)))).all()
    out: dict[str, Decimal] = {}
    for cur, amount in rows:
        out[cur] = out.get(cur, Decimal("0.00")) + amount
    return out


async def customer_card(session: AsyncSession, customer: Customer, as_of: date, *, bounds=(30, 60, 90),
                        fx_rates: dict | None = None, base_currency: str = "CNY", followups: int = 5,
                        tiers=(), credit=None, statute=None, work_calendar=None, tz=None,
                        cap_ratio=None) -> CustomerCard:
    """``tiers``: the late-fee tiers of the customer's contract (none: no clause, no fee) and
    ``cap_ratio`` their cap (domain/late_fees.py); ``credit``: the [credit] section (thresholds);
    ``statute``: the [statute] section (years); ``work_calendar`` rolls a last day off rest days;
    ``tz``: the company's time zone (the day a notice was delivered; UTC when not given)."""
    rates = rates_for(fx_rates, base_currency)
    receivables = list((await session.execute(
        select(Receivable).where(Receivable.customer_id == customer.id, Receivable.open_amount > 0,
                                 Receivable.status != "written_off")
        .order_by(Receivable.due_date, Receivable.id))).scalars())
    ids = [r.id for r in receivables]
    promises_by_r: dict[int, Promise] = {}
    if ids:
        for p in (await session.execute(select(Promise).where(Promise.receivable_id.in_(ids), Promise.status == "open")
                                        .order_by(Promise.id))).scalars():
            promises_by_r[p.receivable_id] = p
    items, unconverted = [], {}
    open_by: dict[str, Decimal] = {}
    fee_by: dict[str, Decimal] = {}
    # the fee on each day's balance (domain/late_fees.contract_fee), only where the contract has a clause
    cuts = await balance_history.reductions(session, [r.id for r in receivables if r.due_date < as_of]) if tiers else {}
    for r in receivables:
        days = max(0, (as_of - r.due_date).days)
        paid = cuts.get(r.id, [])
        fee = Decimal("0.00") if r.disputed or not tiers else contract_fee(
            r.open_amount + sum((a for _, a in paid), Decimal(0)), r.due_date, as_of, paid, tiers, cap_ratio)
        items.append(OpenItem(r, days, promises_by_r.get(r.id), fee))
        if r.currency not in rates:
            unconverted[r.currency] = unconverted.get(r.currency, Decimal("0.00")) + r.open_amount
            continue
        open_by[r.currency] = open_by.get(r.currency, Decimal("0.00")) + r.open_amount
        fee_by[r.currency] = fee_by.get(r.currency, Decimal("0.00")) + fee
    # one rounding rule (storage.aging.AgingReport): per-currency sums, each converted once
    open_total = sum((convert(v, cur, rates) for cur, v in sorted(open_by.items())), Decimal("0.00"))
    fee_total = sum((convert(v, cur, rates) for cur, v in sorted(fee_by.items())), Decimal("0.00"))
    limit = customer.credit_limit or Decimal("0")
    usage = (open_total / limit * 100).quantize(Decimal("0.1"), ROUND_HALF_UP) if limit > 0 else None
    report = await aging_q.aging(session, as_of, bounds, scope=Scope(customer_ids=frozenset({customer.id})),
                                 fx_rates=fx_rates, base_currency=base_currency)
    fus = list((await session.execute(select(FollowUp).where(FollowUp.customer_id == customer.id)
                                      .order_by(FollowUp.at.desc(), FollowUp.id.desc()).limit(followups))).scalars())
    promises = list((await session.execute(
        select(Promise, Receivable).join(Receivable, Receivable.id == Promise.receivable_id)
        .where(Receivable.customer_id == customer.id, Promise.status == "open")
        .order_by(Promise.promised_date, Promise.id))).all())
    disputes = list((await session.execute(
        select(Dispute, Receivable).join(Receivable, Receivable.id == Dispute.receivable_id)
        .where(Receivable.customer_id == customer.id, Dispute.resolved_at.is_(None))
        .order_by(Dispute.opened_at, Dispute.id))).all())
    last_payment = (await session.execute(select(func.max(Payment.paid_on)).where(
        Payment.customer_id == customer.id, Payment.paid_on <= as_of,
        Payment.reversed_at.is_(None)))).scalar()          # a reversed payment restarted nothing
    if last_payment is not None and not isinstance(last_payment, date):
        last_payment = date.fromisoformat(str(last_payment))
    latest_due = max((r.due_date for r in receivables), default=None)
    last_notice, last_confirmation = await _written_restarts(session, customer, receivables, as_of, tz)
    anchor, reason = statute_anchor(latest_due, last_payment, last_notice, last_confirmation)
    rep = await session.get(Person, customer.rep_id) if customer.rep_id else None
    return CustomerCard(customer=customer, rep=rep, as_of=as_of, open_total=open_total, usage=usage,
                        level=credit_level(usage, *((credit.yellow, credit.red) if credit else ())), items=items, aging=report, followups=fus,
                        promises=promises, disputes=disputes, last_payment=last_payment,
                        statute=None if anchor is None else last_day(
                            anchor, _years(statute, customer.cross_border),
                            work_calendar if statute is None or statute.roll_to_workday else None),
                        statute_anchor=anchor, statute_reason=reason,
                        late_fee_total=fee_total, unconverted=unconverted,
                        unapplied=await unapplied_cash(session, customer.id))


async def _written_restarts(session: AsyncSession, customer: Customer, receivables: list[Receivable],
                            as_of: date, tz) -> tuple[date | None, date | None]:
    """The last written notice delivered about one of these invoices, and the last balance
    confirmation signed for one of them, up to ``as_of`` (local days)."""
    if not receivables:
        return None, None
    ids = [r.id for r in receivables]
    sent = (await session.execute(select(CustomerMessage.sent_at).where(
        CustomerMessage.customer_id == customer.id, CustomerMessage.receivable_id.in_(ids),
        CustomerMessage.sent_at.is_not(None),
        CustomerMessage.channel.in_(WRITTEN_CHANNELS) | CustomerMessage.kind.in_(WRITTEN_KINDS)))).scalars()
    notices = [t.astimezone(tz or timezone.utc).date() for t in sent]
    signed = [date.fromisoformat(d["signed_on"]) for d in (await session.execute(select(AuditEntry.detail).where(
        AuditEntry.action == "confirmation.signed", AuditEntry.entity == "receivable",
        AuditEntry.entity_id.in_([r.invoice_no for r in receivables])))).scalars()]
    return (max((d for d in notices if d <= as_of), default=None),
            max((d for d in signed if d <= as_of), default=None))


def _years(statute, cross_border: bool) -> int:
    if statute is None:
        return 4 if cross_border else 3
    return statute.cross_border_years if cross_border else statute.years
