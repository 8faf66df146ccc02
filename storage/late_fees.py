"""Late fees (滞纳金): an estimate for reports, never booked to the ledger.

Tiered by days overdue: each tier is ``(up_to_day, daily_rate)``; the last tier's ``up_to_day``
is ``None`` (open-ended). The default follows the common contract clause "0.05% per day in the
first month, 0.1% per day from the second": days 1–30 at 0.05%, day 31 on at 0.1%.

The tiers are module constants for now; another engineer is moving them to configuration, and
callers already pass ``tiers`` explicitly so that move changes no call site's arithmetic.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")

# (last day of the tier, rate per day); None = every day after the previous tier
DEFAULT_TIERS: tuple[tuple[int | None, Decimal], ...] = (
    (30, Decimal("0.0005")),
    (None, Decimal("0.001")),
)


def late_fee(amount: Decimal, days: int, tiers=DEFAULT_TIERS) -> Decimal:
    """Simple (not compounded) interest on ``amount`` for ``days`` overdue, tier by tier,
    rounded half-up to the cent once at the end. Not overdue (days ≤ 0) or nothing owed → 0."""
    if days <= 0 or amount <= 0:
        return Decimal("0.00")
    total, start = Decimal("0"), 0
    for up_to, rate in tiers:
        end = days if up_to is None else min(days, up_to)
        if end > start:
            total += Decimal(amount) * Decimal(rate) * (end - start)
            start = end
        if start >= days:
            break
    return total.quantize(CENT, ROUND_HALF_UP)
