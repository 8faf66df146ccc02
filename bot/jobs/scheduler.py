"""Runs the registry's jobs on APScheduler 3 (one AsyncIOScheduler, the company timezone).

Each fire is claimed in the database (job_runs, unique on job + fire key) before it runs, so a
second instance, or a re-fire after a restart, does not run it again. One wrapper logs, times
and records every run.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot import metrics
from bot.jobs.context import JobContext, JobInterrupted
from bot.jobs.registry import JOBS, Job
from bot.services import Services
from storage.db import WRITER, backoff, is_transient
from storage.models import JobRun

log = logging.getLogger(__name__)
# a fire marked running longer than this belongs to a dead instance and may be taken over; safe
# even if it is only slow, because every job is idempotent for its fire
STALE_RUN = timedelta(minutes=10)


def fire_key(job: Job, at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M") if job.per_minute else at.date().isoformat()


async def claim(services: Services, job: Job, at: datetime) -> int | None:
    """Take this fire for this instance; None when it already ran (or another instance has it).
    A failed fire, one stopped for a shutdown, or one left running by a dead instance is taken over."""
    key, now = fire_key(job, at), services.clock.now()
    async with services.db.session() as s:
        try:
            async with s.begin():
                run = JobRun(job=job.name, fire_key=key, started_at=now, status="running")
                s.add(run)
                await s.flush()
                return run.id
        except IntegrityError:
            pass
        async with s.begin():
            # a failed run, or a run whose instance died, may be taken over
            res = await s.execute(update(JobRun).where(
                JobRun.job == job.name, JobRun.fire_key == key,
                JobRun.status.in_(("failed", "stopped")) |
                ((JobRun.status == "running") & (JobRun.started_at < now - STALE_RUN)))
                .values(status="running", started_at=now).returning(JobRun.id))
            row = res.first()
            return row[0] if row else None


JOB_TRIES = 4         # a transient database error re-runs the fire (idempotent) this many times


async def run_job(services: Services, name: str, at: datetime | None = None, *, claim_fire: bool = True,
                  stopping=None) -> str:
    """Run one job as if the clock read ``at``. Returns the job's summary.

    The job commits as it goes (``JobContext.checkpoint``); a transient database error rolls
    back the current step only, and the fire is run again from the top (every step is
    idempotent). A stop at a checkpoint (shutdown) leaves the fire ``stopped``: the next
    start claims it again and finishes it."""
    job = JOBS[name]
    WRITER.set(name)
    at = (at or services.clock.now()).astimezone(services.config.tz)
    if job.workdays_only and not services.calendar.is_workday(at.date()):
        return f"{name}: {at.date()} is not a working day; nothing to do"
    run_id = await _retrying(lambda: claim(services, job, at)) if claim_fire else None
    if claim_fire and run_id is None:
        return f"{name}: already ran for {fire_key(job, at)}"
    started = time.monotonic()
    try:
        for attempt in range(JOB_TRIES):
            try:
                async with services.db.session() as s:
                    summary = await job.fn(JobContext(services, at, s, stopping=stopping, job=name,
                                                      fire=fire_key(job, at)))
                    await s.commit()
                break
            except Exception as e:
                if not is_transient(e) or attempt == JOB_TRIES - 1:
                    raise
                log.warning("job %s: transient database error (%s); running the fire again", name, type(e).__name__)
                await asyncio.sleep(backoff(attempt, base=0.5))
    except (JobInterrupted, asyncio.CancelledError):
        log.warning("job %s stopped at a safe point for shutdown (fire %s); the next start finishes it",
                    name, fire_key(job, at))
        if run_id:
            await asyncio.shield(_finish(services, run_id, "stopped", "stopped for shutdown"))
        raise
    except Exception:
        log.exception("job %s failed (fire %s)", name, fire_key(job, at))
        metrics.for_db(services.db).job(name, "failed", time.monotonic() - started)
        if run_id:
            await _retrying(lambda: _finish(services, run_id, "failed", "error"))
        raise
    log.info("job %s done in %.2fs: %s", name, time.monotonic() - started, summary)
    metrics.for_db(services.db).job(name, "ok", time.monotonic() - started)
    if run_id:
        await _retrying(lambda: _finish(services, run_id, "ok", summary))
    return summary


async def _retrying(call, tries: int = JOB_TRIES):
    for attempt in range(tries):
        try:
            return await call()
        except Exception as e:
            if not is_transient(e) or attempt == tries - 1:
                raise
            await asyncio.sleep(backoff(attempt))


async def _finish(services: Services, run_id: int, status: str, summary: str) -> None:
    async with services.db.session() as s, s.begin():
        await s.execute(update(JobRun).where(JobRun.id == run_id).values(
            status=status, summary=summary[:2000], finished_at=services.clock.now()))


def last_fire_today(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The trigger's latest fire time today that is not after ``now``."""
    t = trigger.get_next_fire_time(None, now.replace(hour=0, minute=0, second=0, microsecond=0))
    last = None
    while t is not None and t <= now:
        last = t
        t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
    return last


class JobScheduler:
    def __init__(self, services: Services, on_queued=lambda: None):
        self.services = services
        self.on_queued = on_queued
        self.scheduler = AsyncIOScheduler(timezone=services.config.tz)
        self.last: dict[str, dict] = {}
        self.running: set[asyncio.Task] = set()
        self.active: set[str] = set()             # jobs running in this process now
        self.stopping = asyncio.Event()

    def start(self) -> None:
        tz = self.services.config.tz
        catch_up: list[tuple[str, datetime]] = []
        for job in JOBS.values():
            trigger = CronTrigger(timezone=tz, **job.trigger(self.services.config))
            self.scheduler.add_job(self._fire, trigger, args=[job.name], id=job.name, replace_existing=True,
                                   misfire_grace_time=3600, coalesce=True, max_instances=1)
            # APScheduler keeps no memory across restarts: a fire missed today while the bot was
            # down (or stopped mid-run) is run now. The fire claim makes this a no-op if it ran.
            missed = None if job.per_minute or not job.catch_up else last_fire_today(trigger, self.services.clock.now())
            if missed is not None:
                catch_up.append((job.name, missed))
        if catch_up:
            # one at a time, in the registry's order (the push before the ladder that reads its
            # windows): each job writes in short steps, so chat stays responsive meanwhile
            task = asyncio.get_running_loop().create_task(self._catch_up(catch_up))
            self.running.add(task)
        # another instance that claimed today's fire and died mid-run leaves it "running": every
        # instance looks for such fires each minute and one of them (the claim decides) runs it
        self.scheduler.add_job(self.retake_stale, "interval", minutes=1, id="retake_stale", replace_existing=True,
                               coalesce=True, max_instances=1)
        self.scheduler.start()

    async def retake_stale(self) -> list[str]:
        """Re-fire today's daily fires left ``running`` for longer than STALE_RUN (their instance
        died); the claim lets exactly one instance take each over. Returns the jobs re-fired.
        Per-minute jobs are left alone: their next fire does the same work."""
        now = self.services.clock.now().astimezone(self.services.config.tz)
        async with self.services.db.reader() as s:
            stale = list((await s.execute(select(JobRun.job).where(
                JobRun.status == "running", JobRun.started_at < now - STALE_RUN,
                JobRun.fire_key == now.date().isoformat()))).scalars())
        fired = []
        for name in stale:
            job = JOBS.get(name)
            if job is None or job.per_minute or name in self.active:
                continue            # (running here: slow, not dead)
            at = last_fire_today(CronTrigger(timezone=now.tzinfo, **job.trigger(self.services.config)), now)
            if at is not None:
                log.warning("job %s: today's fire was left running by a dead instance; taking it over", name)
                await self._fire(name, at)
                fired.append(name)
        return fired

    async def _catch_up(self, fires: list[tuple[str, datetime]]) -> None:
        task = asyncio.current_task()
        try:
            for name, at in fires:
                if self.stopping.is_set():
                    return
                await self._fire(name, at)
        finally:
            self.running.discard(task)

    async def _fire(self, name: str, at: datetime | None = None) -> None:
        started = time.monotonic()
        task = asyncio.current_task()
        owned = task not in self.running         # (the catch-up task fires several, and owns itself)
        self.running.add(task)
        self.active.add(name)
        try:
            summary = await run_job(self.services, name, at, stopping=self.stopping)
            self.last[name] = {"at": self.services.clock.now().isoformat(), "ok": True, "summary": summary,
                               "seconds": round(time.monotonic() - started, 3)}
        except JobInterrupted:
            self.last[name] = {"at": self.services.clock.now().isoformat(), "ok": False, "error": "stopped"}
        except Exception as e:
            self.last[name] = {"at": self.services.clock.now().isoformat(), "ok": False, "error": type(e).__name__}
        finally:
            if owned:
                self.running.discard(task)
            self.active.discard(name)
        self.on_queued()

    async def shutdown(self, timeout: float = 5) -> None:
        """Stop firing; a running job stops at its next checkpoint (what it did so far is
        committed, the fire is left ``stopped`` and the next start finishes it). A job that does
        not reach a checkpoint in ``timeout`` is cancelled: its open step rolls back whole."""
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.running:
            _, late = await asyncio.wait(list(self.running), timeout=timeout)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=2)

    def status(self) -> dict:
        jobs = {j.id: (j.next_run_time.isoformat() if j.next_run_time else None) for j in self.scheduler.get_jobs()}
        return {"running": self.scheduler.running, "next": jobs, "last": self.last}
