"""The imported holiday schedules (``holiday_schedules``): read at start and after an import,
stored by finance's import (CLI or chat), one row a year."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.holiday_notice import HolidaySchedule
from storage import audit
from storage.models import HolidaySchedule as ScheduleRow


async def all_schedules(session: AsyncSession) -> list[HolidaySchedule]:
    rows = (await session.execute(select(ScheduleRow).order_by(ScheduleRow.year))).scalars()
    return [HolidaySchedule.from_json(r.schedule) for r in rows]


async def store(session: AsyncSession, schedule: HolidaySchedule, *, notice: str, actor: str, channel: str,
                now: datetime) -> bool:
    """Store ``schedule`` (replacing the year's earlier import) with an audit entry, in the caller's
    transaction. Returns whether the year had been imported before."""
    row = await session.get(ScheduleRow, schedule.year)
    replaced = row is not None
    if row is None:
        row = ScheduleRow(year=schedule.year)
        session.add(row)
    before = row.schedule if replaced else None
    row.schedule, row.notice, row.imported_by, row.imported_at = schedule.to_json(), notice, actor, now
    audit.record(session, at=now, actor=actor, channel=channel, action="calendar_import", entity="holiday_schedule",
                 entity_id=schedule.year, schedule=schedule.to_json(), before=before)
    return replaced
