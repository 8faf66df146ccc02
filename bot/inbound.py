"""Incoming events: verified by the channel, then stored (deduplicated by the platform's key)
before the platform is answered, then handled in the background.

A redelivered event (WeCom retries after 5 s; DingTalk re-sends events) finds its key taken and
is acknowledged without being handled again. An event stored but not handled (the process died)
is picked up by ``resume_unhandled`` at start-up.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from typing import Callable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot import metrics, outbox
from bot.core.messages import IncomingMessage, OutgoingMessage
from bot.core.pipeline import Pipeline, Rendered
from bot.render import render
from storage.db import Database
from storage.models import InboundEvent

log = logging.getLogger(__name__)


async def store(db: Database, msg: IncomingMessage, now) -> int | None:
    """Persist the event; None when it was seen before (a redelivery)."""
    ins = pg_insert if db.dialect == "postgresql" else sqlite_insert
    async with db.session() as s, s.begin():
        res = await s.execute(ins(InboundEvent).values(
            platform=msg.platform, event_key=msg.message_id, received_at=now,
            payload=dataclasses.asdict(msg), status="received", error="")
            .on_conflict_do_nothing(index_elements=["platform", "event_key"]).returning(InboundEvent.id))
        row = res.first()
    metrics.for_db(db).message_in(msg.platform, "stored" if row else "duplicate")
    return row[0] if row else None


class InboundProcessor:
    """Runs the pipeline for stored events and queues the replies through the outbox."""

    def __init__(self, db: Database, pipeline: Pipeline, channels: dict, clock, on_queued: Callable[[], None] = lambda: None):
        self.db, self.pipeline, self.channels, self.clock = db, pipeline, channels, clock
        self.on_queued = on_queued
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, event_id: int) -> None:
        """Handle in the background: the platform already has its 200."""
        t = asyncio.create_task(self.process(event_id))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def process(self, event_id: int) -> list[Rendered]:
        async with self.db.session() as s:
            try:
                async with s.begin():
                    ev = await s.get(InboundEvent, event_id, with_for_update=self.db.dialect == "postgresql")
                    if ev is None or ev.status == "handled":
                        return []
                    msg = IncomingMessage(**ev.payload)
                    replies = await self.pipeline.handle(s, msg)
                    await self.queue_replies(s, msg, replies)
                    ev.status, ev.handled_at = "handled", self.clock.now()
            except Exception as e:
                # a bug must not mean silence: the person is told, the event is kept as failed
                # (its changes rolled back) for `arbot`'s operators to see
                log.exception("inbound: event %s failed", event_id)
                replies = [Rendered(render("errors/internal.md.j2"), "text")]
                async with s.begin():
                    ev = await s.get(InboundEvent, event_id)
                    ev.status, ev.error = "failed", type(e).__name__
                    await self.queue_replies(s, IncomingMessage(**ev.payload), replies)
        self.on_queued()
        return replies

    async def queue_replies(self, session, msg: IncomingMessage, replies: list[Rendered]) -> None:
        channel = self.channels.get(msg.platform)
        if channel is None or getattr(channel, "synchronous_replies", False):
            return   # the local chat answers in the HTTP response itself
        kind, target = channel.reply_route(msg)
        now = self.clock.now()
        for i, r in enumerate(replies):
            key = f"reply:{msg.platform}:{msg.message_id}:{i}"
            await outbox.enqueue(session, OutgoingMessage(platform=msg.platform, target_kind=kind, target=target,
                                                          text=r.text, format=r.format), key, now)
            if r.image_png is not None and getattr(channel, "takes_images", False):
                # a separate row: retrying the image never re-sends the text, and vice versa
                await outbox.enqueue(session, OutgoingMessage(
                    platform=msg.platform, target_kind=kind, target=target, text="", format="text",
                    extra={"image_base64": base64.b64encode(r.image_png).decode()}), key + ":image", now)

    async def resume_unhandled(self) -> int:
        async with self.db.session() as s:
            ids = list((await s.execute(select(InboundEvent.id).where(InboundEvent.status == "received")
                                        .order_by(InboundEvent.id))).scalars())
        for i in ids:
            await self.process(i)
        return len(ids)

    async def wait_idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
