"""Ledgers whose customers have known payment habits, for the forecast's backtest.

Each customer gets one habit and keeps it: ``prompt`` (pays from 5 days early to 3 days late),
``late30`` (25–35 days late), ``month_end`` (at the end of the month, 0–10 days after the due
date), ``slow`` (10–60 days late, one invoice in ten never paid) and ``erratic`` (0–90 days
late). Invoices are issued on working days over ``months`` months before ``today`` with terms of
30/60 days; about one in eight is paid in two transfers. Deterministic for a seed.
"""
from __future__ import annotations

import calendar
import random
from datetime import date, timedelta
from decimal import Decimal

from domain.cash_forecast import InvoiceHistory

HABITS = (("prompt", 30), ("late30", 20), ("month_end", 20), ("slow", 20), ("erratic", 10))
GRADE_OF = {"prompt": "A", "late30": "B", "month_end": "B", "slow": "C", "erratic": "C"}


def _month_end(d: date, rng: random.Random) -> date:
    last = calendar.monthrange(d.year, d.month)[1]
    return d.replace(day=last - rng.randint(0, 3))


def paid_day(habit: str, due: date, rng: random.Random) -> date | None:
    if habit == "prompt":
        return due + timedelta(days=rng.randint(-5, 3))
    if habit == "late30":
        return due + timedelta(days=rng.randint(25, 35))
    if habit == "month_end":
        return _month_end(due + timedelta(days=rng.randint(0, 10)), rng)
    if habit == "slow":
        return None if rng.random() < 0.1 else due + timedelta(days=rng.randint(10, 60))
    return due + timedelta(days=rng.randint(0, 90))


def ledger(customers: int, invoices: int, today: date, months: int = 18, seed: int = 1
           ) -> tuple[list[InvoiceHistory], dict[int, str], dict[int, str]]:
    """(invoice histories, grade per customer, habit per customer); payments after ``today`` are
    not yet known and left out."""
    rng = random.Random(seed)
    names, weights = zip(*HABITS)
    habit = {c: rng.choices(names, weights)[0] for c in range(customers)}
    span = months * 30
    out = []
    for _ in range(invoices):
        c = rng.randrange(customers)
        issue = today - timedelta(days=rng.randint(0, span))
        due = issue + timedelta(days=rng.choice((30, 30, 60)))
        amount = Decimal(max(100, int(rng.lognormvariate(9.0, 1.0)))).quantize(Decimal("1"))
        day = paid_day(habit[c], due, rng)
        pays: tuple = ()
        if day is not None:
            day = max(day, issue)
            if rng.random() < 0.125 and amount >= 200:
                first = (amount / 2).quantize(Decimal("1"))
                early = max(issue, day - timedelta(days=rng.randint(5, 20)))
                pays = ((early, first), (day, amount - first))
            else:
                pays = ((day, amount),)
        pays = tuple(p for p in pays if p[0] <= today)
        out.append(InvoiceHistory(c, issue, due, amount, pays))
    return out, {c: GRADE_OF[h] for c, h in habit.items()}, habit
