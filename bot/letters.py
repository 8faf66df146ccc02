"""Collection documents from the ledger's facts: 付款提醒函 (payment reminder), 账款确认函 (balance
confirmation) and 律师函底稿 (a lawyer's-letter draft for legal to review).

Templates: ``bot/templates/letters/<kind>.md.j2`` (Markdown; the first line is the ``# title``).
E-mail gets an HTML rendering by ``markdown_to_html``, a deliberately small converter for the
subset the templates use (headings, paragraphs, lists, tables, bold).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.late_fees import late_fee
from bot.render import render
from storage import unapplied as unapplied_q
from storage.models import Contact, Customer, Dispute, Receivable

KINDS = ("reminder", "confirmation", "lawyer_letter")


@dataclass(frozen=True)
class Letter:
    kind: str
    title: str
    markdown: str

    @property
    def html(self) -> str:
        return markdown_to_html(self.markdown)

    @property
    def filename(self) -> str:
        return f"{self.title}.html"


def invoice_facts(r: Receivable, today: date, tiers) -> dict:
    days = max(0, (today - r.due_date).days)
    return {"invoice_no": r.invoice_no, "contract_no": r.contract_no, "issue_date": r.issue_date,
            "due_date": r.due_date, "amount": r.amount, "open_amount": r.open_amount, "currency": r.currency,
            "terms": r.terms, "days_overdue": days, "late_fee": late_fee(r.open_amount, days, tiers)}


async def facts(session: AsyncSession, config, receivable: Receivable, today: date) -> dict:
    """Everything a letter may say, from the ledger: the company, the customer and its contact,
    the invoice in question, all the customer's open invoices and the late-fee estimate.

    ``invoices``/``totals`` are the books as they stand (a statement or a balance confirmation
    lists a disputed invoice too: that is where the customer says what does not match). What is
    *demanded* — ``overdue``, ``overdue_totals``, ``late_fees``, the lawyer's letter — leaves
    out invoices under an open dispute and their late fees: collection of those is paused until
    the dispute is resolved. They are listed in ``disputed`` (with the reason) so the draft can
    tell legal what was left out."""
    customer = await session.get(Customer, receivable.customer_id)
    contact = (await session.execute(select(Contact).where(Contact.customer_id == customer.id)
                                     .order_by(Contact.id).limit(1))).scalar_one_or_none()
    open_rs = (await session.execute(select(Receivable).where(
        Receivable.customer_id == customer.id, Receivable.open_amount > 0, Receivable.status != "written_off")
        .order_by(Receivable.due_date, Receivable.id))).scalars().all()
    reasons = await dispute_reasons(session, [r.id for r in open_rs if r.disputed])
    unapplied = (await unapplied_q.by_customer(session, [customer.id])).get(customer.id, {})
    return {**customer_facts(config, customer, contact, open_rs, reasons, today, unapplied=unapplied),
            "invoice": invoice_facts(receivable, today, config.late_fees.tiers)}


def customer_facts(config, customer: Customer, contact: Contact | None, open_rs: list[Receivable],
                   reasons: dict[int, str], today: date, unapplied: dict | None = None) -> dict:
    """:func:`facts` without the invoice in question, from rows already read: the customer's
    open invoices (by due date) and their open disputes' reasons. A job that writes about many
    invoices of one customer works this out once for the customer."""
    tiers = config.late_fees.tiers
    invoices = [invoice_facts(r, today, tiers) for r in open_rs]
    disputed = [{**invoice_facts(r, today, tiers), "reason": reasons.get(r.id, "")} for r in open_rs if r.disputed]
    demanded = [i for r, i in zip(open_rs, invoices) if not r.disputed]
    overdue = [i for i in demanded if i["days_overdue"] > 0]
    totals: dict[str, Decimal] = {}
    fees: dict[str, Decimal] = {}
    for i in invoices:
        totals[i["currency"]] = totals.get(i["currency"], Decimal("0.00")) + i["open_amount"]
    for i in demanded:
        fees[i["currency"]] = fees.get(i["currency"], Decimal("0.00")) + i["late_fee"]
    overdue_totals: dict[str, Decimal] = {}
    for i in overdue:
        overdue_totals[i["currency"]] = overdue_totals.get(i["currency"], Decimal("0.00")) + i["open_amount"]
    return {"company": config.company.name, "today": today, "customer": customer, "contact": contact,
            "invoices": invoices, "overdue": overdue,
            # the customer's money not yet applied (预收/未核销): a balance confirmation states it,
            # and the net per currency (storage/unapplied.py)
            "unapplied": dict(unapplied or {}),
            "net": {cur: totals.get(cur, Decimal("0.00")) - (unapplied or {}).get(cur, Decimal("0.00"))
                    for cur in sorted(set(totals) | set(unapplied or {}))},
            "totals": totals, "overdue_totals": overdue_totals, "late_fees": fees, "disputed": disputed,
            "show_late_fee": config.late_fees.in_letters,
            "tiers": [{"from_day": int(t["from_day"]), "rate": Decimal(str(t["rate"]))} for t in tiers]}


async def dispute_reasons(session: AsyncSession, ids: list[int]) -> dict[int, str]:
    """The reason of each invoice's open dispute (the latest, should there be several)."""
    out: dict[int, str] = {}
    for i in range(0, len(ids), 500):
        out.update((await session.execute(select(Dispute.receivable_id, Dispute.reason).where(
            Dispute.receivable_id.in_(ids[i:i + 500]), Dispute.resolved_at.is_(None))
            .order_by(Dispute.opened_at))).all())
    return out


def render_letter(kind: str, data: dict) -> Letter:
    if kind not in KINDS:
        raise ValueError(f"unknown letter kind {kind!r}")
    md = render(f"letters/{kind}.md.j2", **data)
    first = md.splitlines()[0] if md else ""
    title = first.lstrip("#").strip() or kind
    return Letter(kind=kind, title=title, markdown=md)


async def letter(session: AsyncSession, config, kind: str, receivable: Receivable, today: date) -> Letter:
    return render_letter(kind, await facts(session, config, receivable, today))


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text))


def markdown_to_html(md: str) -> str:
    """Headings, paragraphs, ``-``/``1.`` lists, pipe tables and **bold**; everything escaped."""
    out: list[str] = []
    para: list[str] = []
    lst: str | None = None
    table: list[list[str]] = []

    def flush() -> None:
        nonlocal lst, table
        if para:
            out.append("<p>" + "<br>".join(_inline(x) for x in para) + "</p>")
            para.clear()
        if lst:
            out.append(f"</{lst}>")
            lst = None
        if table:
            rows = [r for r in table if not all(re.fullmatch(r":?-{3,}:?", c.strip()) for c in r)]
            head, body = rows[0], rows[1:]
            out.append("<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\"><thead><tr>"
                       + "".join(f"<th>{_inline(c.strip())}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c.strip())}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            table = []

    for line in md.splitlines():
        s = line.strip()
        if not s:
            flush()
            continue
        m = re.match(r"(#{1,4})\s+(.*)", s)
        if m:
            flush()
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            continue
        if s.startswith("|") and s.endswith("|"):
            if para or lst:
                flush()
            table.append(s.strip("|").split("|"))
            continue
        m = re.match(r"(-|\d+\.)\s+(.*)", s)
        if m:
            kind = "ul" if m.group(1) == "-" else "ol"
            if para or table or (lst and lst != kind):
                flush()
            if lst is None:
                out.append(f"<{kind}>")
                lst = kind
            out.append(f"<li>{_inline(m.group(2))}</li>")
            continue
        if lst or table:
            flush()
        para.append(s)
    flush()
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>"
            + "\n".join(out) + "</body></html>")
