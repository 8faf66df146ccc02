"""The 12-week cash-in forecast of a scope, and the backtest of the company's own history
(the rules: domain/cash_forecast.py; the reads: storage/payment_history.py)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from domain import cash_forecast as cf
from storage import payment_history as ph
from storage.scope import Scope


async def forecast(session: AsyncSession, as_of: date, weeks: int, scope: Scope, fx_rates: dict | None,
                   base_currency: str) -> tuple[list[cf.Week], dict[str, Decimal]]:
    """The weeks, and the open amounts left out for want of an exchange rate (per currency)."""
    invoices, grades, unconverted = await ph.open_invoices(session, as_of, scope, fx_rates, base_currency)
    profiles = await ph.profiles_of(session, grades, as_of)
    return cf.forecast(invoices, profiles, as_of, weeks), unconverted


async def backtest(session: AsyncSession, as_of: date, weeks: int, scope: Scope, fx_rates: dict | None,
                   base_currency: str) -> cf.Backtest | None:
    """Walk-forward over up to twelve past origins four weeks apart, the last one ``weeks`` weeks
    before ``as_of``; None when the history is too short for one."""
    history, grades = await ph.invoice_histories(session, scope, fx_rates, base_currency)
    history = [h for h in history if h.issue <= as_of]
    if not history:
        return None
    origins = cf.origins_for(min(h.issue for h in history), as_of, weeks)
    if not origins:
        return None
    # what came in after as_of is not known on as_of
    history = [cf.InvoiceHistory(h.customer_id, h.issue, h.due, h.amount, tuple(p for p in h.payments if p[0] <= as_of))
               for h in history]
    return cf.backtest(history, grades, origins, weeks)
