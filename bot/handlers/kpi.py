"""/kpi (/考核) and /dso: the collection KPIs of the caller's scope (a rep: their own; a
supervisor: their team; others: everything), optionally narrowed like /aging (team, region,
@rep, customer). ``/kpi xlsx`` (or 导出) answers with a link to the month's workbook of that
scope instead (bot/monthly_workbook.py). The figures and their definitions are in ``storage/kpi.py``; this only formats.
"""
from __future__ import annotations

from bot import monthly_workbook
from bot.core.arguments import ExportScopeArg, ScopeArg
from bot.core.messages import Reply
from bot.core.permissions import READERS
from bot.core.router import Router
from storage import kpi as kpi_q

router = Router("kpi")


async def _figures(session, narrowed, config, clock):
    return await kpi_q.kpi(session, clock.today(), clock.now(), narrowed, fx_rates=config.company.fx_rates,
                           base_currency=config.company.currency)


@router.command("kpi", aliases=("考核",), roles=READERS, reads_only=True, args=ExportScopeArg())
async def kpi_cmd(session, narrowed, label, export, config, clock, person) -> Reply:
    """Collection rate this month, DSO, overdue ratio, share over 90 days, per rep with reply
    timeliness; `/kpi xlsx` (or 导出): the month's KPI table and commission as an Excel download."""
    if export:
        return await monthly_workbook.reply(session, narrowed, label, config, clock, person)
    k = await _figures(session, narrowed, config, clock)
    return Reply("kpi/kpi.md.j2", {"k": k, "label": label, "days": kpi_q.TIMELINESS_DAYS,
                                   "sales_days": kpi_q.SALES_DAYS})


@router.command("dso", roles=READERS, reads_only=True, args=ScopeArg())
async def dso_cmd(session, narrowed, label, config, clock) -> Reply:
    """Days sales outstanding: open receivables / sales of the last 90 days × 90."""
    k = await _figures(session, narrowed, config, clock)
    return Reply("kpi/dso.md.j2", {"k": k, "label": label, "sales_days": kpi_q.SALES_DAYS})
