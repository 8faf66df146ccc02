"""Receivables CSV import: rows/s and peak memory of ``storage.imports.import_file`` (read,
validate, plan, write with audit entries), against raw ``sqlite3.executemany`` of the same rows
into the same table of an identical database (csv module + a code→id dict; no checks, no audit).

Each measured import runs in a child process of its own (``python -m bench.imports --child``),
so its peak RSS (``ru_maxrss`` of that process, read by the child itself when the import is
done) is the import's alone: not the parent's generated data set, nor an earlier run. Where the
import reports it, the longest single write transaction is printed too (what a chat message
may wait behind).

People (1,051) and customers (20,000) are loaded first by the bulk loader, untimed.
Targets: ≥ 100,000 rows/s; peak RSS ≤ 500 MB at 1M rows.
"""
from __future__ import annotations

import asyncio
import csv
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common, dataset

RSS_TARGET_MB = 500


def _write_csv(path: Path, sizes: dataset.Sizes) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(dataset.RECEIVABLE_HEADER)
        for r in dataset.receivables(sizes):
            w.writerow(dataset.receivable_csv_row(r))


def _child(url: str, csv_path: str) -> dict:
    """In the child: one import, timed; the process's own peak RSS once it is done."""
    import resource

    from storage.db import Database
    from storage.imports import import_file

    async def go():
        db = Database(url)
        try:
            t = time.perf_counter()
            report = await import_file(db, "receivables", csv_path, now=common.NOW, today=dataset.TODAY)
            wall = time.perf_counter() - t
        finally:
            await db.close()
        if not report.ok:
            raise RuntimeError(f"import failed: {[e.to_dict() for e in report.errors[:3]]}")
        return {"wall": wall, "created": report.created,
                "max_write_s": getattr(report, "max_write_s", None), "chunks": getattr(report, "chunks", None)}
    out = asyncio.run(go())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024    # KiB on Linux
    return out


def _bot_import(url: str, csv_path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.imports", "--child", url, str(csv_path)],
                          capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"import child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _raw_import(db_path: Path, csv_path: Path) -> tuple[float, int]:
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")        # what the bot's connections use
    t = time.perf_counter()
    ids = dict(con.execute("SELECT code, id FROM customers"))
    created = common.NOW.replace(tzinfo=None).isoformat(sep=" ")
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows)

        def values():
            for inv, cust, issue, due, amount, cur, rep, terms in rows:
                cents = int(amount.replace(".", ""))
                yield (inv, ids[cust], rep, issue, due, cents, cents, cur, terms, created)
        con.executemany("INSERT INTO receivables (invoice_no, contract_no, customer_id, rep_id, issue_date, due_date,"
                        " amount, open_amount, currency, terms, status, disputed, created_at)"
                        " VALUES (?,'',?,?,?,?,?,?,?,?,'open',0,?)", values())
    con.commit()
    wall = time.perf_counter() - t
    n = con.execute("SELECT count(*) FROM receivables").fetchone()[0]
    con.close()
    return wall, n


def run(sizes: list[int], repeats: int = 1, baseline_repeats: int = 3, workdir: Path | None = None) -> common.Result:
    res = common.Result("import")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    for n in sizes:
        base = workdir / f"import-{n}-base.db"
        common.fresh_sqlite(base)
        common.bulk_load(base, dataset.Sizes(n), receivables=False)
        csv_path = workdir / f"receivables-{n}.csv"
        _write_csv(csv_path, dataset.Sizes(n))
        # the raw reference at 1M takes minutes a run: once is enough there
        base_n = baseline_repeats if n < 500_000 else 1
        bot, raw = [], []
        for i in range(max(repeats, base_n)):
            copy = workdir / f"import-{n}-run.db"
            if i < repeats:
                _fresh_copy(base, copy)
                got = _bot_import(f"sqlite:///{copy}", csv_path)
                assert got["created"] == n, (got, n)
                bot.append(got)
            if i < base_n:
                _fresh_copy(base, copy)
                wall, created = _raw_import(copy, csv_path)
                assert created == n, (created, n)
                raw.append(n / wall)
        b, r = common.median(n / g["wall"] for g in bot), common.median(raw)
        rss = max(g["peak_rss_mb"] for g in bot)
        row = dict(rows=n, repeats=f"{repeats}/{base_n}", bot_rows_per_s=round(b), raw_rows_per_s=round(r),
                   ratio=round(b / r, 4), peak_rss_mb=round(rss), target_rows_per_s=100_000,
                   meets=b >= 100_000, rss_target_mb=RSS_TARGET_MB, rss_meets=rss <= RSS_TARGET_MB)
        if bot[0].get("max_write_s") is not None:
            row.update(longest_write_s=round(max(g["max_write_s"] for g in bot), 3), write_chunks=bot[0]["chunks"])
        res.add(**row)
        for f in workdir.glob(f"import-{n}*"):
            f.unlink(missing_ok=True)
        csv_path.unlink(missing_ok=True)
    res.notes.append("ratio = import_file rows/s ÷ raw sqlite3.executemany rows/s (same CSV, same schema)")
    res.notes.append("peak_rss_mb = ru_maxrss of the child process that ran the import (interpreter included)")
    return res


def _fresh_copy(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copy(src, dst)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3])))
    else:
        raise SystemExit("usage: python -m bench.imports --child URL CSV (python -m bench import runs it)")
