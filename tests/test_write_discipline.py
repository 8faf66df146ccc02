"""One process, its jobs and its users at the same time, on the SQLite file a company installs
first: nothing lost, nothing failed, nobody told "出了问题" because of a lock.

What each test stands for is a thing a user would notice: a follow-up that was answered
"已记录" and is in the log, a job that is ok on /healthz, a message answered after a hiccup.
(Timings belong to bench/load.py, not here.)"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from bot.jobs.context import JobInterrupted
from bot.jobs.scheduler import JobScheduler, run_job
from storage.models import FollowUp, InboundEvent, JobRun, OutboxMessage, Push
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

# locks, commits and answers are the point here, not the letters' pages (read back in test_letters.py)
pytestmark = pytest.mark.usefixtures("placeholder_pdfs")
REPS, INVOICES = 20, 6


async def _company(db):
    """The fixture ledger plus REPS reps with INVOICES overdue invoices each."""
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        await ledger_fixture.add_reps(
            s, count=REPS, rep_id=lambda i: f"wd{i:02d}", customer_code=lambda i: f"WD{i:02d}",
            customer_name=lambda i: f"并发测试{i:02d}有限公司", invoice_no=lambda i, k: f"WD{i:02d}-{k:03d}",
            invoices=INVOICES, step_days=12, unit=Decimal("1000"))


async def test_reads_then_writes_from_many_tasks_all_commit(db):
    """The shape that lost actions: read, think, write. With BEGIN IMMEDIATE behind one gate
    every such transaction commits, and each saw the one before it."""
    async with db.session() as s, s.begin():
        await s.execute(text("CREATE TABLE tally (n INTEGER)"))

    async def one() -> None:
        async with db.session() as s, s.begin():
            n = (await s.execute(text("SELECT count(*) FROM tally"))).scalar_one()
            await asyncio.sleep(0)          # others run here
            await s.execute(text("INSERT INTO tally VALUES (:n)"), {"n": n})

    await asyncio.gather(*(one() for _ in range(40)))
    async with db.reader() as r:
        total, distinct = (await r.execute(text("SELECT count(*), count(DISTINCT n) FROM tally"))).one()
    assert (total, distinct) == (40, 40)


async def _job_and_rep(db, *, force: bool, steps: int = 60) -> list[int]:
    """A job writing ``steps`` units with a checkpoint after each, and a rep's write arriving
    after its first unit: how many job units were committed when the rep's write was."""
    from types import SimpleNamespace
    from bot.jobs.context import JobContext
    from bot.people_first import PeopleFirst
    async with db.session() as s, s.begin():
        await s.execute(text("CREATE TABLE tally (n INTEGER)"))
    chat_done_at = []
    started = asyncio.Event()

    async def job() -> None:
        async with db.session() as s:
            ctx = JobContext(services=SimpleNamespace(db=db, people_first=PeopleFirst()), at=at("2026-11-20 10:00"), session=s)
            for i in range(steps):
                await s.execute(text("INSERT INTO tally VALUES (:n)"), {"n": i})
                started.set()
                await ctx.checkpoint(force=force)
            await s.commit()

    async def rep() -> None:
        await started.wait()
        async with db.session() as s, s.begin():
            await s.execute(text("INSERT INTO tally VALUES (-1)"))
        async with db.reader() as r:
            chat_done_at.append((await r.execute(text("SELECT count(*) FROM tally WHERE n >= 0"))).scalar_one())

    await asyncio.gather(job(), rep())
    return chat_done_at


async def test_a_person_waiting_to_write_goes_before_the_jobs_next_step(db):
    """A job commits at its checkpoints and writes on at once. The rep's follow-up that was
    waiting must be written at that checkpoint, not after the whole job (it waited six minutes
    behind the escalations at 20k invoices when the connection went straight back to the job)."""
    done_at = await _job_and_rep(db, force=True)
    assert done_at and done_at[0] < 30, f"the rep's write waited for {done_at} of 60 job steps"


async def test_a_job_lets_a_waiting_person_in_at_its_next_unit(db):
    """Units of a job are quick, its step's time (0.2 s) is long: a rep who starts waiting at the
    gate gets in at the job's next unit, not when the step's time is up or the job ends."""
    done_at = await _job_and_rep(db, force=False)
    assert done_at and done_at[0] <= 3, f"the rep's write waited for {done_at} of 60 job units"


async def test_a_reader_is_not_held_up_by_an_open_write(db):
    await _company(db)
    async with db.session() as w:
        await w.execute(text("UPDATE customers SET status = status"))      # the write lock is held now
        async with db.reader() as r:
            n = (await r.execute(select(func.count()).select_from(Push))).scalar_one()
        assert n == 0
        await w.commit()


async def test_jobs_catching_up_while_reps_log_followups_lose_nothing(aiohttp_client, db):
    """A midday restart: the morning's jobs catch up while reps type. Every follow-up answered
    is recorded, every job ends ok."""
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 14:30"))
    sched = JobScheduler(bot.services)
    sched.start()                             # push, reminders, ladder, credit, statute: caught up
    invoices = [f"WD{i:02d}-{k:03d}" for i in range(REPS) for k in (0, 4)]

    async def rep_writes(n: int, invoice: str) -> list[str]:
        await asyncio.sleep(0.01 * n)
        return await bot.say(f"wd{invoice[2:4]}", f"/followup {invoice} 已电话联系，客户说下周安排付款", msg_id=f"fu-{n}")

    answers = await asyncio.gather(*(rep_writes(n, inv) for n, inv in enumerate(invoices)))
    if sched.running:
        await asyncio.wait(list(sched.running), timeout=120)
    await sched.shutdown()
    assert all(len(a) == 1 and "已记录" in a[0] for a in answers), [a for a in answers if "已记录" not in a[0]][:3]
    async with db.reader() as s:
        logged = (await s.execute(select(func.count()).select_from(FollowUp)
                                  .where(FollowUp.text.like("已电话联系%")))).scalar_one()
        runs = dict((await s.execute(select(JobRun.job, JobRun.status))).all())
        events = dict((await s.execute(select(InboundEvent.status, func.count()).group_by(InboundEvent.status))).all())
    assert logged == len(invoices)
    assert runs and set(runs.values()) == {"ok"}, runs
    assert events == {"handled": len(invoices)}


async def test_a_job_stopped_for_shutdown_is_finished_by_the_next_start(aiohttp_client, db, monkeypatch):
    """SIGTERM mid-push: the reps pushed so far stay pushed (committed), the fire is left
    stopped, and the next start pushes the rest — nobody twice."""
    from bot.jobs import collection
    monkeypatch.setattr(collection, "REPS_PER_BATCH", 5)
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 09:00"))
    stopping = asyncio.Event()
    real_create = collection.coll.create_pushes

    async def create_then_stop(*a, **kw):      # asked to stop while the first batch is written
        stopping.set()
        return await real_create(*a, **kw)
    monkeypatch.setattr(collection.coll, "create_pushes", create_then_stop)
    try:
        await run_job(bot.services, "overdue_push", at("2026-11-23 09:00"), stopping=stopping)
        raise AssertionError("the job should have stopped at the checkpoint after its first batch")
    except JobInterrupted:
        pass
    async with db.reader() as s:
        first = (await s.execute(select(func.count()).select_from(Push))).scalar_one()
        [status] = (await s.execute(select(JobRun.status).where(JobRun.job == "overdue_push"))).scalars()
    assert status == "stopped" and first == 5                  # the first batch committed, no more
    monkeypatch.setattr(collection.coll, "create_pushes", real_create)
    summary = await run_job(bot.services, "overdue_push", at("2026-11-23 09:00"))
    assert f"pushed {REPS + 2 - first} rep(s)" in summary
    async with db.reader() as s:
        per_rep = (await s.execute(select(Push.rep_id, func.count()).group_by(Push.rep_id))).all()
        keys = (await s.execute(select(OutboxMessage.idem_key, func.count()).group_by(OutboxMessage.idem_key)
                                .having(func.count() > 1))).all()
        [status] = (await s.execute(select(JobRun.status).where(JobRun.job == "overdue_push"))).scalars()
    assert len(per_rep) == REPS + 2 and {n for _, n in per_rep} == {1}
    assert keys == [] and status == "ok"


async def test_another_process_holding_the_lock_delays_a_message_but_loses_nothing(aiohttp_client, db, tmp_path):
    """A CLI import in another process holds the write lock for a moment: the rep's message
    waits (SQLite's busy handler, then our retries) and is answered for real."""
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"))
    path = db.url.split("///", 1)[1]
    locked, release = threading.Event(), threading.Event()

    def other_process() -> None:
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        con.execute("UPDATE customers SET status = status")
        locked.set()
        release.wait(5)
        con.execute("COMMIT")
        con.close()

    t = threading.Thread(target=other_process)
    t.start()
    await asyncio.get_running_loop().run_in_executor(None, locked.wait, 5)
    asyncio.get_running_loop().call_later(0.5, release.set)
    [answer] = await bot.say("wd01", "/followup WD01-000 已联系，月底付", msg_id="while-locked")
    t.join()
    assert "已记录" in answer


async def test_an_event_that_keeps_failing_is_put_back_then_dead_lettered(aiohttp_client, db, monkeypatch):
    """A defect: the person hears at once that it failed and will be retried; the event is
    tried again later (not forgotten as "failed"); after the last try it is a dead letter that
    /healthz shows, and the person is told it went to an administrator."""
    from bot import inbound
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"))
    calls = []

    async def broken(**kwargs):
        calls.append(1)
        raise RuntimeError("boom")
    monkeypatch.setattr(bot.state.pipeline.dispatcher.commands["overdue"], "handler", broken)
    [first] = await bot.say("wd01", "/overdue", msg_id="bug-2")
    assert "出了问题" in first and "自动重试" in first
    for _ in range(inbound.MAX_ATTEMPTS):
        bot.clock.set(bot.clock.now() + timedelta(hours=1))
        await bot.state.inbound.resume_due()
    async with db.reader() as s:
        [ev] = (await s.execute(select(InboundEvent).where(InboundEvent.event_key == "bug-2"))).scalars()
        told = [m.text for m in (await s.execute(select(OutboxMessage).where(
            OutboxMessage.target == "wd01", OutboxMessage.idem_key.like("reply:local:bug-2:%")))).scalars()]
    assert ev.status == "dead" and ev.attempts == inbound.MAX_ATTEMPTS
    assert len(calls) == inbound.MAX_ATTEMPTS * inbound.IN_PLACE_TRIES or len(calls) == inbound.MAX_ATTEMPTS
    assert len(told) == 1 and "转交管理员" in told[0]       # said once at the end, not at every try
    health = await (await bot.client.get("/healthz")).json()
    assert health["inbound"] == {"dead": 1} and health["status"] == "degraded"


async def test_an_event_that_fails_once_is_answered_for_real_when_resumed(aiohttp_client, db, monkeypatch):
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"))
    cmd = bot.state.pipeline.dispatcher.commands["overdue"]
    real = cmd.handler
    failures = [RuntimeError("once")]

    async def flaky(**kwargs):
        if failures:
            raise failures.pop()
        return await real(**kwargs)
    monkeypatch.setattr(cmd, "handler", flaky)
    [first] = await bot.say("wd01", "/overdue", msg_id="flaky-1")
    assert "出了问题" in first
    bot.clock.set(bot.clock.now() + timedelta(minutes=1))
    assert await bot.state.inbound.resume_due() == 1
    async with db.reader() as s:
        [ev] = (await s.execute(select(InboundEvent).where(InboundEvent.event_key == "flaky-1"))).scalars()
        later = [m.text for m in (await s.execute(select(OutboxMessage).where(
            OutboxMessage.idem_key.like("reply:local:flaky-1:%")))).scalars()]
    assert ev.status == "handled"
    assert any("WD01-000" in t for t in later)             # the real answer: wd01's overdue list


async def test_a_job_committing_step_after_step_does_not_keep_the_gate_from_a_person(db):
    """A job that commits and starts its next step at once used to take the gate back ahead of
    everyone waiting (the pool's queue let it): a person's message waited until the gate timed
    out. The gate serves writers in the order they came: the person waits one step at most."""
    async with db.session() as s, s.begin():
        await s.execute(text("CREATE TABLE steps (who TEXT)"))
    stop = asyncio.Event()

    committed = [0]                      # the job's steps so far, counted as each commits

    async def job() -> int:
        async with db.session() as s:
            while not stop.is_set():
                await s.execute(text("INSERT INTO steps VALUES ('job')"))
                await s.commit()
                committed[0] += 1
        return committed[0]

    running = asyncio.create_task(job())
    await asyncio.sleep(0.2)
    for _ in range(5):
        # the job's steps from the moment the person asks until their write is in: counted from
        # the job itself (a count read in between would add whatever the job did during the read)
        asked = committed[0]
        async with db.session() as s, s.begin():            # a person's write, while the job runs
            await s.execute(text("INSERT INTO steps VALUES ('person')"))
        steps_between = committed[0] - asked
        # behind the step under way (and one either side of the person's turn), not the whole job
        assert steps_between <= 3, steps_between
    stop.set()
    assert await running > 0
    assert await _count_steps(db, "person") == 5


async def _count_steps(db, who: str) -> int:
    async with db.reader() as r:
        return (await r.execute(text("SELECT count(*) FROM steps WHERE who = :w"), {"w": who})).scalar_one()


async def test_the_gate_hands_a_connection_on_when_its_waiter_is_cancelled(db):
    """A request that gives up (the client hung up) while in line must not take the gate with it."""
    async with db.session() as s, s.begin():
        await s.execute(text("CREATE TABLE t (x)"))
    holder = db.session()
    await holder.execute(text("INSERT INTO t VALUES (1)"))        # holds the one writer connection

    async def wants_to_write():
        async with db.session() as s, s.begin():
            await s.execute(text("INSERT INTO t VALUES (2)"))
    waiting = [asyncio.create_task(wants_to_write()) for _ in range(3)]
    await asyncio.sleep(0.05)
    waiting[0].cancel()
    await holder.commit()
    await holder.close()
    await asyncio.wait_for(asyncio.gather(*waiting[1:]), 10)
    async with db.session() as s, s.begin():
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 3


async def test_a_person_is_answered_before_the_job_goes_on(db):
    """A job's unit of work is plain Python (deciding, rendering). A person's message is many
    short steps; with a turn of the loop for the job between each two of them, the message waited
    for as many units as it had steps. While a person waits, the job works one short slice and
    then waits for the answer."""
    from types import SimpleNamespace
    from bot.jobs.context import JobContext
    from bot.people_first import PeopleFirst
    people = PeopleFirst()
    units, during = [0], []
    started = asyncio.Event()

    async def job() -> None:
        async with db.session() as s:
            ctx = JobContext(services=SimpleNamespace(db=db, people_first=people), at=at("2026-11-20 10:00"), session=s)
            for _ in range(400):
                time.sleep(0.002)                 # a unit: 2 ms of deciding and rendering
                units[0] += 1
                started.set()
                await ctx.checkpoint()

    async def person() -> None:
        await started.wait()
        with people.serving():
            before = units[0]
            for _ in range(60):                   # a message: 60 steps (queries, templates)
                await asyncio.sleep(0)
            during.append(units[0] - before)

    await asyncio.gather(job(), person())
    # one slice (20 ms) of the job at most, not one unit per step (60)
    assert during and during[0] <= 15, f"the job did {during} units while the person waited"


async def test_a_question_right_after_a_change_sees_the_change(aiohttp_client, db):
    """Questions (/customer, /aging) are answered from a read-only snapshot beside the writers;
    one person's messages still go in the order they were sent: the card asked for right after a
    follow-up shows that follow-up."""
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"))
    async def card_once_stored(n: int) -> list[str]:
        # sent once the follow-up is stored (acknowledged), as a person's next message would be
        while True:
            async with db.reader() as r:
                if (await r.execute(select(InboundEvent.id).where(InboundEvent.event_key.like(f"%fu-{n}%")))).first():
                    break
            await asyncio.sleep(0)
        return await bot.say("wd01", "/customer WD01", msg_id=f"card-{n}")

    for n in range(3):
        note = f"第{n}次电话，客户财务说月底前安排付款"
        logged, card = await asyncio.gather(
            bot.say("wd01", f"/followup WD01-00{n} {note}", msg_id=f"fu-{n}"), card_once_stored(n))
        assert "已记录" in logged[0]
        assert note in card[0], card[0][:400]


async def test_a_follow_up_is_not_held_up_by_a_managers_long_question(aiohttp_client, db, monkeypatch):
    """A question that takes long to work out (/aging over a big ledger took a second at 200k
    invoices) is worked out on its own snapshot, outside the writers' line: a rep's follow-up
    sent meanwhile is recorded and answered without waiting for it."""
    from bot.handlers import aging as aging_handler
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"))
    order: list[str] = []
    asked, followed_up = asyncio.Event(), asyncio.Event()
    real_figures = aging_handler.aging_figures

    async def slow_figures(*a, **kw):
        asked.set()
        try:
            await asyncio.wait_for(followed_up.wait(), 3)     # a long computation
        except asyncio.TimeoutError:
            pass
        order.append("aging answered")
        return await real_figures(*a, **kw)
    monkeypatch.setattr(aging_handler, "aging_figures", slow_figures)

    async def rep() -> list[str]:
        await asked.wait()
        answer = await bot.say("wd02", "/followup WD02-001 已电话联系，对方说本周付款")
        order.append("follow-up answered")
        followed_up.set()
        return answer
    aging_answer, followup_answer = await asyncio.gather(bot.say("gm", "/aging"), rep())
    assert "账龄" in aging_answer[0] and "已记录" in followup_answer[0]
    assert order == ["follow-up answered", "aging answered"]


async def test_the_wal_is_copied_in_the_background_not_in_a_writers_commit(db):
    """The server copies SQLite's WAL into the database on a reader connection every second;
    a writer's commit never does it (it took up to 1.5 s inside whichever commit filled the WAL,
    while people waited behind it). The WAL is still reused once copied, so it stays bounded."""
    import os
    wal = db.url.split("///", 1)[1] + "-wal"
    await db.checkpoint_in_background()
    async with db.session() as s, s.begin():
        await s.execute(text("CREATE TABLE blobs (b BLOB)"))
    for _ in range(15):                       # ~1,500 pages: past SQLite's own 1,000-page line
        async with db.session() as s, s.begin():
            await s.execute(text("INSERT INTO blobs SELECT randomblob(4000) FROM (SELECT 1 UNION ALL SELECT 2 "
                                 "UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5) a, "
                                 "(SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 "
                                 "UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 "
                                 "UNION ALL SELECT 9 UNION ALL SELECT 10 UNION ALL SELECT 11 UNION ALL SELECT 12 "
                                 "UNION ALL SELECT 13 UNION ALL SELECT 14 UNION ALL SELECT 15 UNION ALL SELECT 16 "
                                 "UNION ALL SELECT 17 UNION ALL SELECT 18 UNION ALL SELECT 19 UNION ALL SELECT 20) b"))
    grown = os.path.getsize(wal)
    assert grown > 1_200 * 4096               # no commit copied it
    await db.checkpoint_wal()
    for _ in range(15):                       # as much again: written over the copied WAL
        async with db.session() as s, s.begin():
            await s.execute(text("DELETE FROM blobs WHERE rowid IN (SELECT rowid FROM blobs LIMIT 100)"))
            await s.execute(text("INSERT INTO blobs SELECT randomblob(4000) FROM blobs LIMIT 100"))
    assert os.path.getsize(wal) <= grown * 1.1


async def test_the_push_writes_a_few_thousand_items_per_step(aiohttp_client, db, monkeypatch):
    """A batch of reps is built, rendered and written in one piece: at 1M invoices 50 reps were
    37,000 items in one step. A batch now stops at ITEMS_PER_BATCH items (whole reps), and the
    push is the same: every rep pushed once, every item numbered once."""
    from bot.jobs import collection
    monkeypatch.setattr(collection, "ITEMS_PER_BATCH", INVOICES * 2)       # two reps a step
    steps = []
    real_create = collection.coll.create_pushes

    async def counted(*a, **kw):
        steps.append(len(kw["items"]))
        return await real_create(*a, **kw)
    monkeypatch.setattr(collection.coll, "create_pushes", counted)
    await _company(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 09:00"))
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    async with db.reader() as s:
        per_rep = dict((await s.execute(select(Push.rep_id, func.count()).group_by(Push.rep_id))).all())
    assert set(per_rep.values()) == {1} and len(per_rep) == sum(steps)
    assert max(steps) <= 3 and len(steps) >= REPS // 3, steps
