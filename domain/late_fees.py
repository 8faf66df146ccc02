"""Late fees (滞纳金): an estimate for letters and reports, never booked to the ledger.

Tiered daily rates: the tier with the highest ``from_day`` not above a day's number applies to
that day (default 0.05%/day for days 1-30, 0.1%/day from day 31). Exact decimal arithmetic,
rounded once at the end to the cent (half up).
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Mapping

CENT = Decimal("0.01")


def _tiers(tiers: Iterable) -> list[tuple[int, Decimal]]:
    out = []
    for t in tiers:
        if isinstance(t, Mapping):
            from_day, rate = t["from_day"], t["rate"]
        else:
            from_day, rate = t
        if isinstance(rate, float):
            raise TypeError("late-fee rates must be decimal strings, not floats")
        out.append((int(from_day), Decimal(str(rate))))
    return sorted(out)


def late_fee(amount: Decimal, days_overdue: int, tiers) -> Decimal:
    """The fee on ``amount`` after ``days_overdue`` days (0 or less: nothing)."""
    if isinstance(amount, float):
        raise TypeError("amount must be Decimal, not float")
    ts = _tiers(tiers)
    if days_overdue <= 0 or not ts or amount <= 0:
        return Decimal("0.00")
    total_rate = Decimal(0)
    for i, (start, rate) in enumerate(ts):
        end = ts[i + 1][0] - 1 if i + 1 < len(ts) else days_overdue
        end = min(end, days_overdue)
        if end >= start:
            total_rate += rate * (end - start + 1)
    return (Decimal(amount) * total_rate).quantize(CENT, rounding=ROUND_HALF_UP)
