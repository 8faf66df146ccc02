"""Credit freezes (暂停新订单): why and since when a customer is frozen, and lifting it.

A freeze is set by the ladder (a step with ``freeze = true``: ``customer.freeze``) or by the
credit watch crossing red (``credit.alert`` with ``froze``), never lifted automatically: finance
lifts it (/unfreeze), and the lifting is audited with the freeze it ends. Session first.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from storage import audit
from storage.models import AuditEntry, Customer


@dataclass
class Freeze:
    at: datetime | None
    by: str                  # ladder | credit | "" (not recorded)
    detail: dict


async def freeze_of(session, customer: Customer) -> Freeze | None:
    """The freeze in force (None: the customer is not frozen)."""
    if customer.status != "frozen":
        return None
    for e in (await session.execute(select(AuditEntry).where(
            AuditEntry.entity == "customer", AuditEntry.entity_id == customer.code,
            AuditEntry.action.in_(("customer.freeze", "credit.alert")))
            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(50))).scalars():
        if e.action == "customer.freeze":
            return Freeze(e.at, "ladder", dict(e.detail or {}))
        if (e.detail or {}).get("froze"):
            return Freeze(e.at, "credit", dict(e.detail or {}))
    return Freeze(None, "", {})


async def unfreeze(session, customer: Customer, *, actor: str, channel: str, now: datetime, reason: str) -> Freeze | None:
    """Lift the customer's freeze (new orders allowed again); None if it was not frozen."""
    was = await freeze_of(session, customer)
    if was is None:
        return None
    customer.status = "active"
    audit.record(session, at=now, actor=actor, channel=channel, action="customer.unfreeze", entity="customer",
                 entity_id=customer.code, reason=reason, old={"status": "frozen"}, new={"status": "active"},
                 frozen_at=was.at.isoformat() if was.at else None, frozen_by=was.by)
    await session.flush()
    return was
