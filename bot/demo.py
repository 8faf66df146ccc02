"""Demo mode's start-up (``make run``): the demo company into an empty database and the latest
working morning's overdue push, so the README's tour has something to show whenever it starts.

``create_app`` runs :func:`prepare` before the scheduler starts, and the order matters: the
scheduler's start-up catch-up runs a push missed earlier today at once. Started after 09:00 on a
working day, that catch-up used to run on the still-empty database ("pushed 0 rep(s)"), claim the
day's fire, and the demo's own push was then skipped as already done: the reps had alerts but no
overdue list. Prepared first, the demo's push claims the fire and the catch-up finds it done.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time

from bot.reply_window import close_at_arg, open_window_closes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tour:
    loaded: bool                        # the demo company was loaded now (the database was empty)
    push: str                           # the demo push's summary ("" when it failed)
    window_closes_at: datetime | None   # the earliest reply window still open, company time

    @property
    def close_at_arg(self) -> str | None:
        return None if self.window_closes_at is None else close_at_arg(self.window_closes_at)


async def prepare(services) -> Tour:
    """Load the demo company into an empty database, run the latest working morning's push, and
    say when its reply window closes. A failed push is logged, not raised: the bot must start."""
    loaded = await _load_if_empty(services)
    summary = ""
    try:
        summary = await _push(services)
    except Exception:
        log.exception("demo: this morning's push failed")
    return Tour(loaded=loaded, push=summary, window_closes_at=await open_window_closes(services))


async def _load_if_empty(services) -> bool:
    from storage.demo import database_is_empty, load_demo
    async with services.db.session() as s, s.begin():
        if not await database_is_empty(s):
            return False
        await load_demo(s, today=services.clock.today(), now=services.clock.now(),
                        platforms=services.account_platforms)
        return True


async def _push(services) -> str:
    """The push of the most recent working morning whose push time has passed (today's after
    09:00 on a working day, else the previous working day's), as the scheduler would have run it."""
    from bot.jobs.scheduler import run_job
    cal, tz, now = services.calendar, services.config.tz, services.clock.now()
    hh, mm = map(int, services.config.collection.push_time.split(":"))
    day = now.date() if cal.is_workday(now.date()) else cal.add_workdays(now.date(), -1)
    at = datetime.combine(day, time(hh, mm), tzinfo=tz)
    if at > now:
        at = datetime.combine(cal.add_workdays(day, -1), time(hh, mm), tzinfo=tz)
    return await run_job(services, "overdue_push", at)
