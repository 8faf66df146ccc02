"""The month's collections per rep, for commission (domain/commission.py): one collection = one
payment's allocations to one rep's invoices, applied from the 1st of the month through ``as_of``,
converted with ``[company] fx_rates`` (a currency without a rate is left out and listed apart).
Reversed payments have no allocations left, so they count for nothing."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sqlalchemy import BigInteger, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from domain import commission as cm
from storage.fx import convert, rates_for
from storage.models import Allocation, Payment, Person, Receivable
from storage.scope import Scope
from storage.types import from_cents

ZERO = Decimal("0.00")


@dataclass
class RepCommission:
    rep_id: str
    name: str
    collections: int = 0
    collected: Decimal = ZERO
    commission: Decimal = ZERO
    by_tier: list[Decimal] = field(default_factory=list)     # collected money in each tier (domain.commission.parts)

    @property
    def tiers_used(self) -> list[int]:
        """The indexes of the tiers its collections reached."""
        return [i for i, part in enumerate(self.by_tier) if part > 0]


@dataclass
class MonthCommission:
    month_start: date
    as_of: date
    reps: list[RepCommission] = field(default_factory=list)
    unconverted: dict[str, Decimal] = field(default_factory=dict)

    @property
    def collected(self) -> Decimal:
        return sum((r.collected for r in self.reps), ZERO)

    @property
    def commission(self) -> Decimal:
        return sum((r.commission for r in self.reps), ZERO)

    @property
    def collections(self) -> int:
        return sum(r.collections for r in self.reps)

    @property
    def by_tier(self) -> list[Decimal]:
        return [sum(parts, ZERO) for parts in zip(*(r.by_tier for r in self.reps))] if self.reps else []


async def month_commission(session: AsyncSession, as_of: date, scope: Scope, tiers, fx_rates: dict | None,
                           base_currency: str) -> MonthCommission:
    rates = rates_for(fx_rates, base_currency)
    out = MonthCommission(as_of.replace(day=1), as_of)
    stmt = (select(Receivable.rep_id, Allocation.payment_id, Receivable.currency,
                   func.sum(type_coerce(Allocation.amount, BigInteger)))
            .join(Receivable, Receivable.id == Allocation.receivable_id)
            # money collected: receipts, not credit notes (红字发票), which are allocated like them
            .join(Payment, Payment.id == Allocation.payment_id)
            .where(Allocation.applied_on >= out.month_start, Allocation.applied_on <= as_of,
                   Receivable.rep_id.is_not(None), Payment.kind == "receipt"))
    stmt = scope.apply(stmt).group_by(Receivable.rep_id, Allocation.payment_id, Receivable.currency)
    reps: dict[str, RepCommission] = {}
    for rep_id, _, currency, cents in await session.execute(stmt):
        amount = from_cents(int(cents or 0))
        value = convert(amount, currency, rates)
        if value is None:
            out.unconverted[currency] = out.unconverted.get(currency, ZERO) + amount
            continue
        r = reps.setdefault(rep_id, RepCommission(rep_id, rep_id, by_tier=[ZERO] * len(tiers)))
        r.collections += 1
        r.collected += value
        r.commission += cm.on_collection(value, tiers)
        r.by_tier = [a + b for a, b in zip(r.by_tier, cm.parts(value, tiers))]
    if reps:
        for p in (await session.execute(select(Person).where(Person.id.in_(list(reps))))).scalars():
            reps[p.id].name = p.name
    out.reps = sorted(reps.values(), key=lambda r: (-r.commission, r.name))
    return out
