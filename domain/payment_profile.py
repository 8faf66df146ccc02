"""A customer's payment profile (回款画像), read from its own history of paid invoices and promises.

Days late = the day an invoice was paid in full minus its due date (negative: paid early). The
profile keeps the whole sorted list of those days: the expected payment date of an open invoice
(domain/expected_dates.py) is read from it, conditional on how late the invoice already is.

A customer with fewer than ``MIN_HISTORY`` paid invoices borrows the days of a pool (its grade's
customers, else every customer): a new customer is expected to pay like its peers, and says so.
"""
from __future__ import annotations

import calendar
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date
from statistics import median
from typing import Iterable, Sequence

MIN_HISTORY = 3            # paid invoices a customer needs before its own days are trusted
MONTH_END_DAYS = 5         # a payment in the last five days of a month is a month-end payment
MONTH_END_HABIT = 0.5      # ... and a customer paying at least half its invoices there has the habit
TREND_RECENT = 6           # the trend compares the median of the last six paid invoices with the rest
TREND_DAYS = 5             # ... and calls it a trend only from five days' difference


@dataclass(frozen=True, slots=True)
class PaidInvoice:
    due: date
    paid_on: date          # the day the last of its money arrived


@dataclass(frozen=True)
class PaymentProfile:
    invoices: int                      # paid invoices behind the figures (the pool's when borrowed)
    days_late: tuple[int, ...]         # sorted; what expected dates are read from
    median_days_late: int
    spread_days: int                   # interquartile range of days late: how far to trust the median
    on_time_share: float               # paid on or before the due date
    month_end_share: float
    month_end_habit: bool
    promises_kept: int
    promises_broken: int
    trend_days: int                    # recent median − older median: > 0 paying later, < 0 sooner
    borrowed: str = ""                 # "" own history | "grade" | "all"
    # (days late, how many invoices): what expected dates iterate over (a pool holds thousands of
    # invoices but a few hundred distinct day counts)
    late_counts: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    @property
    def promises_kept_share(self) -> float | None:
        n = self.promises_kept + self.promises_broken
        return self.promises_kept / n if n else None

    @property
    def trend(self) -> str:
        """later | sooner | steady | "" (too little history to tell)."""
        if self.borrowed or self.invoices < TREND_RECENT + 3:
            return ""
        if self.trend_days >= TREND_DAYS:
            return "later"
        if self.trend_days <= -TREND_DAYS:
            return "sooner"
        return "steady"


@lru_cache(maxsize=4096)
def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def is_month_end(d: date) -> bool:
    return d.day > days_in_month(d.year, d.month) - MONTH_END_DAYS


def quantile(sorted_days: Sequence[int], q: float) -> int:
    """The ``q`` quantile of sorted days (nearest rank): a day count, never a fraction."""
    if not sorted_days:
        return 0
    i = min(len(sorted_days) - 1, max(0, round(q * (len(sorted_days) - 1))))
    return sorted_days[i]


def profile(paid: Iterable[PaidInvoice], promises_kept: int = 0, promises_broken: int = 0,
            pool: PaymentProfile | None = None) -> PaymentProfile:
    """The profile of one customer from its paid invoices (any order) and its closed promises.
    With fewer than ``MIN_HISTORY`` paid invoices and a ``pool``, the days are the pool's; the
    promises stay the customer's own."""
    paid = sorted(paid, key=lambda p: p.paid_on)
    if len(paid) < MIN_HISTORY and pool is not None:
        return PaymentProfile(pool.invoices, pool.days_late, pool.median_days_late, pool.spread_days,
                              pool.on_time_share, pool.month_end_share, pool.month_end_habit,
                              promises_kept, promises_broken, 0, pool.borrowed or "all", pool.late_counts)
    late_in_order = [(p.paid_on - p.due).days for p in paid]
    days = tuple(sorted(late_in_order))
    n = len(days)
    trend = 0
    if n >= TREND_RECENT + 3:
        trend = round(median(late_in_order[-TREND_RECENT:]) - median(late_in_order[:-TREND_RECENT]))
    month_end = sum(1 for p in paid if is_month_end(p.paid_on)) / n if n else 0.0
    return PaymentProfile(
        invoices=n, days_late=days, median_days_late=round(median(days)) if n else 0,
        spread_days=quantile(days, 0.75) - quantile(days, 0.25),
        on_time_share=sum(1 for d in days if d <= 0) / n if n else 0.0,
        month_end_share=month_end, month_end_habit=n >= MIN_HISTORY and month_end >= MONTH_END_HABIT,
        promises_kept=promises_kept, promises_broken=promises_broken, trend_days=trend,
        late_counts=tuple(sorted(Counter(days).items())))


def pool(paid: Iterable[PaidInvoice], kind: str) -> PaymentProfile:
    """The profile of a group of customers (a grade, everyone), lent to customers new to the ledger."""
    p = profile(paid)
    return PaymentProfile(p.invoices, p.days_late, p.median_days_late, p.spread_days, p.on_time_share,
                          p.month_end_share, p.month_end_habit, 0, 0, 0, kind, p.late_counts)


EMPTY = PaymentProfile(0, (), 0, 0, 0.0, 0.0, False, 0, 0, 0, "all")


def profiles(history: dict[int, list[PaidInvoice]], grades: dict[int, str],
             promises: dict[int, tuple[int, int]] | None = None) -> dict[int, PaymentProfile]:
    """Profiles of the customers in ``grades`` (id → grade) from ``history`` (id → paid invoices):
    those with little history borrow from their grade's pool, or everyone's when the grade has
    too little too. ``promises``: id → (kept, broken)."""
    promises = promises or {}
    everyone = pool((p for ps in history.values() for p in ps), "all")
    by_grade: dict[str, list[PaidInvoice]] = {}
    for cid, ps in history.items():
        by_grade.setdefault(grades.get(cid, ""), []).extend(ps)
    pools = {g: pool(ps, "grade") if len(ps) >= 5 * MIN_HISTORY else everyone for g, ps in by_grade.items()}
    out = {}
    for cid, grade in grades.items():
        fallback = pools.get(grade, everyone) if everyone.invoices else None
        out[cid] = profile(history.get(cid, ()), *promises.get(cid, (0, 0)), pool=fallback)
    return out
