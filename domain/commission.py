"""Commission on collections (回款提成): tiered rates on each collection, like income-tax brackets.

A collection is one payment's money applied to one rep's invoices. Its commission is the
marginal sum over the tiers: with the defaults, 2 % of the part up to ¥100,000, 3 % of the part
from ¥100,000 to ¥500,000, 5 % of the part above. A rep's month is the sum over the month's
collections, each rounded to the cent (half up).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Sequence

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Tier:
    upto: Decimal | None        # the tier's upper edge (None: no edge, the last tier)
    rate: Decimal


DEFAULT_TIERS = (Tier(Decimal("100000"), Decimal("0.02")), Tier(Decimal("500000"), Decimal("0.03")),
                 Tier(None, Decimal("0.05")))


def tiers_from(raw: Iterable[dict]) -> tuple[Tier, ...]:
    """Tiers from configuration rows ``{upto = 100000, rate = "0.02"}``; the last without ``upto``.
    Raises ValueError with what is wrong."""
    out = []
    for i, row in enumerate(raw, start=1):
        if not isinstance(row, dict) or "rate" not in row:
            raise ValueError(f"tier {i}: expected {{upto = ..., rate = \"0.02\"}}, got {row!r}")
        upto = row.get("upto")
        tier = Tier(None if upto is None else Decimal(str(upto)), Decimal(str(row["rate"])))
        if not Decimal("0") <= tier.rate < 1:
            raise ValueError(f"tier {i}: rate must be a share between 0 and 1 (0.02 for 2 %), got {row['rate']!r}")
        out.append(tier)
    if not out or out[-1].upto is not None or any(t.upto is None for t in out[:-1]):
        raise ValueError("only the last tier, and it must, has no upto")
    edges = [t.upto for t in out[:-1]]
    if edges != sorted(set(edges)) or (edges and edges[0] <= 0):
        raise ValueError(f"tier edges must be positive and increasing, got {[str(e) for e in edges]}")
    return tuple(out)


def parts(amount: Decimal, tiers: Sequence[Tier] = DEFAULT_TIERS) -> tuple[Decimal, ...]:
    """The part of one collection of ``amount`` yuan that falls in each tier (zero above it)."""
    out, low = [], Decimal("0")
    for t in tiers:
        high = amount if t.upto is None else min(amount, t.upto)
        out.append(high - low if high > low else Decimal("0"))
        low = t.upto if t.upto is not None else low
    return tuple(out)


def on_collection(amount: Decimal, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Decimal:
    """The commission on one collection of ``amount`` yuan."""
    total = sum((part * t.rate for part, t in zip(parts(amount, tiers), tiers)), Decimal("0"))
    return total.quantize(CENT, ROUND_HALF_UP)


def for_month(collections: Iterable[Decimal], tiers: Sequence[Tier] = DEFAULT_TIERS) -> Decimal:
    return sum((on_collection(a, tiers) for a in collections), Decimal("0.00"))
