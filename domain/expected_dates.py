"""When an open invoice's money is expected: a distribution over days, from the customer's
payment profile, conditional on how late the invoice already is.

The customer's past days late that are still possible today (at least the days already passed
since the due date) are equally likely; a month-end payer's dates move to the end of their
month. An invoice later than any the customer ever paid is "stale": a ``STALE_SHARE`` of it is
spread evenly over the next ``STALE_DAYS`` days, the rest is not expected in that time. A live
promise takes its kept share (the customer's promises kept, ``PROMISE_TRUST`` without any) on
its date. The expected date is the median of the distribution.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from domain.payment_profile import MONTH_END_DAYS, PaymentProfile, days_in_month, is_month_end

STALE_SHARE = 0.3          # of an invoice later than all its customer's history, the share expected ...
STALE_DAYS = 84            # ... spread over this many days (the forecast's twelve weeks)
PROMISE_TRUST = 0.7        # a promise's weight when the customer has never kept or broken one


@dataclass(frozen=True, slots=True)
class Expectation:
    """``days``: (date, share of the open amount) pairs, dates on or after the as-of day, shares
    summing to at most 1 (the rest: not expected in sight)."""
    days: tuple[tuple[date, float], ...]
    stale: bool

    @property
    def expected_date(self) -> date | None:
        """The date by which half of what is expected has come (None: nothing expected)."""
        total = sum(w for _, w in self.days)
        if total <= 0:
            return None
        run = 0.0
        for d, w in sorted(self.days):
            run += w
            if run >= total / 2:
                return d
        return self.days[-1][0]


def _month_end(d: date) -> date:
    """The day a month-end payer pays a payment falling on ``d``: ``d`` itself in the last days of
    its month, else the last day of its month."""
    if is_month_end(d):
        return d
    last = days_in_month(d.year, d.month)
    return d.replace(day=max(d.day, last - MONTH_END_DAYS // 2))


def expect(due: date, as_of: date, prof: PaymentProfile, promised: date | None = None) -> Expectation:
    """The distribution of the payment date of an invoice due ``due``, unpaid on ``as_of``."""
    passed = (as_of - due).days                      # days late already (negative: not yet due)
    possible = [(late, n) for late, n in prof.late_counts if late >= passed]
    days: dict[date, float] = {}
    stale = False
    if possible:
        total = sum(n for _, n in possible)
        for late, n in possible:
            on = due + timedelta(days=late)
            if prof.month_end_habit:
                on = max(as_of, _month_end(on))
            days[on] = days.get(on, 0.0) + n / total
    elif prof.days_late or passed > 0:
        stale = True
        w = STALE_SHARE / STALE_DAYS
        for i in range(STALE_DAYS):
            on = as_of + timedelta(days=i)
            days[on] = days.get(on, 0.0) + w
    else:                                            # nothing known at all: the due date
        days[max(due, as_of)] = 1.0
    if promised is not None and promised >= as_of:
        kept = prof.promises_kept_share
        trust = PROMISE_TRUST if kept is None else kept
        days = {d: w * (1 - trust) for d, w in days.items()}
        days[promised] = days.get(promised, 0.0) + trust
    return Expectation(tuple(sorted(days.items())), stale)


def naive(due: date, as_of: date) -> Expectation:
    """"Paid on its due date": what is already overdue, on the as-of day."""
    return Expectation(((max(due, as_of), 1.0),), False)
