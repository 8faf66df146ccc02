"""Collection KPIs (考核指标) as of a date, for a scope. Session first, pure queries, never commits.

Definitions (every figure in the reporting currency; foreign invoices converted with
``[company] fx_rates``; a currency without a rate is left out and listed in ``unconverted``):

* **Open / overdue / over 90** — the open balance today, the part past due, and the part more
  than 90 days past due (``storage.aging.aging`` with the single bound 90, so it is the same
  figure /aging shows). Overdue ratio = overdue / open; share over 90 = over 90 / open.
* **DSO** (应收账款周转天数) = open receivables today / sales of the last 90 days × 90, where
  sales = the full amount of every receivable issued in the 90 days ending today (issue date
  in [today − 89, today]), whatever has happened to it since. No sales → no DSO.
* **Collection rate for the month** (本月回款率) = collected / receivable due in the month, with
    - receivable due in the month = for every receivable issued by today and due by the last day
      of this month: its open balance at the start of the month (amount − payments applied before
      the 1st − write-offs booked before the 1st), counting only those still open on the 1st.
      That is: what was open at month start and due by month end, plus what was issued and falls
      due within the month.
    - collected = payments applied from the 1st through today to those same receivables (so
      prepayments on invoices due later do not inflate the rate; it cannot exceed 100%).
* **Reply timeliness** (回复及时率) = pushed items answered within their window
  (``replied_at <= pushes.window_closes_at``) / pushed items that are decided, over pushes sent in
  the last 30 days; an item is decided once it is answered, or escalated when its window closed,
  or its window has run out and not been closed yet (an item whose window is still open and
  unanswered is not counted yet). An item the close found needing no answer (an open promise not
  yet due, paid or disputed meanwhile) is left out: nobody replied, and nothing was missing.

Per rep: open, overdue, over 90 (and so the overdue ratio and the share over 90), collected,
the collection rate and reply timeliness, by the receivable's rep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, and_, case, func, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from storage import aging as aging_q
from storage.fx import convert, rates_for
from storage.models import Allocation, Payment, Person, Push, PushItem, Receivable, WriteOff
from storage.scope import Scope
from storage.types import from_cents

ZERO = Decimal("0.00")
SALES_DAYS = 90
OVER_DAYS = 90
TIMELINESS_DAYS = 30


def ratio(part: Decimal | int, whole: Decimal | int, places: str = "0.1") -> Decimal | None:
    """part / whole in percent, rounded half-up; None when there is no whole."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole) * 100).quantize(Decimal(places), ROUND_HALF_UP)


class _Rates:
    """The rates a company and a rep are both measured by (fields on the dataclasses below)."""
    open: Decimal
    overdue: Decimal
    over_90: Decimal
    collected: Decimal
    due_in_month: Decimal
    pushed: int
    on_time: int

    @property
    def overdue_ratio(self) -> Decimal | None:
        return ratio(self.overdue, self.open)

    @property
    def over_90_share(self) -> Decimal | None:
        return ratio(self.over_90, self.open)

    @property
    def collection_rate(self) -> Decimal | None:
        return ratio(self.collected, self.due_in_month)

    @property
    def timeliness(self) -> Decimal | None:
        return ratio(self.on_time, self.pushed)


@dataclass
class RepKpi(_Rates):
    rep_id: str
    name: str
    open: Decimal = ZERO
    overdue: Decimal = ZERO
    over_90: Decimal = ZERO
    collected: Decimal = ZERO
    due_in_month: Decimal = ZERO
    pushed: int = 0
    on_time: int = 0


@dataclass
class Kpi(_Rates):
    as_of: date
    month_start: date
    month_end: date
    open: Decimal = ZERO
    overdue: Decimal = ZERO
    over_90: Decimal = ZERO
    sales: Decimal = ZERO                 # issued in the last SALES_DAYS days
    collected: Decimal = ZERO
    due_in_month: Decimal = ZERO
    pushed: int = 0
    on_time: int = 0
    reps: list[RepKpi] = field(default_factory=list)
    unconverted: dict[str, Decimal] = field(default_factory=dict)
    fx_used: dict[str, Decimal] = field(default_factory=dict)       # currency → rate, as the figures used

    @property
    def dso(self) -> Decimal | None:
        if not self.sales:
            return None
        return (self.open / self.sales * SALES_DAYS).quantize(Decimal("0.1"), ROUND_HALF_UP)

    @property
    def sales_from(self) -> date:
        return self.as_of - timedelta(days=SALES_DAYS - 1)


def _month_end(d: date) -> date:
    nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return nxt - timedelta(days=1)


async def kpi(session: AsyncSession, as_of: date, now: datetime, scope: Scope = Scope(), *,
              fx_rates: dict | None = None, base_currency: str = "CNY") -> Kpi:
    rates = rates_for(fx_rates, base_currency)
    out = Kpi(as_of=as_of, month_start=as_of.replace(day=1), month_end=_month_end(as_of))
    reps: dict[str, RepKpi] = {}

    def rep(rid) -> RepKpi:
        key = rid or ""
        return reps.setdefault(key, RepKpi(key, ""))

    def money(cents, currency) -> Decimal | None:
        # a currency without a rate is left out here; the open balance reports it in `unconverted`
        return convert(from_cents(int(cents or 0)), currency, rates)

    # open, overdue, over 90: the aging figures, per rep
    report = await aging_q.aging(session, as_of, (OVER_DAYS,), scope=scope, by="rep", fx_rates=fx_rates,
                                 base_currency=base_currency)
    out.open, out.overdue, out.over_90 = report.total, report.overdue, report.buckets[-1].amount
    out.fx_used = dict(report.foreign_rates)
    for cur, amount in report.unconverted.items():
        out.unconverted[cur] = out.unconverted.get(cur, ZERO) + amount
    for key in report.groups:
        r = rep(key)
        r.open, r.overdue = report.group_total(key), report.group_overdue(key)
        r.over_90 = report.to_base(report.group_cents.get(key, []), first=len(report.buckets) - 1)

    # sales of the last 90 days (for DSO)
    stmt = (select(Receivable.currency, func.sum(type_coerce(Receivable.amount, BigInteger)))
            .where(Receivable.issue_date >= out.sales_from, Receivable.issue_date <= as_of))
    for currency, cents in (await session.execute(scope.apply(stmt).group_by(Receivable.currency))).all():
        out.sales += money(cents, currency) or ZERO

    # the month's collection rate
    ms = out.month_start
    alloc_before = (select(Allocation.receivable_id.label("rid"), func.sum(type_coerce(Allocation.amount, BigInteger)).label("s"))
                    .where(Allocation.applied_on < ms).group_by(Allocation.receivable_id).subquery())
    wo_before = (select(WriteOff.receivable_id.label("rid"), func.sum(type_coerce(WriteOff.amount, BigInteger)).label("s"))
                 .where(WriteOff.status == "approved", WriteOff.written_off_on < ms)
                 .group_by(WriteOff.receivable_id).subquery())
    # a credit note (红字发票) in the month is not money collected: it lowers what was due instead
    def month_allocs(kind: str):
        return (select(Allocation.receivable_id.label("rid"), func.sum(type_coerce(Allocation.amount, BigInteger)).label("s"))
                .join(Payment, Payment.id == Allocation.payment_id)
                .where(Allocation.applied_on >= ms, Allocation.applied_on <= as_of, Payment.kind == kind)
                .group_by(Allocation.receivable_id).subquery())
    alloc_month, credit_month = month_allocs("receipt"), month_allocs("credit_note")
    base = (type_coerce(Receivable.amount, BigInteger) - func.coalesce(alloc_before.c.s, 0)
            - func.coalesce(wo_before.c.s, 0) - func.coalesce(credit_month.c.s, 0))
    stmt = (select(Receivable.rep_id, Receivable.currency, func.sum(base), func.sum(func.coalesce(alloc_month.c.s, 0)))
            .outerjoin(alloc_before, alloc_before.c.rid == Receivable.id)
            .outerjoin(wo_before, wo_before.c.rid == Receivable.id)
            .outerjoin(alloc_month, alloc_month.c.rid == Receivable.id)
            .outerjoin(credit_month, credit_month.c.rid == Receivable.id)
            .where(Receivable.due_date <= out.month_end, Receivable.issue_date <= as_of, base > 0))
    stmt = scope.apply(stmt).group_by(Receivable.rep_id, Receivable.currency)
    # summed per currency in cents and converted once per figure (storage.aging.AgingReport's rule)
    due_c: dict[str, dict[str, int]] = {}
    got_c: dict[str, dict[str, int]] = {}
    for rid, currency, base_cents, coll_cents in (await session.execute(stmt)).all():
        if currency not in rates:
            continue
        for acc, c in ((due_c, base_cents), (got_c, coll_cents)):
            for key in (rid or "", None):
                per = acc.setdefault(key, {})
                per[currency] = per.get(currency, 0) + int(c or 0)

    def once(per: dict[str, int]) -> Decimal:
        return sum((money(c, cur) for cur, c in sorted(per.items())), ZERO)

    for key in due_c:
        if key is None:
            out.due_in_month, out.collected = once(due_c[None]), once(got_c[None])
        else:
            r = rep(key)
            r.due_in_month, r.collected = once(due_c[key]), once(got_c[key])

    # reply timeliness over the last 30 days
    on_time = case((PushItem.replied_at <= Push.window_closes_at, 1), else_=0)
    stmt = (select(Push.rep_id, func.count(PushItem.id), func.sum(on_time))
            .select_from(PushItem).join(Push, Push.id == PushItem.push_id)
            .join(Receivable, Receivable.id == PushItem.receivable_id)
            .where(Push.sent_at > now - timedelta(days=TIMELINESS_DAYS), Push.sent_at <= now,
                   or_(PushItem.replied_at.is_not(None), PushItem.escalated.is_(True),
                       and_(Push.window_closes_at <= now, Push.closed.is_(False)))))
    stmt = scope.apply(stmt).group_by(Push.rep_id)
    for rid, n, ok in (await session.execute(stmt)).all():
        r = rep(rid)
        r.pushed, r.on_time = int(n), int(ok or 0)
        out.pushed += r.pushed
        out.on_time += r.on_time

    # every rep of the scope is listed, even one with nothing to show
    people_q = select(Person).where(Person.role == "rep", Person.active.is_(True))
    if scope.rep_ids is not None:
        people_q = people_q.where(Person.id.in_(sorted(scope.rep_ids)))
    if scope.team is not None:
        people_q = people_q.where(Person.team == scope.team)
    listed = {p.id: p for p in (await session.execute(people_q)).scalars()}
    if scope.region is None and scope.customer_ids is None:
        for pid in listed:
            rep(pid)
    missing = [k for k in reps if k and k not in listed]
    if missing:
        listed.update({p.id: p for p in (await session.execute(select(Person).where(Person.id.in_(missing)))).scalars()})
    for key, r in reps.items():
        r.name = listed[key].name if key in listed else key
    out.reps = sorted(reps.values(), key=lambda r: (-r.overdue, r.name))
    return out
