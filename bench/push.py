"""``overdue_push`` wall time and peak memory at N receivables / 1,000 reps, each run in a fresh
child process on a fresh copy of the database (peak RSS = the child's VmHWM).

Baseline, same database, own child process: one SQL statement that fetches every overdue item
the push will list (joined with its customer, ordered rep → customer → due date) — what listing
every item in the list's order costs (the ranked push no longer does that: it scans the items'
key columns unordered and reads only the few it shows). Target: ≤ 15 s and ≤ 300 MB at 1M
receivables / 1,000 reps. ``cpu_s``: the child's CPU time during the job (all threads), the
figure that a busy machine bends least.

``cache``: a directory where the generated database of each size is kept between runs
(generating 1M receivables takes minutes); its name carries a digest of the generator and the
migrations, so a changed ledger or schema generates afresh. ``before``: another checkout (e.g. the
main branch) whose push runs on the same copies, interleaved with this one's, for a ratio.
"""
from __future__ import annotations

import asyncio
import json
import os
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
    cpu = _cpu()
    if mode == "push":
        summary = await run_job(services, "overdue_push", at)
    else:
        async with services.db.session() as s:
            rows = (await s.execute(text(BASELINE), {"today": dataset.TODAY})).all()
        summary = f"{len(rows)} overdue rows"
    wall = time.perf_counter() - t
    out = {"wall": wall, "cpu": _cpu() - cpu, "summary": summary}
    if mode == "push":
        async with services.db.session() as s:
            out["items"] = (await s.execute(select(func.count()).select_from(PushItem))).scalar_one()
            out["messages"] = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
    await services.db.close()
    return out


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _run_child(db: Path, mode: str, code: Path | None = None) -> dict:
    """One measurement in a fresh process; ``code``: the checkout whose bot runs (this one's
    child function either way, so both report the same figures)."""
    code = code or Path(__file__).parent.parent
    starter = f"import runpy, sys; sys.argv = ['push', 'child', {str(db)!r}, {mode!r}]; " \
              f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", starter], capture_output=True, text=True, timeout=1800, cwd=code)
    if proc.returncode != 0:
        raise RuntimeError(f"push child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: list[int], repeats: int = 3, workdir: Path | None = None, cache: Path | None = None,
        before: Path | None = None) -> common.Result:
    res = common.Result("overdue_push")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    cache = common.cache_dir(cache)
    for n in sizes:
        master, counts = common.generated(workdir, n, cache)
        pushes, olds, bases, loads = [], [], [], []
        copy = workdir / f"push-{n}-run.db"

        def fresh() -> Path:
            for suffix in ("", "-wal", "-shm"):
                Path(str(copy) + suffix).unlink(missing_ok=True)
            shutil.copy(master, copy)
            return copy
        for _ in range(repeats):
            loads.append(os.getloadavg()[0])
            pushes.append(_run_child(fresh(), "push"))
            if before is not None:
                olds.append(_run_child(fresh(), "push", before))
            bases.append(_run_child(copy, "baseline"))
        wall = common.median(p["wall"] for p in pushes)
        rss = common.median(p["maxrss_mb"] for p in pushes)
        bwall = common.median(b["wall"] for b in bases)
        row = dict(receivables=counts["receivables"], reps=1000, repeats=repeats, wall_s=round(wall, 2),
                   cpu_s=round(common.median(p["cpu"] for p in pushes), 2), peak_rss_mb=round(rss, 1),
                   items=pushes[0]["items"], messages=pushes[0]["messages"],
                   baseline_wall_s=round(bwall, 3),
                   baseline_rss_mb=round(common.median(b["maxrss_mb"] for b in bases), 1),
                   ratio_wall=round(wall / bwall, 2))
        if before is not None:
            owall = common.median(p["wall"] for p in olds)
            row.update(before_wall_s=round(owall, 2), before_cpu_s=round(common.median(p["cpu"] for p in olds), 2),
                       before_peak_rss_mb=round(common.median(p["maxrss_mb"] for p in olds), 1),
                       before_items=olds[0]["items"], before_messages=olds[0]["messages"],
                       speedup=round(owall / wall, 1))
        row.update(load_avg=round(common.median(loads), 1),
                   meets=(wall <= 15 and rss <= 300) if n >= 1_000_000 else "n/a")
        res.add(**row)
        for f in workdir.glob(f"push-{n}*"):
            f.unlink(missing_ok=True)
    res.notes.append("peak_rss_mb = the child's VmHWM (its own peak RSS, interpreter and libraries included)")
    res.notes.append("cpu_s = the child's CPU time during the job (user + system, all threads)")
    res.notes.append("baseline = one SQL fetch of every overdue item in the list's order, in its own child")
    if before is not None:
        res.notes.append(f"before = the push of the checkout at {before}, interleaved with this one on the same copies")
    res.notes.append("load_avg = the machine's 1-minute load average as each repeat began (2 cores)")
    return res


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    result = asyncio.run(_child(f"sqlite:///{sys.argv[2]}", sys.argv[3]))
    # VmHWM is this process image's own peak RSS; ru_maxrss would not do: Linux carries it across
    # exec from the parent (the bench process, which may have grown large in an earlier benchmark)
    hwm = next((line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")), None)
    result["maxrss_mb"] = int(hwm) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
