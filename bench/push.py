"""``overdue_push`` wall time and peak memory at N receivables / 1,000 reps, each run in a fresh
child process on a fresh copy of the database (peak RSS = the child's VmHWM).

Baseline, same database, own child process: one SQL statement that fetches every overdue item
the push will list (joined with its customer, ordered rep → customer → due date) — the least
work any implementation must do. Target: ≤ 15 s and ≤ 300 MB at 1M receivables / 1,000 reps.
"""
from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common, dataset

# NOT INDEXED: the cheapest plan for this read, the one the push uses (storage/collection.py):
# through the due-date index SQLite picks otherwise, every row is a random page read, 2-3 times
# slower at 1M; a baseline slowed by a poor plan would flatter the ratio.
BASELINE = """SELECT r.id, r.invoice_no, r.rep_id, r.open_amount, r.due_date, r.currency, c.name
              FROM receivables r NOT INDEXED JOIN customers c ON c.id = r.customer_id
              WHERE r.open_amount > 0 AND r.due_date < :today AND r.status != 'written_off'
              ORDER BY r.rep_id, c.name, r.due_date, r.id"""


async def _child(url: str, mode: str) -> dict:
    from sqlalchemy import func, select, text

    from bot.clock import FixedClock
    from bot.config import Config, DatabaseConfig, LocalConfig
    from bot.jobs.scheduler import run_job
    from bot.services import Services
    from storage.models import OutboxMessage, PushItem
    cfg = Config(local=LocalConfig(enabled=True), database=DatabaseConfig(url=url))
    at = common.NOW.astimezone(cfg.tz)
    services = Services.build(cfg, clock=FixedClock(at, cfg.company.timezone))
    t = time.perf_counter()
    if mode == "push":
        summary = await run_job(services, "overdue_push", at)
    else:
        async with services.db.session() as s:
            rows = (await s.execute(text(BASELINE), {"today": dataset.TODAY})).all()
        summary = f"{len(rows)} overdue rows"
    wall = time.perf_counter() - t
    out = {"wall": wall, "summary": summary}
    if mode == "push":
        async with services.db.session() as s:
            out["items"] = (await s.execute(select(func.count()).select_from(PushItem))).scalar_one()
            out["messages"] = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
    await services.db.close()
    return out


def _run_child(db: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.push", "child", str(db), mode], capture_output=True,
                          text=True, timeout=1800, cwd=Path(__file__).parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"push child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: list[int], repeats: int = 3, workdir: Path | None = None) -> common.Result:
    res = common.Result("overdue_push")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    for n in sizes:
        master = workdir / f"push-{n}.db"
        common.fresh_sqlite(master)
        counts = common.bulk_load(master, dataset.Sizes(n))
        pushes, bases = [], []
        for _ in range(repeats):
            copy = workdir / f"push-{n}-run.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(copy) + suffix).unlink(missing_ok=True)
            shutil.copy(master, copy)
            pushes.append(_run_child(copy, "push"))
            bases.append(_run_child(copy, "baseline"))
        wall = common.median(p["wall"] for p in pushes)
        rss = common.median(p["maxrss_mb"] for p in pushes)
        bwall = common.median(b["wall"] for b in bases)
        res.add(receivables=counts["receivables"], reps=1000, repeats=repeats, wall_s=round(wall, 2),
                peak_rss_mb=round(rss, 1), items=pushes[0]["items"], messages=pushes[0]["messages"],
                baseline_wall_s=round(bwall, 3), baseline_rss_mb=round(common.median(b["maxrss_mb"] for b in bases), 1),
                ratio_wall=round(wall / bwall, 1),
                meets=(wall <= 15 and rss <= 300) if n >= 1_000_000 else "n/a")
        for f in workdir.glob(f"push-{n}*"):
            f.unlink(missing_ok=True)
    res.notes.append("peak_rss_mb = the child's VmHWM (its own peak RSS, interpreter and libraries included)")
    res.notes.append("baseline = one SQL fetch of every overdue item the push lists, in its own child")
    return res


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    result = asyncio.run(_child(f"sqlite:///{sys.argv[2]}", sys.argv[3]))
    # VmHWM is this process image's own peak RSS; ru_maxrss would not do: Linux carries it across
    # exec from the parent (the bench process, which may have grown large in an earlier benchmark)
    hwm = next((line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")), None)
    result["maxrss_mb"] = int(hwm) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
