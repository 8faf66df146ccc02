"""/aging latency: p50/p99 of ``storage.aging.aging`` over 100 queries at N open receivables,
against a naive full-scan ``SELECT CASE … GROUP BY`` on the same database and connection pool.

Target: p50 ≤ 50 ms at 1,000,000 open receivables on SQLite.

"Week ago" (what /aging also asks: the figures as of today − 7): p50/p99 of ``aging(as_of=today −
7)`` over ``WEEK_QUERIES`` queries, against the full recomputation from allocations and write-offs
(the path every past date took before, forced with ``past="recomputed"``) every
``RECOMPUTE_EVERY``-th query, interleaved. The generated ledger's week after today − 7 holds the
payments dated in it (payments that would fall after today are dated today, so it is several
days' worth) and the invoices issued in it; both counts are printed.
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
WEEK_QUERIES = 30
RECOMPUTE_EVERY = 6            # the recomputation takes seconds at 1M: 5 of them per 30 week-ago queries
NAIVE = """SELECT CASE WHEN due_date >= :d0 THEN 0 WHEN due_date >= :d30 THEN 1 WHEN due_date >= :d60 THEN 2
                       WHEN due_date >= :d90 THEN 3 ELSE 4 END AS bucket, currency,
                  SUM(open_amount), COUNT(*)
           FROM receivables NOT INDEXED WHERE open_amount > 0 GROUP BY bucket, currency"""


async def _measure(url: str, queries: int) -> dict:
    from storage import aging as aging_mod
    from storage.aging import aging
    from storage.db import Database
    from storage.scope import Scope
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
        week = today - timedelta(days=7)
        kw = dict(scope=Scope(), by=None, fx_rates={"USD": "7.10"}, base_currency="CNY")
        async with db.session() as s:
            before = aging_mod.PATHS.copy()
            fast = await aging_mod.aging(s, week, (30, 60, 90), fx_rates={"USD": "7.10"})
            path = ", ".join(sorted(aging_mod.PATHS - before))          # which path aging() took
            full = await aging_mod._aging(s, week, (30, 60, 90), by_day=True, past="recomputed", **kw)
            _settled, touched, size = await aging_mod._history_after(s, week)
            later = (await s.execute(text("SELECT (SELECT count(*) FROM allocations WHERE applied_on > :w),"
                                          " (SELECT count(*) FROM receivables WHERE issue_date > :w)"), {"w": week})).one()
        assert fast == full, "week-ago aging and the full recomputation disagree"
        week_bot, week_full = [], []
        for i in range(WEEK_QUERIES):
            async with db.session() as s:
                t = time.perf_counter()
                await aging_mod.aging(s, week, (30, 60, 90), fx_rates={"USD": "7.10"})
                week_bot.append(time.perf_counter() - t)
            if i % RECOMPUTE_EVERY == 0:
                async with db.session() as s:
                    t = time.perf_counter()
                    await aging_mod._aging(s, week, (30, 60, 90), by_day=True, past="recomputed", **kw)
                    week_full.append(time.perf_counter() - t)
    finally:
        await db.close()
    return {"open": rep.count, "bot": bot, "naive": naive, "week_bot": week_bot, "week_full": week_full,
            "week_path": path, "week_touched_bound": touched, "week_allocations": later[0], "week_issued": later[1]}


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
        res.add(measure="now", open_receivables=m["open"], rows=counts["receivables"], queries=queries,
                p50_ms=round(p50, 2), p99_ms=round(p99, 2), naive_p50_ms=round(n50, 2), naive_p99_ms=round(n99, 2),
                ratio_p50=round(p50 / n50, 2), target_p50_ms=50, meets=p50 <= 50 if n_open >= 1_000_000 else "n/a")
        w50, w99 = common.percentile(m["week_bot"], 50) * 1000, common.percentile(m["week_bot"], 99) * 1000
        f50 = common.percentile(m["week_full"], 50) * 1000
        res.add(measure="week ago", open_receivables=m["open"], rows=counts["receivables"],
                queries=len(m["week_bot"]), path=m["week_path"], allocations_after=m["week_allocations"],
                issued_after=m["week_issued"], touched_bound=m["week_touched_bound"],
                p50_ms=round(w50, 2), p99_ms=round(w99, 2), recompute_queries=len(m["week_full"]),
                recompute_p50_ms=round(f50, 2), ratio_p50=round(w50 / f50, 3))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    res.notes.append("ratio = aging() p50 / naive full-scan p50 on the same DB; target applies at 1M open")
    res.notes.append("week ago: aging(as_of=today-7) p50/p99 against the full recomputation (the old past-date "
                     "path) in the same run; ratio = p50 / recompute p50")
    return res
