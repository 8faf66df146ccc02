"""/forecast (/回款预测): the cash expected over the next twelve weeks, scoped like /aging.

From each open invoice's expected payment date (its customer's payment habit, its live promise);
disputed and written-off invoices are left out. How it is worked out: domain/cash_forecast.py."""
from __future__ import annotations

from bot.core.arguments import ScopeArg
from bot.core.messages import Reply
from bot.core.permissions import READERS
from bot.core.router import Router
from storage import forecast as fc

router = Router("forecast")
WEEKS = 12


@router.command("forecast", aliases=("回款预测", "预测"), roles=READERS, reads_only=True, args=ScopeArg())
async def forecast_cmd(session, narrowed, label, config, clock) -> Reply:
    """Expected cash-in per week for twelve weeks, with its range."""
    today = clock.today()
    weeks, unconverted = await fc.forecast(session, today, WEEKS, narrowed, config.company.fx_rates,
                                           config.company.currency)
    total = sum((w.amount for w in weeks), start=weeks[0].amount * 0)
    return Reply("forecast/forecast.md.j2", {"weeks": weeks, "label": label, "today": today, "total": total,
                                              "first4": sum((w.amount for w in weeks[:4]), start=total * 0),
                                              "unconverted": unconverted})
