"""What every benchmark shares: machine info, medians and percentiles, the results file, a
migrated SQLite database, and a bulk loader that puts a generated ledger straight into it.

The bulk loader is set-up, never a measured path: it writes rows with ``sqlite3.executemany``
so a 1M-row ledger loads in seconds, keeping the invariants the bot relies on
(``open_amount = amount − allocations``, status follows the balance, one payment + allocation
per paid invoice dated on or before today).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import sqlite3
import statistics
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench import dataset

RESULTS = Path(__file__).parent / "results"
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)      # 09:00 in Shanghai on dataset.TODAY


def machine_info() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version}


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


@dataclass
class Result:
    name: str
    rows: list[dict] = field(default_factory=list)      # one per measured configuration
    notes: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        today = date.today().isoformat()          # the run's date, not business time
        path = RESULTS / f"{self.name}-{today}.json"
        path.write_text(json.dumps({"benchmark": self.name, "date": today, "machine": machine_info(),
                                    "figures": self.rows, "notes": self.notes}, ensure_ascii=False, indent=2),
                        encoding="utf-8")
        return path

    def print(self) -> None:
        print(f"\n== {self.name} ==")
        if self.rows:
            cols = list(dict.fromkeys(k for r in self.rows for k in r))
            table = [[_fmt(r.get(c, "")) for c in cols] for r in self.rows]
            widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
            print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
            for t in table:
                print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
        for n in self.notes:
            print(f"  note: {n}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def fresh_sqlite(path: Path) -> str:
    """An empty, migrated SQLite database at ``path``; returns its URL."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    from storage.db import Database

    async def go():
        db = Database(f"sqlite:///{path}")
        await db.migrate()
        await db.close()
    asyncio.run(go())
    return f"sqlite:///{path}"


def generated(workdir: Path, n: int, cache: Path | None, prefix: str = "ledger") -> tuple[Path, dict]:
    """The generated database of ``n`` receivables (``bulk_load``): from ``cache`` when it holds
    one made by the same generator and migrations, else generated (and kept there). Callers copy
    it before using it."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for f in [here / "dataset.py", here / "common.py",
              *sorted((here.parent / "storage" / "migrations" / "versions").glob("*.py"))]:
        digest.update(f.read_bytes())
    name = f"{prefix}-{n}-{digest.hexdigest()[:12]}.db"
    if cache is not None and (cache / name).exists() and (cache / (name + ".json")).exists():
        return cache / name, json.loads((cache / (name + ".json")).read_text())
    master = (cache or workdir) / name
    master.parent.mkdir(parents=True, exist_ok=True)
    fresh_sqlite(master)
    counts = bulk_load(master, dataset.Sizes(n))
    if cache is not None:
        (cache / (name + ".json")).write_text(json.dumps(counts))
    return master, counts


def cache_dir(given: Path | None) -> Path | None:
    """``--cache`` or ARBOT_BENCH_CACHE."""
    return given or (Path(os.environ["ARBOT_BENCH_CACHE"]) if os.environ.get("ARBOT_BENCH_CACHE") else None)


def bulk_load(path: Path, sizes: dataset.Sizes, seed: int = 1, *, receivables: bool = True) -> dict:
    """Load people, customers and (optionally) receivables with their payments into a migrated DB."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    people = list(dataset.people_rows(sizes, seed))
    con.executemany("INSERT INTO people (id, name, role, supervisor_id, team, mobile, email, active)"
                    " VALUES (?,?,?,?,?,'','',1)",
                    ((p["id"], p["name"], p["role"], p["supervisor"] or None, p["team"]) for p in people))
    con.executemany("INSERT INTO person_accounts (platform, user_id, person_id) VALUES ('wecom', ?, ?)",
                    ((p["wecom_userid"], p["id"]) for p in people if p["wecom_userid"]))
    con.executemany("INSERT INTO customers (id, code, name, grade, credit_limit, rep_id, region, cross_border,"
                    " status, broken_promises) VALUES (?,?,?,?,?,?,?,0,'active',0)",
                    ((i + 1, c["code"], c["name"], c["grade"], int(c["credit_limit"]) * 100, c["rep"], c["region"])
                     for i, c in enumerate(dataset.customer_rows(sizes, seed))))
    counts = {"people": con.execute("SELECT count(*) FROM people").fetchone()[0], "customers": sizes.customers,
              "receivables": 0, "open": 0}
    if receivables:
        batch_r, batch_p, batch_a = [], [], []
        n_open = 0

        def flush():
            con.executemany("INSERT INTO receivables (id, invoice_no, contract_no, customer_id, rep_id, issue_date,"
                            " due_date, amount, open_amount, currency, terms, status, disputed, created_at)"
                            " VALUES (?,?,'',?,?,?,?,?,?,?,?,?,?,?)", batch_r)
            con.executemany("INSERT INTO payments (id, customer_id, amount, unallocated, paid_on, reference,"
                            " invoice_no, currency, recorded_by, created_at) VALUES (?,?,?,0,?,?,?,?,'bench',?)",
                            batch_p)
            con.executemany("INSERT INTO allocations (id, payment_id, receivable_id, amount, applied_on)"
                            " VALUES (?,?,?,?,?)", batch_a)
            batch_r.clear(), batch_p.clear(), batch_a.clear()

        created = NOW.replace(tzinfo=None).isoformat(sep=" ")
        for r, p, a in ledger_rows(sizes, seed):
            n_open += r[7] > 0
            batch_r.append((*r[:4], r[4].isoformat(), r[5].isoformat(), *r[6:11], int(r[11]), created))
            if p is not None:
                batch_p.append((*p[:3], p[3].isoformat(), *p[4:], created))
                batch_a.append((*a[:4], a[4].isoformat()))
            if len(batch_r) >= 20_000:
                flush()
        flush()
        counts.update(receivables=sizes.receivables, open=n_open)
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return counts


def ledger_rows(sizes: dataset.Sizes, seed: int = 1) -> Iterator[tuple[tuple, tuple | None, tuple | None]]:
    """The generated ledger as rows, whatever the database: for each receivable
    ``(id, invoice_no, customer_id, rep_id, issue_date, due_date, amount_cents, open_cents, currency, terms,
    status, disputed)`` and, when it is (partly) paid, its payment ``(id, customer_id, cents, paid_on, reference,
    invoice_no, currency)`` and allocation ``(id, payment_id, receivable_id, cents, applied_on)`` (dates as
    ``date``; ids from 1, the same for a payment, its allocation and the receivable)."""
    for i, r in enumerate(dataset.receivables(sizes, seed), start=1):
        open_c = r.amount_cents - r.paid_cents
        status = "paid" if open_c == 0 else "partially_paid" if r.paid_cents else "open"
        rec = (i, r.invoice_no, r.customer + 1, dataset.rep_id(r.rep), r.issue, r.due, r.amount_cents, open_c,
               r.currency, f"月结{(r.due - r.issue).days}天", status, i % 97 == 0)
        if r.paid_cents:
            yield rec, (i, r.customer + 1, r.paid_cents, r.paid_on, f"BANK{r.invoice_no}", r.invoice_no,
                        r.currency), (i, i, i, r.paid_cents, r.paid_on)
        else:
            yield rec, None, None


def receivables_for_open(n_open: int) -> int:
    """How many generated receivables give about ``n_open`` open ones (about 82 % stay open)."""
    return min(1_000_000, int(n_open / 0.82) + 1)
