"""Reading the audit log (storage/audit.py writes it): who changed what, when, from where, with
the old and new values — filtered by entity, person and date range, a page at a time, for
``arbot audit`` and /audit. Session first, pure queries.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import json

from sqlalchemy import Text, and_, cast, func, or_, select

from storage.models import AuditEntry, Customer, Person, Receivable


@dataclass(frozen=True)
class AuditQuery:
    entity: str | None = None        # receivable | customer | payment | person | import | ...
    entity_id: str | None = None     # an invoice number, a customer code, ...
    invoice: str | None = None       # an invoice's entries and those of the payments applied to it
    customer: Customer | None = None   # the customer's entries, its invoices' and its payments'
    actor: str | None = None         # a person id (or "bot", an import's operator)
    since: date | None = None        # company days, both ends included
    until: date | None = None
    action: str | None = None        # an action or its prefix ("writeoff" → writeoff.request, ...)


@dataclass
class Page:
    entries: list[AuditEntry]
    names: dict[str, str]            # actor id → person's name, where the actor is a person
    total: int
    page: int
    pages: int


def _mentions(*texts: str):
    """The entry's detail holds one of these pieces of JSON text (as written ASCII-escaped or not)."""
    detail = cast(AuditEntry.detail, Text)
    return or_(*(detail.contains(t, autoescape=True) for t in texts))


def _json_forms(value: str, suffix: str = "", prefix: str = "") -> list[str]:
    return sorted({prefix + json.dumps(value) + suffix, prefix + json.dumps(value, ensure_ascii=False) + suffix})


def _where(q: AuditQuery, tz) -> list:
    cond = []
    if q.invoice:
        # a payment's entry names the invoices it paid in its allocations ({"INV-A1": "3000.00"})
        cond.append(or_(and_(AuditEntry.entity == "receivable", AuditEntry.entity_id == q.invoice),
                        and_(AuditEntry.entity == "payment", _mentions(*_json_forms(q.invoice, ":")))))
    if q.entity:
        cond.append(AuditEntry.entity == q.entity)
    if q.entity_id:
        cond.append(AuditEntry.entity_id == q.entity_id)
    if q.customer is not None:
        invoices = select(Receivable.invoice_no).where(Receivable.customer_id == q.customer.id)
        cond.append(or_(and_(AuditEntry.entity == "customer", AuditEntry.entity_id == q.customer.code),
                        and_(AuditEntry.entity == "receivable", AuditEntry.entity_id.in_(invoices)),
                        and_(AuditEntry.entity == "payment",
                             _mentions(*_json_forms(q.customer.code, prefix='"customer": ')))))
    if q.actor:
        cond.append(AuditEntry.actor == q.actor)
    if q.since:
        cond.append(AuditEntry.at >= datetime.combine(q.since, time(0), tzinfo=tz))
    if q.until:
        cond.append(AuditEntry.at < datetime.combine(q.until + timedelta(days=1), time(0), tzinfo=tz))
    if q.action:
        cond.append(or_(AuditEntry.action == q.action, AuditEntry.action.like(q.action.replace("%", "") + ".%")))
    return cond


async def entries(session, q: AuditQuery, tz, *, page: int = 1, per_page: int | None = 20) -> Page:
    """The entries matching ``q``, newest first; ``per_page`` None: all of them."""
    cond = _where(q, tz)
    total = (await session.execute(select(func.count()).select_from(AuditEntry).where(*cond))).scalar_one()
    stmt = select(AuditEntry).where(*cond).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    pages = 1 if per_page is None else max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    if per_page is not None:
        stmt = stmt.offset((page - 1) * per_page).limit(per_page)
    rows = list((await session.execute(stmt)).scalars())
    actors = sorted({e.actor for e in rows})
    names = dict((await session.execute(select(Person.id, Person.name).where(Person.id.in_(actors)))).all()) \
        if actors else {}
    return Page(rows, names, total, page, pages)


def brief(detail: dict, limit: int = 200) -> str:
    """An entry's detail in one line of ``key=value``; a bulk creation's rows are counted, not
    listed (an import of 1,000 invoices is one entry)."""
    parts = []
    for k, v in (detail or {}).items():
        if k == "rows" and isinstance(v, list):
            parts.append(f"rows={len(v)}")
            continue
        if k == "columns" and isinstance(v, list):
            continue
        parts.append(f"{k}={v}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def as_row(e: AuditEntry, names: dict[str, str], tz) -> dict:
    return {"id": e.id, "at": e.at.astimezone(tz).isoformat(), "actor": e.actor, "actor_name": names.get(e.actor, ""),
            "channel": e.channel, "action": e.action, "entity": e.entity, "entity_id": e.entity_id,
            "detail": e.detail}
