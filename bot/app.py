"""create_app(config): routes, resources (cleanup_ctx), the outbox sender and the scheduler."""
from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiohttp import web

from bot import identities, inbound
from bot.config import Config
from bot.core.channel_health import ChannelHealth
from bot.core.intake import Malformed, Rejected
from bot.core.messages import IncomingMessage
from bot.core.pipeline import Pipeline, Rendered
from bot.demo import Tour
from bot.loop_watch import LoopWatch
from bot.handlers import dispatcher
from bot.jobs.scheduler import JobScheduler
from bot.outbox import Sender, backlog
from bot.send_time_check import SendTimeCheck
from bot.services import Services
from bot.web import signing
from storage.db import WRITER, is_storage_fault, is_transient

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024   # platform callbacks are small; anything bigger is refused with 413


@dataclass
class State:
    services: Services
    pipeline: Pipeline
    channels: dict = field(default_factory=dict)
    sender: Sender | None = None
    inbound: inbound.InboundProcessor | None = None
    scheduler: JobScheduler | None = None
    channel_health: ChannelHealth = field(default_factory=ChannelHealth)
    tour: Tour | None = None           # demo mode: what bot.demo.prepare did (README step 5's --at)
    # how the operator runs the command line, for hints such as README step 5 (set by `arbot serve`)
    cli: str = "arbot"

    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def db(self):
        return self.services.db

    async def handle_now(self, msg: IncomingMessage) -> list[Rendered]:
        """Store (dedupe) and handle synchronously: the local chat waits for its answer."""
        event_id = await inbound.store(self.db, msg, self.services.clock.now())
        self.channel_health.stored(msg.platform, duplicate=event_id is None)
        if event_id is None:
            return []
        return await self.inbound.process(event_id, msg, inline=True)


STATE = web.AppKey("state", State)


def create_app(config: Config, services: Services | None = None, *, start_scheduler: bool = True,
               start_sender: bool = True, migrate: bool = True, settle_heap: bool = False) -> web.Application:
    """``settle_heap``: the served process (``arbot serve``) puts what start-up made out of the
    cyclic collector's sight (see below); tests, which make many apps in one process, do not."""
    services = services or Services.build(config)
    state = State(services=services, pipeline=Pipeline(dispatcher(), services))
    app = web.Application(client_max_size=MAX_BODY, middlewares=[error_middleware])
    app[STATE] = state
    from bot.channels import adapters
    adapters.install(app, state)
    from bot.channels.customer import install_customer_channels
    install_customer_channels(state)
    app.add_routes([web.get("/healthz", healthz)])
    from bot.web import dashboard
    dashboard.install(app, state)      # dashboard, signed report downloads, /metrics
    from bot.web import statements
    statements.install(app, state)     # the customers' statement confirmation page
    from bot.web import letter_files
    letter_files.install(app, state)   # /letter's documents, made when their link is opened

    async def resources(app: web.Application):
        WRITER.set("start-up")
        watch = LoopWatch(config.log.stall_ms / 1000) if config.log.stall_ms else None
        if watch is not None:
            watch.start()
            services.db.hold_warning = watch.threshold
        if migrate:
            await services.db.migrate()
        # before anything signs or checks a link: the secret every process on the database shares
        await signing.load_secret(services.db, config, services.clock.now())
        # before anything reads the ledger (the demo, the scheduler's catch-up): an import that a
        # killed process left half-written is taken back (storage/import_runs.py)
        await _recover_imports(services.db)
        # before anything counts working days: next year's schedule, if finance imported it
        await services.load_calendar()
        state.sender = Sender(services.db, state.channels, services.clock, config.outbox,
                              health=state.channel_health, people_first=services.people_first,
                              check=SendTimeCheck(services).check)
        state.inbound = inbound.InboundProcessor(services.db, state.pipeline, state.channels, services.clock,
                                                 on_queued=state.sender.wake, people_first=services.people_first,
                                                 health=state.channel_health,
                                                 first_contact=identities.FirstContact(services.db, config))
        await state.inbound.resume_unhandled()
        tasks = [asyncio.create_task(state.inbound.run_resumer(), name="inbound-resumer"),
                 *_background(services.db),
                 asyncio.create_task(_every(CALENDAR_RELOAD_SECONDS, services.load_calendar, "calendar reload"),
                                     name="calendar-reload")]
        if start_sender and config.outbox.send:
            tasks.append(asyncio.create_task(state.sender.run(), name="outbox-sender"))
        if config.demo:
            # before the scheduler: its start-up catch-up must find the demo's data and push in
            # place, not run the missed push on an empty database and mark the day done (bot/demo.py)
            from bot import demo
            state.tour = await demo.prepare(services)
            state.sender.wake()
        if settle_heap:
            # the modules, templates and tables loaded at start-up (~370,000 objects) live as long
            # as the process, yet every full collection walked them again: ~110 ms of a held loop
            # each time, most of the stalls chat saw during the catch-up (bench load, loop watch)
            gc.collect()
            gc.freeze()
            # and the young generation collected every 10,000 allocations instead of 700: a job
            # holding 20,000 customers made the collector walk them ~10 times a second, each a
            # full collection that freed nothing (credit_watch at 200k in process: 3,904
            # collections, 1.65 s, 9 pauses over 50 ms → 117, 0.27–0.52 s, none; two runs each)
            gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])
        if start_scheduler:
            state.scheduler = JobScheduler(services, on_queued=state.sender.wake)
            state.scheduler.start()
        yield
        # graceful within Docker's 10 s: a job stops at its next checkpoint (≤ 5 s), the events
        # being handled finish (≤ 2 s; one left is resumed at the next start, it is stored),
        # the sender finishes the sends under way (≤ 2 s; an unfinished claim expires and is sent
        # again, with its idempotency key), then the database closes
        if state.scheduler:
            await state.scheduler.shutdown(timeout=5)
        try:
            await asyncio.wait_for(state.inbound.wait_idle(), timeout=2)
        except asyncio.TimeoutError:
            log.warning("shutdown: %d event(s) still being handled; they are resumed at the next start",
                        len(state.inbound.tasks))
            unfinished = list(state.inbound.tasks)
            for t in unfinished:
                t.cancel()
            if unfinished:
                await asyncio.wait(unfinished, timeout=2)
        state.sender.stop()
        for t in tasks:
            if t.get_name() in ("inbound-resumer", "import-recovery", "storage-watch", "wal-checkpoint",
                                "calendar-reload"):
                t.cancel()
        _, late = await asyncio.wait(tasks, timeout=2)
        for t in late:
            t.cancel()
        # every task that may hold a connection has finished before the engines are disposed: a
        # connection handed back after that waits forever for a driver thread that is gone
        if late:
            await asyncio.wait(late, timeout=2)
        await services.db.close()
        if watch is not None:
            watch.stop()

    app.cleanup_ctx.append(resources)
    return app


YOUNG_COLLECTION = 10_000        # allocations between two collections of the youngest generation (settle_heap)
IMPORT_RECOVERY_EVERY = 60.0      # seconds between two looks for an import a killed process left
STORAGE_PROBE_SECONDS = 5
WAL_CHECKPOINT_SECONDS = 1.0
CALENDAR_RELOAD_SECONDS = 300.0   # a schedule another instance imported is used here within this


async def _recover_imports(db) -> None:
    """Undo the imports whose process is gone (storage/import_runs.py). A database that cannot
    be read or written now does not stop the bot: the next round tries again."""
    from storage.import_runs import recover_imports
    try:
        await recover_imports(db)
    except Exception as e:
        if not (is_transient(e) or is_storage_fault(e)):
            log.exception("could not check for unfinished imports; trying again in %.0f s", IMPORT_RECOVERY_EVERY)


async def _every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """``work()`` every ``seconds`` while the bot runs. A database that is busy or cannot be
    written is no bug: the next round tries again; anything else is said in one log line."""
    WRITER.set(what.replace(" ", "-"))
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if is_transient(e) or is_storage_fault(e):
                log.debug("%s: %s", what, type(e).__name__)
            else:
                log.warning("%s failed (%s); trying again in %.0f s", what, type(e).__name__, seconds)


def _background(db) -> list[asyncio.Task]:
    """The bot's housekeeping while it runs:

    * a CLI import killed half-way (SIGKILL, a lost container) is taken back within a minute,
      without waiting for the next start;
    * while the database is noted as not writable, a real write is tried every few seconds: the
      fault clears (logged once) as soon as space or permission is back, with or without traffic;
    * SQLite's WAL is copied into the database every second on a reader connection, so no
      writer's commit pays for it (storage/db.py, ``checkpoint_in_background``)."""
    async def probe_if_faulty() -> None:
        if not db.health.writable:
            await db.probe_write()

    async def checkpoints() -> None:
        if not db.is_sqlite:
            return
        try:
            await db.checkpoint_in_background()
        except Exception as e:          # SQLite's writers then keep checkpointing at their commits
            log.warning("WAL checkpoints stay with the writers (%s)", type(e).__name__)
            return
        await _every(WAL_CHECKPOINT_SECONDS, db.checkpoint_wal, "WAL checkpoint")

    from storage.import_runs import recover_imports
    return [asyncio.create_task(_every(IMPORT_RECOVERY_EVERY, lambda: recover_imports(db), "import recovery"),
                                name="import-recovery"),
            asyncio.create_task(_every(STORAGE_PROBE_SECONDS, probe_if_faulty, "storage probe"), name="storage-watch"),
            asyncio.create_task(checkpoints(), name="wal-checkpoint")]


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Bad requests get a 4xx with a reason, never a 5xx with a stack trace."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Rejected as e:              # the one bad-request policy (bot/core/intake.py)
        return web.json_response(e.body(), status=e.status)
    except (ValueError, UnicodeDecodeError) as e:
        log.info("bad request to %s: %s", request.path, type(e).__name__)
        return web.json_response(Malformed(f"bad request: {type(e).__name__}").body(), status=400)
    except Exception as e:
        # the database cannot take the event now (full disk, read-only file, a lock that would
        # not clear): 503 makes the platform deliver it again later, instead of a 200 for an
        # event that was never stored. Logged once by the database's health, not per request.
        if is_storage_fault(e) or is_transient(e):
            return web.json_response({"error": "storage_unavailable", "reason": "storage unavailable, try again later"},
                                     status=503, headers={"Retry-After": "5"})
        raise


async def healthz(request: web.Request) -> web.Response:
    """Database, outbox backlog and dead letters, the sender, the scheduler, the last run of each
    job (from job_runs), events waiting or dead, and each channel's status. 503 when the database is
    unreachable or cannot be written; "degraded" when something needs a person (dead letters,
    sender alerts, a job's last run failed)."""
    from bot.web.ops import dead_letters, inbound_backlog, last_job_runs
    state = request.app[STATE]
    body: dict = {"status": "ok", "local_chat": "local" in state.channels,
                  "channels": state.channel_health.report()}
    try:
        async with state.db.reader() as s:
            body["outbox"] = await backlog(s)
            body["dead_letters"] = await dead_letters(s)
            body["jobs"] = await last_job_runs(s)
            body["inbound"] = await inbound_backlog(s)
        body["database"] = "ok"
    except Exception as e:      # report, don't crash the health check
        body["database"] = f"error: {type(e).__name__}"
        body["status"] = "degraded"
    # reads work on a full disk; writes do not: a noted fault is probed again (recovery is seen
    # without traffic), and a database that cannot be written is not ok
    if not state.db.health.writable:
        try:
            await state.db.probe_write()
        except Exception as e:
            body["database"] = f"error: {type(e).__name__}"
    if not state.db.health.writable:
        body["database"] = f"not writable: {state.db.health.fault}"
        body["status"] = "degraded"
    if body.get("inbound", {}).get("dead"):
        body["status"] = "degraded"
    if state.sender is not None:
        body["outbox_alerts"] = state.sender.alerts
        body["sender"] = {**state.sender.stats, "last_latency_seconds": state.sender.last_latency}
        if state.sender.alerts or body.get("outbox", {}).get("dead"):
            body["status"] = "degraded"
    if any(j["status"] == "failed" for j in body.get("jobs", {}).values()):
        body["status"] = "degraded"
    body["scheduler"] = state.scheduler.status() if state.scheduler is not None else {"running": False}
    # from December 1, next year's holidays must be imported (arbot calendar import, /calendar)
    missing = state.services.calendar.missing_year(state.services.clock.today())
    body["calendar"] = {"imported_years": sorted(state.services.calendar.imported_years), "missing_year": missing}
    if missing is not None:
        body["calendar"]["warning"] = (f"no holiday schedule for {missing}: import the State Council's notice "
                                       "(arbot calendar import NOTICE.txt, or /calendar in chat)")
        body["status"] = "degraded"
    return web.json_response(body, status=200 if body["database"] == "ok" else 503)
