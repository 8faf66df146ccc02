"""The durable outbox: every message that leaves the bot is first a row here.

``enqueue`` writes the row in the caller's transaction (the ledger change and the message that
tells people about it commit together); the idempotency key makes a second enqueue of the same
message a no-op. The ``Sender`` claims due rows, delivers them through the platform's channel,
and marks them sent; failures back off exponentially with jitter, rate limits defer without
spending an attempt, and permanent failures go to the dead-letter state, loudly.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics
from bot.channels.errors import DeliveryError, PermanentDeliveryError, RateLimitedError
from bot.clock import Clock
from bot.config import OutboxConfig
from bot.core.messages import IncomingMessage, OutgoingMessage
from storage.db import Database
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
CLAIM_SECONDS = 120   # a claim older than this belongs to a crashed sender and may be taken over


class Channel(Protocol):
    platform: str

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]: ...
    async def deliver(self, out: OutgoingMessage) -> None: ...


async def enqueue(session: AsyncSession, out: OutgoingMessage, key: str, now: datetime,
                  not_before: datetime | None = None) -> bool:
    """Add a message to the outbox unless one with the same key exists. True if added.
    ``not_before``: the message waits until then (e.g. the next working-hours slot for a customer)."""
    first = max(now, not_before) if not_before is not None else now
    values = dict(idem_key=key, platform=out.platform, target_kind=out.target_kind, target=out.target,
                  format=out.format, title=out.title, text=out.text, extra=out.extra, status="pending",
                  attempts=0, next_attempt_at=first, created_at=now, last_error="")
    dialect = session.bind.dialect.name
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = ins(OutboxMessage).values(**values).on_conflict_do_nothing(index_elements=["idem_key"])
    result = await session.execute(stmt)
    return result.rowcount == 1


async def enqueue_many(session: AsyncSession, messages: list[tuple[OutgoingMessage, str]], now: datetime,
                       not_before: datetime | None = None) -> int:
    """``enqueue`` for several (message, key) pairs in one executemany INSERT, in the caller's
    transaction, with the same rule: a key that exists already is skipped. Returns how many rows
    the driver reports inserted (on drivers that report no count for executemany: how many were given)."""
    if not messages:
        return 0
    first = max(now, not_before) if not_before is not None else now
    rows = [dict(idem_key=key, platform=out.platform, target_kind=out.target_kind, target=out.target,
                 format=out.format, title=out.title, text=out.text, extra=out.extra, status="pending",
                 attempts=0, next_attempt_at=first, created_at=now, last_error="") for out, key in messages]
    ins = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = ins(OutboxMessage.__table__).on_conflict_do_nothing(index_elements=["idem_key"])
    added = 0
    for i in range(0, len(rows), 5_000):
        result = await session.execute(stmt, rows[i:i + 5_000])
        added += result.rowcount if result.rowcount >= 0 else len(rows[i:i + 5_000])
    return added


def to_outgoing(row: OutboxMessage) -> OutgoingMessage:
    return OutgoingMessage(platform=row.platform, target_kind=row.target_kind, target=row.target,
                           text=row.text, format=row.format, title=row.title, extra=row.extra or {})


class RateLimiter:
    """Sliding one-minute windows per destination (robot: 20/min; WeCom member: 30/min).

    Measured on the monotonic clock: rate limits are physical time, not business time. A slot is
    reserved when a send starts (so concurrent sends cannot overshoot) and moved to the moment
    the platform answered, because the platform counts a message when it *arrives*: counting
    from the start let a slow request land inside the next minute's budget, and WeCom silently
    drops the excess. ``margin`` seconds more per window absorb clock and network jitter.
    """

    def __init__(self, robot_per_minute: int, member_per_minute: int, monotonic=time.monotonic,
                 window: float = 60.0, margin: float = 1.0):
        self.limits = {"robot": robot_per_minute, "member": member_per_minute}
        self.sent: dict[tuple, deque] = defaultdict(deque)
        self.monotonic = monotonic
        self.window = window + margin

    @staticmethod
    def key(out: OutgoingMessage) -> tuple | None:
        if out.target_kind == "robot":
            return ("robot", out.platform, out.target)
        if out.platform == "wecom" and out.target_kind == "user":
            return ("member", out.platform, out.target)
        return None

    def wait_time(self, out: OutgoingMessage) -> float:
        """Seconds until this destination may take another message (0: now)."""
        k = self.key(out)
        if k is None:
            return 0.0
        q, now = self.sent[k], self.monotonic()
        while q and now - q[0][0] >= self.window:
            q.popleft()
        if len(q) < self.limits[k[0]]:
            return 0.0
        return max(0.0, self.window - (now - min(slot[0] for slot in q)))

    def take(self, out: OutgoingMessage) -> list | None:
        """Reserve a slot; pass it to ``done`` when the platform has answered."""
        k = self.key(out)
        if k is None:
            return None
        slot = [self.monotonic()]
        self.sent[k].append(slot)
        return slot

    def done(self, slot: list | None) -> None:
        if slot is not None:
            slot[0] = self.monotonic()


class Sender:
    def __init__(self, db: Database, channels: dict[str, Channel], clock: Clock, config: OutboxConfig,
                 *, instance: str | None = None, rng: random.Random | None = None, monotonic=time.monotonic):
        self.db, self.channels, self.clock, self.config = db, channels, clock, config
        self.instance = instance or uuid.uuid4().hex[:12]
        self.limiter = RateLimiter(config.robot_per_minute, config.member_per_minute, monotonic)
        self.rng = rng or random.Random()
        self.alerts: dict[str, str] = {}        # loud problems for /healthz (e.g. 60020 IP not trusted)
        self.stats = {"sent": 0, "retried": 0, "dead": 0, "deferred": 0}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.last_latency: float | None = None

    def wake(self) -> None:
        self._wake.set()

    async def _claim(self, limit: int) -> list[OutboxMessage]:
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            due = (select(OutboxMessage.id).where(
                OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit))
            if self.db.dialect == "postgresql":
                ids = list((await s.execute(due.with_for_update(skip_locked=True))).scalars())
            else:
                ids = list((await s.execute(due)).scalars())
            if not ids:
                return []
            await s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids))
                            .values(claimed_by=self.instance, claimed_until=now + timedelta(seconds=CLAIM_SECONDS)))
            rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.id.in_(ids),
                                                                OutboxMessage.claimed_by == self.instance)
                                    .order_by(OutboxMessage.id))).scalars().all()
            return list(rows)

    async def drain(self, batch: int = 100) -> int:
        """Deliver every message due now (one pass over the claimed batch). Returns how many were sent."""
        rows = await self._claim(batch)
        if not rows:
            return 0
        sem = asyncio.Semaphore(self.config.concurrency)
        sent = 0

        async def one(row: OutboxMessage) -> None:
            nonlocal sent
            async with sem:
                n = await self._deliver(row)     # not `sent += await ...`: that reads `sent` before awaiting
                sent += n

        await asyncio.gather(*(one(r) for r in rows))
        return sent

    async def _finish(self, row_id: int, **values) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id,
                                                        OutboxMessage.claimed_by == self.instance)
                            .values(claimed_by=None, claimed_until=None, **values))

    async def _deliver(self, row: OutboxMessage) -> int:
        out = to_outgoing(row)
        wait = self.limiter.wait_time(out)
        if wait > 0:
            # over the platform's limit: defer without spending an attempt (excess is dropped silently by WeCom)
            self.stats["deferred"] += 1
            metrics.for_db(self.db).message_out(out.platform, "deferred")
            await self._finish(row.id, next_attempt_at=self.clock.now() + timedelta(seconds=wait))
            return 0
        channel = self.channels.get(out.platform)
        if channel is None:
            await self._finish(row.id, status="dead", last_error=f"no channel configured for {out.platform}")
            self.stats["dead"] += 1
            metrics.for_db(self.db).message_out(out.platform, "dead")
            self.alerts[f"channel:{out.platform}"] = f"messages for {out.platform} but the channel is not enabled"
            return 0
        slot = self.limiter.take(out)
        try:
            await channel.deliver(out)
        except DeliveryError as e:
            return await self._failed(row, e)
        except Exception as e:   # a bug in an adapter must not kill the sender loop
            log.exception("outbox: adapter error on message %s", row.id)
            return await self._failed(row, DeliveryError(f"{type(e).__name__}: {e}"))
        finally:
            self.limiter.done(slot)
        now = self.clock.now()
        await self._finish(row.id, status="sent", sent_at=now, attempts=row.attempts + 1, last_error="")
        self.last_latency = (now - row.created_at).total_seconds()
        self.stats["sent"] += 1
        metrics.for_db(self.db).message_out(out.platform, "sent", self.last_latency)
        return 1

    async def _failed(self, row: OutboxMessage, e: DeliveryError) -> int:
        attempts = row.attempts + 1
        reason = f"{e.code}: {e.reason}" if e.code is not None else e.reason
        if isinstance(e, PermanentDeliveryError) or attempts >= self.config.max_attempts:
            log.error("outbox: message %s (%s) is dead after %s attempt(s): %s", row.id, row.idem_key, attempts, reason)
            self.alerts[f"{row.platform}:{e.code}"] = reason
            self.stats["dead"] += 1
            metrics.for_db(self.db).message_out(row.platform, "dead")
            await self._finish(row.id, status="dead", attempts=attempts, last_error=reason)
            return 0
        if isinstance(e, RateLimitedError) and e.retry_after:
            delay = e.retry_after
        else:
            base = min(self.config.backoff_cap_seconds, self.config.backoff_base_seconds * 2 ** (attempts - 1))
            delay = base * (0.5 + self.rng.random() / 2)   # jitter: retries from many rows don't align
        log.warning("outbox: message %s attempt %s failed (%s); retry in %.1fs", row.id, attempts, reason, delay)
        self.stats["retried"] += 1
        metrics.for_db(self.db).message_out(row.platform, "retried")
        await self._finish(row.id, attempts=attempts, last_error=reason,
                           next_attempt_at=self.clock.now() + timedelta(seconds=delay))
        return 0

    async def run(self) -> None:
        """The sender loop: drain, then sleep until woken or the poll interval passes."""
        while not self._stopping.is_set():
            try:
                n = await self.drain()
            except Exception:
                log.exception("outbox: drain failed; will retry")
                n = 0
            if n == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_seconds)
                except asyncio.TimeoutError:
                    pass

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()


async def backlog(session: AsyncSession) -> dict[str, int]:
    rows = (await session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all()
    out = {"pending": 0, "sent": 0, "dead": 0}
    out.update({k: v for k, v in rows})
    return out
