"""Outbox delivery of N messages (2,000 by default, 10,000 with --full) to a FakeWeCom on loopback
with its rate limits, against the theoretical minimum those limits allow.

Member messages (30 / minute / member, excess silently dropped by WeCom) to M members. A real
minute would make the run take N / (30 × M) minutes, so **time is scaled**: the fake's clock, the
sender's RateLimiter (monotonic) and the sender's business clock all run SCALE times faster than
wall time (one "minute" window = 60 / SCALE real seconds). Limits and windows keep their real
values in that scaled time, so fake and limiter agree exactly as they would in production; the
HTTP, database and Python costs are *not* scaled, which makes the run harder than reality.

Minimum = (⌈n_member / 30⌉ − 1) windows for the busiest member (the first window's messages go at
once). Also counted: messages the fake dropped (over its limit) and duplicates (a text seen twice).
Target: within 10 % of the minimum.
"""
from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from bench import common

SCALE = 20.0
MEMBER_LIMIT = 30


class ScaledClock:
    """Business time that runs SCALE times faster than wall time (and its monotonic twin)."""

    def __init__(self, scale: float):
        from zoneinfo import ZoneInfo
        self.scale, self.tz = scale, ZoneInfo("Asia/Shanghai")
        self.m0, self.start = time.monotonic(), common.NOW

    def monotonic(self) -> float:
        return (time.monotonic() - self.m0) * self.scale

    def now(self):
        return (self.start + timedelta(seconds=self.monotonic())).astimezone(self.tz)

    def today(self):
        return self.now().date()


async def _run(url: str, n: int, members: int, scale: float, limit_s: float) -> dict:
    import aiohttp

    from bot import outbox
    from bot.channels.wecom import WeComChannel
    from bot.config import OutboxConfig, WeComConfig
    from bot.core.messages import OutgoingMessage
    from storage.db import Database
    from storage.models import OutboxMessage
    from sqlalchemy import func, select
    from tests.fakes.wecom_server import FakeWeCom

    clock = ScaledClock(scale)
    db = Database(url)
    async with db.session() as s, s.begin():
        for i in range(n):
            await outbox.enqueue(s, OutgoingMessage(platform="wecom", target_kind="user", target=f"m{i % members:04d}",
                                                    text=f"msg {i}", format="text"), f"bench:{i}", clock.now())
    fake = await FakeWeCom(apps={1000002: "fake-app-secret"}, clock=clock.monotonic,
                           member_limit=MEMBER_LIMIT).start()
    cfg = WeComConfig(enabled=True, corp_id=fake.corp_id, agent_id="1000002", secret="fake-app-secret",
                      token="t", encoding_aes_key="k" * 43, api_base=fake.url)
    channel = WeComChannel(cfg)
    ocfg = OutboxConfig(poll_seconds=0.01, member_per_minute=MEMBER_LIMIT)
    clock = ScaledClock(scale)            # restart time now that the rows are written
    fake.clock = clock.monotonic
    try:
        async with aiohttp.ClientSession() as session:
            channel.connect(session)
            sender = outbox.Sender(db, {"wecom": channel}, clock, ocfg, monotonic=clock.monotonic)
            t0 = time.perf_counter()
            task = asyncio.create_task(sender.run())
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                async with db.session() as s:
                    left = (await s.execute(select(func.count()).select_from(OutboxMessage)
                                            .where(OutboxMessage.status == "pending"))).scalar_one()
                if left == 0:
                    break
            wall = time.perf_counter() - t0
            sender.stop()
            await asyncio.wait_for(task, 30)
    finally:
        await fake.close()
        await db.close()
    texts = Counter(r.payload.get("text", {}).get("content") for r in fake.received)
    per_member = Counter(f"m{i % members:04d}" for i in range(n))
    windows = max(math.ceil(c / MEMBER_LIMIT) for c in per_member.values()) - 1
    return {"wall": wall, "min": windows * 60 / scale, "received": len(fake.received), "dropped": len(fake.dropped),
            "duplicates": sum(c - 1 for c in texts.values() if c > 1), "left": left, "stats": dict(sender.stats)}


def run(n: int = 2000, members: int = 10, repeats: int = 1, scale: float = SCALE,
        workdir: Path | None = None) -> common.Result:
    res = common.Result("outbox")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    runs = []
    for r in range(repeats):
        path = workdir / f"outbox-{r}.db"
        url = common.fresh_sqlite(path)
        runs.append(asyncio.run(_run(url, n, members, scale, limit_s=600)))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    wall, mn = common.median(x["wall"] for x in runs), runs[0]["min"]
    last = runs[-1]
    res.add(messages=n, members=members, time_scale=scale, repeats=repeats, wall_s=round(wall, 2),
            min_s=round(mn, 2), ratio=round(wall / mn, 3) if mn else float("nan"), delivered=last["received"],
            dropped_by_fake=last["dropped"], duplicates=last["duplicates"], not_sent=last["left"],
            deferred=last["stats"]["deferred"], meets=bool(mn) and wall <= 1.1 * mn and not last["dropped"])
    res.notes.append(f"time scaled ×{scale:g} in fake, limiter and sender clock: a 60 s window = {60 / scale:g} s real")
    return res
