"""Operations: /metrics (Prometheus text format) and the health figures /healthz and the
dashboard share (the last run of each job, the dead letters)."""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics
from bot.outbox import backlog
from storage.models import InboundEvent, JobRun, OutboxMessage


async def last_job_runs(session: AsyncSession) -> dict[str, dict]:
    """The latest recorded run of every job (from job_runs), by job name."""
    latest = select(func.max(JobRun.id)).group_by(JobRun.job)
    rows = (await session.execute(select(JobRun).where(JobRun.id.in_(latest)).order_by(JobRun.job))).scalars()
    return {r.job: {"fire": r.fire_key, "status": r.status, "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                    "summary": r.summary[:200]} for r in rows}


async def dead_letters(session: AsyncSession, limit: int = 5) -> list[dict]:
    rows = (await session.execute(select(OutboxMessage).where(OutboxMessage.status == "dead")
                                  .order_by(OutboxMessage.id.desc()).limit(limit))).scalars()
    return [{"id": r.id, "key": r.idem_key, "platform": r.platform, "attempts": r.attempts,
             "error": r.last_error[:200]} for r in rows]


async def inbound_backlog(session: AsyncSession) -> dict[str, int]:
    """Incoming events not yet handled: waiting (received), put back to be tried again (retry),
    and dead letters an operator should look at (``arbot inbound``)."""
    rows = await session.execute(select(InboundEvent.status, func.count()).where(
        InboundEvent.status.in_(("received", "retry", "dead"))).group_by(InboundEvent.status))
    return {status: n for status, n in rows}


def install(app: web.Application, state) -> metrics.Metrics:
    m = metrics.register(state.db)

    async def metrics_view(request: web.Request) -> web.Response:
        try:
            async with state.db.reader() as s:
                for status, n in (await backlog(s)).items():
                    m.outbox_messages.labels(status).set(n)
        except Exception:      # a scrape still answers with the counters when the database is down
            pass
        return web.Response(body=m.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.add_routes([web.get("/metrics", metrics_view)])
    return m
