"""/aging latency: p50/p99 of ``storage.aging.aging`` over 100 queries at N open receivables,
against a naive full-scan ``SELECT CASE … GROUP BY`` on the same database and connection pool.

Target: p50 ≤ 50 ms at 1,000,000 open receivables on SQLite.
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from bench import common, dataset

QUERIES = 100
NAIVE = """SELECT CASE WHEN due_date >= :d0 THEN 0 WHEN due_date >= :d30 THEN 1 WHEN due_date >= :d60 THEN 2
                       WHEN due_date >= :d90 THEN 3 ELSE 4 END AS bucket, currency,
                  SUM(open_amount), COUNT(*)
           FROM receivables NOT INDEXED WHERE open_amount > 0 GROUP BY bucket, currency"""


async def _measure(url: str, queries: int) -> dict:
    from storage.aging import aging
    from storage.db import Database
    db = Database(url)
    today = dataset.TODAY
    params = {"d0": today, "d30": today - timedelta(days=30), "d60": today - timedelta(days=60),
              "d90": today - timedelta(days=90)}
    bot, naive = [], []
    try:
        async with db.session() as s:                       # warm the page cache and the statement cache
            rep = await aging(s, today, (30, 60, 90), fx_rates={"USD": "7.10"})
            naive_rows = (await s.execute(text(NAIVE), params)).all()
        assert rep.count + 0 == sum(n for *_, n in naive_rows), "aging and the naive scan disagree"
        for _ in range(queries):      # interleaved, so drift (cache, thermal) hits both alike
            async with db.session() as s:
                t = time.perf_counter()
                await aging(s, today, (30, 60, 90), fx_rates={"USD": "7.10"})
                bot.append(time.perf_counter() - t)
            async with db.session() as s:
                t = time.perf_counter()
                (await s.execute(text(NAIVE), params)).all()
                naive.append(time.perf_counter() - t)
    finally:
        await db.close()
    return {"open": rep.count, "bot": bot, "naive": naive}


def run(sizes_open: list[int], queries: int = QUERIES, workdir: Path | None = None) -> common.Result:
    res = common.Result("aging")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    for n_open in sizes_open:
        path = workdir / f"aging-{n_open}.db"
        url = common.fresh_sqlite(path)
        counts = common.bulk_load(path, dataset.Sizes(common.receivables_for_open(n_open)))
        m = asyncio.run(_measure(url, queries))
        p50, p99 = common.percentile(m["bot"], 50) * 1000, common.percentile(m["bot"], 99) * 1000
        n50, n99 = common.percentile(m["naive"], 50) * 1000, common.percentile(m["naive"], 99) * 1000
        res.add(open_receivables=m["open"], rows=counts["receivables"], queries=queries,
                p50_ms=round(p50, 2), p99_ms=round(p99, 2), naive_p50_ms=round(n50, 2), naive_p99_ms=round(n99, 2),
                ratio_p50=round(p50 / n50, 2), target_p50_ms=50, meets=p50 <= 50 if n_open >= 1_000_000 else "n/a")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    res.notes.append("ratio = aging() p50 / naive full-scan p50 on the same DB; target applies at 1M open")
    return res
