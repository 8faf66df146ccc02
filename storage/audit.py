"""The append-only audit log: every change to the ledger writes one entry, in the caller's
transaction, so a change and its record land together or not at all.

Bulk creation is the one exception to "one entry per entity": an import that creates
:data:`BATCH_MIN` or more entities of a kind logs them in ``<entity>.create_many`` entries of up
to :data:`BATCH` each, whose detail lists every created entity's values as rows under named
columns (the same values a ``<entity>.create`` entry would hold, plus the defaults that were
applied). A per-entity entry cost about as much to write as the invoice itself (its JSON detail
is most of its bytes), which capped a large import's speed; a list inside one entry costs a
small share of that. :func:`creation_of` answers "who created X, when, with what" for both
forms.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import Text, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.bulk_writes import insert_rows
from storage.models import AuditEntry


_PLAIN = frozenset({str, int, bool, type(None)})


def _jsonable(v: Any) -> Any:
    if type(v) in _PLAIN:          # the common case first: bulk imports log 8 plain values per row
        return v
    if isinstance(v, dict):
        return {k: x if type(x) in _PLAIN else _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, bool)):
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
        columns = list(entries[0])
        await insert_rows(session, AuditEntry.__table__, columns, [[e[c] for c in columns] for e in entries])


BATCH_MIN = 1_000     # an import creating fewer entities than this logs one entry per entity
BATCH = 1_000         # entities listed per ``<entity>.create_many`` entry


def batch_entries(*, at: datetime, actor: str, channel: str, entity: str, columns: Sequence[str],
                  rows: Sequence[Sequence[Any]]) -> list[dict]:
    """``<entity>.create_many`` entries (rows for :func:`record_many`) for created entities given
    as rows of ``columns`` values, the entity's key first; ``entity_id`` is a chunk's first key."""
    # column by column: most columns are plain already; dates repeat (each turned to text once)
    cols = list(zip(*rows))
    for i, col in enumerate(cols):
        kinds = set(map(type, col))
        if kinds <= _PLAIN:
            continue
        if kinds == {date}:
            texts = {d: str(d) for d in set(col)}
            cols[i] = [texts[d] for d in col]
        elif kinds == {Decimal}:
            cols[i] = list(map(str, col))
        else:
            cols[i] = [x if type(x) in _PLAIN else _jsonable(x) for x in col]
    rows = list(zip(*cols))         # tuples: JSON arrays like lists
    out = []
    for i in range(0, len(rows), BATCH):
        chunk = rows[i:i + BATCH]
        out.append({"at": at, "actor": actor, "channel": channel, "action": f"{entity}.create_many",
                    "entity": entity, "entity_id": str(chunk[0][0]),
                    "detail": {"count": len(chunk), "columns": list(columns), "rows": chunk}})
    return out


async def creation_of(session: AsyncSession, entity: str, key: str) -> tuple[AuditEntry, dict] | None:
    """The entry that records the creation of ``entity`` ``key`` (who: ``actor``/``channel``,
    when: ``at``) and the values it was created with; None if no entry records it.

    A ``<entity>.create`` entry (values = its detail), else the ``<entity>.create_many`` entry
    whose rows list the key (values = that row, by column)."""
    key = str(key)
    one = (await session.execute(select(AuditEntry).where(
        AuditEntry.action == f"{entity}.create", AuditEntry.entity == entity, AuditEntry.entity_id == key)
        .order_by(AuditEntry.id).limit(1))).scalar_one_or_none()
    if one is not None:
        return one, dict(one.detail)
    # the key as it appears in the stored JSON text narrows the scan; the rows decide
    text = cast(AuditEntry.detail, Text)
    candidates = (await session.execute(select(AuditEntry).where(
        AuditEntry.action == f"{entity}.create_many", AuditEntry.entity == entity,
        or_(text.contains(json.dumps(key), autoescape=True), text.contains(json.dumps(key, ensure_ascii=False),
                                                                            autoescape=True)))
        .order_by(AuditEntry.id))).scalars()
    for e in candidates:
        for row in e.detail.get("rows", []):
            if row and row[0] == key:
                return e, dict(zip(e.detail["columns"], row))
    return None
