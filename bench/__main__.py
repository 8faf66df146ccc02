"""``python -m bench [names...] [--size N] [--full] [--repeats N] [--pg]``: run benchmarks, print
tables, write ``bench/results/<name>-<date>.json``. ``push --cache DIR`` keeps the generated
database between runs (minutes at 1M); ``push --before CHECKOUT`` times another checkout's push on
the same copies, interleaved, for a before/after ratio in one run.

Default (all ten, about 28 minutes on 2 cores): import 100k rows; /aging at 10k and 100k open;
overdue_push at 100k receivables / 1,000 reps; webhook 2,000 requests × 4 scenarios at 200
concurrent clients; outbox 2,000 messages; replies: the share of fields read right over the
reply corpus (bench/data/replies.txt, a second); jobs: the first run of the ladder, credit,
reminder and statute jobs at 20k receivables with a person writing meanwhile; load: a real
``arbot serve`` restarted at 14:30 on 200k receivables / 1,000 reps, its morning jobs catching up
while reps log follow-ups at 20/s and finance asks /aging every 2 s for 60 s, then SIGTERM
(``--pg``: on PostgreSQL with two instances; ``--with-import ROWS``: the CLI imports ROWS new
receivables beside the traffic); cash: a 10,000-line bank statement against a generated ledger of
2,000 customers, the share of determinable receipts applied, wrong applications and lines/s. ``--full``: import 1M, /aging also at 1M open,
overdue_push at 1M, webhook 5,000 requests, outbox 10,000 messages, jobs at 200k, load at 1M
(expect hours). forecast: the cash-in forecast's backtest (weekly WAPE against "paid on the due
date") on three ledgers with known payment habits (20k invoices) and on the demo company.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

NAMES = ("import", "aging", "push", "webhook", "outbox", "replies", "jobs", "load", "cash", "forecast")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", choices=[[], *NAMES], metavar="name", help=f"any of {', '.join(NAMES)}")
    p.add_argument("--size", type=int, help="rows for import / receivables for push / open receivables for aging")
    p.add_argument("--full", action="store_true", help="the 1M-row sizes (slow)")
    p.add_argument("--repeats", type=int, default=1, help="repeats per figure (medians are reported)")
    p.add_argument("--requests", type=int, help="webhook requests per scenario")
    p.add_argument("--pg", action="store_true", help="load: on PostgreSQL with two bot instances (tests/pg.py's server)")
    p.add_argument("--jobs-wait", type=float, default=300,
                   help="load: seconds to wait after the 60 s of traffic for the catch-up to finish before SIGTERM")
    p.add_argument("--with-import", type=int, default=0, metavar="ROWS",
                   help="load: also import ROWS new receivables with the CLI from 5 s into the traffic")
    p.add_argument("--cache", type=Path, help="push, load: keep the generated databases here between runs "
                   "(also ARBOT_BENCH_CACHE)")
    p.add_argument("--before", type=Path, help="push: another checkout whose push runs interleaved, for a ratio")
    a = p.parse_args(argv)
    names = a.names or list(NAMES)
    work = Path(tempfile.mkdtemp(prefix="arbot-bench-"))
    results = []
    started = time.monotonic()
    try:
        for name in names:
            t = time.monotonic()
            if name == "import":
                from bench import imports
                sizes = [a.size] if a.size else [1_000_000] if a.full else [100_000]
                r = imports.run(sizes, repeats=a.repeats, workdir=work)
            elif name == "aging":
                from bench import aging
                sizes = [a.size] if a.size else [10_000, 100_000, 1_000_000] if a.full else [10_000, 100_000]
                r = aging.run(sizes, workdir=work)
            elif name == "push":
                from bench import push
                sizes = [a.size] if a.size else [1_000_000] if a.full else [100_000]
                r = push.run(sizes, repeats=a.repeats, workdir=work, cache=a.cache, before=a.before)
            elif name == "webhook":
                from bench import webhook
                r = webhook.run(requests=a.requests or (5000 if a.full else 2000), repeats=a.repeats, workdir=work)
            elif name == "jobs":
                from bench import jobs
                r = jobs.run([a.size] if a.size else [200_000] if a.full else [20_000], workdir=work)
            elif name == "replies":
                from bench import replies
                r = replies.run()
            elif name == "cash":
                from bench import cash_matching
                r = cash_matching.run(lines=a.size or 10_000, workdir=work)
            elif name == "forecast":
                from bench import forecast
                r = forecast.run(workdir=work)
            elif name == "load":
                from bench import load
                sizes = [a.size] if a.size else [1_000_000] if a.full else [200_000]
                r = load.run(sizes, pg=a.pg, workdir=work, jobs_wait=a.jobs_wait, import_rows=a.with_import,
                             cache=a.cache)
            else:
                from bench import outbox
                r = outbox.run(n=10_000 if a.full else 2_000, members=50 if a.full else 10, repeats=a.repeats,
                               workdir=work)
            r.notes.append(f"benchmark took {time.monotonic() - t:.0f} s")
            r.print()
            print(f"  saved {r.save()}", flush=True)
            results.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nall done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
