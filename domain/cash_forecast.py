"""The weekly cash-in forecast (回款预测) and its walk-forward backtest.

Week ``i`` runs from ``as_of + 7i`` for seven days. Each open invoice adds its open amount times
the share its expectation (domain/expected_dates.py) puts in the week. The range (low, high) is
the expected amount ∓ 1.28 standard deviations (an 80 % band), each invoice counted as paid whole
in a week or not, independently of the others.

The backtest replays the company's own history: at each origin (an as-of day in the past) the
ledger is taken as it stood (invoices issued by then, their payments made by then, profiles from
the invoices paid by then), forecast, and compared with the money that did come in on those
invoices over the next weeks. WAPE = Σ|forecast − actual| / Σ actual over every week of every
origin. The naive forecast, for comparison: every invoice paid on its due date, what is
already overdue in the first week.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Callable, Iterable, Sequence

from domain.expected_dates import Expectation, expect, naive
from domain.payment_profile import PaidInvoice, PaymentProfile, profiles

BAND_Z = 1.28              # ±z standard deviations: the 80 % range of a normal distribution
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    customer_id: int
    due: date
    open_amount: Decimal          # in the company's currency
    promised: date | None = None  # a live promise's date (or a plan's instalment)


@dataclass(frozen=True)
class Week:
    start: date
    amount: Decimal
    low: Decimal
    high: Decimal


def forecast(invoices: Iterable[OpenInvoice], profs: dict[int, PaymentProfile], as_of: date, weeks: int,
             how: Callable[[OpenInvoice, date, PaymentProfile | None], Expectation] | None = None) -> list[Week]:
    """``weeks`` weeks of expected cash-in from ``invoices`` open on ``as_of``."""
    how = how or (lambda inv, day, prof: expect(inv.due, day, prof, inv.promised) if prof is not None
                  else naive(inv.due, day))
    # an expectation, not a booking: amounts times probabilities (floats), each week rounded to
    # the cent once at the end (_money); nothing here is ever written to the ledger
    mean = [0.0] * weeks
    var = [0.0] * weeks
    for inv in invoices:
        a = float(inv.open_amount)
        share = [0.0] * weeks
        for d, w in how(inv, as_of, profs.get(inv.customer_id)).days:
            i = (d - as_of).days // 7
            if 0 <= i < weeks:
                share[i] += w
        for i, p in enumerate(share):
            if p:
                mean[i] += a * p
                var[i] += a * a * p * (1 - min(p, 1.0))
    out = []
    for i in range(weeks):
        sd = math.sqrt(var[i])
        out.append(Week(as_of + timedelta(days=7 * i), _money(mean[i]), _money(max(0.0, mean[i] - BAND_Z * sd)),
                        _money(mean[i] + BAND_Z * sd)))
    return out


def _money(x: float) -> Decimal:
    return Decimal(repr(round(x, 2))).quantize(CENT)


@dataclass(frozen=True, slots=True)
class InvoiceHistory:
    """One invoice with its payments, for replaying the ledger as it stood on any day."""
    customer_id: int
    issue: date
    due: date
    amount: Decimal
    payments: tuple[tuple[date, Decimal], ...]     # (day, amount) in date order

    def open_on(self, day: date) -> Decimal:
        return self.amount - sum((a for d, a in self.payments if d <= day), Decimal("0"))

    def paid_in_full_on(self) -> date | None:
        return self.payments[-1][0] if self.payments and sum(a for _, a in self.payments) >= self.amount else None


@dataclass(frozen=True)
class Backtest:
    origins: tuple[date, ...]
    weeks: int
    actual: Decimal
    wape: float                   # the forecast's
    naive_wape: float
    by_origin: tuple[tuple[date, Decimal, float, float], ...]   # (origin, actual, wape, naive wape)


def _wape(pairs: Sequence[tuple[Decimal, Decimal]]) -> float:
    actual = sum((a for _, a in pairs), Decimal("0"))
    return float(sum((abs(f - a) for f, a in pairs), Decimal("0")) / actual) if actual else 0.0


def backtest(history: Sequence[InvoiceHistory], grades: dict[int, str], origins: Sequence[date],
             weeks: int = 12, history_days: int = 365) -> Backtest:
    """Walk forward over ``origins``: at each, forecast from what was known then (profiles from
    the invoices due in the ``history_days`` before, as storage/payment_history.py reads them),
    compare with what came in on the invoices open then."""
    all_pairs: list[tuple[Decimal, Decimal]] = []
    naive_pairs: list[tuple[Decimal, Decimal]] = []
    rows = []
    for o in origins:
        known: dict[int, list[PaidInvoice]] = {}
        open_now: list[OpenInvoice] = []
        actual = [Decimal("0")] * weeks
        for inv in history:
            if inv.issue > o:
                continue
            full = inv.paid_in_full_on()
            if full is not None and full <= o:
                if (o - inv.due).days <= history_days:
                    known.setdefault(inv.customer_id, []).append(PaidInvoice(inv.due, full))
                continue
            left = inv.open_on(o)
            if left <= 0:
                continue
            open_now.append(OpenInvoice(inv.customer_id, inv.due, left))
            for d, a in inv.payments:
                i = (d - o).days // 7
                if d > o and i < weeks:
                    actual[i] += a
        profs = profiles(known, grades)
        fc = forecast(open_now, profs, o, weeks)
        nv = forecast(open_now, {}, o, weeks)
        pairs = [(w.amount, a) for w, a in zip(fc, actual)]
        npairs = [(w.amount, a) for w, a in zip(nv, actual)]
        all_pairs += pairs
        naive_pairs += npairs
        rows.append((o, sum(actual, Decimal("0")), _wape(pairs), _wape(npairs)))
    return Backtest(tuple(origins), weeks, sum((a for _, a in all_pairs), Decimal("0")), _wape(all_pairs),
                    _wape(naive_pairs), tuple(rows))


def origins_for(first_issue: date, last_day: date, weeks: int, step_days: int = 28, count: int = 12) -> list[date]:
    """Up to ``count`` origins, ``step_days`` apart, the last one ``weeks`` weeks before
    ``last_day`` (so every forecast week has its actuals), none before a quarter of history."""
    last = last_day - timedelta(days=7 * weeks)
    earliest = first_issue + timedelta(days=90)
    out = []
    o = last
    while o >= earliest and len(out) < count:
        out.append(o)
        o -= timedelta(days=step_days)
    return sorted(out)
