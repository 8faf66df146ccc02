"""Converting open balances to the reporting currency with the configured rates.

Ledgers keep each invoice in its own currency; reports convert with ``[company] fx_rates`` at
report time, exactly (Decimal, quantized to the cent). A currency without a rate is reported
apart by the callers, never guessed."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def rates_for(fx_rates: dict | None, base_currency: str = "CNY") -> dict[str, Decimal]:
    rates = {k.upper(): Decimal(str(v)) for k, v in (fx_rates or {}).items()}
    rates[base_currency] = Decimal("1")
    return rates


def convert(amount: Decimal, currency: str, rates: dict[str, Decimal]) -> Decimal | None:
    rate = rates.get(currency)
    return None if rate is None else (amount * rate).quantize(CENT, ROUND_HALF_UP)
