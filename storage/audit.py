"""The append-only audit log: every change to the ledger writes one entry, in the caller's
transaction, so a change and its record land together or not at all."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)   # Decimal, date: kept exact as text


def record(session: AsyncSession, *, at: datetime, actor: str, channel: str, action: str,
           entity: str, entity_id: Any, **detail: Any) -> None:
    session.add(AuditEntry(at=at, actor=actor, channel=channel, action=action, entity=entity,
                           entity_id=str(entity_id), detail=_jsonable(detail)))


def entry(*, at: datetime, actor: str, channel: str, action: str, entity: str, entity_id: Any,
          **detail: Any) -> dict:
    """One entry as a row for :func:`record_many` (the same fields :func:`record` writes)."""
    return {"at": at, "actor": actor, "channel": channel, "action": action, "entity": entity,
            "entity_id": str(entity_id), "detail": _jsonable(detail)}


async def record_many(session: AsyncSession, entries: list[dict]) -> None:
    """Write many entries (from :func:`entry`) with one executemany, in the caller's transaction:
    bulk writers (imports) log one entry per changed entity without one INSERT round trip each."""
    if entries:
        await session.execute(insert(AuditEntry.__table__), entries)
