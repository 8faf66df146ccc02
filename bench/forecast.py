"""The cash-in forecast's walk-forward backtest (domain/cash_forecast.py): weekly WAPE of the
forecast and of the naive one ("every invoice paid on its due date"), 12 weeks ahead from 12
origins four weeks apart.

Ledgers: ``bench/habits.py``'s, whose customers keep known payment habits (three seeds), and the
demo company (storage/demo.py, loaded into a fresh SQLite file and read back through
storage/forecast.py, as ``arbot report forecast --backtest`` does).
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

from bench import common, habits
from domain import cash_forecast as cf

TODAY = date(2026, 11, 23)


def _habits_row(customers: int, invoices: int, seed: int) -> dict:
    t = time.perf_counter()
    history, grades, _ = habits.ledger(customers, invoices, TODAY, seed=seed)
    origins = cf.origins_for(min(h.issue for h in history), TODAY, 12)
    bt = cf.backtest(history, grades, origins, 12)
    return dict(ledger=f"habits seed {seed}", customers=customers, invoices=invoices, origins=len(origins),
                wape=round(bt.wape, 3), naive_wape=round(bt.naive_wape, 3),
                ratio=round(bt.wape / bt.naive_wape, 2), seconds=round(time.perf_counter() - t, 1))


async def _demo_row(workdir: Path) -> dict:
    from storage import demo
    from storage import forecast as fc
    from storage.db import Database
    from storage.scope import Scope
    db = Database(f"sqlite:///{workdir}/demo.db")
    await db.migrate()
    now = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
    async with db.session() as s, s.begin():
        await demo.load_demo(s, today=TODAY, now=now)
    t = time.perf_counter()
    async with db.session() as s:
        bt = await fc.backtest(s, TODAY, 12, Scope.everything(), {"USD": "7.10"}, "CNY")
        invoices = len((await fc.ph.invoice_histories(s, Scope.everything(), {"USD": "7.10"}, "CNY"))[0])
    await db.close()
    return dict(ledger="demo company (seed 7)", customers="-", invoices=invoices, origins=len(bt.origins),
                wape=round(bt.wape, 3), naive_wape=round(bt.naive_wape, 3), ratio=round(bt.wape / bt.naive_wape, 2),
                seconds=round(time.perf_counter() - t, 1))


def run(workdir: Path | None = None) -> common.Result:
    res = common.Result("forecast_backtest")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    for seed in (1, 2, 3):
        res.add(**_habits_row(1_000, 20_000, seed))
    res.add(**asyncio.run(_demo_row(workdir)))
    res.notes.append("WAPE = Σ|forecast − actual| / Σ actual over every week of every origin; naive = paid on the due "
                     "date, what is already overdue in the first week; ratio = wape / naive_wape")
    res.notes.append("the forecast covers the invoices open at each origin (not invoices issued later); promises are "
                     "not replayed (their history is not kept as it stood)")
    return res
