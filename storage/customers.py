"""Finding customers and invoices the way people type them: a code, a full name, a short name
without 有限公司, a typo, or pinyin initials (SHHX for 上海恒信). rapidfuzz scores the loose
matches; pypinyin gives the initials."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pypinyin import Style, lazy_pinyin
from rapidfuzz import fuzz, process
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Customer, Receivable
from storage.scope import Scope

# legal-form suffixes people leave out when they name a customer
_SUFFIXES = re.compile(r"(股份有限公司|有限责任公司|有限公司|集团公司|集团|公司|厂)$")
_REGION_PREFIX = re.compile(r"^(北京|上海|天津|重庆|广州|深圳|杭州|苏州|南京|成都|武汉|西安|宁波|无锡|佛山|东莞|厦门|青岛)(市)?")


def short_name(name: str) -> str:
    return _SUFFIXES.sub("", name.strip())


def initials(name: str) -> str:
    return "".join(p[0] for p in lazy_pinyin(short_name(name), style=Style.FIRST_LETTER) if p).upper()


@dataclass
class Match:
    exact: Customer | None
    candidates: list[Customer]       # for "did you mean"


async def find_customer(session: AsyncSession, query: str, scope: Scope | None = None, limit: int = 5) -> Match:
    """Exact code or name wins; otherwise one clear loose match wins; otherwise a short list.

    An exact hit outside the caller's scope is still returned (the handler refuses it without
    showing figures); loose candidates are limited to the scope, so a "did you mean" list never
    reveals another rep's customers."""
    q = query.strip()
    if not q:
        return Match(None, [])
    hit = (await session.execute(select(Customer).where((Customer.code == q) | (Customer.name == q)))).scalars().first()
    if hit is not None:
        return Match(hit, [])
    customers = [c for c in (await session.execute(select(Customer))).scalars()
                 if scope is None or scope.allows_customer(c)]
    qs = short_name(q)
    contains = [c for c in customers if qs and (qs in c.name or short_name(_REGION_PREFIX.sub("", c.name)) == qs)]
    if len(contains) == 1:
        return Match(contains[0], [])
    if contains:
        return Match(None, contains[:limit])
    if q.isascii() and q.isalpha():
        by_initials = [c for c in customers if initials(c.name).startswith(q.upper())]
        if len(by_initials) == 1:
            return Match(by_initials[0], [])
        if by_initials:
            return Match(None, by_initials[:limit])
    names = {c.id: short_name(c.name) for c in customers}
    scored = process.extract(qs, names, scorer=fuzz.WRatio, limit=limit, score_cutoff=70)
    by_id = {c.id: c for c in customers}
    ranked = [by_id[k] for _, score, k in scored]
    if len(scored) == 1 or (len(scored) > 1 and scored[0][1] >= 90 and scored[0][1] - scored[1][1] >= 10):
        return Match(ranked[0], [])
    return Match(None, ranked)


async def receivable_by_invoice(session: AsyncSession, invoice_no: str) -> Receivable | None:
    return (await session.execute(select(Receivable).where(Receivable.invoice_no == invoice_no.strip()))).scalar_one_or_none()


async def open_receivables(session: AsyncSession, customer_id: int) -> list[Receivable]:
    return list((await session.execute(select(Receivable).where(
        Receivable.customer_id == customer_id, Receivable.open_amount > 0, Receivable.status != "written_off")
        .order_by(Receivable.due_date, Receivable.id))).scalars())
