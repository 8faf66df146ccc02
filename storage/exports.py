"""The follow-up log as rows for CSV/JSON export."""
from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Customer, FollowUp, Person, Receivable


async def followup_rows(session: AsyncSession, since: date | None, tz) -> list[dict]:
    stmt = (select(FollowUp, Receivable.invoice_no, Customer.name, Person.name)
            .outerjoin(Receivable, Receivable.id == FollowUp.receivable_id)
            .outerjoin(Customer, Customer.id == FollowUp.customer_id)
            .outerjoin(Person, Person.id == FollowUp.person_id).order_by(FollowUp.at, FollowUp.id))
    if since:
        stmt = stmt.where(FollowUp.at >= datetime.combine(since, time(0), tzinfo=tz))
    out = []
    for fu, invoice, customer, person in (await session.execute(stmt)).all():
        out.append({"at": fu.at.astimezone(tz).isoformat(), "person_id": fu.person_id, "person": person or "",
                    "customer": customer or "", "invoice_no": invoice or "", "channel": fu.channel,
                    "outcome": fu.outcome, "counterpart": fu.counterpart, "text": fu.text,
                    "promised_date": fu.promised_date.isoformat() if fu.promised_date else "",
                    "promised_amount": str(fu.promised_amount) if fu.promised_amount is not None else "",
                    "late": fu.late, "corrects_id": fu.corrects_id or ""})
    return out
