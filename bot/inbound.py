"""Incoming events: verified by the channel, then stored (deduplicated by the platform's key)
before the platform is answered, then handled in the background.

A redelivered event (a platform re-sends what it got no timely 200 for) finds its key taken and
is acknowledged without being handled again. An event stored but not handled (the process died)
is picked up by ``resume_unhandled`` at start-up.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import weakref
from datetime import timedelta
from typing import Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot import metrics, outbox
from bot.core.channel_health import ChannelHealth
from bot.core.messages import IncomingMessage, OutgoingMessage
from bot.core.pipeline import Pipeline, Rendered
from bot.people_first import PeopleFirst
from bot.render import render
from storage.db import WRITER, Database, StorageUnavailable, backoff, is_storage_fault, is_transient
from storage.models import InboundEvent

log = logging.getLogger(__name__)


async def store(db: Database, msg: IncomingMessage, now) -> int | None:
    """Persist the event; None when it was seen before (a redelivery).

    Returns once the row is committed (the platform may be answered then). Concurrent calls are
    group-committed: while one batch's transaction runs, the events arriving meanwhile queue up
    and go in the next one (one INSERT, one commit for all of them), so a burst of webhooks costs
    a few commits instead of one each. Nobody waits for a batch to fill: a lone event goes at once."""
    writer = _writers.get(db)
    if writer is None:
        writer = _writers[db] = _StoreWriter(db)
    return await writer.store(msg, now)


MAX_BATCH = 200


def intake_quiet_for(db: Database) -> float:
    """Seconds since the last event arrived to be stored (infinite if none yet on this loop)."""
    writer = _writers.get(db)
    if writer is None or writer.loop is None or writer.last_arrival is None:
        return float("inf")
    return writer.loop.time() - writer.last_arrival


class _StoreWriter:
    def __init__(self, db: Database):
        self.db = db
        self.pending: list[tuple[IncomingMessage, object, asyncio.Future]] = []
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_arrival: float | None = None

    async def store(self, msg: IncomingMessage, now) -> int | None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:          # a new event loop (tests, a restarted CLI): start afresh
            self.loop, self.pending, self.task = loop, [], None
        self.last_arrival = loop.time()
        fut = loop.create_future()
        self.pending.append((msg, now, fut))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._drain())
        # shield: a client that hangs up does not cancel the batch its event is in
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        WRITER.set("intake")
        while self.pending:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            try:
                ids = await _insert(self.db, [(m, now) for m, now, _ in batch])
            except Exception as e:
                if len(batch) == 1:
                    _settle(batch, None, e)
                    continue
                for one in batch:          # one bad event must not fail the others: one by one
                    try:
                        _settle([one], await _insert(self.db, [one[:2]]), None)
                    except Exception as e1:
                        _settle([one], None, e1)
                continue
            _settle(batch, ids, None)


def _settle(batch, ids, error) -> None:
    for i, (msg, _, fut) in enumerate(batch):
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(ids[i])


async def _insert(db: Database, events: list[tuple[IncomingMessage, object]]) -> list[int | None]:
    """One INSERT … ON CONFLICT DO NOTHING RETURNING for the events, one commit. The id of each
    stored event, None for one whose key was taken (before, or earlier in the same batch).

    The statement is built once and the rows go as executemany parameters, which SQLAlchemy
    sends as multi-row VALUES ("insertmanyvalues") from a cached compilation: building a fresh
    ``.values([...])`` statement per batch recompiled it every time, a third of the intake's CPU."""
    for attempt in range(IN_PLACE_TRIES):
        try:
            return await _insert_once(db, events)
        except Exception as e:
            if is_storage_fault(e):
                raise StorageUnavailable(str(e)) from e
            if not is_transient(e) or attempt == IN_PLACE_TRIES - 1:
                raise
            await asyncio.sleep(backoff(attempt))
    raise AssertionError("unreachable")


async def _insert_once(db: Database, events: list[tuple[IncomingMessage, object]]) -> list[int | None]:
    async with db.session() as s, s.begin():
        res = await s.execute(_insert_statement(db.dialect), [
            dict(platform=m.platform, event_key=m.message_id, received_at=now,
                 payload={f: getattr(m, f) for f in _FIELDS},   # asdict's deep copy cost more than the INSERT
                 status="received", error="") for m, now in events])
        stored = {(p, k): i for i, p, k in res.all()}
    out: list[int | None] = []
    for m, _ in events:
        out.append(stored.pop((m.platform, m.message_id), None))     # a duplicate in the batch gets None
        metrics.for_db(db).message_in(m.platform, "stored" if out[-1] is not None else "duplicate")
    return out


_FIELDS = tuple(f.name for f in dataclasses.fields(IncomingMessage))


@functools.cache
def _insert_statement(dialect: str):
    table = InboundEvent.__table__
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    return (ins(table).on_conflict_do_nothing(index_elements=["platform", "event_key"])
            .returning(table.c.id, table.c.platform, table.c.event_key))


_writers: "weakref.WeakKeyDictionary[Database, _StoreWriter]" = weakref.WeakKeyDictionary()


IN_PLACE_TRIES = 5          # quick retries of a transient error while the person waits
MAX_ATTEMPTS = 6            # put-backs before an event is a dead letter
RETRY_DELAYS = [timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10),
                timedelta(minutes=30)]
STALE_RECEIVED = timedelta(seconds=60)   # stored, not handled, not in flight here: resumed
RESUME_BATCH = 200

INTAKE_QUIET = 0.01         # s without a new event before intake counts as idle
INTAKE_YIELD_MAX = 0.1      # s a background event waits for that at most


# an event whose first read failed: handled the writers' way, which retries and puts it back
_UNREAD = IncomingMessage(platform="", platform_user_id="", text="", message_id="")


class InboundProcessor:
    """Runs the pipeline for stored events and queues the replies through the outbox."""

    def __init__(self, db: Database, pipeline: Pipeline, channels: dict, clock, on_queued: Callable[[], None] = lambda: None,
                 people_first: PeopleFirst | None = None, health: ChannelHealth | None = None,
                 first_contact: Callable[[str, str], Awaitable[None]] | None = None):
        self.db, self.pipeline, self.channels, self.clock = db, pipeline, channels, clock
        # ``first_contact(platform, user_id)``: binds people by mobile when a user id nobody has
        # speaks (bot/identities.py), before the message is handled, outside its transaction
        self.first_contact = first_contact
        self.on_queued = on_queued
        self.people_first = people_first or PeopleFirst()
        self.health = health if health is not None else ChannelHealth()
        self.tasks: set[asyncio.Task] = set()
        self.in_flight: set[int] = set()
        # Handling is a write transaction per event. SQLite has one writer: handlers running side by
        # side only meet at its lock, where the losers sleep in the busy handler (1…100 ms steps) —
        # that, not the work, made p99 seconds long. So on SQLite events are handled one at a time
        # (the queue is an asyncio one, fair and sleep-free); on PostgreSQL a few at a time.
        self.slots = asyncio.Semaphore(1 if db.dialect == "sqlite" else 8)
        self._turns: "weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock]" = weakref.WeakValueDictionary()

    async def receive(self, msg: IncomingMessage, *, handle: bool = True) -> int | None:
        """Store a verified event (deduplicated by its platform's key) and handle it in the
        background: the intake path every channel shares. Returns the event id, None for a
        redelivery. Returns once the event is committed, so the platform may be answered then.
        ``handle`` False: kept for the record only (an event the bot does not answer), marked
        handled at once so that a restart does not resume it into a reply."""
        now = self.clock.now()
        event_id = await store(self.db, msg, now)
        self.health.stored(msg.platform, duplicate=event_id is None)
        if event_id is None:
            return None
        if handle:
            self.spawn(event_id, msg)      # the work happens after the platform has its answer
        else:
            async with self.db.session() as s, s.begin():
                await s.execute(update(InboundEvent).where(InboundEvent.id == event_id)
                                .values(status="handled", handled_at=now))
        return event_id

    def spawn(self, event_id: int, msg: IncomingMessage | None = None) -> None:
        """Handle in the background: the platform already has its 200."""
        t = asyncio.create_task(self.process(event_id, msg, background=True))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def process(self, event_id: int, msg: IncomingMessage | None = None, *, background: bool = False,
                      inline: bool = False) -> list[Rendered]:
        """``msg``: the stored message, when the caller has it (the intake): its person's turn is
        then taken before anything else, in the order the messages were stored. ``inline``: the
        person waits in the HTTP request for the answer (the local chat); an event resumed later
        is answered through the outbox instead."""
        self.in_flight.add(event_id)
        WRITER.set("chat")
        try:
            with self.people_first.serving():
                msg = msg or await self._message(event_id)
                if msg is None:
                    return []
                async with self._turn_of(msg):
                    if self.first_contact is not None and msg is not _UNREAD:
                        try:
                            await self.first_contact(msg.platform, msg.platform_user_id)
                        except Exception as e:    # a lookup that failed must not keep the message back
                            log.warning("inbound: binding by mobile failed (%s)", type(e).__name__)
                    if self.pipeline.reads_only(msg):
                        # a question: answered from a read-only snapshot, not in the writers' line
                        # (at 200k invoices one /aging held that line for a second)
                        return await self._process(event_id, inline, reading=True)
                    async with self.slots:
                        if background:
                            await self._yield_to_intake()
                        return await self._process(event_id, inline)
        finally:
            self.in_flight.discard(event_id)

    async def _message(self, event_id: int) -> IncomingMessage | None:
        """The stored message, None when it was handled already. A read that fails is left to the
        handling, which retries and puts the event back."""
        try:
            async with self.db.reader() as r:
                ev = await r.get(InboundEvent, event_id)
        except Exception:
            return _UNREAD
        if ev is None or ev.status in ("handled", "dead"):
            return None
        return IncomingMessage(**ev.payload)

    def _turn_of(self, msg: IncomingMessage) -> asyncio.Lock:
        """One person's messages are handled one after another, in the order they came: a
        question after a change sees the change."""
        key = (msg.platform, msg.platform_user_id)
        lock = self._turns.get(key)
        if lock is None:
            lock = self._turns[key] = asyncio.Lock()
        return lock

    async def _yield_to_intake(self) -> None:
        """Let acknowledgements go first while events are pouring in.

        Handling an event costs several times what storing and acknowledging it does (the
        person, the handler, the render, the outbox row, a commit), and it shares the event loop
        and the CPU with the intake. The platforms need the acknowledgement fast (some re-send
        after 5 s) and take the reply seconds later, so during a burst a background event waits
        until no event arrived for INTAKE_QUIET — but never longer than INTAKE_YIELD_MAX, so
        handling still goes on (one event per INTAKE_YIELD_MAX at worst) under a sustained flood
        and the backlog is worked off right after it. Events handled inline (the local chat) and
        at start-up do not wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INTAKE_YIELD_MAX
        while (quiet := intake_quiet_for(self.db)) < INTAKE_QUIET and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(INTAKE_QUIET - quiet, left))

    async def _process(self, event_id: int, inline: bool = False, reading: bool = False) -> list[Rendered]:
        """Handle one stored event until done. A transient database error (a lock, a conflict)
        is retried here at once, a few times; if handling still fails, the event is put back
        (``retry``, tried again by ``resume_due`` with backoff) and the person is told once that
        the message will be handled; after MAX_ATTEMPTS it is a dead letter for an operator.
        Never silently dropped, never marked failed and forgotten."""
        error: BaseException | None = None
        for attempt in range(IN_PLACE_TRIES):
            try:
                replies = await (self._answer_question if reading else self._handle_once)(event_id, inline)
            except Exception as e:
                error = e
                if is_transient(e) and attempt < IN_PLACE_TRIES - 1:
                    await asyncio.sleep(backoff(attempt))
                    continue
                break
            self.on_queued()
            return replies
        return await self._put_back(event_id, error, inline)

    async def _answer_question(self, event_id: int, inline: bool) -> list[Rendered]:
        """A message that changes nothing: the answer from a read-only snapshot, then one short
        write that queues it and marks the event handled."""
        async with self.db.reader() as r, r.begin():
            ev = await r.get(InboundEvent, event_id)
            if ev is None or ev.status in ("handled", "dead"):
                return []
            msg = IncomingMessage(**ev.payload)
            replies = await self.pipeline.handle(r, msg)
        pictures = await self._draw(msg, replies, inline)
        async with self.db.session() as s, s.begin():
            ev = await s.get(InboundEvent, event_id, with_for_update=self.db.dialect == "postgresql")
            if ev is None or ev.status in ("handled", "dead"):
                return []                  # answered meanwhile (by another instance)
            await self.queue_replies(s, msg, replies, inline=inline, pictures=pictures)
            ev.status, ev.handled_at, ev.error = "handled", self.clock.now(), ""
        return replies

    async def _draw(self, msg: IncomingMessage, replies: list[Rendered], inline: bool = False) -> dict[int, bytes]:
        """The pictures of the replies, for a platform that shows them: drawn in a thread, before
        the write transaction (plotting takes a fifth of a second). Not for replies that travel in
        the HTTP answer: the channel draws those itself (``Rendered.image``), nothing is queued."""
        channel = self.channels.get(msg.platform)
        if channel is None or not channel.capabilities.takes_image(channel.reply_route(msg)[0]):
            return {}
        if inline and channel.capabilities.synchronous_replies:
            return {}
        return {i: await asyncio.to_thread(r.image) for i, r in enumerate(replies) if r.image is not None}

    async def _handle_once(self, event_id: int, inline: bool) -> list[Rendered]:
        async with self.db.session() as s, s.begin():
            ev = await s.get(InboundEvent, event_id, with_for_update=self.db.dialect == "postgresql")
            if ev is None or ev.status in ("handled", "dead"):
                return []
            msg = IncomingMessage(**ev.payload)
            replies = await self.pipeline.handle(s, msg)
            await self.queue_replies(s, msg, replies, inline=inline, pictures=await self._draw(msg, replies, inline))
            ev.status, ev.handled_at, ev.error = "handled", self.clock.now(), ""
            return replies

    async def _put_back(self, event_id: int, error: BaseException, inline: bool) -> list[Rendered]:
        fault = is_storage_fault(error)
        if fault:
            # the database cannot be written: nothing more to record now; the event is still
            # stored as received and resume_due takes it when writes work again
            log.warning("inbound: event %s waits for the database (%s)", event_id, type(error).__name__)
            return [Rendered(render("errors/storage.md.j2"), "text")]
        if not is_transient(error):
            log.error("inbound: event %s failed", event_id, exc_info=error)

        async def record(s) -> list[Rendered]:
            ev = await s.get(InboundEvent, event_id)
            if ev is None or ev.status in ("handled", "dead"):
                return []
            ev.attempts += 1
            ev.error = type(error).__name__
            msg = IncomingMessage(**ev.payload)
            if ev.attempts >= MAX_ATTEMPTS:
                ev.status = "dead"
                log.error("inbound: event %s is a dead letter after %d attempts (%s)", event_id, ev.attempts, ev.error)
                replies = [Rendered(render("errors/dead.md.j2"), "text")]
            else:
                ev.status = "retry"
                ev.next_attempt_at = self.clock.now() + RETRY_DELAYS[min(ev.attempts, len(RETRY_DELAYS)) - 1]
                # said once, on the first put-back: the real answer follows when it is handled
                template = "errors/delayed.md.j2" if is_transient(error) else "errors/internal.md.j2"
                replies = [Rendered(render(template), "text")] if ev.attempts == 1 else []
            await self.queue_replies(s, msg, replies, suffix=f"delayed{ev.attempts}", inline=inline)
            return replies

        try:
            replies = await self.db.write(record)
        except Exception as e:          # the database is gone for now: the event stays received
            log.warning("inbound: could not put event %s back (%s); it is resumed later", event_id, type(e).__name__)
            return [Rendered(render("errors/storage.md.j2"), "text")] if is_storage_fault(e) else \
                [Rendered(render("errors/delayed.md.j2"), "text")]
        self.on_queued()
        return replies

    async def queue_replies(self, session, msg: IncomingMessage, replies: list[Rendered], suffix: str = "",
                            inline: bool = False, pictures: dict[int, bytes] | None = None) -> None:
        """The replies into the outbox; ``pictures``: the replies' images, drawn by :meth:`_draw`."""
        channel = self.channels.get(msg.platform)
        if channel is None or inline and channel.capabilities.synchronous_replies:
            return   # the answer travels in the HTTP response itself
        # a route may carry what its delivery needs (a reply address's expiry, who to reach instead)
        kind, target, *route_extra = channel.reply_route(msg)
        extra = dict(route_extra[0]) if route_extra else {}
        now = self.clock.now()
        for i, r in enumerate(replies):
            key = f"reply:{msg.platform}:{msg.message_id}:{suffix}{i}"
            # an answer goes before the notifications queued for the same person (outbox.REPLY)
            if r.card is not None and msg.card_action:
                # the clicked card shows the outcome and loses its buttons (the channel updates it
                # in place); its own row, so a failed update never holds back or repeats the text
                await outbox.enqueue(session, OutgoingMessage(
                    platform=msg.platform, target_kind=kind, target=target, text="", format="text",
                ).with_card(r.card).answering(msg.card_action), key + ":card", now, priority=outbox.REPLY)
            await outbox.enqueue(session, OutgoingMessage(platform=msg.platform, target_kind=kind, target=target,
                                                          text=r.text, format=r.format, extra=extra), key, now,
                                 priority=outbox.REPLY)
            if (png := (pictures or {}).get(i)) is not None:
                # a separate row: retrying the image never re-sends the text, and vice versa
                await outbox.enqueue(session, OutgoingMessage(
                    platform=msg.platform, target_kind=kind, target=target, text="", format="text",
                ).with_image(png), key + ":image", now, priority=outbox.REPLY)

    async def resume_unhandled(self) -> int:
        """At start-up: every event stored but not handled (the process stopped) and every event
        put back, whatever its next attempt time."""
        return await self.resume_due(everything=True)

    async def resume_due(self, *, everything: bool = False) -> int:
        """Handle events put back whose time has come, and events stored but left unhandled for
        longer than STALE_RECEIVED (their handler died with the database, or in another instance).
        Returns how many were taken."""
        now = self.clock.now()
        cond = InboundEvent.status.in_(("received", "retry"))
        if not everything:
            cond = cond & (((InboundEvent.status == "retry") & (InboundEvent.next_attempt_at <= now)) |
                           ((InboundEvent.status == "received") & (InboundEvent.received_at < now - STALE_RECEIVED)))
        async with self.db.reader() as s:
            ids = [i for i in (await s.execute(select(InboundEvent.id).where(cond).order_by(InboundEvent.id)
                                               .limit(RESUME_BATCH))).scalars() if i not in self.in_flight]
        for i in ids:
            await self.process(i)
        return len(ids)

    async def run_resumer(self, every: float = 5.0) -> None:
        """Background loop: events put back are tried again when due (see ``resume_due``)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.resume_due()
            except asyncio.CancelledError:
                raise
            except Exception as e:      # the database may be down: the next round tries again
                if not (is_transient(e) or is_storage_fault(e)):
                    log.exception("inbound: resume failed")

    async def wait_idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
