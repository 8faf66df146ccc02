"""The short version of bench/load.py (issue #12): a real ``arbot serve`` restarted at 14:30 on a
real SQLite file of 20,000 receivables / 1,000 reps, its morning jobs catching up while reps log
follow-ups through the local chat — then SIGTERM, and a start after it.

Behaviour only, never a timing (the figures are bench/load.py's): every follow-up sent is in the
database, once, and was answered 200 with what was recorded; no job run failed; no job is left
``running``; the process exits on SIGTERM (the bound is a hang guard); and a job stopped by the
SIGTERM is finished by the next start — its fire claimed once, nothing half-written.
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench import dataset, load
from tests.multiproc import Served, free_port, write_config

pytestmark = pytest.mark.timeout(300)
AT = "2026-11-23T14:30"            # a working Monday after every morning job: they all catch up
TODAY = "2026-11-23"
HANG = 30                          # seconds a SIGTERM may take before the test calls it a hang


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> Path:
    """20,000 receivables, 20,000 customers, 1,000 reps (bench/dataset.py), loaded once."""
    path = tmp_path_factory.mktemp("ledger") / "template.db"
    load.load_sqlite(path, dataset.Sizes(receivables=20_000))
    return path


def _copy(template: Path, tmp_path: Path) -> str:
    db = tmp_path / "arbot.db"
    shutil.copy(template, db)
    return f"sqlite:///{db}"


def _rows(url: str, sql: str, *args) -> list[tuple]:
    con = sqlite3.connect(url.split("///", 1)[1])
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _health(bot: Served) -> dict:
    try:
        with urllib.request.urlopen(f"{bot.url}/healthz", timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


IMPORTED = 5_000                   # new receivables finance imports with the CLI meanwhile


def test_follow_ups_during_the_start_up_catch_up_and_an_import_are_all_recorded_and_nothing_fails(ledger, tmp_path):
    url = _copy(ledger, tmp_path)
    port = free_port()
    cfg = write_config(tmp_path / "arbot.toml", url, port)
    targets = asyncio.run(load.followup_targets(url, 100))
    csv_path = load.write_import_csv(tmp_path / "receivables.csv", IMPORTED)
    import_cmd = [*load.arbot_command(), "--config", str(cfg), "import", "receivables", str(csv_path),
                  "--format", "json"]
    bot = Served(cfg, port, tmp_path / "bot.log", args=("--at", AT), any_health=True)
    try:
        # 10 follow-ups a second for 10 s (and finance's /aging every 2 s) while the jobs catch up,
        # and from 2 s on an import of 5,000 receivables in a process of its own
        run = asyncio.run(load.drive([bot.url], targets, duration=10, rate=10, aging_every=2, jobs=[],
                                     jobs_wait=0, after=0, timeout=120, import_cmd=import_cmd, import_at=2))
        during = _health(bot)["jobs"]
    finally:
        exited = bot.stop(timeout=HANG)
    assert exited is not None, "arbot serve did not exit within 30 s of SIGTERM"
    assert during, "no job had started: the catch-up did not run during the load"

    sent = [s for s in run.samples if s.kind == "followup"]
    assert len(sent) == 100
    bad = [(s.tag, s.status, s.answer[:80]) for s in sent if s.status != 200]
    assert bad == [], f"{len(bad)} follow-up(s) not answered 200, e.g. {bad[:3]}"
    for s, (rep, invoice) in zip(sorted(sent, key=lambda s: s.tag), targets):
        assert f"已记录对 {invoice} 的跟进" in s.answer, (s.tag, s.answer)
    assert all(s.status == 200 for s in run.samples if s.kind == "aging")
    recorded = _rows(url, "SELECT f.person_id, r.invoice_no, f.text FROM followups f JOIN receivables r"
                          " ON r.id = f.receivable_id WHERE f.text LIKE ?", load.TEXT.format(tag="L") + "%")
    expected = [(rep, inv, load.TEXT.format(tag=s.tag))
                for s, (rep, inv) in zip(sorted(sent, key=lambda s: s.tag), targets)]
    assert sorted(recorded) == sorted(expected)            # each one, once, by its rep, as sent

    runs = _rows(url, "SELECT job, status FROM job_runs")
    assert runs and not [r for r in runs if r[1] in ("failed", "running")], runs
    assert run.import_rc == 0, run.import_log[-2000:]
    assert json.loads(run.import_output)["created"] == IMPORTED, run.import_output[-2000:]
    assert _rows(url, "SELECT count(*) FROM receivables WHERE invoice_no LIKE 'IMP%'") == [(IMPORTED,)]

    # the next start takes over what the SIGTERM stopped; nothing is left running after it either
    again = Served(cfg, port, tmp_path / "bot2.log", args=("--at", AT), any_health=True)
    try:
        time.sleep(2)
    finally:
        assert again.stop(timeout=HANG) is not None, "the second start did not exit on SIGTERM"
    runs = _rows(url, "SELECT job, status FROM job_runs")
    assert not [r for r in runs if r[1] in ("failed", "running")], runs
    assert _rows(url, "SELECT count(*) FROM job_runs GROUP BY job, fire_key HAVING count(*) > 1") == []
    assert _rows(url, "SELECT status, count(*) FROM inbound_events WHERE status != 'handled' GROUP BY status") == []


def test_sigterm_during_the_push_exits_and_the_next_start_finishes_it_once(ledger, tmp_path):
    url = _copy(ledger, tmp_path)
    port = free_port()
    cfg = write_config(tmp_path / "arbot.toml", url, port)
    bot = Served(cfg, port, tmp_path / "bot.log", args=("--at", AT), any_health=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            push = _health(bot).get("jobs", {}).get("overdue_push")
            if push is not None:
                break
            time.sleep(0.05)
    finally:
        exited = bot.stop(timeout=HANG)
    assert exited is not None, "arbot serve did not exit within 30 s of SIGTERM"
    first = dict(_rows(url, "SELECT job, status FROM job_runs WHERE fire_key = ?", TODAY))
    assert "running" not in first.values() and "failed" not in first.values(), first
    pushed_before = _rows(url, "SELECT count(*) FROM pushes")[0][0]
    if first.get("overdue_push") != "stopped":
        pytest.skip(f"the push ended before the SIGTERM reached it ({first}); nothing to finish")   # pragma: no cover

    again = Served(cfg, port, tmp_path / "bot2.log", args=("--at", AT), any_health=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _health(again).get("jobs", {}).get("overdue_push", {}).get("status") == "ok":
                break
            time.sleep(0.2)
    finally:
        assert again.stop(timeout=HANG) is not None, "the second start did not exit on SIGTERM"
    [(status, summary)] = _rows(url, "SELECT status, summary FROM job_runs WHERE job = 'overdue_push'")
    assert status == "ok", summary
    pushed_now = int(re.search(r"pushed (\d+) rep", summary).group(1))
    reps_with_overdue = _rows(url, "SELECT count(DISTINCT rep_id) FROM receivables WHERE open_amount > 0 AND"
                                   " due_date < ? AND status != 'written_off'", TODAY)[0][0]
    # the first start's reps stay pushed, the second pushed the rest: each rep once, whole
    assert pushed_before + pushed_now == reps_with_overdue
    assert _rows(url, "SELECT rep_id FROM pushes GROUP BY rep_id, for_date HAVING count(*) > 1") == []
    assert _rows(url, "SELECT count(*) FROM pushes")[0][0] == reps_with_overdue
    assert _rows(url, "SELECT p.id FROM pushes p LEFT JOIN push_items i ON i.push_id = p.id"
                      " WHERE i.id IS NULL") == []
    parts: dict[str, list[int]] = {}
    for (key,) in _rows(url, "SELECT idem_key FROM outbox WHERE idem_key LIKE ?", f"push:{TODAY}:%"):
        _, _, n, rep = key.split(":")
        parts.setdefault(rep, []).append(int(n))
    assert len(parts) == reps_with_overdue
    assert all(sorted(ns) == list(range(1, len(ns) + 1)) for ns in parts.values())     # no message part missing
