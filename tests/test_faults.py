"""Faults: the bot killed with SIGKILL in the middle of a push or an outbox drain, the database
locked while the sender drains, and fuzzed input to every parser that reads what people send.

Fast versions run in the normal suite (about a minute); ``ARBOT_SOAK=1`` runs the long ones
(more kill trials, each a fresh ``python -m bot jobs run`` + drain-script process pair; many
more fuzz examples).

What "no message lost, none duplicated" means at the platform: a kill between WeCom's answer
and the row being marked sent re-sends that row after the restart (at-least-once delivery).
The bot sends every app message with ``enable_duplicate_check = 1`` (30 min) so WeCom itself
drops that repeat; the fake does not implement the check, so the test counts such repeats
separately, asserts each carried the duplicate check, and asserts nothing else ever repeats.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.channels.wecom import WeComChannel        # imported here so forked workers start at once
from bot.clock import FixedClock
from bot.jobs.scheduler import run_job
from bot.outbox import CLAIM_SECONDS, Sender
from bot.services import Services
from storage.db import Database
from storage.models import OutboxMessage, Push, PushItem, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.multiproc import AES_KEY, ROOT, ThreadedFakeWeCom, env

SOAK = os.environ.get("ARBOT_SOAK") == "1"
KILL_TRIALS = 60 if SOAK else 20
FUZZ = 2000 if SOAK else 150
PUSH_AT = "2026-11-23T09:00:00+08:00"
EXTRA_REPS = 6


# ---- a small ledger, built once ----------------------------------------------------------------
async def _build(url: str) -> None:
    db = Database(url)
    await db.migrate()
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        await ledger_fixture.add_reps(
            s, count=EXTRA_REPS, rep_id=lambda i: f"frep{i}", customer_code=lambda i: f"FC{i}",
            customer_name=lambda i: f"故障测试客户{i}有限公司", invoice_no=lambda i, k: f"F{i}-{k:02d}",
            invoices=12, step_days=7, unit=Decimal("1234.56"), credit_limit=Decimal("1"))
    await db.close()


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "template.db"
    asyncio.run(_build(f"sqlite:///{path}"))
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path


@pytest.fixture(scope="module")
def fake():
    f = ThreadedFakeWeCom(apps={1000002: "fake-app-secret"}, member_limit=100_000)
    yield f
    f.close()


# ---- the worker that gets killed -----------------------------------------------------------------
def _config(db_url: str, fake_url: str, corp_id: str):
    from bot.config import Config, DatabaseConfig, OutboxConfig, WeComConfig
    return Config(database=DatabaseConfig(url=db_url),
                  wecom=WeComConfig(enabled=True, corp_id=corp_id, agent_id="1000002", secret="fake-app-secret",
                                    token="QDG6eK", encoding_aes_key=AES_KEY, api_base=fake_url),
                  outbox=OutboxConfig(member_per_minute=100_000, backoff_base_seconds=0.05, concurrency=4),
                  collection=__import__("bot.config", fromlist=["CollectionConfig"]).CollectionConfig(
                      max_message_bytes=600))


class _ShiftedClock:
    """Real time moved forward: a restarted process that comes back after a dead sender's claims
    expired (they last CLAIM_SECONDS) and after the job's --at time."""

    def __init__(self, shift: timedelta):
        from zoneinfo import ZoneInfo
        self.shift, self.tz = shift, ZoneInfo("Asia/Shanghai")

    def now(self):
        return (datetime.now(timezone.utc) + self.shift).astimezone(self.tz)

    def today(self):
        return self.now().date()


def _shift(extra_s: float) -> timedelta:
    behind = datetime.fromisoformat(PUSH_AT) - datetime.now(timezone.utc)
    return max(behind, timedelta(0)) + timedelta(seconds=extra_s)


async def _push(cfg) -> None:
    when = datetime.fromisoformat(PUSH_AT)
    services = Services.build(cfg, clock=FixedClock(when, cfg.company.timezone))
    try:
        await run_job(services, "overdue_push", when, claim_fire=False)     # as `arbot jobs run` does
    finally:
        await services.db.close()


async def _drain(cfg, shift_s: float, limit_s: float = 60) -> None:
    import aiohttp
    db = Database(cfg.database.url)
    channel = WeComChannel(cfg.wecom)
    try:
        async with aiohttp.ClientSession() as session:
            channel.connect(session)
            sender = Sender(db, {"wecom": channel}, _ShiftedClock(_shift(shift_s)), cfg.outbox)
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                if await sender.drain(batch=5) == 0:
                    async with db.session() as s:
                        left = (await s.execute(select(func.count()).select_from(OutboxMessage)
                                                .where(OutboxMessage.status == "pending"))).scalar_one()
                    if left == 0:
                        return
                    await asyncio.sleep(0.02)
    finally:
        await db.close()


def _forked_worker(db_url: str, fake_url: str, corp_id: str, shift_s: float) -> None:
    cfg = _config(db_url, fake_url, corp_id)

    async def go():
        await _push(cfg)
        await _drain(cfg, shift_s)
    try:
        asyncio.run(go())
    except BaseException:
        import traceback
        Path(db_url[len("sqlite:///"):] + ".err").write_text(traceback.format_exc())
        raise


DRAIN_SCRIPT = """
import asyncio, sys
from tests.test_faults import _config, _drain
asyncio.run(_drain(_config(sys.argv[1], sys.argv[2], sys.argv[3]), float(sys.argv[4])))
"""


def _config_file(path: Path, db_url: str, fake_url: str, corp_id: str) -> Path:
    path.write_text(f'[database]\nurl = "{db_url}"\n[collection]\nmax_message_bytes = 600\n'
                    f'[wecom]\nenabled = true\ncorp_id = "{corp_id}"\nagent_id = "1000002"\nsecret = "fake-app-secret"\n'
                    f'token = "QDG6eK"\nencoding_aes_key = "{AES_KEY}"\napi_base = "{fake_url}"\n', encoding="utf-8")
    return path


class _Run:
    """One worker run (forked, or exec'd CLI + drain script in soak mode) that can be SIGKILLed."""

    def __init__(self, db: Path, fake, shift_s: float, exec_mode: bool, tmp: Path):
        url, self.db = f"sqlite:///{db}", db
        if exec_mode:
            import subprocess
            cfg = _config_file(tmp / "bot.toml", url, fake.fake.url, fake.fake.corp_id)
            self.steps = [[sys.executable, "-m", "bot", "--config", str(cfg), "jobs", "run", "overdue_push",
                           "--at", PUSH_AT[:16]],
                          [sys.executable, "-c", DRAIN_SCRIPT, url, fake.fake.url, fake.fake.corp_id, str(shift_s)]]
            self._popen = lambda c: subprocess.Popen(c, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.DEVNULL)
        else:
            ctx = multiprocessing.get_context("fork")
            self.steps = [ctx.Process(target=_forked_worker, args=(url, fake.fake.url, fake.fake.corp_id, shift_s))]
        self.exec_mode = exec_mode

    def run(self, kill_after: float | None) -> bool:
        """Run every step; SIGKILL whichever is running once ``kill_after`` s have passed. True if killed."""
        start = time.monotonic()
        for step in self.steps:
            if self.exec_mode:
                proc = self._popen(step)
                pid, alive = proc.pid, lambda: proc.poll() is None
            else:
                step.start()
                pid, alive = step.pid, step.is_alive
            while alive():
                if kill_after is not None and time.monotonic() - start >= kill_after:
                    os.kill(pid, signal.SIGKILL)
                    (proc.wait(10) if self.exec_mode else step.join(10))
                    return True
                if time.monotonic() - start > 120:
                    os.kill(pid, signal.SIGKILL)
                    raise AssertionError("worker ran for over 120 s")
                time.sleep(0.001)
            if not self.exec_mode:
                step.join(5)
                err = Path(str(self.db) + ".err")
                assert step.exitcode == 0, f"worker failed ({step.exitcode}): {err.read_text() if err.exists() else ''}"
        return False


def _fresh(template: Path, dst: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copy(template, dst)
    return dst


def _deliveries(fake, since: int) -> list[dict]:
    return fake.call(lambda f: [r.payload for r in f.received[since:]])


async def _check_ledger(url: str) -> dict:
    from storage import ledger
    db = Database(url)
    try:
        async with db.session() as s:
            rows = list((await s.execute(select(OutboxMessage))).scalars())
            pushes = (await s.execute(select(Push.rep_id, func.count()).group_by(Push.rep_id))).all()
            items = (await s.execute(select(PushItem.push_id, PushItem.receivable_id, func.count())
                                     .group_by(PushItem.push_id, PushItem.receivable_id))).all()
            ids = list((await s.execute(select(Receivable.id).order_by(Receivable.id))).scalars())
            rng = random.Random(len(ids))
            bad = []
            for rid in rng.sample(ids, min(20, len(ids))):
                r = await s.get(Receivable, rid)
                if await ledger.balance_check(s, rid) != r.open_amount:
                    bad.append(r.invoice_no)
    finally:
        await db.close()
    return {"rows": rows, "pushes": dict(pushes), "items": items, "unbalanced": bad}


def _trial(template: Path, tmp: Path, fake, kill_after: float | None, exec_mode: bool) -> dict:
    db = _fresh(template, tmp / "trial.db")
    url = f"sqlite:///{db}"
    since = fake.call(lambda f: len(f.received))
    fake.call(lambda f: f.forget_contents())      # each trial replays the same morning on this fake
    t = time.monotonic()
    killed = _Run(db, fake, 0, exec_mode, tmp).run(kill_after)
    ran = time.monotonic() - t
    if killed:        # restart after the dead process's claims expired, and finish
        assert not _Run(db, fake, CLAIM_SECONDS + 1, exec_mode, tmp).run(None)
    state = asyncio.run(_check_ledger(url))
    payloads = _deliveries(fake, since)
    return {"killed": killed, **state, "payloads": payloads, "ran": ran}


def _verify(result: dict, expected_reps: set[str]) -> int:
    """Asserts nothing lost, nothing duplicated but what WeCom's duplicate check drops; returns those."""
    rows = result["rows"]
    assert rows and all(r.status == "sent" for r in rows), [(r.idem_key, r.status, r.last_error) for r in rows
                                                             if r.status != "sent"]
    assert set(result["pushes"]) == expected_reps and set(result["pushes"].values()) == {1}
    assert all(n == 1 for *_, n in result["items"])
    assert result["unbalanced"] == []
    seen = Counter((p["touser"], p[p["msgtype"]]["content"]) for p in result["payloads"])
    for r in rows:
        assert seen[(r.target, r.text)] >= 1, f"lost: {r.idem_key}"
    assert len(seen) == len(rows)                       # nothing the outbox does not know about
    repeats = 0
    for p in result["payloads"]:
        if seen[(p["touser"], p[p["msgtype"]]["content"])] > 1:
            assert p["enable_duplicate_check"] == 1 and p["duplicate_check_interval"] >= 1800, p
    for key, n in seen.items():
        assert n <= 2, f"{key} delivered {n} times"     # one kill → at most one repeat
        repeats += n - 1
    return repeats


def test_sigkill_during_push_and_drain_loses_nothing(template_db, fake, tmp_path):
    # clean runs: what "complete" looks like and how long the killable run takes (the run alone,
    # not the ledger check after it; the faster of two, as the first one warms caches)
    durations = []
    for _ in range(2):
        clean = _trial(template_db, tmp_path, fake, None, exec_mode=SOAK)
        durations.append(clean["ran"])
        reps = set(clean["pushes"])
        assert len(reps) == 2 + EXTRA_REPS and _verify(clean, reps) == 0
    duration = min(durations)
    rng = random.Random(20261123)
    killed = repeats = 0
    for _ in range(KILL_TRIALS):
        res = _trial(template_db, tmp_path, fake, rng.uniform(0.0, duration * 0.9), exec_mode=SOAK)
        killed += res["killed"]
        repeats += _verify(res, reps)
    assert killed >= KILL_TRIALS * 0.8, f"only {killed} of {KILL_TRIALS} runs were killed before finishing"
    print(f"\n{KILL_TRIALS} kill trials ({killed} killed mid-run); repeats left for WeCom's duplicate check: {repeats}")


async def test_database_locked_while_draining_is_retried_not_lost(tmp_path, fake):
    import aiohttp

    from bot import outbox
    from bot.channels.wecom import WeComChannel
    from bot.core.messages import OutgoingMessage
    url = f"sqlite:///{tmp_path}/locked.db"
    db = Database(url)
    await db.migrate()
    cfg = _config(url, fake.fake.url, fake.fake.corp_id)
    now = datetime.now(timezone.utc)
    async with db.session() as s, s.begin():
        for i in range(30):
            await outbox.enqueue(s, OutgoingMessage(platform="wecom", target_kind="user", target=f"lock{i:02d}",
                                                    text=f"locked {i}", format="text"), f"lock:{i}", now)
    since = fake.call(lambda f: len(f.received))
    fake.call(lambda f: f.forget_contents())      # each trial replays the same morning on this fake
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        con = sqlite3.connect(f"{tmp_path}/locked.db", timeout=1)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(2.0)                 # hold it for 2 s
        con.rollback()
        con.close()
    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(5)
    channel = WeComChannel(cfg.wecom)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        channel.connect(session)
        sender = outbox.Sender(db, {"wecom": channel}, _ShiftedClock(timedelta(0)), cfg.outbox)
        # Sender.drain's return value undercounts when deliveries run concurrently (``sent += await``
        # reads ``sent`` before the await); its stats are exact, so count with them
        while sender.stats["sent"] < 30 and time.monotonic() - started < 30:
            await sender.drain(batch=10)
    holder.join(5)
    waited = time.monotonic() - started
    async with db.session() as s:
        rows = list((await s.execute(select(OutboxMessage))).scalars())
    await db.close()
    assert waited >= 1.5                                     # the sender really met the lock
    assert all(r.status == "sent" and r.attempts == 1 for r in rows)
    got = Counter(p["text"]["content"] for p in _deliveries(fake, since))
    assert got == Counter(f"locked {i}" for i in range(30))


# ---- fuzzing: never a crash, never a 5xx, never a partial write ------------------------------------
FUZZ_SETTINGS = settings(max_examples=FUZZ, deadline=None, derandomize=not SOAK,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
cjk = st.text(alphabet=st.sampled_from(list("0123456789一二三四五六七八九十百千万元块号月日周下个今明后天已付承诺联系不上"
                                            "更正，,。.、/ -：:¥￥wW%\n全款一半剩余到账电话关机")), max_size=60)
anytext = st.one_of(st.text(max_size=200), cjk)


@FUZZ_SETTINGS
@given(text=anytext, items=st.one_of(st.none(), st.integers(min_value=0, max_value=500)))
def test_parse_reply_never_crashes(text, items):
    from bot.replies import parse_reply, split_reply
    today = date(2026, 11, 23)
    for segment in split_reply(text) or [text]:
        parsed = parse_reply(segment, today, item_count=items)
        json.dumps(parsed.to_json(), ensure_ascii=False)


_dispatcher = None


@FUZZ_SETTINGS
@given(text=st.one_of(anytext, st.builds(lambda w, r: f"/{w} {r}", st.sampled_from(
    ["aging", "账龄", "help", "帮助", "overdue", "逾期", "更正", "customer", "客户", "kpi", "paid"]), anytext)))
def test_dispatcher_match_never_crashes(text):
    global _dispatcher
    from bot.handlers import dispatcher
    _dispatcher = _dispatcher or dispatcher()
    cmd, word, rest = _dispatcher.match(text)
    assert isinstance(word, str) and isinstance(rest, str)


cell = st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "2026-13-45", "20261301", "45000", "1e9", "-5",
                                                        "¥1.2万", "三万五", "0", "NaN", "inf", "USD", "rep", "业务员"]),
                 st.integers(-10**12, 10**12).map(str), st.dates().map(str))
HEADERS = ["invoice_no", "customer", "issue_date", "due_date", "amount", "currency", "rep", "发票号", "金额", "备注", ""]


@FUZZ_SETTINGS
@given(kind=st.sampled_from(["people", "customers", "receivables", "payments"]),
       headers=st.lists(st.one_of(st.sampled_from(HEADERS), st.text(max_size=8)), max_size=9),
       rows=st.lists(st.lists(cell, max_size=10), max_size=8))
def test_importer_validate_never_crashes(kind, headers, rows):
    from domain.import_files import validate
    parsed = validate(kind, headers, [(i + 2, r) for i, r in enumerate(rows)], today=date(2026, 11, 23))
    assert len(parsed.records) <= len(rows)
    assert all(e.line >= 1 for e in parsed.errors)


@pytest.fixture(scope="module")
def import_db(tmp_path_factory, template_db):
    path = tmp_path_factory.mktemp("fuzzimport") / "imp.db"
    shutil.copy(template_db, path)
    return path


@settings(max_examples=max(20, FUZZ // 10), deadline=None, derandomize=not SOAK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(["F0-00", "NEW-1", "NEW-2", "INV-A1", ""]),
                               st.sampled_from(["FC0", "C1", "C9-unknown", "", "故障测试客户1有限公司"]),
                               st.sampled_from(["2026-10-01", "2026-11-30", "bad", ""]),
                               st.sampled_from(["2026-12-01", "2026-09-01", "20261231", ""]),
                               st.sampled_from(["100", "0", "-1", "1,234.50", "x", "2万"])), min_size=1, max_size=6))
def test_a_fuzzed_import_writes_all_or_nothing(import_db, tmp_path_factory, rows):
    from storage.imports import import_file, table_counts
    csv_path = tmp_path_factory.getbasetemp() / "fuzz.csv"
    csv_path.write_text("invoice_no,customer,issue_date,due_date,amount\n" +
                        "\n".join(",".join(f'"{c}"' for c in r) for r in rows) + "\n", encoding="utf-8")

    async def go():
        db = Database(f"sqlite:///{import_db}")
        try:
            async with db.session() as s:
                before = await table_counts(s)
            report = await import_file(db, "receivables", csv_path, now=at("2026-11-23 10:00"), today=date(2026, 11, 23))
            async with db.session() as s:
                after = await table_counts(s)
        finally:
            await db.close()
        return report, before, after
    report, before, after = asyncio.run(go())
    if not report.ok:
        assert after == before, report.to_dict()
    else:
        assert after["receivables"] - before["receivables"] == report.created


class _LocalApp:
    """The bot's app on its own thread and loop, so sync hypothesis tests can POST to it."""

    def __init__(self, db_path: Path):
        from aiohttp import web

        from bot.app import create_app
        from tests.harness import config_for
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        cfg = config_for(f"sqlite:///{db_path}")

        async def start():
            runner = web.AppRunner(create_app(cfg, start_scheduler=False, start_sender=False), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner
        self.runner = asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)
        self.port = self.runner.addresses[0][1]

    def post(self, body: bytes, content_type: str) -> int:
        import urllib.error
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/local/messages", data=body,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def local_app(tmp_path_factory, template_db):
    path = tmp_path_factory.mktemp("fuzzhttp") / "http.db"
    shutil.copy(template_db, path)
    app = _LocalApp(path)
    yield app, path
    app.close()


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     anytext), lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                                      st.dictionaries(st.text(max_size=5), kids, max_size=3)),
                           max_leaves=6)
bodies = st.one_of(
    st.builds(lambda u, t, c, i, card: {"user": u, "text": t, "chat": c, "id": i, "card": card},
              st.one_of(st.sampled_from(["rep1", "sup1", "fin1", "nobody", ""]), json_values),
              st.one_of(anytext, st.sampled_from(["/aging", "/help", "1 已付", "/overdue", "更正 1 下周付"]), json_values),
              st.one_of(st.none(), st.sampled_from(["g1"]), json_values), st.one_of(st.none(), anytext, json_values),
              st.one_of(st.none(), json_values)),
    json_values)


def _events(path: Path) -> tuple[int, int]:
    con = sqlite3.connect(path, timeout=30)
    try:
        total = con.execute("SELECT count(*) FROM inbound_events").fetchone()[0]
        failed = con.execute("SELECT count(*) FROM inbound_events WHERE status != 'handled'").fetchone()[0]
    finally:
        con.close()
    return total, failed


@settings(max_examples=max(40, FUZZ // 2), deadline=None, derandomize=not SOAK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=bodies, raw=st.one_of(st.none(), st.binary(max_size=64)),
       ctype=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]))
def test_local_messages_endpoint_never_5xx_nor_half_stores(local_app, body, raw, ctype):
    app, path = local_app
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    before, _ = _events(path)
    status = app.post(data, ctype)
    after, not_handled = _events(path)
    assert status < 500, (status, data[:200])
    assert not_handled == 0, "an event was stored but its handling failed"
    if status != 200:
        assert after == before, "a rejected request stored an event"
    else:
        assert after - before <= 1
