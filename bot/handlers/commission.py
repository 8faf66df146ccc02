"""/commission (/提成): each rep's collections this month and the commission on them, scoped like
/kpi (a rep: their own); ``/commission xlsx``: the month's workbook, as /kpi xlsx. Tiers from
``[commission] tiers`` (domain/commission.py)."""
from __future__ import annotations

from bot import monthly_workbook
from bot.config import commission_tiers
from bot.core.arguments import ExportScopeArg
from bot.core.messages import Reply
from bot.core.permissions import READERS
from bot.core.router import Router
from storage.commission import month_commission

router = Router("commission")


@router.command("commission", aliases=("提成",), roles=READERS, reads_only=True, args=ExportScopeArg())
async def commission_cmd(session, narrowed, label, export, config, clock, person) -> Reply:
    """This month's collections and commission per rep; `/commission xlsx` (or 导出): as an Excel
    download, with the part of the collections in each tier."""
    if export:
        return await monthly_workbook.reply(session, narrowed, label, config, clock, person)
    tiers = commission_tiers(config)
    month = await month_commission(session, clock.today(), narrowed, tiers, config.company.fx_rates,
                                   config.company.currency)
    return Reply("commission/month.md.j2", {"m": month, "label": label, "tiers": tiers})
