"""Feature routers, composed explicitly. One module per feature; each module's ``router``."""
from __future__ import annotations

from bot.core.router import Dispatcher
from bot.handlers import (aging, audit, bills, calendar, cash, claims, commission, confirm, credit_notes, customer,
                          dashboard, followup, forecast, freeze, help, kpi, letters, notices, overdue, payments,
                          reversal, statute, unapplied, writeoffs)


def routers():
    return [help.router, aging.router, overdue.router, followup.router, customer.router, kpi.router, payments.router,
            reversal.router, confirm.router, claims.router, cash.router, bills.router, dashboard.router,
            notices.router, calendar.router, forecast.router, commission.router, writeoffs.router, audit.router,
            freeze.router, statute.router, credit_notes.router, unapplied.router, letters.router]


def dispatcher() -> Dispatcher:
    return Dispatcher(routers())
