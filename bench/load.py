"""One bot process holds its jobs, its users and its load at once (issue #12): a midday restart.

A real ``arbot --config … serve --at 2026-11-23T14:30`` (the CLI ``make run`` uses, local chat on,
a config file in a temp dir) on a generated ledger of N receivables / 20,000 customers / 1,000
reps (bench/dataset.py, loaded with common.bulk_load). The clock starts at 14:30 on a working
Monday, so every job of the morning (push, reminders, ladder, credit, statute, weekly report)
catches up at start-up. As soon as /healthz answers:

* reps log follow-ups through the local chat at RATE/s (``/followup INV… 已电话联系…  L00042``,
  each on a different rep's open invoice, open loop: latency counted from when it was due),
* finance asks ``/aging`` every 2 s,

for DURATION seconds; then the bench waits (up to ``jobs_wait`` s) for the catch-up to finish, asks
``/aging`` ten more times (the "after" figure), sends SIGTERM and times the exit. After the exit
it reads the database: follow-ups sent vs found, job_runs, inbound events left over.

Figures: follow-ups lost, non-200 answers, failed / stuck jobs, chat p50/p99 while the jobs run,
/aging p50 after them, seconds from SIGTERM to exit. Targets (issue #12): 0 lost, 0 non-200,
0 failed jobs, chat p99 ≤ 1 s during the jobs, exit ≤ 10 s.

``--pg``: the same on PostgreSQL (tests/pg.py starts a throwaway server from the machine's
binaries) with two bot processes on one database, the messages alternating between them, one
of them sending the outbox (``[outbox] send = false`` on the other, docs/deployment-scale.md).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench import common, dataset

ROOT = Path(__file__).resolve().parent.parent
START_AT = f"{dataset.TODAY.isoformat()}T14:30"        # a Monday, after every morning job's time
FINANCE = "FIN01"
TEXT = "已电话联系财务，在走付款流程 {tag}"
STALL_MS = 100        # the bots log every turn of their loop longer than this (bot/loop_watch.py)
TARGETS = {"lost": 0, "non_200": 0, "failed_jobs": 0, "chat_p99_s": 1.0, "exit_s": 10.0}


# -- the served bot ---------------------------------------------------------------------------

def arbot_command() -> list[str]:
    """``arbot`` as ``make run`` starts it (.venv/bin/arbot), or ``python -m bot`` without the script."""
    script = Path(sys.executable).with_name("arbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, url: str, port: int, *, send: bool = True) -> Path:
    path.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n[database]\nurl = "{url}"\n\n'
                    f'[local]\nenabled = true\n\n[outbox]\nsend = {"true" if send else "false"}\n\n'
                    f'[log]\nstall_ms = {STALL_MS}\n', encoding="utf-8")
    return path


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARBOT_")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Served:
    """``arbot --config CFG serve --at AT`` in a child process; its log in a file."""

    def __init__(self, config: Path, port: int, log: Path, at: str = START_AT, preexec=None):
        self.port, self.log_path = port, log
        self._log = log.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*arbot_command(), "--config", str(config), "serve", "--at", at], cwd=ROOT,
                                     env=clean_env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec)
        self.exit_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120) -> float:
        """Seconds until /healthz answers (any status: a busy start is still a start)."""
        import urllib.error
        import urllib.request
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bot exited at start-up: {self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5):
                    return time.monotonic() - self.started
            except urllib.error.HTTPError:
                return time.monotonic() - self.started
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"bot did not answer /healthz within {timeout:.0f} s")

    def terminate(self, limit: float = 60) -> float | None:
        """SIGTERM; seconds until the process exited (None: killed after ``limit``)."""
        if self.proc.poll() is not None:
            self.exit_s = 0.0
            return self.exit_s
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=limit)
            self.exit_s = time.monotonic() - t
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_s = None
        self._log.close()
        return self.exit_s

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")


# -- the ledger --------------------------------------------------------------------------------

def load_sqlite(path: Path, sizes: dataset.Sizes, cache: Path | None = None) -> dict:
    import sqlite3
    master, counts = common.generated(path.parent, sizes.receivables, cache)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if master != path:
        shutil.copyfile(master, path)
    con = sqlite3.connect(path)
    con.execute("INSERT INTO people (id, name, role, team, mobile, email, active) VALUES (?,?,'finance','','','',1)",
                (FINANCE, "财务小周"))
    con.commit()
    con.close()
    return counts


async def load_pg(url: str, sizes: dataset.Sizes) -> dict:
    """The same ledger as bulk_load, into a migrated PostgreSQL database with COPY (set-up, not timed)."""
    import asyncpg

    from storage.db import Database
    db = Database(url)
    await db.migrate()
    await db.close()
    con = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    created = common.NOW
    try:
        async with con.transaction():
            rows = list(dataset.people_rows(sizes))
            people = [(p["id"], p["name"], p["role"], p["supervisor"] or None, p["team"], "", "", True) for p in rows]
            people.append((FINANCE, "财务小周", "finance", None, "", "", "", True))
            await con.copy_records_to_table("people", records=people, columns=[
                "id", "name", "role", "supervisor_id", "team", "mobile", "email", "active"])
            await con.copy_records_to_table("person_accounts", records=[
                ("wecom", p["wecom_userid"], p["id"]) for p in rows if p["wecom_userid"]],
                columns=["platform", "user_id", "person_id"])
            await con.copy_records_to_table("customers", records=[
                (i + 1, c["code"], c["name"], c["grade"], int(c["credit_limit"]) * 100, c["rep"], c["region"], False,
                 "active", 0) for i, c in enumerate(dataset.customer_rows(sizes))], columns=[
                "id", "code", "name", "grade", "credit_limit", "rep_id", "region", "cross_border", "status",
                "broken_promises"])
            recs, pays, allocs, n_open = [], [], [], 0

            async def flush():
                await con.copy_records_to_table("receivables", records=recs, columns=[
                    "id", "invoice_no", "customer_id", "rep_id", "issue_date", "due_date", "amount", "open_amount",
                    "currency", "terms", "status", "disputed", "contract_no", "created_at"])
                await con.copy_records_to_table("payments", records=pays, columns=[
                    "id", "customer_id", "amount", "paid_on", "reference", "invoice_no", "currency", "unallocated",
                    "recorded_by", "created_at", "reversal_reason"])
                await con.copy_records_to_table("allocations", records=allocs, columns=[
                    "id", "payment_id", "receivable_id", "amount", "applied_on"])
                recs.clear(), pays.clear(), allocs.clear()

            # the aging totals' row triggers (migration 0004) update the same few hundred
            # (due date, currency) rows once per invoice: in one transaction that grows with every
            # version of those rows (a 1M load had not finished after 9 minutes). They are off for
            # the load and the totals are summed once after it, as the migration's backfill does
            await con.execute("ALTER TABLE receivables DISABLE TRIGGER USER")
            for r, p, a in common.ledger_rows(sizes):
                n_open += r[7] > 0
                recs.append((*r, "", created))
                if p is not None:
                    pays.append((*p, 0, "bench", created, ""))
                    allocs.append(a)
                if len(recs) >= 20_000:
                    await flush()
            await flush()
            await con.execute("ALTER TABLE receivables ENABLE TRIGGER USER")
            await con.execute("INSERT INTO aging_totals (due_date, currency, open_cents, open_count)"
                              " SELECT due_date, currency, sum(open_amount), count(*) FROM receivables"
                              " WHERE open_amount > 0 GROUP BY due_date, currency")
        for table in ("customers", "receivables", "payments", "allocations"):
            await con.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        await con.execute("ANALYZE")
    finally:
        await con.close()
    return {"people": len(people), "customers": sizes.customers, "receivables": sizes.receivables, "open": n_open}


async def followup_targets(url: str, n: int) -> list[tuple[str, str]]:
    """``n`` (rep, open invoice) pairs, a different pair each, spread over the reps round robin."""
    from sqlalchemy import text

    from storage.db import Database
    db = Database(url)
    try:
        async with db.reader() as s:
            rows = (await s.execute(text(
                "SELECT rep_id, invoice_no FROM receivables WHERE open_amount > 0 AND status != 'written_off'"
                " AND id % 7 = 0 ORDER BY rep_id, id"))).all()
    finally:
        await db.close()
    by_rep: dict[str, list[str]] = {}
    for rep, inv in rows:
        by_rep.setdefault(rep, []).append(inv)
    reps = sorted(by_rep)
    out, k = [], 0
    while len(out) < n:
        for rep in reps:
            if k < len(by_rep[rep]):
                out.append((rep, by_rep[rep][k]))
                if len(out) == n:
                    break
        k += 1
        if k > max(len(v) for v in by_rep.values()):
            raise RuntimeError(f"the ledger has fewer than {n} open invoices to log follow-ups on")
    return out


def catch_up_jobs(at: str = START_AT) -> list[str]:
    """The daily jobs whose fire today is before ``at``: what the start-up catch-up runs."""
    from apscheduler.triggers.cron import CronTrigger

    from bot.config import Config
    from bot.jobs.registry import JOBS
    from bot.jobs.scheduler import last_fire_today
    from bot.services import Services
    cfg = Config()
    services = Services.build(cfg)
    now = datetime.fromisoformat(at).replace(tzinfo=cfg.tz)
    out = []
    for job in JOBS.values():
        if job.per_minute or not job.catch_up or (job.workdays_only and not services.calendar.is_workday(now.date())):
            continue
        if last_fire_today(CronTrigger(timezone=cfg.tz, **job.trigger(cfg)), now) is not None:
            out.append(job.name)
    return out


# -- the load -----------------------------------------------------------------------------------

@dataclass
class Sample:
    kind: str               # followup | aging
    due: float              # seconds after the load started
    latency: float | None   # from due to answer; None: no answer (timeout, connection error)
    status: int | None
    answer: str = ""
    tag: str = ""
    instance: int = 0


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    health: list[tuple[float, int, dict]] = field(default_factory=list)   # (t, status, body)
    jobs_done_at: float | None = None        # seconds after the load started; None: not seen done
    # the CLI import run beside the traffic (--with-import): seconds after the start, exit code, its last lines
    import_started: float | None = None
    import_ended: float | None = None
    import_rc: int | None = None
    import_output: str = ""                  # its stdout (the report) and stderr (its log)
    import_log: str = ""


async def _post(session, url: str, body: dict, timeout: float) -> tuple[int | None, str]:
    import aiohttp
    try:
        async with session.post(f"{url}/local/messages", json=body,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            text = await r.text()
            if r.status == 200:
                text = " / ".join(x["text"] for x in json.loads(text)["replies"])
            return r.status, text
    except (asyncio.TimeoutError, aiohttp.ClientError) as e:
        return None, type(e).__name__


async def drive(urls: list[str], targets: list[tuple[str, str]], *, duration: float, rate: float,
                aging_every: float, jobs: list[str], jobs_wait: float, after: int = 10,
                timeout: float = 60, import_cmd: list[str] | None = None, import_at: float = 5.0) -> Run:
    import aiohttp
    run = Run()
    salt = uuid.uuid4().hex[:6]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    stop_polling = asyncio.Event()

    async def one(kind: str, due: float, i: int, user: str, text: str, tag: str = "") -> None:
        await asyncio.sleep(max(0.0, t0 + due - loop.time()))
        inst = i % len(urls)
        status, answer = await _post(session, urls[inst], {"user": user, "text": text, "id": f"{kind}-{salt}-{i}"},
                                     timeout)
        lat = loop.time() - (t0 + due) if status is not None else None
        run.samples.append(Sample(kind, due, lat, status, answer[:300], tag, inst))

    def done(body: dict) -> bool:
        last = body.get("jobs") or {}
        return all(j in last and last[j]["fire"] == dataset.TODAY.isoformat() and last[j]["status"] != "running"
                   for j in jobs)

    async def poll_health() -> None:
        while not stop_polling.is_set():
            t = loop.time() - t0
            try:
                async with session.get(f"{urls[0]}/healthz", timeout=aiohttp.ClientTimeout(total=30)) as r:
                    body = await r.json()
                    run.health.append((t, r.status, body))
                    if run.jobs_done_at is None and done(body):
                        run.jobs_done_at = t
            except (asyncio.TimeoutError, aiohttp.ClientError, ValueError):
                run.health.append((t, 0, {}))
            try:
                await asyncio.wait_for(stop_polling.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def run_import() -> None:
        # the real CLI, as finance runs it from a shell while the bot serves: a process of its own
        await asyncio.sleep(import_at)
        run.import_started = loop.time() - t0
        proc = await asyncio.create_subprocess_exec(*import_cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=clean_env(), cwd=ROOT)
        out, err = await proc.communicate()
        run.import_ended, run.import_rc = loop.time() - t0, proc.returncode
        run.import_output, run.import_log = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    conn = aiohttp.TCPConnector(limit=500)
    async with aiohttp.ClientSession(connector=conn) as session:
        poller = asyncio.create_task(poll_health())
        tasks = [asyncio.create_task(run_import())] if import_cmd else []
        n = int(duration * rate)
        for i in range(n):
            rep, inv = targets[i]
            tag = f"L{salt}{i:05d}"
            tasks.append(asyncio.create_task(one("followup", i / rate, i, rep, f"/followup {inv} {TEXT.format(tag=tag)}",
                                                 tag)))
        for k in range(int(duration / aging_every)):
            tasks.append(asyncio.create_task(one("aging", k * aging_every, k, FINANCE, "/aging")))
        await asyncio.gather(*tasks)
        # the catch-up may still run: wait for it (bounded), then /aging on a quiet bot
        deadline = loop.time() + jobs_wait
        while run.jobs_done_at is None and loop.time() < deadline:
            await asyncio.sleep(0.5)
        if run.jobs_done_at is not None:
            base = loop.time() - t0
            await asyncio.gather(*(one("aging-after", base + k * 2, k, FINANCE, "/aging") for k in range(after)))
        stop_polling.set()
        await poller
    return run


# -- what the database says afterwards -------------------------------------------------------------

async def read_outcome(url: str, tags: list[str]) -> dict:
    from sqlalchemy import text

    from storage.db import Database
    db = Database(url)
    try:
        async with db.reader() as s:
            found = {}
            for (t,) in (await s.execute(text("SELECT text FROM followups WHERE text LIKE :p"),
                                         {"p": "%" + TEXT.format(tag="L") + "%"})).all():
                tag = t.rsplit(" ", 1)[-1]
                found[tag] = found.get(tag, 0) + 1
            runs = [dict(r._mapping) for r in (await s.execute(text(
                "SELECT job, fire_key, status, started_at, finished_at, summary FROM job_runs ORDER BY id"))).all()]
            events = dict((await s.execute(text(
                "SELECT status, count(*) FROM inbound_events GROUP BY status"))).all())
    finally:
        await db.close()
    for r in runs:
        for k in ("started_at", "finished_at"):
            v = r[k]
            if isinstance(v, str):
                v = datetime.fromisoformat(v)
            r[k] = v
    return {"found": found, "runs": runs, "events": events}


def _seconds(r: dict) -> float | None:
    if r["started_at"] is None or r["finished_at"] is None:
        return None
    return round((r["finished_at"] - r["started_at"]).total_seconds(), 1)


def _ms(xs: list[float], p: float) -> float | None:
    return round(common.percentile(xs, p) * 1000, 1) if xs else None


def summarize(run: Run, outcome: dict, exits: list[float | None], *, size: int, backend: str, instances: int,
              duration: float, rate: float, ready_s: float, jobs: list[str]) -> tuple[dict, list[str]]:
    sent = [s for s in run.samples if s.kind == "followup"]
    tags = [s.tag for s in sent]
    found = outcome["found"]
    lost = [t for t in tags if t not in found]
    twice = [t for t in tags if found.get(t, 0) > 1]
    non_200 = [s for s in run.samples if s.status != 200]
    not_recorded = [s for s in sent if s.status == 200 and "已记录" not in s.answer]
    done_at = run.jobs_done_at if run.jobs_done_at is not None else float("inf")
    chat_during = [s.latency for s in run.samples if s.kind in ("followup", "aging") and s.latency is not None
                   and s.due < done_at]
    fu_during = [s.latency for s in sent if s.latency is not None and s.due < done_at]
    aging_during = [s.latency for s in run.samples if s.kind == "aging" and s.latency is not None and s.due < done_at]
    aging_after = [s.latency for s in run.samples if s.kind == "aging-after" and s.latency is not None]
    today = [r for r in outcome["runs"] if r["fire_key"] == dataset.TODAY.isoformat()]
    failed = [r for r in today if r["status"] == "failed"]
    stuck = [r for r in outcome["runs"] if r["status"] == "running"]
    stopped = [r for r in today if r["status"] == "stopped"]
    per_job = {r["job"]: (r["status"], _seconds(r)) for r in today}
    # stuck as /healthz saw it: a job running at the last poll before SIGTERM
    last_health = run.health[-1][2] if run.health else {}
    running_at_end = sorted(j for j, v in (last_health.get("jobs") or {}).items() if v.get("status") == "running")
    exit_s = max((e for e in exits if e is not None), default=None) if all(e is not None for e in exits) else None
    row = {
        "backend": backend, "instances": instances, "receivables": size, "reps": 1000,
        "followups_sent": len(sent), "followups_lost": len(lost),
        # stored as events but not handled when the process stopped: the next start handles them
        "events_unhandled_at_exit": sum(outcome["events"].get(k, 0) for k in ("received", "retry")),
        "followups_twice": len(twice),
        "non_200": len(non_200), "answers_not_recorded": len(not_recorded),
        "jobs_failed": len(failed), "jobs_stuck": len(stuck), "jobs_stopped_at_sigterm": len(stopped),
        "catch_up_done_s": round(run.jobs_done_at, 1) if run.jobs_done_at is not None else None,
        "chat_during_jobs_n": len(chat_during),
        "chat_p50_ms": _ms(chat_during, 50), "chat_p99_ms": _ms(chat_during, 99),
        "followup_p99_ms": _ms(fu_during, 99), "aging_during_p50_ms": _ms(aging_during, 50),
        "aging_after_p50_ms": _ms(aging_after, 50),
        "exit_s": round(exit_s, 2) if exit_s is not None else None,
        "ready_s": round(ready_s, 1),
    }
    row["meets"] = (row["followups_lost"] == 0 and row["non_200"] == 0 and row["jobs_failed"] == 0
                    and row["chat_p99_ms"] is not None and row["chat_p99_ms"] <= TARGETS["chat_p99_s"] * 1000
                    and row["exit_s"] is not None and row["exit_s"] <= TARGETS["exit_s"])
    notes = ["followups_lost: sent and not in the followups table after the exit; events_unhandled_at_exit: chat events "
             "stored and not yet handled when it stopped (handled at the next start, the person got no "
             "answer in time); non_200 counts answers over 60 s as well",
             f"{backend} ×{instances}, {size:,} receivables: {len(sent)} follow-ups at {rate:g}/s and /aging every "
             f"2 s for {duration:g} s from the moment /healthz answered ({ready_s:.1f} s after the start); "
             f"the clock started at {START_AT}",
             "catch-up jobs (today's fires, seconds from job_runs): " + ", ".join(
                 f"{j} {per_job[j][0]} {per_job[j][1]} s" if j in per_job else f"{j} not started" for j in jobs)]
    if run.jobs_done_at is None:
        notes.append("the catch-up did not finish before SIGTERM: every chat figure is 'during the jobs', there is "
                     f"no /aging-after figure; running on /healthz at the end: {', '.join(running_at_end) or '-'}")
    if non_200:
        kinds: dict[str, int] = {}
        for s in non_200:
            k = f"{s.kind} {s.status if s.status is not None else s.answer}"
            kinds[k] = kinds.get(k, 0) + 1
        notes.append("non-200 answers: " + ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items())))
    if not_recorded:
        notes.append(f"answered 200 without 已记录 ({len(not_recorded)}), e.g. {not_recorded[0].answer[:80]!r}")
    if lost:
        notes.append(f"lost follow-ups, e.g. {lost[:5]}")
    if failed:
        notes.append("failed jobs: " + ", ".join(f"{r['job']} ({r['summary'][:60]})" for r in failed))
    if run.import_started is not None:
        end = run.import_ended if run.import_ended is not None else float("inf")
        during = [s.latency for s in run.samples if s.kind in ("followup", "aging") and s.latency is not None
                  and run.import_started <= s.due < end]
        row.update(import_rc=run.import_rc, import_s=round(end - run.import_started, 1) if run.import_ended else None,
                   chat_during_import_n=len(during), chat_during_import_p50_ms=_ms(during, 50),
                   chat_during_import_p99_ms=_ms(during, 99))
        row["meets"] = row["meets"] and run.import_rc == 0
        notes.append(f"import beside the traffic: exit {run.import_rc} after {row['import_s']} s; its last lines: "
                     + " | ".join((run.import_output + run.import_log).strip().splitlines()[-3:])[-600:])
    notes.append(f"inbound events after exit: {outcome['events']}; exit seconds per instance: {exits}")
    return row, notes


STALL = re.compile(r"event loop held (\d+) ms at (.+?) \[(.*?)\] \(\d+ of \d+ samples; gc (\d+) ms\)")


HOLD = re.compile(r"write gate held (\d+) ms by ([\w-]+)")


def stalls(logs: list[str], top: int = 8) -> tuple[dict, list[str]]:
    """The bots' loop stalls (bot/loop_watch.py) over the whole run: how many, how long, and the
    code that held the loop longest in total."""
    held: list[int] = []
    by_place: dict[str, list[int]] = {}
    collector = 0
    for lg in logs:
        for m in STALL.finditer(lg):
            ms, place, under, gc_ms = int(m[1]), m[2], m[3], int(m[4])
            held.append(ms)
            collector += gc_ms
            by_place.setdefault(f"{place} [{under}]", []).append(ms)
    ranked = sorted(by_place.items(), key=lambda kv: -sum(kv[1]))[:top]
    summary = {"count": len(held), "over_1s": sum(1 for x in held if x >= 1000), "total_ms": sum(held),
               "longest_ms": max(held, default=0), "gc_ms": collector,
               "top": [{"where": k, "count": len(v), "total_ms": sum(v), "longest_ms": max(v)} for k, v in ranked]}
    notes = [f"loop stalls over {STALL_MS} ms: {len(held)} ({summary['over_1s']} over 1 s), "
             f"{sum(held):,} ms in all, longest {summary['longest_ms']:,} ms, of it the cyclic collector {collector:,} ms"]
    notes += [f"  {sum(v):>7,} ms in {len(v):>4} stall(s), longest {max(v):>5,} ms: {k}" for k, v in ranked]
    holds: dict[str, list[int]] = {}
    for lg in logs:
        for m in HOLD.finditer(lg):
            holds.setdefault(m[2], []).append(int(m[1]))
    every = [x for v in holds.values() for x in v]
    summary["gate_holds"] = len(every)
    summary["gate_hold_longest_ms"] = max(every, default=0)
    notes.append(f"write gate held over {STALL_MS} ms: {len(every)} time(s), longest {max(every, default=0):,} ms"
                 + "".join(f"; {who} {len(v)}× (longest {max(v):,} ms, {sum(v):,} ms in all)"
                           for who, v in sorted(holds.items(), key=lambda kv: -sum(kv[1]))))
    return summary, notes


def write_import_csv(path: Path, rows: int, seed: int = 5) -> Path:
    """``rows`` new invoices (numbers IMP…, not in the ledger) of the benchmark's customers and reps."""
    import csv
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(dataset.RECEIVABLE_HEADER)
        for r in dataset.receivables(dataset.Sizes(receivables=rows), seed=seed):
            w.writerow(dataset.receivable_csv_row(dataclasses.replace(r, invoice_no="IMP" + r.invoice_no[3:])))
    return path


# -- the scenario ------------------------------------------------------------------------------------

def scenario(size: int, *, pg: bool, workdir: Path, duration: float = 60, rate: float = 20,
             aging_every: float = 2, jobs_wait: float = 300, import_rows: int = 0,
             cache: Path | None = None, log=print) -> tuple[dict, list[str]]:
    sizes = dataset.Sizes(receivables=size)
    jobs = catch_up_jobs()
    server = None
    bots: list[Served] = []
    try:
        t = time.monotonic()
        if pg:
            from tests.conftest import fresh_pg_database
            from tests.pg import PostgresServer
            server = PostgresServer()
            admin = server.start()
            url = asyncio.run(fresh_pg_database(admin))
            counts = asyncio.run(load_pg(url, sizes))
        else:
            path = workdir / f"load-{size}.db"
            url = f"sqlite:///{path}"
            counts = load_sqlite(path, sizes, common.cache_dir(cache))
        log(f"  load: {counts['receivables']:,} receivables ({counts['open']:,} open) loaded in "
            f"{time.monotonic() - t:.0f} s")
        targets = asyncio.run(followup_targets(url, int(duration * rate)))
        instances = 2 if pg else 1
        for k in range(instances):
            port = free_port()
            cfg = write_config(workdir / f"load-{k}.toml", url, port, send=k == 0)
            bots.append(Served(cfg, port, workdir / f"load-{k}.log"))
        import_cmd = None
        if import_rows:
            csv_path = write_import_csv(workdir / f"load-import-{import_rows}.csv", import_rows)
            import_cmd = [*arbot_command(), "--config", str(workdir / "load-0.toml"), "import", "receivables",
                          str(csv_path), "--format", "json"]
        ready_s = max(b.wait_ready() for b in bots)
        log(f"  load: {instances} bot(s) answering after {ready_s:.1f} s; driving for {duration:g} s"
            + (f", importing {import_rows:,} receivables from 5 s" if import_rows else ""))
        run = asyncio.run(drive([b.url for b in bots], targets, duration=duration, rate=rate,
                                aging_every=aging_every, jobs=jobs, jobs_wait=jobs_wait, import_cmd=import_cmd))
        exits = [b.terminate() for b in bots]
        logs = [b.log() for b in bots]
        outcome = asyncio.run(read_outcome(url, [s.tag for s in run.samples if s.tag]))
        row, notes = summarize(run, outcome, exits, size=size, backend="postgresql" if pg else "sqlite",
                               instances=instances, duration=duration, rate=rate, ready_s=ready_s, jobs=jobs)
        locked = sum(lg.count("database is locked") for lg in logs)
        tracebacks = sum(lg.count("Traceback") for lg in logs)
        notes.append(f"log lines: 'database is locked' ×{locked}, tracebacks ×{tracebacks}")
        row["log_locked"] = locked
        held, stall_notes = stalls(logs)
        row.update(stalls=held["count"], stalls_over_1s=held["over_1s"], stall_max_ms=held["longest_ms"],
                   gate_holds=held["gate_holds"], gate_hold_max_ms=held["gate_hold_longest_ms"])
        notes.extend(stall_notes)
        return row, notes
    finally:
        for b in bots:
            b.kill()
        if server is not None:
            server.stop()


def run(sizes: list[int], *, pg: bool = False, workdir: Path, duration: float = 60, rate: float = 20,
        jobs_wait: float = 300, import_rows: int = 0, cache: Path | None = None) -> common.Result:
    res = common.Result(("load-pg" if pg else "load") + ("-import" if import_rows else ""))
    if pg:
        from tests.pg import PostgresServer
        if not PostgresServer().available:
            res.notes.append("NO POSTGRESQL BINARIES (initdb/pg_ctl) ON THIS MACHINE: the PostgreSQL part of the "
                             "load benchmark was skipped")
            print(f"  load: {res.notes[-1]}", flush=True)
            return res
    for n in sizes:
        row, notes = scenario(n, pg=pg, workdir=workdir, duration=duration, rate=rate, jobs_wait=jobs_wait,
                              import_rows=import_rows, cache=cache, log=lambda m: print(m, flush=True))
        res.add(**row)
        res.notes.extend(notes)
        for f in workdir.glob("load-*"):
            f.unlink(missing_ok=True)
    res.notes.append(f"targets: {TARGETS}; machine load average at the end {os.getloadavg()}")
    return res
