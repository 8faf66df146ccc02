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
from bot.jobs.context import JobContext
from bot.jobs.registry import JOBS, Job
from bot.services import Services
from storage.models import JobRun

log = logging.getLogger(__name__)
# a fire marked running longer than this belongs to a dead instance and may be taken over; safe
# even if it is only slow, because every job is idempotent for its fire
STALE_RUN = timedelta(minutes=10)


def fire_key(job: Job, at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M") if job.per_minute else at.date().isoformat()


async def claim(services: Services, job: Job, at: datetime) -> int | None:
    """Take this fire for this instance; None when it already ran (or another instance has it)."""
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
                (JobRun.status == "failed") | ((JobRun.status == "running") & (JobRun.started_at < now - STALE_RUN)))
                .values(status="running", started_at=now).returning(JobRun.id))
            row = res.first()
            return row[0] if row else None


async def run_job(services: Services, name: str, at: datetime | None = None, *, claim_fire: bool = True) -> str:
    """Run one job as if the clock read ``at``. Returns the job's summary."""
    job = JOBS[name]
    at = (at or services.clock.now()).astimezone(services.config.tz)
    if job.workdays_only and not services.calendar.is_workday(at.date()):
        return f"{name}: {at.date()} is not a working day; nothing to do"
    run_id = await claim(services, job, at) if claim_fire else None
    if claim_fire and run_id is None:
        return f"{name}: already ran for {fire_key(job, at)}"
    started = time.monotonic()
    try:
        async with services.db.session() as s, s.begin():
            summary = await job.fn(JobContext(services, at, s))
    except Exception:
        log.exception("job %s failed (fire %s)", name, fire_key(job, at))
        metrics.for_db(services.db).job(name, "failed", time.monotonic() - started)
        if run_id:
            await _finish(services, run_id, "failed", "error")
        raise
    log.info("job %s done in %.2fs: %s", name, time.monotonic() - started, summary)
    metrics.for_db(services.db).job(name, "ok", time.monotonic() - started)
    if run_id:
        await _finish(services, run_id, "ok", summary)
    return summary


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

    def start(self) -> None:
        tz = self.services.config.tz
        for job in JOBS.values():
            trigger = CronTrigger(timezone=tz, **job.trigger(self.services.config))
            self.scheduler.add_job(self._fire, trigger, args=[job.name], id=job.name, replace_existing=True,
                                   misfire_grace_time=3600, coalesce=True, max_instances=1)
            # APScheduler keeps no memory across restarts: a fire missed today while the bot was
            # down (or killed mid-run) is run now. The fire claim makes this a no-op if it ran.
            missed = None if job.per_minute else last_fire_today(trigger, self.services.clock.now())
            if missed is not None:
                task = asyncio.get_running_loop().create_task(self._fire(job.name, missed))
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
        async with self.services.db.session() as s:
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

    async def _fire(self, name: str, at: datetime | None = None) -> None:
        started = time.monotonic()
        task = asyncio.current_task()
        self.running.add(task)
        self.active.add(name)
        try:
            summary = await run_job(self.services, name, at)
            self.last[name] = {"at": self.services.clock.now().isoformat(), "ok": True, "summary": summary,
                               "seconds": round(time.monotonic() - started, 3)}
        except Exception as e:
            self.last[name] = {"at": self.services.clock.now().isoformat(), "ok": False, "error": type(e).__name__}
        finally:
            self.running.discard(task)
            self.active.discard(name)
        self.on_queued()

    async def shutdown(self, timeout: float = 30) -> None:
        """Stop firing; let a job that is running finish (its transaction commits or rolls back
        whole) before the database closes."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.running:
            await asyncio.wait(list(self.running), timeout=timeout)

    def status(self) -> dict:
        jobs = {j.id: (j.next_run_time.isoformat() if j.next_run_time else None) for j in self.scheduler.get_jobs()}
        return {"running": self.scheduler.running, "next": jobs, "last": self.last}
