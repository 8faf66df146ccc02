"""When the reply windows still open close, and the ``--at`` that runs their closing job right
after: the demo's start-up (bot/demo.py) reports it and the local chat's sidebar shows it.

Apart from bot/demo.py because the demo's start-up runs jobs, and the jobs' services load the
chat platforms, the local chat among them: the local chat reading it from bot/demo.py made a
loop of imports.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from storage.models import Push

# the scheduler's reply_window_close runs every 10 minutes: the first run after a window closes
CLOSE_RUN_AFTER = timedelta(minutes=10)


def close_at_arg(closes_at: datetime) -> str:
    """README step 5's ``--at`` (company time): the scheduler's first run after the window closes."""
    return (closes_at + CLOSE_RUN_AFTER).strftime("%Y-%m-%dT%H:%M")


async def open_window_closes(services) -> datetime | None:
    """When the earliest reply window still open closes, in company time (None: none is open)."""
    async with services.db.reader() as s:
        at = (await s.execute(select(Push.window_closes_at).where(Push.closed.is_(False))
                              .order_by(Push.window_closes_at).limit(1))).scalar()
    return None if at is None else at.astimezone(services.config.tz)
