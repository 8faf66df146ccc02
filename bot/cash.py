"""Cash application seen from the bot: a statement's report (text and the JSON other tools read),
and the digests it leaves behind — finance gets one digest of the receipts nobody is sure of and
one of the anomalies, each rep one of the receipts that look like their customers'
(bot/digests.py composes and queues them; ``认领`` in chat answers them, bot/handlers/cash.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from bot import digests
from bot.jobs.context import JobContext
from bot.render import render
from storage import digests as digest_store
from storage.bank import ImportResult, LineResult
from storage.models import BankLine, Customer, Person

UNCLAIMED_JOB = "bank_statement"
ANOMALY_JOB = "bank_anomalies"


def reason_text(codes: list[str]) -> str:
    return render("bank/reason.j2", codes=codes).strip()


def line_json(r: LineResult) -> dict:
    """One line as ``arbot import bank --format json`` prints it (the documented interface)."""
    return {"line": r.line, "id": r.id, "ref": r.ref, "date": r.date, "payer": r.payer, "amount": f"{r.amount:.2f}",
            "direction": r.direction, "status": r.status, "customer": r.customer,
            "confidence": round(float(r.confidence), 2), "reason": reason_text(r.reasons), "reasons": r.reasons,
            "allocations": [{"invoice_no": no, "amount": f"{a:.2f}"} for no, a in r.allocations],
            "unallocated": f"{r.unallocated:.2f}",
            "suggestions": r.suggestions, "anomalies": r.anomalies}


def report_json(result: ImportResult) -> dict:
    summary = {k: f"{v:.2f}" if isinstance(v, Decimal) else v for k, v in result.summary().items()}
    return {"lines": [line_json(r) for r in result.lines], "summary": summary}


@dataclass
class _Group:
    """Where a digest line is filed (amounts are in the lines: a digest's totals read as money owed): ``code``/``name`` (a customer, or the unclaimed pile)."""
    code: str
    name: str


async def notify_statement(services, result: ImportResult, *, now: datetime) -> int:
    """Queue the digests a statement calls for; returns how many were queued. Runs after the
    statement's transaction committed, in a session of its own (bot/digests.py commits as it goes)."""
    new = [r for r in result.lines if r.id is not None and r.status in ("unclaimed", "applied")]
    if not new or result.statement_id is None:
        return 0
    at = now.astimezone(services.config.tz)
    sent = 0
    async with services.db.session() as s:
        ctx = JobContext(services=services, at=at, session=s, job=UNCLAIMED_JOB, fire=f"stmt{result.statement_id}")
        people = list((await s.execute(select(Person).where(Person.active.is_(True)))).scalars())
        finance = [p for p in people if p.role == "finance"]
        by_id = {p.id: p for p in people}
        customers = {c.code: c for c in (await s.execute(select(Customer))).scalars()}
        rows: list[dict] = []
        pile = _Group("~bank", render("bank/pile_name.j2").strip())
        for r in new:
            if r.status == "unclaimed":
                line = render("digest/item_bank.md.j2", r=r, for_rep=False, customers=customers)
                rows += digests.items(ctx, finance, key=f"bank:{r.id}:unclaimed", kind="bank", rank=0,
                                      label=render("digest/label_bank.j2", kind="unclaimed").strip(), customer=pile,
                                      subject=str(r.id), amount=None, currency=None, line=line,
                                      job=UNCLAIMED_JOB, not_before=at)
                # the reps whose customers the line looks like are asked too (each about their own)
                for sg in r.suggestions[:3]:
                    c = customers.get(sg.get("customer"))
                    rep = by_id.get(c.rep_id) if c is not None and c.rep_id else None
                    if rep is None or rep.role == "finance":
                        continue
                    rline = render("digest/item_bank.md.j2", r=r, for_rep=True, customers=customers, suggestion=sg)
                    rows += digests.items(ctx, [rep], key=f"bank:{r.id}:ask:{c.code}", kind="bank", rank=1,
                                          label=render("digest/label_bank.j2", kind="ask").strip(), customer=c,
                                          subject=str(r.id), amount=None, currency=None, line=rline,
                                          job=UNCLAIMED_JOB, not_before=at)
        await digest_store.record(s, rows)
        sent += await digests.send(ctx, UNCLAIMED_JOB)
        ctx.job = ANOMALY_JOB
        rows = []
        for r in result.lines:
            if r.id is None or not r.anomalies:
                continue
            c = customers.get(r.customer or "") or customers.get((r.suggestions or [{}])[0].get("customer", ""))
            group = c if c is not None else pile
            for kind in r.anomalies:
                line = render("digest/item_bank_anomaly.md.j2", r=r, kind=kind)
                rows += digests.items(ctx, finance, key=f"bank:{r.id}:{kind}", kind="bank_anomaly", rank=0,
                                      label=render("digest/label_bank.j2", kind=kind).strip(), customer=group,
                                      subject=str(r.id), amount=None, currency=None, line=line,
                                      job=ANOMALY_JOB, not_before=at)
        await digest_store.record(s, rows)
        sent += await digests.send(ctx, ANOMALY_JOB)
        await s.commit()
    return sent


async def notify_claim(session, services, line: BankLine, *, claimer: Person, customer: Customer,
                       now: datetime) -> int:
    """A rep's claim goes to finance for confirmation: one message per finance person, with
    确认 / 驳回 buttons where the platform shows cards."""
    from bot import notify, outbox
    from bot.core.messages import Button, Card
    text = render("bank/claim_to_finance.md.j2", line=line, claimer=claimer, customer=customer)
    card = Card(id=f"bankclaim-{line.id}", title=render("bank/card_title.j2", line=line).strip(),
                description=render("bank/card_claim.j2", claimer=claimer, customer=customer, line=line).strip(),
                buttons=(Button("确认", f"bank:confirm:{line.id}"), Button("驳回", f"bank:reject:{line.id}")))
    finance = (await session.execute(select(Person).where(Person.role == "finance", Person.active.is_(True))
                                     .order_by(Person.id))).scalars().all()
    sent = 0
    for p in finance:
        m = notify.for_person(p, text, key=f"bankclaim:{line.id}:{int(now.timestamp())}", platforms=services.platforms,
                              title="bank", card=card)
        if m is not None:
            sent += bool(await outbox.enqueue(session, m[0], m[1], now))
    return sent
