"""The managers' reports: the weekly aging report to the managers' group(s) and the monthly
aging report to sales, finance and legal (DOMAIN.md: "weekly aging distribution chart; monthly
aging report to sales, finance and legal by the 5th of each month").

Figures come from the same functions as /aging and /kpi (``storage.aging``, ``storage.kpi``).
Files (chart PNG, XLSX) are written under ``[reports] dir`` and linked by signed URLs. Both jobs
are idempotent for their fire: files are rewritten whole and every message carries an outbox key
naming the period, so a re-run sends nothing twice.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from bot import monthly_workbook, notify, workbooks
from bot.charts import aging_chart
from bot.core.permissions import scope_for
from bot.handlers.aging import aging_figures
from bot.jobs.context import JobContext
from bot.render import render
from bot.web import downloads
from storage import aging as aging_q
from storage import kpi as kpi_q
from storage import people, report_detail
from storage.scope import Scope


def parse_group(entry: str) -> tuple[str, str, str]:
    """"local:mgmt" → (local, group, mgmt); "<platform>:robot:managers" → (<platform>, robot, managers)."""
    parts = entry.split(":")
    if len(parts) == 2:
        return parts[0], "group", parts[1]
    return parts[0], parts[1], parts[2]


def team_rows(report: aging_q.AgingReport) -> list[dict]:
    # each team's figures converted once from its own per-currency sums (AgingReport's rounding rule)
    rows = [{"name": name, "buckets": buckets, "total": report.group_total(name), "overdue": report.group_overdue(name)}
            for name, buckets in report.groups.items()]
    return sorted(rows, key=lambda r: (-r["total"], r["name"]))


async def weekly_aging_report(ctx: JobContext) -> str:
    """Aging by bucket with the week's change, by team, top overdue customers, the chart and an XLSX."""
    s, today, now, cfg = ctx.session, ctx.today, ctx.at, ctx.config
    groups = [parse_group(g) for g in cfg.reports.manager_groups]
    if not groups:
        return "no [reports] manager_groups configured; nothing sent"
    report, last_week, top = await aging_figures(s, cfg, Scope.everything(), today)
    by_team = await aging_q.aging(s, today, cfg.aging.buckets, by="team", fx_rates=cfg.company.fx_rates,
                                  base_currency=cfg.company.currency)
    teams = team_rows(by_team)
    png = aging_chart(report)
    chart_name, xlsx_name = f"aging-weekly-{today}.png", f"aging-weekly-{today}.xlsx"
    downloads.save(cfg, chart_name, png)
    lines = await report_detail.open_invoices(s, today, fx_rates=cfg.company.fx_rates, base_currency=cfg.company.currency,
                                              limit=workbooks.DETAIL_MAX_ROWS + 1)
    downloads.save(cfg, xlsx_name, workbooks.weekly(cfg.company.name, report, last_week, teams, top, lines))
    links = {"chart": downloads.download_url(cfg, chart_name, now), "xlsx": downloads.download_url(cfg, xlsx_name, now)}
    text = render("reports/weekly_aging.md.j2", company=cfg.company.name, report=report, last_week=last_week,
                  rows=list(zip(report.buckets, last_week.buckets)), teams=teams, top=top, links=links,
                  overdue_share=kpi_q.ratio(report.overdue, report.total), link_days=cfg.reports.link_days)
    sent = 0
    for platform, kind, target in groups:
        key = f"report:weekly:{today}:{platform}:{kind}:{target}"
        sent += await notify.to_chat(s, platform, kind, target, text, key=key, now=now,
                                     title=render("reports/title_weekly.j2", as_of=today))
        if ctx.services.capabilities(platform).takes_image(kind):
            # where this destination shows images, the chart itself too; everywhere else by link
            await notify.to_chat(s, platform, kind, target, "", key=key + ":chart", now=now, image_png=png)
    return f"weekly aging report for {today}: {sent} group message(s) queued"


def _end_of(day: date, tz) -> datetime:
    """The last moment of a day (company time): the first of the next."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


async def monthly_aging_report(ctx: JobContext) -> str:
    """Last month's aging, collection rate, DSO, top overdue customers and per-rep table, with an
    XLSX (also the KPI table and the commission: bot/monthly_workbook.py), to each person of
    ``[reports] monthly_recipients_roles``, scoped like their commands (a supervisor gets their
    team; finance, legal and managers the whole company)."""
    s, now, cfg = ctx.session, ctx.at, ctx.config
    month_end = monthly_workbook.previous_month_end(ctx.today)
    recipients = await people.by_role(s, *cfg.reports.monthly_recipients_roles)
    by_scope: dict[Scope, monthly_workbook.MonthlyFigures] = {}
    sent = 0
    for person in recipients:
        scope = await scope_for(s, person)
        if scope not in by_scope:
            tag = "all" if scope == Scope.everything() else person.id
            # every figure as of the month's end, the report's date, not of the day it is sent (the
            # 5th): the reply timeliness too (its 30 days end with the month)
            by_scope[scope] = await monthly_workbook.make(
                s, cfg, scope, month_end, _end_of(month_end, cfg.tz), monthly_workbook.scope_label(scope, person),
                f"aging-monthly-{month_end:%Y-%m}-{tag}.xlsx", now)
        f = by_scope[scope]
        text = render("reports/monthly_aging.md.j2", person=person, month=month_end, scope_label=f.scope_label,
                      report=f.report, last_month=f.last_month, k=f.k, top=f.top, xlsx_url=f.xlsx_url,
                      sales_days=kpi_q.SALES_DAYS, link_days=cfg.reports.link_days)
        sent += await notify.to_person(s, person, text, key=f"report:monthly:{month_end:%Y-%m}", now=now,
                                       platforms=ctx.services.platforms,
                                       title=render("reports/title_monthly.j2", month=month_end))
    return f"monthly aging report for {month_end:%Y-%m}: {sent} message(s) to {len(recipients)} person(s), {len(by_scope)} workbook(s)"
