"""What bears on each invoice's statute of limitations (诉讼时效), read from the ledger, and the
evidence finance and legal record for it. The rules that turn these events into a last day are
``domain/statute.py``; this module only gathers them.

Events of an invoice:
* ``payment``: each day a receipt (not a credit note) was allocated to it; a reversed payment's
  allocations are gone, so it interrupts nothing;
* ``email_accepted`` / ``message_sent``: a written reminder, statement or letter about it that the
  mail server (or a group robot) took — what the bot can know of its own sends, which is not proof
  that the customer received anything (counted only if ``[statute] notice_evidence`` says so);
* the rows of ``statute_evidence``: signed confirmations, acknowledgements, customer replies,
  registered letters, lawsuits, each with its reference.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.statute import EVIDENCE, Event, Reckoning, reckon
from storage import audit
from storage.models import Allocation, CustomerMessage, Payment, Receivable, StatuteEvidence

WRITTEN_CHANNELS = ("email",)          # the mail server took it
WRITTEN_KINDS = ("letter",)            # a letter on any channel
BATCH = 500


async def events_for(session: AsyncSession, receivable_ids: list[int], tz=None) -> dict[int, list[Event]]:
    """Every event of each invoice (see the module docstring), by receivable id."""
    out: dict[int, list[Event]] = defaultdict(list)
    tz = tz or timezone.utc
    for i in range(0, len(receivable_ids), BATCH):
        ids = receivable_ids[i:i + BATCH]
        for rid, on, pid in (await session.execute(
                select(Allocation.receivable_id, Allocation.applied_on, Allocation.payment_id)
                .join(Payment, Payment.id == Allocation.payment_id)
                .where(Allocation.receivable_id.in_(ids), Payment.kind == "receipt"))).all():
            out[rid].append(Event(on, "payment", f"#{pid}"))
        for rid, sent, channel, key in (await session.execute(
                select(CustomerMessage.receivable_id, CustomerMessage.sent_at, CustomerMessage.channel,
                       CustomerMessage.outbox_key)
                .where(CustomerMessage.receivable_id.in_(ids), CustomerMessage.sent_at.is_not(None),
                       CustomerMessage.channel.in_(WRITTEN_CHANNELS) | CustomerMessage.kind.in_(WRITTEN_KINDS)))).all():
            out[rid].append(Event(sent.astimezone(tz).date(),
                                  "email_accepted" if channel == "email" else "message_sent", key))
        for e in (await session.execute(select(StatuteEvidence).where(StatuteEvidence.receivable_id.in_(ids))
                                        .order_by(StatuteEvidence.id))).scalars():
            out[e.receivable_id].append(Event(e.happened_on, e.evidence, e.reference))
    return out


def years_for(statute, cross_border: bool) -> int:
    if statute is None:
        return 4 if cross_border else 3
    return statute.cross_border_years if cross_border else statute.years


async def reckonings(session: AsyncSession, receivables: list[Receivable], *, today: date, statute,
                     cross_border: dict[int, bool], work_calendar=None, tz=None) -> dict[int, Reckoning]:
    """The reckoning of each invoice as of ``today`` (``statute``: the [statute] section;
    ``cross_border``: by customer id)."""
    events = await events_for(session, [r.id for r in receivables], tz)
    roll = work_calendar if statute is None or statute.roll_to_workday else None
    evidence = statute.notice_evidence if statute is not None else None
    out = {}
    for r in receivables:
        kw = {} if evidence is None else {"notice_evidence": evidence}
        out[r.id] = reckon(r.due_date, events.get(r.id, []), years_for(statute, cross_border.get(r.customer_id, False)),
                           today=today, work_calendar=roll, **kw)
    return out


def record_evidence(session: AsyncSession, *, receivable: Receivable, evidence: str, on: date, reference: str = "",
                    note: str = "", actor: str, channel: str, now: datetime) -> StatuteEvidence:
    """Record an event with its proof (``evidence``: one of domain.statute.EVIDENCE but payment,
    which the ledger records itself); audited."""
    if evidence not in EVIDENCE or evidence == "payment":
        raise ValueError(f"not recordable evidence: {evidence}")
    row = StatuteEvidence(receivable_id=receivable.id, happened_on=on, evidence=evidence, reference=reference, note=note,
                          recorded_by=actor, recorded_at=now)
    session.add(row)
    audit.record(session, at=now, actor=actor, channel=channel, action="statute.evidence", entity="receivable",
                 entity_id=receivable.invoice_no, evidence=evidence, on=on, reference=reference, note=note)
    return row
