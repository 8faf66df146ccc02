"""Collection documents from the ledger's facts, one per customer: 付款提醒函 (payment reminder,
its overdue invoices), 账款确认函 (balance confirmation, every open invoice), 律师函底稿 (a
lawyer's-letter draft for legal to review) and 对账单 (the monthly statement).

Each letter is made from one set of facts (:func:`customer_facts`) in three forms: Markdown for
chat (``bot/templates/letters/<kind>.md.j2``; the first line is the ``# title``), and the
documents of ``bot/documents.py`` — DOCX for finance and legal to edit and stamp, PDF for the
customer. The company's letterhead and bank details come from ``[company]``. A late fee is
claimed only where the customer's contract has a clause (``Customer.late_fee_rate``), on the
balance day by day, capped (domain/late_fees.py).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.late_fees import TermsError, contract_fee, parse_terms, terms_tiers
from bot.render import render
from storage import unapplied as unapplied_q
from storage.balance_history import reductions
from storage.models import Contact, Customer, Dispute, Receivable

KINDS = ("reminder", "confirmation", "lawyer_letter", "statement")
TITLES = {"reminder": "付款提醒函", "confirmation": "账款确认函", "lawyer_letter": "律师函底稿", "statement": "对账单"}


@dataclass(frozen=True)
class Letter:
    kind: str
    title: str
    markdown: str
    data: dict = field(default_factory=dict, compare=False, repr=False)   # the facts it was made from

    @property
    def html(self) -> str:
        return markdown_to_html(self.markdown)

    @property
    def filename(self) -> str:
        return f"{self.title}.pdf"


def company_facts(config) -> dict:
    c = config.company
    return {"name": c.name, "address": c.address, "bank": c.bank, "account": c.account, "contact": c.contact,
            "phone": c.phone}


def fee_tiers(config, customer: Customer) -> list[tuple[int, Decimal]]:
    """The late-fee tiers of the customer's contract (empty: no clause, no fee)."""
    try:
        terms = parse_terms(customer.late_fee_rate)
    except TermsError:
        return []          # refused at import; a value written behind the importer's back claims nothing
    return terms_tiers(terms, config.late_fees.tiers)


def invoice_facts(r: Receivable, today: date, tiers, cuts=(), cap_ratio: Decimal | None = None) -> dict:
    """One invoice as letters show it. ``tiers``: the customer's clause (:func:`fee_tiers`);
    ``cuts``: what lowered its balance and when (storage/balance_history.py)."""
    days = max(0, (today - r.due_date).days)
    fee = Decimal("0.00")
    if tiers and days > 0 and r.open_amount > 0:
        # the balance it started from is today's plus what was paid or written off since: a change
        # the ledger made to the amount itself (a corrected invoice) is not a day's payment
        cuts = list(cuts)
        start = r.open_amount + sum((a for _, a in cuts), Decimal(0))
        fee = contract_fee(start, r.due_date, today, cuts, tiers, cap_ratio)
    return {"invoice_no": r.invoice_no, "contract_no": r.contract_no, "issue_date": r.issue_date,
            "due_date": r.due_date, "amount": r.amount, "open_amount": r.open_amount, "currency": r.currency,
            "terms": r.terms, "days_overdue": days, "late_fee": fee}


async def facts(session: AsyncSession, config, receivable: Receivable, today: date) -> dict:
    """:func:`customer_facts` of the invoice's customer, read here, with ``invoice``: that invoice."""
    customer = await session.get(Customer, receivable.customer_id)
    data = await customer_facts_read(session, config, customer, today)
    tiers = fee_tiers(config, customer)
    cuts = (await reductions(session, [receivable.id]))[receivable.id] if tiers else []
    return {**data, "invoice": invoice_facts(receivable, today, tiers, cuts, config.late_fees.cap_ratio)}


async def customer_facts_read(session: AsyncSession, config, customer: Customer, today: date) -> dict:
    """:func:`customer_facts`, reading the customer's first contact, open invoices, disputes and
    (where the contract has a late-fee clause) their payment history."""
    contact = (await session.execute(select(Contact).where(Contact.customer_id == customer.id)
                                     .order_by(Contact.id).limit(1))).scalar_one_or_none()
    open_rs = (await session.execute(select(Receivable).where(
        Receivable.customer_id == customer.id, Receivable.open_amount > 0, Receivable.status != "written_off")
        .order_by(Receivable.due_date, Receivable.id))).scalars().all()
    reasons = await dispute_reasons(session, [r.id for r in open_rs if r.disputed])
    cuts = await reductions(session, [r.id for r in open_rs if r.due_date < today]) \
        if fee_tiers(config, customer) else {}
    unapplied = (await unapplied_q.by_customer(session, [customer.id])).get(customer.id, {})
    return customer_facts(config, customer, contact, open_rs, reasons, today, cuts, unapplied=unapplied)


def customer_facts(config, customer: Customer, contact: Contact | None, open_rs: list[Receivable],
                   reasons: dict[int, str], today: date, cuts: dict | None = None,
                   unapplied: dict | None = None) -> dict:
    """Everything a letter may say, from rows already read: the company, the customer and its
    contact, its open invoices (by due date) and their late fees, and its money not yet applied
    (``unapplied`` per currency: a balance confirmation states it and the net).

    ``invoices``/``totals`` are the books as they stand (a statement or a balance confirmation
    lists a disputed invoice too: that is where the customer says what does not match). What is
    *demanded* — ``overdue``, ``overdue_totals``, ``late_fees``, the lawyer's letter — leaves
    out invoices under an open dispute and their late fees: collection of those is paused until
    the dispute is resolved. They are listed in ``disputed`` (with the reason) so the draft can
    tell legal what was left out. A job that writes about many invoices of one customer works
    this out once for the customer."""
    tiers = fee_tiers(config, customer)
    cap = config.late_fees.cap_ratio
    cuts = cuts or {}
    invoices = [invoice_facts(r, today, tiers, cuts.get(r.id, ()), cap) for r in open_rs]
    disputed = [{**i, "reason": reasons.get(r.id, "")} for r, i in zip(open_rs, invoices) if r.disputed]
    demanded = [i for r, i in zip(open_rs, invoices) if not r.disputed]
    overdue = [i for i in demanded if i["days_overdue"] > 0]
    totals: dict[str, Decimal] = {}
    fees: dict[str, Decimal] = {}
    for i in invoices:
        totals[i["currency"]] = totals.get(i["currency"], Decimal("0.00")) + i["open_amount"]
    for i in overdue:
        if i["late_fee"] > 0:
            fees[i["currency"]] = fees.get(i["currency"], Decimal("0.00")) + i["late_fee"]
    overdue_totals: dict[str, Decimal] = {}
    for i in overdue:
        overdue_totals[i["currency"]] = overdue_totals.get(i["currency"], Decimal("0.00")) + i["open_amount"]
    return {"company": config.company.name, "letterhead": company_facts(config), "today": today,
            "customer": customer, "contact": contact,
            "invoices": invoices, "overdue": overdue,
            # the customer's money not yet applied (预收/未核销): a balance confirmation states it,
            # and the net per currency (storage/unapplied.py)
            "unapplied": dict(unapplied or {}),
            "net": {cur: totals.get(cur, Decimal("0.00")) - (unapplied or {}).get(cur, Decimal("0.00"))
                    for cur in sorted(set(totals) | set(unapplied or {}))},
            "totals": totals, "overdue_totals": overdue_totals, "late_fees": fees, "disputed": disputed,
            "show_late_fee": bool(config.late_fees.in_letters and tiers),
            "cap_ratio": cap if cap else None,
            "tiers": [{"from_day": d, "rate": rate} for d, rate in tiers]}


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
    title = first.lstrip("#").strip() or TITLES[kind]
    return Letter(kind=kind, title=title, markdown=md, data=data)


async def letter(session: AsyncSession, config, kind: str, receivable: Receivable, today: date) -> Letter:
    return render_letter(kind, await facts(session, config, receivable, today))


async def customer_letter(session: AsyncSession, config, kind: str, customer: Customer, today: date) -> Letter:
    return render_letter(kind, await customer_facts_read(session, config, customer, today))


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
