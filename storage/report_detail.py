"""The invoice lines behind a report (its 明细 sheet) and the names its groups are shown by.

Every figure of a report is as of the report's date: an invoice's balance here is its amount
less the payments applied and the write-offs booked by that date (``storage.aging``'s rule), so
the lines add up to the report's total. Session first, pure queries.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from storage.aging import as_of_sources, open_cents_as_of
from storage.fx import convert, rates_for
from storage.models import Customer, Person, Receivable
from storage.scope import Scope
from storage.types import from_cents


@dataclass
class InvoiceLine:
    customer_code: str
    customer_name: str
    invoice_no: str
    contract_no: str
    rep: str
    issue_date: date
    due_date: date
    currency: str
    open_amount: Decimal              # in the invoice's currency, as of the date
    base_amount: Decimal | None       # in the reporting currency (None: no rate)
    days_overdue: int                 # 0 when not yet due


async def open_invoices(session, as_of: date, scope: Scope = Scope(), *, fx_rates: dict | None = None,
                        base_currency: str = "CNY", limit: int | None = None) -> list[InvoiceLine]:
    """Every invoice issued by ``as_of`` and open that day, oldest due first (at most ``limit``)."""
    rates = rates_for(fx_rates, base_currency)
    src = as_of_sources(as_of)
    alloc, wo = src
    cents = open_cents_as_of(src)
    stmt = (select(Customer.code, Customer.name, Receivable.invoice_no, Receivable.contract_no, Person.name,
                   Receivable.rep_id, Receivable.issue_date, Receivable.due_date, Receivable.currency, cents)
            .select_from(Receivable).join(Customer, Customer.id == Receivable.customer_id)
            .outerjoin(Person, Person.id == Receivable.rep_id)
            .outerjoin(alloc, alloc.c.rid == Receivable.id).outerjoin(wo, wo.c.rid == Receivable.id)
            .where(Receivable.issue_date <= as_of, cents > 0))
    stmt = scope.apply(stmt, joined_customer=True, joined_person=True)
    out = []
    stmt = stmt.order_by(Receivable.due_date, Customer.code, Receivable.invoice_no)
    if limit is not None:
        stmt = stmt.limit(limit)
    for code, name, inv, contract, rep_name, rep_id, issued, due, currency, c in (await session.execute(stmt)).all():
        amount = from_cents(c)
        out.append(InvoiceLine(code, name, inv, contract or "", rep_name or rep_id or "", issued, due, currency,
                               amount, convert(amount, currency, rates), max(0, (as_of - due).days)))
    return out


async def group_names(session, by: str, keys) -> dict[str, tuple[str, str]]:
    """What an aging group's key (an internal id) is called: customer → (code, name), rep →
    (id, name); team and region keys are names already."""
    keys = [k for k in keys if k]
    if by == "customer":
        ids = [int(k) for k in keys]
        rows = (await session.execute(select(Customer.id, Customer.code, Customer.name)
                                      .where(Customer.id.in_(ids)))).all() if ids else []
        return {str(i): (code, name) for i, code, name in rows}
    if by == "rep":
        rows = (await session.execute(select(Person.id, Person.name).where(Person.id.in_(keys)))).all() if keys else []
        return {pid: (pid, name) for pid, name in rows}
    return {k: (k, k) for k in keys}
