"""The scheduler as an operator meets it: restarts, missed fires, two instances."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.clock import FixedClock
from bot.jobs.scheduler import JobScheduler, run_job
from bot.services import Services
from storage.models import JobRun, Push
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import config_for


async def _services(db, when):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    cfg = config_for(db.url)
    return Services.build(cfg, clock=FixedClock(at(when), cfg.company.timezone), db=db)


async def test_a_push_missed_while_down_runs_at_start_and_only_once(db):
    services = await _services(db, "2026-11-23 10:30")          # started after the 09:00 fire
    sched = JobScheduler(services)
    sched.start()
    await asyncio.wait(list(sched.running), timeout=30)
    await sched.shutdown()
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Push))).scalar_one() == 2   # rep1, rep2
        runs = (await s.execute(select(JobRun.job, JobRun.fire_key, JobRun.status)
                                .where(JobRun.job == "overdue_push"))).all()
        assert runs == [("overdue_push", "2026-11-23", "ok")]
    again = JobScheduler(services)                                # a second restart the same morning
    again.start()
    await asyncio.wait(list(again.running), timeout=30)
    await again.shutdown()
    assert again.last["overdue_push"]["summary"] == "overdue_push: already ran for 2026-11-23"


async def test_before_the_fire_time_nothing_is_caught_up(db):
    services = await _services(db, "2026-11-23 08:00")
    sched = JobScheduler(services)
    sched.start()
    assert sched.running == set()           # no job's fire time has passed yet today
    await sched.shutdown()
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Push))).scalar_one() == 0


async def test_a_stale_running_fire_is_taken_over(db):
    services = await _services(db, "2026-11-23 09:00")
    async with db.session() as s, s.begin():
        s.add(JobRun(job="overdue_push", fire_key="2026-11-23", started_at=at("2026-11-23 09:00"), status="running"))
    services.clock.set(at("2026-11-23 09:05"))                     # the first instance may still be working
    assert "already ran" in await run_job(services, "overdue_push", at("2026-11-23 09:00"))
    services.clock.set(at("2026-11-23 09:20"))                     # ...it died: take over
    assert "pushed 2 rep(s)" in await run_job(services, "overdue_push", at("2026-11-23 09:00"))


async def test_a_fire_left_running_by_a_dead_instance_is_retaken_by_a_live_one(db):
    """Instance A claimed today's push and died; instance B, running all along, finds the stale
    fire on its minute check and runs it — once, however many instances look."""
    services = await _services(db, "2026-11-23 09:05")
    async with db.session() as s, s.begin():
        s.add(JobRun(job="overdue_push", fire_key="2026-11-23", started_at=at("2026-11-23 09:00"), status="running"))
    live = JobScheduler(services)
    assert await live.retake_stale() == []                  # 5 minutes: A may still be working
    services.clock.set(at("2026-11-23 09:11"))
    live.active.add("overdue_push")                        # were it still running in this process: slow, not dead
    assert await live.retake_stale() == []
    live.active.clear()
    assert await live.retake_stale() == ["overdue_push"]
    assert live.last["overdue_push"]["summary"] == "pushed 2 rep(s), 2 message(s)"
    assert await live.retake_stale() == []                  # done: nothing stale any more
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Push))).scalar_one() == 2
        assert (await s.execute(select(JobRun.status).where(JobRun.job == "overdue_push"))).scalars().all() == ["ok"]
