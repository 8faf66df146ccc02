"""Payment claims reach finance: one message per reply to every finance person, listing what the
rep said was paid, for checking against the bank (storage/claims.py keeps them open until /paid).

Called by whatever records a rep's words (the reply to the push, /followup) after it logged them:
``await claims_flow.report(session, claims, rep=..., now=..., platforms=...)``.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import notify
from bot.render import render
from storage import claims as claims_q
from storage.models import Customer, PaymentClaim, Person, Receivable


async def note(session: AsyncSession, *, receivable: Receivable, amount: Decimal | None, person_id: str,
               at: datetime, channel: str, followup_id: int | None = None) -> dict:
    """Record one claim; the dict is what an acknowledgement needs (``over``: the claimed amount
    above the open balance, which the rep is asked to check)."""
    claim = await claims_q.record_claim(session, receivable=receivable, amount=amount, person_id=person_id, at=at,
                                        channel=channel, followup_id=followup_id)
    return {"claim": claim, "receivable": receivable, "over": claims_q.excess(amount, receivable.open_amount)}


async def withdraw(session: AsyncSession, *, receivable: Receivable, person_id: str, at: datetime) -> int:
    """A correction that no longer says "paid" takes the rep's open claim on the invoice back."""
    return await claims_q.withdraw(session, receivable, actor=person_id, now=at)


async def report(session: AsyncSession, noted: list[dict], *, rep: Person, now: datetime,
                 platforms: tuple[str, ...]) -> int:
    """One message to each active finance person for the claims of one reply. Returns the number sent."""
    if not noted:
        return 0
    rows = []
    for n in noted:
        r: Receivable = n["receivable"]
        rows.append({"claim": n["claim"], "r": r, "customer": await session.get(Customer, r.customer_id),
                     "over": n["over"]})
    text = render("payments/claims_to_finance.md.j2", rep=rep, rows=rows)
    finance = (await session.execute(select(Person).where(Person.role == "finance", Person.active.is_(True))
                                     .order_by(Person.id))).scalars().all()
    key = "claims:" + "-".join(str(n["claim"].id) for n in noted) + f":{int(now.timestamp())}"
    sent = 0
    for p in finance:
        sent += bool(await notify.to_person(session, p, text, key=key, now=now, platforms=platforms, title="claims"))
    return sent


__all__ = ["note", "withdraw", "report", "PaymentClaim"]
