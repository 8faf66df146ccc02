"""The first run of the ledger jobs (escalations, credit_watch, customer_reminders, statute_watch)
on a freshly loaded ledger of N receivables / 1,000 reps, at 14:30 (a midday restart), while a
person writes every 0.1 s: each job's wall time and what it did, and the person's write latency
during the jobs (p50, p99, max) and how many writes got through.

The writes are one-row updates through ``db.write``, the path every chat command takes; a job that
holds the write gate too long shows as a high p99 here. Each size runs in a fresh child process on
a fresh copy of the database.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common, dataset

JOBS = ("escalations", "credit_watch", "customer_reminders", "statute_watch")


async def _child(url: str) -> dict:
    from sqlalchemy import text

    from bot.clock import FixedClock
    from bot.config import Config, DatabaseConfig, LocalConfig
    from bot.jobs.scheduler import run_job
    from bot.services import Services
    cfg = Config(local=LocalConfig(enabled=True), database=DatabaseConfig(url=url))
    at = common.NOW.astimezone(cfg.tz).replace(hour=14, minute=30)
    services = Services.build(cfg, clock=FixedClock(at, cfg.company.timezone))
    latencies: list[float] = []
    stop = asyncio.Event()

    async def person() -> None:
        async def touch(s):
            await s.execute(text("UPDATE people SET mobile = mobile WHERE id = (SELECT min(id) FROM people)"))
        while not stop.is_set():
            t = time.perf_counter()
            await services.db.write(touch)
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.1)

    writer = asyncio.create_task(person())
    jobs = []
    for name in JOBS:
        t = time.perf_counter()
        summary = await run_job(services, name, at)
        jobs.append({"job": name, "wall_s": round(time.perf_counter() - t, 2), "summary": summary})
    stop.set()
    await writer
    await services.db.close()
    lat = sorted(latencies)
    return {"jobs": jobs, "writes": len(lat), "write_p50_ms": round(common.median(lat) * 1000, 1),
            "write_p99_ms": round(common.percentile(lat, 99) * 1000, 1), "write_max_ms": round(lat[-1] * 1000, 1)}


def run(sizes: list[int], workdir: Path | None = None) -> common.Result:
    res = common.Result("jobs")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    for n in sizes:
        master = workdir / f"jobs-{n}.db"
        common.fresh_sqlite(master)
        common.bulk_load(master, dataset.Sizes(n))
        copy = workdir / f"jobs-{n}-run.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(copy) + suffix).unlink(missing_ok=True)
        shutil.copy(master, copy)
        proc = subprocess.run([sys.executable, "-m", "bench.jobs", "child", str(copy)], capture_output=True,
                              text=True, timeout=3600, cwd=Path(__file__).parent.parent)
        if proc.returncode != 0:
            raise RuntimeError(f"jobs child failed: {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        for j in out["jobs"]:
            res.add(receivables=n, job=j["job"], wall_s=j["wall_s"], summary=j["summary"])
        res.add(receivables=n, job="(a person writing every 0.1 s during all four)", writes=out["writes"],
                write_p50_ms=out["write_p50_ms"], write_p99_ms=out["write_p99_ms"], write_max_ms=out["write_max_ms"])
    return res


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    print(json.dumps(asyncio.run(_child(f"sqlite:///{sys.argv[2]}"))))
