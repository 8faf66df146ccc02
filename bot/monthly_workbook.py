"""The monthly report workbook of one scope: aging against the previous month-end, the per-rep
KPI table (考核), the commission (提成), the top overdue customers and the invoices (明细).

Made by the monthly report job for last month (as of its last day) and on demand in chat by
``/kpi xlsx`` and ``/commission xlsx`` for the month so far, for the caller's scope: the figures
are those of /aging, /kpi and /commission on the same day (the same storage functions). The file
is saved under ``[reports] dir`` and reached by a signed, expiring link (bot/web/downloads.py).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot import workbooks
from bot.config import commission_tiers
from bot.core.messages import Reply
from bot.render import render
from bot.web import downloads
from storage import aging as aging_q
from storage import commission as commission_q
from storage import kpi as kpi_q
from storage import report_detail
from storage import unapplied as unapplied_q
from storage.commission import MonthCommission
from storage.models import Person
from storage.scope import Scope


@dataclass
class MonthlyFigures:
    scope_label: str
    report: aging_q.AgingReport
    last_month: aging_q.AgingReport
    k: kpi_q.Kpi
    commission: MonthCommission
    top: list
    xlsx_url: str


def previous_month_end(today: date) -> date:
    return today.replace(day=1) - timedelta(days=1)


def scope_label(scope: Scope, person: Person, named: str = "") -> str:
    if named:
        return named
    return render("reports/scope_all.j2") if scope == Scope.everything() else render("reports/scope_team.j2",
                                                                                       person=person)


def scope_tag(scope: Scope) -> str:
    """A file-name part that differs between scopes (and is the same for the same scope in every
    process: no ``hash()``), so one scope's file never overwrites another's."""
    key = json.dumps({"reps": sorted(scope.rep_ids) if scope.rep_ids is not None else None, "team": scope.team,
                      "region": scope.region,
                      "customers": sorted(scope.customer_ids) if scope.customer_ids is not None else None},
                     ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


async def make(session, config, scope: Scope, as_of: date, kpi_now: datetime, label: str, name: str,
               link_now: datetime) -> MonthlyFigures:
    """Read the figures of ``scope`` as of ``as_of`` (the reply timeliness as of ``kpi_now``),
    write the workbook ``name`` and sign its link as of ``link_now``."""
    fx, cur = config.company.fx_rates, config.company.currency
    report = await aging_q.aging(session, as_of, config.aging.buckets, scope=scope, fx_rates=fx, base_currency=cur)
    report.unapplied = await unapplied_q.on_account(session, as_of, scope)
    last_month = await aging_q.aging(session, previous_month_end(as_of), config.aging.buckets, scope=scope,
                                     fx_rates=fx, base_currency=cur)
    k = await kpi_q.kpi(session, as_of, kpi_now, scope, fx_rates=fx, base_currency=cur)
    tiers = commission_tiers(config)
    month = await commission_q.month_commission(session, as_of, scope, tiers, fx, cur)
    top = await aging_q.top_overdue_customers(session, as_of, scope, config.aging.top_customers, fx, cur)
    lines = await report_detail.open_invoices(session, as_of, scope, fx_rates=fx, base_currency=cur,
                                              limit=workbooks.DETAIL_MAX_ROWS + 1)

    def write() -> None:
        # openpyxl holds the event loop for as long as it writes (seconds for a full 明细 sheet)
        data = workbooks.monthly(config.company.name, label, report, last_month, k, top, lines, commission=month,
                                 tiers=tiers, timeliness_days=kpi_q.TIMELINESS_DAYS)
        downloads.save(config, name, data)
    await asyncio.to_thread(write)
    return MonthlyFigures(label, report, last_month, k, month, top, downloads.download_url(config, name, link_now))


async def for_chat(session, config, clock, person: Person, scope: Scope, named: str) -> MonthlyFigures:
    """The workbook of the month so far for a chat command's scope (``named``: what narrowed it)."""
    today, now = clock.today(), clock.now()
    name = f"kpi-{today.isoformat()}-{scope_tag(scope)}.xlsx"
    return await make(session, config, scope, today, now, scope_label(scope, person, named), name, now)


async def reply(session, narrowed: Scope, label: str, config, clock, person: Person) -> Reply:
    """``/kpi xlsx``, ``/commission xlsx``: the month's workbook of the scope, as a signed link."""
    f = await for_chat(session, config, clock, person, narrowed, label)
    return Reply("kpi/xlsx.md.j2", {"f": f, "label": label, "link_days": config.reports.link_days})
