"""Everything /customer shows about one customer, as of a date: credit usage, open items,
aging, the follow-up log, promises, disputes, the statute of limitations and a late-fee
estimate. Session first, pure queries, never commits; the handler only formats.

Rules (decisions, documented here and in the reply):

* **Credit usage** = open balance in the reporting currency (foreign invoices converted with
  ``[company] fx_rates``) / credit limit. Level: ``red`` ≥ 90%, ``yellow`` ≥ 70%, else ``ok``;
  no limit set (0) → no usage figure.
* **Statute of limitations** (诉讼时效): per invoice, as ``storage/statute.py`` and
  ``domain/statute.py`` reckon it (the same rule as the statute_watch job): each open invoice's
  last day from its due date and what interrupted it; a lapsed period stays lapsed. The card lists
  the ``STATUTE_SHOWN`` nearest last days (lapsed ones first), so an invoice that expires in days
  is not hidden behind the customer's latest due date.
* **Late fee** (滞纳金): ``domain.late_fees.contract_fee`` with the tiers of the customer's contract
  clause on each overdue invoice's balance day by day, capped; none without a clause; disputed
  invoices are left out (the claim is contested); an estimate for the conversation, never booked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import aging as aging_q
from storage import plans
from storage.plans import Progress
from domain.late_fees import contract_fee
from domain.statute import Reckoning
from storage import balance_history
from storage import statute as statute_q
from storage import unapplied as unapplied_q
from storage.fx import convert, rates_for
from storage.models import (Customer, Dispute, FollowUp, Payment, Person, Promise,
                            Receivable)
from storage.scope import Scope

CENT = Decimal("0.01")
STATUTE_SHOWN = 3          # invoices listed on the card, nearest last day first


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
    promise: Promise | None       # the next one of a payment plan's instalments
    late_fee: Decimal             # in the invoice's currency
    plan: Progress | None = None  # a live payment plan (storage/plans.py)

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
    expiries: list[tuple[Receivable, Reckoning]]   # the nearest statute last days, per invoice
    expiries_total: int                            # of how many open invoices
    statute_years: int
    late_fee_total: Decimal                    # reporting currency
    unconverted: dict[str, Decimal] = field(default_factory=dict)
    unapplied: dict[str, Decimal] = field(default_factory=dict)   # on account (预收), per currency


async def unapplied_cash(session: AsyncSession, customer_id: int) -> dict[str, Decimal]:
    """What the customer paid and no invoice has taken yet (预收), per currency (storage/unapplied.py)."""
    return (await unapplied_q.by_customer(session, [customer_id])).get(customer_id, {})


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
        # a plan's next instalment: the earliest open one
        for p in (await session.execute(select(Promise).where(Promise.receivable_id.in_(ids), Promise.status == "open")
                                        .order_by(Promise.promised_date.desc(), Promise.id))).scalars():
            promises_by_r[p.receivable_id] = p
    plan_of = await plans.progress_of(session, ids) if ids else {}
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
        items.append(OpenItem(r, days, promises_by_r.get(r.id), fee, plan_of.get(r.id)))
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
    reckoned = await statute_q.reckonings(session, receivables, today=as_of, statute=statute,
                                          cross_border={customer.id: customer.cross_border},
                                          work_calendar=work_calendar, tz=tz)
    expiries = sorted(((r, reckoned[r.id]) for r in receivables), key=lambda x: (x[1].last_day, x[0].id))
    rep = await session.get(Person, customer.rep_id) if customer.rep_id else None
    return CustomerCard(customer=customer, rep=rep, as_of=as_of, open_total=open_total, usage=usage,
                        level=credit_level(usage, *((credit.yellow, credit.red) if credit else ())), items=items, aging=report, followups=fus,
                        promises=promises, disputes=disputes, last_payment=last_payment,
                        expiries=expiries[:STATUTE_SHOWN], expiries_total=len(expiries),
                        statute_years=statute_q.years_for(statute, customer.cross_border),
                        late_fee_total=fee_total, unconverted=unconverted,
                        unapplied=await unapplied_cash(session, customer.id))
