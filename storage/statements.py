"""Monthly statements (对账单) and the customer's answer to them.

A statement freezes what the customer was shown (each open invoice and the balance per currency)
when it is made, so the answer — confirmed, or disputed line by line — is evidence of exactly
those figures: who answered (the name they typed), when, from which address and browser. A
statement is answered once (:func:`answer` changes only a statement still ``sent``).

A confirmation is the debtor's written acknowledgement of the invoices it lists: it is recorded
for the statute of limitations through ``storage.reminders.record_confirmation``. A disputed
line opens a dispute on its invoice (``storage.collection.open_dispute``), which pauses
collection of it until someone resolves it. Session first, never commits.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage import reminders as rem
from storage.collection import open_dispute
from storage.models import Contact, Customer, Receivable, Statement

CUSTOMER = "customer"          # the actor of what a customer's contact did on the page


class AlreadyAnswered(Exception):
    def __init__(self, statement: Statement):
        super().__init__(statement.status)
        self.statement = statement


async def customers_with_balance(session: AsyncSession, after_id: int, limit: int) -> list[Customer]:
    """Customers with an open balance, in id order from ``after_id`` (a job reads them a page at a time)."""
    has_open = select(Receivable.customer_id).where(
        Receivable.open_amount > 0, Receivable.status != "written_off").distinct()
    return list((await session.execute(select(Customer).where(Customer.id > after_id, Customer.id.in_(has_open))
                                       .order_by(Customer.id).limit(limit))).scalars())


async def email_contacts(session: AsyncSession, customer_ids: list[int]) -> dict[int, list[Contact]]:
    out: dict[int, list[Contact]] = {i: [] for i in customer_ids}
    for c in (await session.execute(select(Contact).where(
            Contact.customer_id.in_(customer_ids), Contact.channel == "email", Contact.email != "")
            .order_by(Contact.id))).scalars():
        out[c.customer_id].append(c)
    return out


def lines_of(invoices: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """The statement's lines and balances (exact decimal text) from letters' invoice facts."""
    lines = [{"invoice_no": i["invoice_no"], "contract_no": i["contract_no"], "issue_date": i["issue_date"].isoformat(),
              "due_date": i["due_date"].isoformat(), "amount": str(i["amount"]), "open_amount": str(i["open_amount"]),
              "currency": i["currency"]} for i in invoices]
    totals: dict[str, Decimal] = {}
    for i in invoices:
        totals[i["currency"]] = totals.get(i["currency"], Decimal("0.00")) + i["open_amount"]
    return lines, {cur: str(v) for cur, v in totals.items()}


async def existing(session: AsyncSession, customer_id: int, contact_id: int, period: str) -> Statement | None:
    return (await session.execute(select(Statement).where(
        Statement.customer_id == customer_id, Statement.contact_id == contact_id,
        Statement.period == period))).scalar_one_or_none()


async def create(session: AsyncSession, *, customer: Customer, contact: Contact, period: str, as_of: date,
                 lines: list[dict], balances: dict[str, str], now: datetime, expires: datetime) -> Statement:
    st = Statement(customer_id=customer.id, contact_id=contact.id, period=period, as_of=as_of, lines=lines,
                   balances=balances, created_at=now, expires_at=expires, status="sent", answered_by="",
                   answered_ip="", user_agent="", answer={})
    session.add(st)
    await session.flush()
    audit.record(session, at=now, actor="bot", channel="job", action="statement.send", entity="customer",
                 entity_id=customer.code, statement=st.id, period=period, contact=contact.id, balances=balances)
    return st


async def answer(session: AsyncSession, statement_id: int, *, confirmed: bool, name: str, ip: str, user_agent: str,
                 disputed: dict[str, str], now: datetime, tz) -> tuple[Statement, list[Receivable]]:
    """Record the contact's answer: confirmed (every line) or disputed (``disputed``: invoice
    number → reason). Returns the statement and the invoices disputed now. Raises
    AlreadyAnswered when the statement was answered before (the page shows that answer)."""
    status = "confirmed" if confirmed else "disputed"
    detail = {"disputed": [{"invoice_no": k, "reason": v} for k, v in disputed.items()]}
    done = await session.execute(update(Statement).where(Statement.id == statement_id, Statement.status == "sent")
                                 .values(status=status, answered_at=now, answered_by=name, answered_ip=ip[:64],
                                         user_agent=user_agent[:300], answer=detail))
    st = await session.get(Statement, statement_id, populate_existing=True)
    if done.rowcount != 1:
        raise AlreadyAnswered(st)
    customer = await session.get(Customer, st.customer_id)
    numbers = [line["invoice_no"] for line in st.lines]
    invoices = {r.invoice_no: r for r in (await session.execute(select(Receivable).where(
        Receivable.customer_id == st.customer_id, Receivable.invoice_no.in_(numbers)))).scalars()}
    audit.record(session, at=now, actor=CUSTOMER, channel="web", action=f"statement.{status}", entity="customer",
                 entity_id=customer.code, statement=st.id, period=st.period, name=name, ip=ip,
                 balances=st.balances, lines=st.lines, **detail)
    opened: list[Receivable] = []
    if confirmed:
        # the debtor's written acknowledgement of each invoice it lists, dated the day it was given
        for r in invoices.values():
            rem.record_confirmation(session, receivable=r, signed_on=now.astimezone(tz).date(), actor=CUSTOMER,
                                    channel="web", now=now)
    else:
        for no, reason in disputed.items():
            r = invoices.get(no)
            if r is None or r.disputed:
                continue
            await open_dispute(session, receivable=r, reason=f"对账单异议（{name}）：{reason}", person_id=CUSTOMER,
                               at=now, channel="web")
            opened.append(r)
    return st, opened
