"""The follow-up log (跟进记录): what a collector did or heard about an invoice, a customer or a
push, with the raw text and what the bot understood of it.

:func:`log_followup` is the only code that writes a follow-up row, and it writes the row's audit
entry in the same transaction: the chat replies, the commands, card clicks and the demo company
all come through here, so no follow-up exists without its "who, when, on which channel".
tests/test_followup_audit.py holds every path to that.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.models import FollowUp, PushItem, Receivable


async def log_followup(session: AsyncSession, *, receivable: Receivable | None, person_id: str, at: datetime,
                       channel: str, outcome: str, text: str, parse: dict | None = None,
                       promised_date: date | None = None, promised_amount: Decimal | None = None,
                       push_item: PushItem | None = None, late: bool = False, corrects: FollowUp | None = None,
                       counterpart: str = "", customer_id: int | None = None, push_id: int | None = None) -> FollowUp:
    """Every follow-up write goes through here, so each one is audited. Without a receivable it
    is a note on a customer (``customer_id``) or on a push (``push_id``: a reply the bot could
    not tie to an item)."""
    fu = FollowUp(receivable_id=receivable.id if receivable else None,
                  customer_id=receivable.customer_id if receivable else customer_id, push_id=push_id,
                  person_id=person_id, at=at,
                  channel=channel, outcome=outcome, text=text, parse=parse or {}, promised_date=promised_date,
                  promised_amount=promised_amount, push_item_id=push_item.id if push_item else None, late=late,
                  corrects_id=corrects.id if corrects else None, counterpart=counterpart)
    session.add(fu)
    if push_item is not None and push_item.replied_at is None:
        push_item.replied_at = at
    await session.flush()
    entity, entity_id = (("receivable", receivable.invoice_no) if receivable else
                         ("customer", str(customer_id)) if customer_id else ("push", str(push_id)))
    audit.record(session, at=at, actor=person_id, channel=channel, action="followup.log", entity=entity,
                 entity_id=entity_id, outcome=outcome, late=late, followup=fu.id)
    return fu


async def last_followup_for_item(session: AsyncSession, push_item_id: int) -> FollowUp | None:
    return (await session.execute(select(FollowUp).where(FollowUp.push_item_id == push_item_id)
                                  .order_by(FollowUp.id.desc()).limit(1))).scalar_one_or_none()
