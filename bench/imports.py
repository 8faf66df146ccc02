"""Receivables CSV import, rows/s: ``storage.imports.import_file`` (read, validate, plan, write with
audit entries, one transaction) against raw ``sqlite3.executemany`` of the same rows into the same
table of an identical database (csv module + a code→id dict; no checks, no audit).

People (1,051) and customers (20,000) are loaded first by the bulk loader, untimed.
Target: ≥ 100,000 rows/s.
"""
from __future__ import annotations

import asyncio
import csv
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from bench import common, dataset


def _write_csv(path: Path, sizes: dataset.Sizes) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(dataset.RECEIVABLE_HEADER)
        for r in dataset.receivables(sizes):
            w.writerow(dataset.receivable_csv_row(r))


def _bot_import(url: str, csv_path: Path) -> tuple[float, int]:
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
            raise RuntimeError(f"import failed: {report.errors[:3]}")
        return wall, report.created
    return asyncio.run(go())


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
        bot, raw = [], []
        for i in range(max(repeats, baseline_repeats)):
            copy = workdir / f"import-{n}-run.db"
            if i < repeats:
                _fresh_copy(base, copy)
                wall, created = _bot_import(f"sqlite:///{copy}", csv_path)
                assert created == n, (created, n)
                bot.append(n / wall)
            if i < baseline_repeats:
                _fresh_copy(base, copy)
                wall, created = _raw_import(copy, csv_path)
                assert created == n, (created, n)
                raw.append(n / wall)
        b, r = common.median(bot), common.median(raw)
        res.add(rows=n, repeats=f"{repeats}/{baseline_repeats}", bot_rows_per_s=round(b), raw_rows_per_s=round(r),
                ratio=round(b / r, 4), target_rows_per_s=100_000, meets=b >= 100_000)
        for f in workdir.glob(f"import-{n}*"):
            f.unlink(missing_ok=True)
        csv_path.unlink(missing_ok=True)
    res.notes.append("ratio = import_file rows/s ÷ raw sqlite3.executemany rows/s (same CSV, same schema)")
    return res


def _fresh_copy(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copy(src, dst)
