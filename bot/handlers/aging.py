"""/aging (/账龄): open balance by bucket, the change since last week, the top overdue customers.

Scope follows the caller (a rep: own customers; a supervisor: their team; others: all); an
argument narrows it: a team or region (华东), a rep (@张三), or a customer name.
"""
from __future__ import annotations

from datetime import timedelta

from bot.core.arguments import ScopeArg
from bot.core.messages import Reply
from bot.core.permissions import READERS
from bot.core.router import Router
from storage import aging as aging_q
from storage import unapplied as unapplied_q
from storage.scope import Scope

router = Router("aging")


async def aging_figures(session, config, scope: Scope, as_of):
    cfg = config.aging
    now = await aging_q.aging(session, as_of, cfg.buckets, scope=scope, fx_rates=config.company.fx_rates,
                              base_currency=config.company.currency)
    week_ago = await aging_q.aging(session, as_of - timedelta(days=7), cfg.buckets, scope=scope,
                                   fx_rates=config.company.fx_rates, base_currency=config.company.currency)
    top = await aging_q.top_overdue_customers(session, as_of, scope, cfg.top_customers,
                                             config.company.fx_rates, config.company.currency)
    # unapplied cash beside the receivables, as of each date (storage/unapplied.py)
    now.unapplied = await unapplied_q.on_account(session, as_of, scope)
    week_ago.unapplied = await unapplied_q.on_account(session, as_of - timedelta(days=7), scope)
    return now, week_ago, top


@router.command("aging", aliases=("账龄",), roles=READERS, reads_only=True, args=ScopeArg())
async def aging_cmd(session, narrowed, label, config, clock) -> Reply:
    """Aging by bucket with shares, the change since the same day last week, the top overdue customers."""
    today = clock.today()
    report, last_week, top = await aging_figures(session, config, narrowed, today)
    from bot.charts import aging_chart
    chart = (lambda: aging_chart(report)) if report.total else None
    return Reply("aging/aging.md.j2", {"report": report, "last_week": last_week, "top": top, "label": label,
                                       "change": report.total - last_week.total,
                                       "overdue_change": report.overdue - last_week.overdue},
                 image=chart)
