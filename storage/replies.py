"""One reply to the morning push as a unit: what it recorded, and taking it back (撤销).

Every follow-up a reply writes carries the reply's id and what it changed besides itself
(``parse["reply"]``, ``parse["effects"]``: the promise it made, the promises that promise
superseded, the dispute it opened, the disputes it lifted).  Undoing a reply removes its
follow-ups, withdraws its promises and reopens what they superseded, drops the disputes it
opened and reopens the ones it lifted, and clears an item's reply time if nothing else
answered it, each step audited.  Session first, never commits.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from storage import audit
from storage.models import Dispute, FollowUp, Promise, PushItem, Receivable


async def last_reply(session, *, person_id: str, push_id: int) -> list[FollowUp]:
    """The follow-ups of the person's newest reply to this push, oldest first ([] if none)."""
    newest = (await session.execute(
        select(FollowUp).where(FollowUp.person_id == person_id, FollowUp.push_id == push_id)
        .order_by(FollowUp.id.desc()).limit(1))).scalar_one_or_none()
    reply = newest.parse.get("reply") if newest and isinstance(newest.parse, dict) else None
    if not reply:
        return []
    rows = (await session.execute(select(FollowUp).where(FollowUp.person_id == person_id,
                                                         FollowUp.push_id == push_id)
                                  .order_by(FollowUp.id))).scalars()
    return [fu for fu in rows if isinstance(fu.parse, dict) and fu.parse.get("reply") == reply]


async def settled_promises(session, followups: list[FollowUp]) -> list[Promise]:
    """Promises of these follow-ups already marked kept or broken: their reply is history now
    (the customer's broken-promise count and the notices went out) and is not undone."""
    ids = [pid for fu in followups if isinstance(fu.parse, dict)
           for pid in fu.parse.get("effects", {}).get("promises", [])]
    if not ids:
        return []
    return list((await session.execute(select(Promise).where(Promise.id.in_(ids),
                                                             Promise.status.in_(("kept", "broken"))))).scalars())


async def undo_reply(session, followups: list[FollowUp], *, person_id: str, at: datetime,
                     channel: str) -> list[FollowUp]:
    """Take back what these follow-ups (one reply) recorded; returns them as they were."""
    for fu in reversed(followups):
        effects = fu.parse.get("effects", {}) if isinstance(fu.parse, dict) else {}
        r = await session.get(Receivable, fu.receivable_id) if fu.receivable_id else None
        for pid in effects.get("promises", []):
            p = await session.get(Promise, pid)
            if p is not None:
                await session.delete(p)
        for pid in effects.get("superseded", []):
            p = await session.get(Promise, pid)
            if p is not None and p.status == "superseded":
                p.status, p.closed_at = "open", None
        for did in effects.get("disputes_opened", []):
            d = await session.get(Dispute, did)
            if d is not None:
                await session.delete(d)
        for did in effects.get("disputes_lifted", []):
            d = await session.get(Dispute, did)
            if d is not None:
                d.resolved_at = d.resolved_by = None
        if r is not None and (effects.get("disputes_opened") or effects.get("disputes_lifted")):
            await session.flush()
            r.disputed = (await session.execute(select(Dispute.id).where(
                Dispute.receivable_id == r.id, Dispute.resolved_at.is_(None)).limit(1))).first() is not None
        await session.flush()                            # promises go before the follow-up they point to
        item_id, replied = fu.push_item_id, fu.at
        audit.record(session, at=at, actor=person_id, channel=channel, action="followup.undo",
                     entity="receivable" if r else "push", entity_id=r.invoice_no if r else fu.push_id,
                     followup=fu.id, outcome=fu.outcome, text=fu.text, promised_date=fu.promised_date,
                     promised_amount=fu.promised_amount, effects=effects)
        await session.delete(fu)
        await session.flush()
        if item_id is not None:
            item = await session.get(PushItem, item_id)
            if item is not None and item.replied_at == replied:
                # answered only by this reply: unanswered again (the window may escalate it)
                item.replied_at = (await session.execute(
                    select(func.min(FollowUp.at)).where(FollowUp.push_item_id == item_id))).scalar()
    return followups
