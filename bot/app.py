"""create_app(config): routes, resources (cleanup_ctx), the outbox sender and the scheduler."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web

from bot import inbound
from bot.channels.local import LocalChannel
from bot.channels.local import routes as local_routes
from bot.config import Config
from bot.core.messages import IncomingMessage
from bot.core.pipeline import Pipeline, Rendered
from bot.handlers import dispatcher
from bot.jobs.scheduler import JobScheduler
from bot.outbox import Sender, backlog
from bot.services import Services

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
    channel_status: dict = field(default_factory=dict)

    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def db(self):
        return self.services.db

    async def handle_now(self, msg: IncomingMessage) -> list[Rendered]:
        """Store (dedupe) and handle synchronously: the local chat waits for its answer."""
        event_id = await inbound.store(self.db, msg, self.services.clock.now())
        if event_id is None:
            return []
        return await self.inbound.process(event_id)


STATE = web.AppKey("state", State)


def create_app(config: Config, services: Services | None = None, *, start_scheduler: bool = True,
               start_sender: bool = True, migrate: bool = True) -> web.Application:
    services = services or Services.build(config)
    state = State(services=services, pipeline=Pipeline(dispatcher(), services))
    app = web.Application(client_max_size=MAX_BODY, middlewares=[error_middleware])
    app[STATE] = state
    if config.local.enabled:
        state.channels["local"] = LocalChannel()
        app.add_routes(local_routes(state))
    from bot.channels import adapters
    adapters.install(app, state)
    from bot.channels.customer import install_customer_channels
    install_customer_channels(state)
    app.add_routes([web.get("/healthz", healthz)])
    from bot.web import dashboard
    dashboard.install(app, state)      # dashboard, signed report downloads, /metrics

    async def resources(app: web.Application):
        if migrate:
            await services.db.migrate()
        state.sender = Sender(services.db, state.channels, services.clock, config.outbox)
        state.inbound = inbound.InboundProcessor(services.db, state.pipeline, state.channels, services.clock,
                                                 on_queued=state.sender.wake)
        await state.inbound.resume_unhandled()
        tasks = []
        if start_sender and config.outbox.send:
            tasks.append(asyncio.create_task(state.sender.run(), name="outbox-sender"))
        if start_scheduler:
            state.scheduler = JobScheduler(services, on_queued=state.sender.wake)
            state.scheduler.start()
        yield
        # graceful: finish handling what arrived, deliver what is due, then stop
        if state.scheduler:
            await state.scheduler.shutdown()
        await state.inbound.wait_idle()
        state.sender.stop()
        for t in tasks:
            try:
                await asyncio.wait_for(t, timeout=10)
            except asyncio.TimeoutError:
                t.cancel()
        await services.db.close()

    app.cleanup_ctx.append(resources)
    return app


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Bad requests get a 4xx with a reason, never a 5xx with a stack trace."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        log.info("bad request to %s: %s", request.path, type(e).__name__)
        raise web.HTTPBadRequest(text=f"bad request: {type(e).__name__}") from None


async def healthz(request: web.Request) -> web.Response:
    """Database, outbox backlog and dead letters, the sender, the scheduler, the last run of each
    job (from job_runs) and each channel's status. 503 only when the database is unreachable;
    "degraded" when something needs a person (dead letters, sender alerts, a job's last run failed)."""
    from bot.web.ops import dead_letters, last_job_runs
    state = request.app[STATE]
    body: dict = {"status": "ok", "local_chat": "local" in state.channels,
                  "channels": {name: state.channel_status.get(name, "enabled") for name in state.channels}}
    try:
        async with state.db.session() as s:
            body["outbox"] = await backlog(s)
            body["dead_letters"] = await dead_letters(s)
            body["jobs"] = await last_job_runs(s)
        body["database"] = "ok"
    except Exception as e:      # report, don't crash the health check
        body["database"] = f"error: {type(e).__name__}"
        body["status"] = "degraded"
    if state.sender is not None:
        body["outbox_alerts"] = state.sender.alerts
        body["sender"] = {**state.sender.stats, "last_latency_seconds": state.sender.last_latency}
        if state.sender.alerts or body.get("outbox", {}).get("dead"):
            body["status"] = "degraded"
    if any(j["status"] == "failed" for j in body.get("jobs", {}).values()):
        body["status"] = "degraded"
    body["scheduler"] = state.scheduler.status() if state.scheduler is not None else {"running": False}
    return web.json_response(body, status=200 if body["database"] == "ok" else 503)
