"""/aging (/账龄): open balance by bucket, the change since last week, the top overdue customers.

Scope follows the caller (a rep: own customers; a supervisor: their team; others: all); an
argument narrows it: a team or region (华东), a rep (@张三), or a customer name.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.core.errors import UserError
from bot.core.messages import Reply
from bot.core.permissions import READERS, may_narrow_to
from bot.core.router import Router
from storage import aging as aging_q
from storage import people
from storage.customers import find_customer
from storage.models import Customer, Person
from storage.scope import Scope

router = Router("aging")


async def resolve_scope(session, scope: Scope, arg: str) -> tuple[Scope, str]:
    """Turn the argument into a narrower scope and a label for the heading."""
    arg = arg.strip()
    if not arg:
        return scope, ""
    if arg.startswith(("@", "＠")):
        found = await people.find(session, arg[1:])
        if not found:
            raise UserError("unknown_person_arg", name=arg[1:])
        p = found[0]
        if not await may_narrow_to(session, scope, rep_id=p.id):
            raise UserError("not_in_scope", what=arg)
        return scope.narrow(rep_ids={p.id}), p.name
    teams = set((await session.execute(select(Person.team).distinct())).scalars())
    if arg in teams:
        if not await may_narrow_to(session, scope, team=arg):
            raise UserError("not_in_scope", what=arg)
        return scope.narrow(team=arg), arg
    regions = set((await session.execute(select(Customer.region).distinct())).scalars())
    if arg in regions:
        if not await may_narrow_to(session, scope, region=arg):
            raise UserError("not_in_scope", what=arg)
        return scope.narrow(region=arg), arg
    match = await find_customer(session, arg, scope)
    if match.exact is None:
        if match.candidates:
            raise UserError("ambiguous_customer", query=arg, candidates=[c.name for c in match.candidates])
        raise UserError("unknown_scope", query=arg)
    if not scope.allows_customer(match.exact):
        raise UserError("not_in_scope", what=arg)
    return scope.narrow(customer_ids={match.exact.id}), match.exact.name


async def aging_figures(session, config, scope: Scope, as_of):
    cfg = config.aging
    now = await aging_q.aging(session, as_of, cfg.buckets, scope=scope, fx_rates=config.company.fx_rates,
                              base_currency=config.company.currency)
    week_ago = await aging_q.aging(session, as_of - timedelta(days=7), cfg.buckets, scope=scope,
                                   fx_rates=config.company.fx_rates, base_currency=config.company.currency)
    top = await aging_q.top_overdue_customers(session, as_of, scope, cfg.top_customers,
                                             config.company.fx_rates, config.company.currency)
    return now, week_ago, top


@router.command("aging", aliases=("账龄",), roles=READERS, reads_only=True)
async def aging_cmd(session, scope, args, config, clock, services) -> Reply:
    """Aging by bucket with shares, the change since the same day last week, the top overdue customers."""
    narrowed, label = await resolve_scope(session, scope, args)
    today = clock.today()
    report, last_week, top = await aging_figures(session, config, narrowed, today)
    from bot.charts import aging_chart
    chart = (lambda: aging_chart(report)) if report.total else None
    return Reply("aging/aging.md.j2", {"report": report, "last_week": last_week, "top": top, "label": label,
                                       "change": report.total - last_week.total,
                                       "overdue_change": report.overdue - last_week.overdue},
                 image=chart)
