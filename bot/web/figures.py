"""What the dashboard shows, for one person's scope: aging by bucket and team, the DSO trend
of the last six months, per-rep reply timeliness, promises due this week, the twelve-week cash-in
forecast, the payment profile of the top overdue customers, and (for the roles that run the bot) outbox and job health. Every figure comes from
storage.aging / storage.kpi / storage.forecast."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.handlers.aging import aging_figures
from bot.outbox import backlog
from bot.web.ops import dead_letters, last_job_runs
from storage import aging as aging_q
from storage import forecast as forecast_q
from storage import kpi as kpi_q
from storage import payment_history
from storage import writeoffs
from storage.models import Customer, Person, Promise, Receivable
from storage.scope import Scope

OPS_ROLES = frozenset({"admin", "finance", "manager", "auditor"})
TREND_MONTHS = 6
FORECAST_WEEKS = 12


def trend_dates(today: date, months: int = TREND_MONTHS) -> list[date]:
    """The ends of the previous months, oldest first, then today: 06-30 … 10-31, 11-23."""
    out, d = [], today
    for _ in range(months - 1):
        d = d.replace(day=1) - timedelta(days=1)
        out.append(d)
    return list(reversed(out)) + [today]


async def promises_this_week(session: AsyncSession, scope: Scope, today: date) -> list[dict]:
    monday = today - timedelta(days=today.weekday())
    stmt = (select(Promise, Receivable.invoice_no, Receivable.currency, Customer.name, Person.name)
            .join(Receivable, Receivable.id == Promise.receivable_id)
            .join(Customer, Customer.id == Receivable.customer_id)
            .outerjoin(Person, Person.id == Receivable.rep_id)
            .where(Promise.status == "open", Promise.promised_date >= monday,
                   Promise.promised_date <= monday + timedelta(days=6))
            .order_by(Promise.promised_date, Promise.id))
    stmt = scope.apply(stmt, joined_customer=True, joined_person=True)
    return [{"date": p.promised_date, "amount": p.amount, "currency": cur, "invoice": inv, "customer": cust,
             "rep": rep or "", "overdue": p.promised_date < today}
            for p, inv, cur, cust, rep in (await session.execute(stmt)).all()]


async def dashboard_figures(session: AsyncSession, services, state, person: Person, scope: Scope,
                            now: datetime) -> dict:
    cfg = services.config
    fx, cur = cfg.company.fx_rates, cfg.company.currency
    today = now.date()
    report, last_week, top = await aging_figures(session, cfg, scope, today)
    by_team = await aging_q.aging(session, today, cfg.aging.buckets, scope=scope, by="team", fx_rates=fx,
                                  base_currency=cur)
    teams = sorted(({"name": name, "buckets": b, "total": by_team.group_total(name)}
                    for name, b in by_team.groups.items()), key=lambda t: (-t["total"], t["name"]))
    k = await kpi_q.kpi(session, today, now, scope, fx_rates=fx, base_currency=cur)
    trend = []
    for d in trend_dates(today):
        kk = k if d == today else await kpi_q.kpi(session, d, now, scope, fx_rates=fx, base_currency=cur)
        trend.append({"as_of": d, "dso": kk.dso})
    top_dso = max((t["dso"] for t in trend if t["dso"] is not None), default=None)
    weeks, _ = await forecast_q.forecast(session, today, FORECAST_WEEKS, scope, fx, cur)
    top_week = max((w.high for w in weeks), default=None)
    # the top customers' payment habits, in the words /customer uses (templates/profile/summary.j2)
    grades = dict((await session.execute(select(Customer.id, Customer.grade).where(
        Customer.id.in_([t.customer_id for t in top])))).all()) if top else {}
    profiles = await payment_history.profiles_of(session, grades, today) if grades else {}
    out = {"person": person, "now": now, "report": report, "last_week": last_week, "top": top, "teams": teams,
           "k": k, "trend": trend, "top_dso": top_dso, "promises": await promises_this_week(session, scope, today),
           "forecast": weeks, "top_week": top_week, "profiles": profiles,
           "ops": None, "company": cfg.company.name, "days": kpi_q.TIMELINESS_DAYS, "sales_days": kpi_q.SALES_DAYS,
           "writeoffs": await writeoffs.register(session, scope)}
    if person.role in OPS_ROLES:
        sender = state.sender
        out["ops"] = {"backlog": await backlog(session), "dead": await dead_letters(session),
                      "jobs": await last_job_runs(session),
                      "stats": dict(sender.stats) if sender else {}, "alerts": dict(sender.alerts) if sender else {},
                      "latency": sender.last_latency if sender else None,
                      "scheduler": state.scheduler is not None and state.scheduler.scheduler.running}
    return out
