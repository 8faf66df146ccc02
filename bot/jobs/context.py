"""What a job gets: no chat context, just the services, the fire time and a session whose
transaction the runner owns.

A job writes in short steps: it calls ``await ctx.checkpoint()`` between units of work (a rep's
push, an invoice's ladder step). A checkpoint commits when the step has held the write lock for
CHECKPOINT_SECONDS, so chat and imports wait at most that long behind a job (SQLite has one
writer); every unit is idempotent for the fire (claimed steps, pushed reps, outbox keys), so a
run stopped between units is finished by running the fire again. Long reads go to
``ctx.reader()``, which never takes the write lock.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import Services

CHECKPOINT_SECONDS = 0.2


class JobInterrupted(Exception):
    """The process is stopping: the job stopped at a checkpoint, everything before it committed."""


@dataclass
class JobContext:
    services: Services
    at: datetime                  # the fire time, in the company timezone
    session: AsyncSession
    stopping: object = None       # an object with ``is_set()`` (asyncio.Event): shut down asked
    job: str = ""                 # the job's name and its fire key (job_runs): a digest's identity
    fire: str = ""
    _since: float = field(default_factory=time.monotonic)

    @property
    def today(self) -> date:
        return self.at.date()

    @property
    def fire_key(self) -> str:
        """This fire's key; a job called without the runner (a test) counts as its day's fire."""
        return self.fire or self.today.isoformat()

    @property
    def config(self):
        return self.services.config

    def reader(self) -> AsyncSession:
        """A read-only session with its own snapshot: for scans that would otherwise hold the
        write lock while they read."""
        return self.services.db.reader()

    async def checkpoint(self, *, force: bool = False) -> None:
        """Commit the work so far if the write transaction has run long enough (or ``force``),
        letting other writers in; make way for people waiting to be answered (bot/people_first.py);
        stop here if the process is shutting down."""
        people = self.services.people_first
        make_way = people.due()
        # someone waiting at the write gate gets in at the next unit, not when the step's time is up
        due = time.monotonic() - self._since >= CHECKPOINT_SECONDS or self.services.db.writers_waiting()
        if force or due or make_way or self._stop_asked():
            if self.session.in_transaction():
                await self.session.commit()
            self._since = time.monotonic()
        if self._stop_asked():
            raise JobInterrupted()
        if make_way:
            await people.give_way()
        else:
            # a turn of the loop at every unit of work: a request that needs one step is not
            # held up behind the whole job
            await asyncio.sleep(0)

    def _stop_asked(self) -> bool:
        return self.stopping is not None and self.stopping.is_set()
