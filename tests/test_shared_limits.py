"""Rate limits counted in the database: two senders (two instances) on one database send to one
member no more than the member's per-minute limit together, on SQLite and on PostgreSQL; counted
per process (``shared_rate_limits = "off"``) they send twice that."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import func, select

from bot import outbox
from bot.config import OutboxConfig
from bot.core.channel import Capabilities
from bot.core.messages import OutgoingMessage
from bot.outbox import Sender
from storage.db import Database
from storage.models import OutboxMessage, RateSlot
from tests.conftest import at

LIMIT = 5


class Member:
    """A platform that counts what one member receives (the per-member limit applies)."""
    platform = "chat"
    capabilities = Capabilities(targets=frozenset({"user"}), rate_limits=(("user", "member"),))

    def __init__(self, wall):
        self.wall = wall
        self.arrived: list[float] = []

    def reply_route(self, msg):
        return "user", msg.platform_user_id

    async def deliver(self, out: OutgoingMessage) -> None:
        await asyncio.sleep(0.01)
        self.arrived.append(self.wall())


class Clock:
    def __init__(self):
        self.t = 1_800_000_000.0
        self.dt = at("2026-11-23 10:00")

    def now(self):
        return self.dt

    def __call__(self) -> float:
        return self.t


async def two_senders(db: Database, shared: str):
    cfg = dataclasses.replace(OutboxConfig(), member_per_minute=LIMIT, reply_reserve=0, shared_rate_limits=shared)
    wall = Clock()
    channel = Member(wall)
    other = Database(db.url)          # the second instance: its own connections
    a = Sender(db, {"chat": channel}, wall, cfg, instance="a", wall=wall, monotonic=wall)
    b = Sender(other, {"chat": channel}, wall, cfg, instance="b", wall=wall, monotonic=wall)
    async with db.session() as s, s.begin():
        for i in range(3 * LIMIT):
            await outbox.enqueue(s, OutgoingMessage("chat", "user", "u1", f"第{i}条"), f"n:{i}", wall.dt)
    return a, b, other, channel, wall


@pytest.mark.parametrize("shared, together", [("on", LIMIT), ("off", 2 * LIMIT)])
async def test_two_instances_keep_one_member_limit_together(any_db, shared, together):
    a, b, other, channel, wall = await two_senders(any_db, shared)
    try:
        # both claim at once: each sees the whole minute free in its own limiter
        await asyncio.gather(a.drain(batch=LIMIT), b.drain(batch=LIMIT))
        assert len(channel.arrived) == together
        # the ones refused are put back for when the minute frees, without spending an attempt
        async with any_db.session() as s:
            pending = (await s.execute(select(OutboxMessage).where(OutboxMessage.status == "pending"))).scalars().all()
        assert len(pending) == 3 * LIMIT - together and all(r.attempts == 0 for r in pending)
        if shared == "off":
            return
        # a minute later there is room again, for the limit and no more
        wall.t += 61
        await asyncio.gather(a.drain(batch=LIMIT), b.drain(batch=LIMIT))
        assert len(channel.arrived) == 2 * LIMIT
        # each slot moved to its answer, and old slots are cleared as new ones are taken
        async with any_db.session() as s:
            slots = (await s.execute(select(RateSlot.at))).scalars().all()
            assert len(slots) == LIMIT and all(t == wall.t for t in slots)
            assert (await s.execute(select(func.count()).select_from(OutboxMessage)
                                    .where(OutboxMessage.status == "sent"))).scalar_one() == 2 * LIMIT
    finally:
        await other.close()


async def test_auto_counts_in_the_database_on_postgresql_only(any_db):
    wall = Clock()
    sender = Sender(any_db, {"chat": Member(wall)}, wall, OutboxConfig(), wall=wall, monotonic=wall)
    assert sender.shared is (any_db.dialect == "postgresql")
