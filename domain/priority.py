"""Who to chase first: a priority per overdue item, a weighted sum of six terms.

    priority = w_amount  × log10(1 + open amount / 1,000)        ¥1万 → 1.0, ¥10万 → 2.0
             + w_overdue × min(days overdue, 180) / 30           one point per month late
             + w_habit   × clamp((days overdue − usual days late) / 30, 0, 3)
                                                                 later than the customer usually pays
             + w_broken  × min(broken promises, 5)
             + w_ladder  × ladder stage (escalation steps passed)
             + w_credit  × min(open balance / credit limit, 2)
             + w_timing  × (1 in the last week of a month for a customer who pays at month-end)

The weights come from ``[priority]`` in the configuration (all 1.0 but broken promises and the
ladder, 0.5). The term that adds most is the item's reason, shown to the rep. The timing term
puts a month-end payer's invoices on the rep's list in the days its payments are being made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from domain.payment_profile import days_in_month

TERMS = ("amount", "overdue", "habit", "broken", "ladder", "credit", "timing")
MONTH_END_WEEK = 7         # the timing term's days: the last seven of a month


@dataclass(frozen=True)
class Weights:
    amount: float = 1.0
    overdue: float = 1.0
    habit: float = 1.0
    broken: float = 0.5
    ladder: float = 0.5
    credit: float = 1.0
    timing: float = 1.0


@dataclass(frozen=True, slots=True)
class ItemFacts:
    open_amount: Decimal          # in the company's currency (converted where a rate is known)
    days_overdue: int
    usual_days_late: int          # the customer's median (its profile, or its pool's)
    broken_promises: int
    ladder_stage: int
    credit_usage: float | None    # open balance / credit limit; None: no limit set
    timing: bool = False          # a month-end payer, in the last week of the month


def terms(f: ItemFacts) -> dict[str, float]:
    return {
        "amount": math.log10(1 + max(0.0, float(f.open_amount)) / 1000),
        "overdue": min(max(f.days_overdue, 0), 180) / 30,
        "habit": min(max((f.days_overdue - f.usual_days_late) / 30, 0.0), 3.0),
        "broken": float(min(max(f.broken_promises, 0), 5)),
        "ladder": float(max(f.ladder_stage, 0)),
        "credit": min(f.credit_usage, 2.0) if f.credit_usage else 0.0,
        "timing": 1.0 if f.timing else 0.0,
    }


def fast_score(amount: float, days_overdue: int, usual_days_late: int, broken: int, stage: int,
               credit_usage: float | None, w: Weights, timing: bool = False) -> float:
    """``score``'s number without its reason, from plain numbers: the morning push scores every
    overdue item (750,000 at 1M receivables) and needs the reason of a few only."""
    late = days_overdue if days_overdue > 0 else 0
    habit = (days_overdue - usual_days_late) / 30
    return (w.amount * math.log10(1 + (amount if amount > 0 else 0.0) / 1000)
            + w.overdue * (late if late < 180 else 180) / 30
            + w.habit * (0.0 if habit < 0 else 3.0 if habit > 3 else habit)
            + w.broken * (broken if broken < 5 else 5)
            + w.ladder * stage
            + w.credit * ((credit_usage if credit_usage < 2.0 else 2.0) if credit_usage else 0.0)
            + (w.timing if timing else 0.0))


def score(f: ItemFacts, w: Weights) -> tuple[float, str]:
    """The item's priority and its reason (the name of the term that adds most)."""
    t = terms(f)
    weighted = {k: getattr(w, k) * v for k, v in t.items()}
    reason = max(TERMS, key=lambda k: weighted[k])
    return sum(weighted.values()), reason


def in_month_end_week(day) -> bool:
    """Is ``day`` in the last ``MONTH_END_WEEK`` days of its month?"""
    return day.day > days_in_month(day.year, day.month) - MONTH_END_WEEK


def ladder_stage(days_overdue: int, step_days: tuple[int, ...]) -> int:
    """How many escalation steps an invoice this late has passed."""
    return sum(1 for d in step_days if days_overdue >= d)
