"""The sender: claims due outbox rows, delivers them through the platform's channel and marks
them sent. Failures back off exponentially with jitter, rate limits defer without spending an
attempt, and permanent failures go to the dead-letter state, loudly."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, or_, select, update

from bot import metrics
from bot.channels.errors import DeliveryError, PermanentDeliveryError, RateLimitedError
from bot.clock import Clock
from bot.config import OutboxConfig
from bot.core.channel import Channel
from bot.core.channel_health import ChannelHealth
from bot.core.messages import OutgoingMessage
from bot.outbox import sizes
from bot.outbox.queue import REPLY, enqueue_rows, pending_row, to_outgoing
from bot.people_first import PeopleFirst
from bot.outbox.rate_limits import RateLimiter
from storage.db import WRITER, Database
from storage.models import OutboxMessage
from storage import rate_slots
from storage.outbox_parts import part_key

log = logging.getLogger(__name__)
CLAIM_SECONDS = 120   # a claim older than this belongs to a crashed sender and may be taken over
OUTCOMES_PER_COMMIT = 100   # sent/failed marks written in one transaction
# answers to people's own messages first, then by due time: a question asked behind a morning's
# backlog is in the very next batch
CLAIM_ORDER = (OutboxMessage.priority.desc(), OutboxMessage.next_attempt_at, OutboxMessage.id)
CANDIDATES = 3              # SQLite: a claim picks from this many times its batch, read beforehand
# a shared slot counts from this long after its send starts until the platform's answer moves
# it: the latest a message can arrive (the channels' request timeouts are 10 s), so another
# instance never counts it earlier than the platform does
IN_FLIGHT_S = 15.0


class Sender:
    def __init__(self, db: Database, channels: dict[str, Channel], clock: Clock, config: OutboxConfig,
                 *, instance: str | None = None, rng: random.Random | None = None, monotonic=time.monotonic,
                 health: ChannelHealth | None = None, people_first: PeopleFirst | None = None,
                 wall=time.time, check=None):
        self.db, self.channels, self.clock, self.config = db, channels, clock, config
        # ``check(rows)``: verdicts on claimed rows just before they leave (bot/send_time_check.py:
        # a customer message dropped, deferred or rendered again); None: rows go as queued
        self.check = check
        self.people_first = people_first or PeopleFirst()
        self.health = health if health is not None else ChannelHealth()
        self.instance = instance or uuid.uuid4().hex[:12]
        self.limiter = RateLimiter(config.robot_per_minute, config.member_per_minute, monotonic,
                                   limit_of=self._limit_of, reply_reserve=config.reply_reserve)
        self.rng = rng or random.Random()
        self.alerts: dict[str, str] = {}        # loud problems for /healthz (e.g. 60020 IP not trusted)
        self.stats = {"sent": 0, "retried": 0, "dead": 0, "deferred": 0, "dropped": 0}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.last_latency: float | None = None
        self._outcomes: list[tuple[int, dict, asyncio.Future]] = []   # waiting for the next group commit
        self._committing: asyncio.Task | None = None     # the task committing outcomes, if any
        self._retry_at: dict[int, datetime] = {}          # rows of this pass to be retried, and when
        # limits counted in the database too (storage/rate_slots.py): the in-process limiter
        # orders and estimates, the shared count decides, so several senders keep one limit
        setting = config.shared_rate_limits
        self.shared = setting == "on" or setting == "auto" and db.dialect == "postgresql"
        self.wall = wall
        self._restamps: list[dict] = []     # shared slots to move to the platform's answer, next commit

    def wake(self) -> None:
        self._wake.set()

    def _limit_of(self, out: OutgoingMessage) -> str | None:
        channel = self.channels.get(out.platform)
        return None if channel is None else channel.capabilities.rate_limit(out.target_kind)

    def _sendable(self, now: datetime, *, due: bool = True) -> list:
        """Pending, unclaimed (or claimed by a sender that died) rows not for a destination at its
        rate limit — for a notification, the limit less the room kept for answers; ``due``: only
        those whose time has come."""
        cond = [OutboxMessage.status == "pending",
                or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now)]
        if due:
            cond.append(OutboxMessage.next_attempt_at <= now)
        for reply in (True, False):
            full, _ = self.limiter.blocked(reply=reply)
            for (platform, kind), targets in full.items():
                at_limit = and_(OutboxMessage.platform == platform, OutboxMessage.target_kind == kind,
                                OutboxMessage.target.in_(targets))
                cond.append(~at_limit if reply else ~and_(at_limit, OutboxMessage.priority < REPLY))
        return cond

    async def _claim(self, limit: int) -> list[OutboxMessage]:
        now = self.clock.now()
        due = select(OutboxMessage.id).where(*self._sendable(now)).order_by(*CLAIM_ORDER).limit(limit)
        candidates: list[int] = []
        if self.db.is_sqlite:
            # candidates chosen on a read snapshot: with 300,000 messages queued by a 1M catch-up,
            # finding the batch took up to 0.4 s with people's writes waiting behind it at the
            # gate. The claim takes the first ``limit`` of them still free, checked by key (a
            # second sender on the same file takes the ones after the first sender's)
            async with self.db.reader() as r:
                candidates = list((await r.execute(due.limit(limit * CANDIDATES))).scalars())
            if not candidates:
                return []
        async with self.db.session() as s, s.begin():
            if self.db.is_sqlite:
                free = (select(OutboxMessage.id)
                        .where(OutboxMessage.id.in_(candidates), OutboxMessage.status == "pending",
                               OutboxMessage.next_attempt_at <= now,     # not put back for later meanwhile
                               or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))
                        .order_by(*CLAIM_ORDER).limit(limit))
                ids = list((await s.execute(free)).scalars())
            else:
                ids = list((await s.execute(due.with_for_update(skip_locked=True))).scalars())
            if not ids:
                return []
            await s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids))
                            .values(claimed_by=self.instance, claimed_until=now + timedelta(seconds=CLAIM_SECONDS)))
            rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.id.in_(ids),
                                                                OutboxMessage.claimed_by == self.instance)
                                    .order_by(*CLAIM_ORDER))).scalars().all()
            return list(rows)

    async def drain(self, batch: int = 100) -> int:
        """Deliver every message due now (one pass over the claimed batch). Returns how many were sent."""
        rows = await self._claim(batch)
        if rows and self.check is not None:
            rows = await self._checked(rows)
        if not rows:
            return 0
        rows, fitted = await self._fit(rows)
        # Slots are reserved in row order before any send starts, so concurrent sends cannot
        # overshoot a limit; rows beyond a destination's limit are put back as they were (one
        # group commit) and are not claimed again until the destination has room.
        go, held = [], []
        waiting: dict[tuple, int] = defaultdict(int)
        for row in rows:
            out = fitted.get(row.id) or to_outgoing(row)
            reply = row.priority >= REPLY
            if self.limiter.wait_time(out, reply) > 0:
                k = self.limiter.key(out)
                held.append((row, self.limiter.free_in(out, waiting[k], reply)))
                waiting[k] += 1
            else:
                go.append((row, out, self.limiter.take(out)))
        if self.shared and go:
            go, refused = await self._take_shared(go)
            held += refused
        if held:
            # put back without spending an attempt, each at the time its destination should have
            # room for it (spread, so they do not all come back at once to be put back again)
            self.stats["deferred"] += len(held)
            now = self.clock.now()
            for row, _ in held:
                metrics.for_db(self.db).message_out(row.platform, "deferred")
            await asyncio.gather(*(self._finish(row.id, next_attempt_at=max(row.next_attempt_at, now + timedelta(seconds=w)))
                                   for row, w in held))
        sem = asyncio.Semaphore(self.config.concurrency)
        sent = 0

        async def one(row: OutboxMessage, out: OutgoingMessage, slot: list | None) -> int:
            nonlocal sent
            async with sem:
                n = await self._deliver(row, out, slot)   # not `sent += await ...`: that reads `sent` before awaiting
                sent += n
                return n

        async def in_order(parts: list[tuple[OutboxMessage, OutgoingMessage, list | None]]) -> None:
            # the parts of one split message go one after the other, so they arrive in order; one
            # that must be retried holds the parts after it until just after its own retry
            for i, (row, out, slot) in enumerate(parts):
                if await one(row, out, slot) or row.id not in self._retry_at:
                    continue
                later = self._retry_at.pop(row.id)
                await asyncio.gather(*(self._finish(r.id, next_attempt_at=later + timedelta(milliseconds=k + 1))
                                       for k, (r, _, s) in enumerate(parts[i + 1:])))
                for _, _, s in parts[i + 1:]:
                    self._done(s)
                return

        async def deliver_all(batch: list) -> None:
            chains: dict[str, list] = defaultdict(list)
            singles = []
            for g in batch:
                part = g[1].extra.get("part")
                if isinstance(part, dict) and part.get("of"):
                    chains[str(part["of"])].append(g)
                else:
                    singles.append(g)
            await asyncio.gather(*(one(*g) for g in singles),
                                 *(in_order(sorted(c, key=lambda g: int(g[1].extra["part"].get("n") or 0)))
                                   for c in chains.values()))

        # answers first, every part of them, then the rest: sent side by side, an answer's second
        # part arrived after the notifications claimed with it
        await deliver_all([g for g in go if g[0].priority >= REPLY])
        await deliver_all([g for g in go if g[0].priority < REPLY])
        self._retry_at.clear()
        return sent

    async def _take_shared(self, go: list) -> tuple[list, list]:
        """The shared count's word on the sends about to start: one short write for the batch.
        A send the database refuses (other instances used the minute) is put back, with the
        time its destination frees, like one the local limiter held."""
        wanted, where = [], []
        for i, (row, out, slot) in enumerate(go):
            k = self.limiter.key(out)
            if k is not None and slot is not None:
                wanted.append((rate_slots.limit_key(*map(str, k)), self.limiter.cap(out, row.priority >= REPLY)))
                where.append(i)
        if not wanted:
            return go, []
        now = self.wall()

        async def work(s):
            return await rate_slots.take(s, wanted, now=now, window=self.limiter.window, stamp=now + IN_FLIGHT_S)
        ids, waits = await self.db.write(work)
        refused = []
        for i, (key, _), slot_id in zip(where, wanted, ids):
            row, out, slot = go[i]
            if slot_id is None:
                self.limiter.release(out, slot)
                refused.append((row, max(waits.get(key, 1.0), 0.5)))
                go[i] = None
            else:
                slot.append(slot_id)          # [local time, shared slot id]: see ``_done``
        return [g for g in go if g is not None], refused

    def _done(self, slot: list | None) -> None:
        """The platform answered: the slot counts from now, here and (at the next outcome commit,
        no write of its own) in the shared count."""
        self.limiter.done(slot)
        if slot is not None and len(slot) > 1:
            self._restamps.append({"slot_id": slot[1], "slot_at": self.wall()})

    async def _checked(self, rows: list[OutboxMessage]) -> list[OutboxMessage]:
        """The rows that go now, after the send-time check: dropped rows are cancelled (with the
        reason), deferred ones put back for their slot, re-rendered ones go with their new text."""
        try:
            verdicts = await self.check(rows)
        except Exception:
            # the rows it would have judged wait for their claim to expire and are checked again
            log.exception("outbox: send-time check failed; its messages wait for the next pass")
            return [r for r in rows if not (r.extra or {}).get("customer_message")]
        keep, finishing = [], []
        for row in rows:
            v = verdicts.get(row.id)
            if v is None:
                keep.append(row)
            elif v.drop:
                self.stats["dropped"] += 1
                finishing.append(self._finish(row.id, status="cancelled", last_error=f"cancelled at send time: {v.drop}"))
            elif v.later:
                self.stats["deferred"] += 1
                finishing.append(self._finish(row.id, next_attempt_at=v.later))
            else:
                row.text, row.title, row.target, row.extra = v.out.text, v.out.title, v.out.target, v.out.extra
                keep.append(row)
        await asyncio.gather(*finishing)
        return keep

    async def _fit(self, rows: list[OutboxMessage]) -> tuple[list[OutboxMessage], dict[int, OutgoingMessage]]:
        """Every claimed row fitted to its platform (bot/outbox/sizes.py says why here): a row that
        fits is delivered as it is (a card's fields cut to their limits), a row too big for one
        message is split into rows of its own, ``key:1`` … ``key:n``, claimed by this sender and
        delivered in this pass, while the original is marked ``split`` in the same transaction."""
        fitted: dict[int, OutgoingMessage] = {}
        split: dict[int, list[OutgoingMessage]] = {}
        for row in rows:
            channel = self.channels.get(row.platform)
            if channel is None:
                continue
            parts = sizes.fit(to_outgoing(row), channel.capabilities)
            if len(parts) == 1:
                fitted[row.id] = parts[0]
            else:
                split[row.id] = parts
        if not split:
            return rows, fitted
        now = self.clock.now()
        claim = now + timedelta(seconds=CLAIM_SECONDS)
        by_id = {row.id: row for row in rows}
        keys: dict[int, list[str]] = {}
        async with self.db.session() as s, s.begin():
            for row_id, parts in split.items():
                row = by_id[row_id]
                keys[row_id] = [part_key(row.idem_key, i + 1) for i in range(len(parts))]
                marked = [dataclasses.replace(p, extra={**p.extra, "part": {"of": row.idem_key, "n": i + 1,
                                                                            "total": len(parts)}})
                          for i, p in enumerate(parts)]
                # the parts keep the row's priority: an answer split in three is still an answer
                records = [{**pending_row(p, k, row.created_at, row.next_attempt_at),
                            "priority": row.priority, "claimed_by": self.instance, "claimed_until": claim}
                           for p, k in zip(marked, keys[row_id])]
                await enqueue_rows(s, records)
                await s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id,
                                                            OutboxMessage.claimed_by == self.instance)
                                .values(status="split", claimed_by=None, claimed_until=None,
                                        last_error=f"split into {len(parts)} parts for {row.platform}"))
            wanted = [k for ks in keys.values() for k in ks]
            found = {r.idem_key: r for r in (await s.execute(
                select(OutboxMessage).where(OutboxMessage.idem_key.in_(wanted),
                                            OutboxMessage.claimed_by == self.instance,
                                            OutboxMessage.status == "pending"))).scalars()}
        log.info("outbox: %s message(s) too big for their platform split into %s parts",
                 len(split), sum(len(p) for p in split.values()))
        out: list[OutboxMessage] = []
        for row in rows:
            if row.id in split:
                out.extend(found[k] for k in keys[row.id] if k in found)
            else:
                out.append(row)
        return out, fitted

    async def next_wake(self) -> float | None:
        """Seconds until the sender has something to do: the next due row of a destination with
        room, or the moment a full destination frees (None: nothing pending)."""
        now = self.clock.now()
        _, frees_in = self.limiter.blocked()
        async with self.db.reader() as s:
            first = (await s.execute(select(OutboxMessage.next_attempt_at)
                                     .where(*self._sendable(now, due=False))
                                     .order_by(OutboxMessage.next_attempt_at).limit(1))).scalar()
        waits = [w for w in (frees_in, None if first is None else max(0.0, (first - now).total_seconds()))
                 if w is not None]
        return min(waits) if waits else None

    async def _finish(self, row_id: int, **values) -> None:
        """Record a row's outcome and release its claim, durably, before the caller goes on.

        Group commit: outcomes that arrive while a commit runs wait and go together in the next
        one (a lone outcome goes at once). Each caller still returns only after the commit that
        holds its row, so a message is never reported sent before that is on disk; what changes
        is one transaction for the concurrent deliveries ([outbox] concurrency) instead of one
        each, which was most of the sender's CPU per message (bench/outbox.py)."""
        fut = asyncio.get_running_loop().create_future()
        self._outcomes.append((row_id, values, fut))
        if self._committing is None:
            # kept in an attribute: the event loop holds tasks only weakly
            self._committing = asyncio.create_task(self._commit_outcomes())
        await fut

    async def _commit_outcomes(self) -> None:
        table = OutboxMessage.__table__
        try:
            while self._outcomes:
                # a bounded batch: when a fast channel (the local chat) finishes thousands of rows
                # while one commit runs, one transaction for all of them held the write gate for
                # seconds (1.8 s at 200k invoices) while people's messages waited
                batch, self._outcomes = self._outcomes[:OUTCOMES_PER_COMMIT], self._outcomes[OUTCOMES_PER_COMMIT:]
                groups: dict[tuple, list[dict]] = defaultdict(list)   # executemany needs the same keys per row
                for row_id, values, _ in batch:
                    groups[tuple(sorted(values))].append({"row_id": row_id, **{"v_" + k: v for k, v in values.items()}})
                restamps, self._restamps = self._restamps, []
                try:
                    async with self.db.engine.begin() as conn:
                        if restamps:
                            await conn.execute(rate_slots.restamp_statement(), restamps)
                        for keys, params in groups.items():
                            stmt = (update(table).where(table.c.id == bindparam("row_id"),
                                                        table.c.claimed_by == self.instance)
                                    .values(claimed_by=None, claimed_until=None,
                                            **{k: bindparam("v_" + k) for k in keys}))
                            await conn.execute(stmt, params)
                except Exception as e:
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self._committing = None

    async def _deliver(self, row: OutboxMessage, out: OutgoingMessage, slot: list | None) -> int:
        channel = self.channels.get(out.platform)
        if channel is None:
            await self._finish(row.id, status="dead", last_error=f"no channel configured for {out.platform}")
            self.stats["dead"] += 1
            metrics.for_db(self.db).message_out(out.platform, "dead")
            self.alerts[f"channel:{out.platform}"] = f"messages for {out.platform} but the channel is not enabled"
            self._done(slot)
            return 0
        try:
            await channel.deliver(out)
        except DeliveryError as e:
            return await self._failed(row, e)
        except Exception as e:   # a bug in an adapter must not kill the sender loop
            log.exception("outbox: adapter error on message %s", row.id)
            return await self._failed(row, DeliveryError(f"{type(e).__name__}: {e}"))
        finally:
            self._done(slot)
        self.health.sent(out.platform)
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
            if isinstance(e, PermanentDeliveryError):
                self.health.send_failed(row.platform, reason)   # e.g. 60020 IP not trusted: on /healthz
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
        retry_at = self._retry_at[row.id] = self.clock.now() + timedelta(seconds=delay)
        await self._finish(row.id, attempts=attempts, last_error=reason, next_attempt_at=retry_at)
        return 0

    async def run(self) -> None:
        """The sender loop: drain, then sleep until woken, until the next row is due or a full
        destination frees (so a message held by a rate limit goes the moment it may), or at
        most the poll interval."""
        WRITER.set("outbox")
        while not self._stopping.is_set():
            if self.people_first.due():
                # a background writer like the jobs: at 1M receivables the catch-up queued some
                # 300,000 messages, and the sender's claims and outcome commits took more than half
                # of the write gate's time while people's messages waited in line behind them
                await self.people_first.give_way()
            try:
                n = await self.drain()
                wait = None if n else await self.next_wake()
            except Exception:
                log.exception("outbox: drain failed; will retry")
                n, wait = 0, None
            if n == 0:
                self._wake.clear()
                timeout = self.config.poll_seconds if wait is None else min(wait, self.config.poll_seconds)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                except asyncio.TimeoutError:
                    pass

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
