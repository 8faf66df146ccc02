"""Outbox delivery of N messages (2,000 by default, 10,000 with --full) to a FakeWeCom on loopback
(in its own process, as WeCom is another machine) with its rate limits, against the theoretical
minimum those limits allow.

Member messages (30 / minute / member, excess silently dropped by WeCom) to M members. A real
minute would make the run take N / (30 × M) minutes, so **time is scaled**: the fake's clock, the
sender's RateLimiter (monotonic) and the sender's business clock all run SCALE times faster than
wall time (one "minute" window = 60 / SCALE real seconds). Limits and windows keep their real
values in that scaled time, so fake and limiter agree exactly as they would in production; the
HTTP, database and Python costs are *not* scaled, which makes the run harder than reality.

The scale is chosen so the limits allow the same **100 messages per wall second** at any size
(SCALE = 100 / (M × 30 / 60): ×20 for 10 members, ×4 for 50): scaling further would make the
bench measure how fast one Python process can make HTTP calls and commits (the sender's CPU)
rather than how closely it follows the limits — which is what the target is about; at real
speed the limits for 50 members allow 25 messages a second.

Minimum = (⌈n_member / 30⌉ − 1) windows for the busiest member (the first window's messages go at
once). Also counted: messages the fake dropped (over its limit) and duplicates (a text seen twice).
Target: within 10 % of the minimum.
"""
from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from bench import common

FAKE_CORP = "wwfakecorp0001"
WALL_RATE = 100.0      # messages per wall-clock second the scaled limits allow
MEMBER_LIMIT = 30


def scale_for(members: int) -> float:
    return WALL_RATE / (members * MEMBER_LIMIT / 60)


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


async def _run(url: str, n: int, members: int, scale: float, limit_s: float, workdir: Path) -> dict:
    import aiohttp

    from bot import outbox
    from bot.channels.wecom import WeComChannel
    from bot.config import OutboxConfig, WeComConfig
    from bot.core.messages import OutgoingMessage
    from storage.db import Database
    from storage.models import OutboxMessage
    from sqlalchemy import func, select

    clock = ScaledClock(scale)
    db = Database(url)
    async with db.session() as s, s.begin():
        for i in range(n):
            await outbox.enqueue(s, OutgoingMessage(platform="wecom", target_kind="user", target=f"m{i % members:04d}",
                                                    text=f"msg {i}", format="text"), f"bench:{i}", clock.now())
    clock = ScaledClock(scale)            # restart time now that the rows are written
    # The fake runs in its own process, as WeCom is another machine: in this one its HTTP server
    # would share the sender's event loop and CPU. CLOCK_MONOTONIC is system-wide, so both
    # processes scale time from the same instant.
    report = workdir / "outbox-fake.json"
    fake = subprocess.Popen([sys.executable, "-m", "bench.outbox", "fake", str(scale), repr(clock.m0), str(report)],
                            cwd=Path(__file__).parent.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        fake_url = fake.stdout.readline().strip()
        cfg = WeComConfig(enabled=True, corp_id=FAKE_CORP, agent_id="1000002", secret="fake-app-secret",
                          token="t", encoding_aes_key="k" * 43, api_base=fake_url)
        channel = WeComChannel(cfg)
        ocfg = OutboxConfig(poll_seconds=0.01, member_per_minute=MEMBER_LIMIT)
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
        fake.stdin.close()                # the fake writes what it received and exits
        fake.wait(30)
        await db.close()
    got = json.loads(report.read_text(encoding="utf-8"))
    texts = Counter(got["texts"])
    per_member = Counter(f"m{i % members:04d}" for i in range(n))
    # these are notifications: of each member's minute the sender keeps [outbox] reply_reserve for
    # answers to the person's own messages (answers first), so their minimum counts windows of the
    # rest; "raw_min" is WeCom's own limit
    notify_limit = MEMBER_LIMIT - OutboxConfig().reply_reserve
    windows = max(math.ceil(c / notify_limit) for c in per_member.values()) - 1
    raw_windows = max(math.ceil(c / MEMBER_LIMIT) for c in per_member.values()) - 1
    return {"wall": wall, "min": windows * 60 / scale, "raw_min": raw_windows * 60 / scale, "received": len(got["texts"]), "dropped": got["dropped"],
            "duplicates": sum(c - 1 for c in texts.values() if c > 1), "left": left, "stats": dict(sender.stats)}


def _fake(scale: float, m0: float, report: Path) -> None:
    """The child: a FakeWeCom on scaled time until stdin closes, then what it received to ``report``."""
    from tests.fakes.wecom_server import FakeWeCom

    async def go():
        clock = ScaledClock(scale)
        clock.m0 = m0
        fake = await FakeWeCom(corp_id=FAKE_CORP, apps={1000002: "fake-app-secret"}, clock=clock.monotonic,
                               member_limit=MEMBER_LIMIT).start()
        print(fake.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await fake.close()
        report.write_text(json.dumps({"texts": [r.payload.get("text", {}).get("content") for r in fake.received],
                                      "dropped": len(fake.dropped)}), encoding="utf-8")
    asyncio.run(go())


def run(n: int = 2000, members: int = 10, repeats: int = 1, scale: float | None = None,
        workdir: Path | None = None) -> common.Result:
    from bot.config import OutboxConfig
    res = common.Result("outbox")
    scale = scale or scale_for(members)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    runs = []
    for r in range(repeats):
        path = workdir / f"outbox-{r}.db"
        url = common.fresh_sqlite(path)
        runs.append(asyncio.run(_run(url, n, members, scale, limit_s=600, workdir=workdir)))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    wall, mn = common.median(x["wall"] for x in runs), runs[0]["min"]
    last = runs[-1]
    res.add(messages=n, members=members, time_scale=scale, repeats=repeats, wall_s=round(wall, 2),
            min_s=round(mn, 2), ratio=round(wall / mn, 3) if mn else float("nan"),
            wecom_min_s=round(runs[0]["raw_min"], 2), delivered=last["received"],
            dropped_by_fake=last["dropped"], duplicates=last["duplicates"], not_sent=last["left"],
            deferred=last["stats"]["deferred"], meets=bool(mn) and wall <= 1.1 * mn and not last["dropped"])
    res.notes.append(f"time scaled ×{scale:g} in fake, limiter and sender clock: a 60 s window = {60 / scale:g} s real")
    res.notes.append(f"min_s: the minimum for notifications, {MEMBER_LIMIT - OutboxConfig().reply_reserve} a member's "
                     f"minute ({MEMBER_LIMIT} less [outbox] reply_reserve, kept for answers); wecom_min_s: at WeCom's "
                     f"own {MEMBER_LIMIT}")
    return res


if __name__ == "__main__" and sys.argv[1:2] == ["fake"]:
    _fake(float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
