"""The `arbot` command as a finance clerk or an operator uses it: real processes, real files."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.multiproc import with_checkout

DATA = Path(__file__).parent / "data"


def arbot(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    e.pop("ARBOT_CONFIG", None)
    e = with_checkout(e)
    p = subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=e, capture_output=True, text=True,
                       timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"arbot {' '.join(args)} → {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_parse_reply_prints_the_parse_as_json(tmp_path):
    out = arbot("parse-reply", "--today", "2026-11-23", "1 已电话联系王总，答应下周五前付一半", cwd=tmp_path)
    data = json.loads(out.stdout)
    assert data["items"] == [1] and data["outcome"] == "promised"
    assert data["promised_date"] == "2026-12-04" and data["promised_share"] == "0.5"
    assert data["promised_amount"] is None


def test_import_then_report_aging_json(tmp_path):
    env = {"ARBOT_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    out = arbot("import", "people", str(DATA / "people.csv"), cwd=tmp_path, env=env)
    assert "导入人员成功" in out.stdout
    arbot("import", "customers", str(DATA / "customers_gbk.csv"), cwd=tmp_path, env=env)
    arbot("import", "receivables", str(DATA / "receivables.xlsx"), cwd=tmp_path, env=env)
    again = arbot("import", "receivables", str(DATA / "receivables.xlsx"), "--format", "json", cwd=tmp_path, env=env)
    report = json.loads(again.stdout)
    assert report["ok"] and report["created"] == 0 and report["updated"] == 0 and report["unchanged"] == report["rows"]
    aging = json.loads(arbot("report", "aging", "--as-of", "2026-11-23", "--format", "json", cwd=tmp_path, env=env).stdout)
    assert aging["as_of"] == "2026-11-23"
    assert [b["label"] for b in aging["buckets"]] == ["not_due", "1-30", "31-60", "61-90", "90+"]
    from decimal import Decimal
    assert sum(Decimal(b["amount"]) for b in aging["buckets"]) == Decimal(aging["total"]) > 0
    csv_out = arbot("report", "aging", "--as-of", "2026-11-23", "--by", "rep", "--format", "csv", cwd=tmp_path, env=env)
    assert csv_out.stdout.startswith("\ufeff")                    # the BOM Excel needs (utf-8-sig)
    assert csv_out.stdout[1:].splitlines()[0] == "rep,not_due,1-30,31-60,61-90,90+,total"


def test_bad_import_exits_non_zero_with_line_numbers_and_writes_nothing(tmp_path):
    env = {"ARBOT_DATABASE_URL": f"sqlite:///{tmp_path}/b.db"}
    arbot("import", "people", str(DATA / "people.csv"), cwd=tmp_path, env=env)
    arbot("import", "customers", str(DATA / "customers_gbk.csv"), cwd=tmp_path, env=env)
    bad = arbot("import", "receivables", str(DATA / "receivables_bad.csv"), cwd=tmp_path, env=env, check=False)
    assert bad.returncode == 1
    assert "没有写入任何数据" in bad.stdout and "第" in bad.stdout and "行" in bad.stdout
    aging = json.loads(arbot("report", "aging", "--format", "json", cwd=tmp_path, env=env).stdout)
    assert aging["total"] == "0.00"


def test_config_errors_name_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[collection]\npush_time = "9点"\n', encoding="utf-8")
    p = arbot("--config", str(cfg), "jobs", "list", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "[collection] push_time" in p.stderr
    cfg.write_text('[wecom]\nenabled = true\ncorp_id = "ww1"\n', encoding="utf-8")
    p = arbot("--config", str(cfg), "jobs", "list", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "[wecom] agent_id" in p.stderr
    p = arbot("jobs", "list", cwd=tmp_path, env={"ARBOT_OUTBOX_CONCURRENCY": "many"}, check=False)
    assert p.returncode == 2 and "ARBOT_OUTBOX_CONCURRENCY" in p.stderr


def test_jobs_list_and_run_at(tmp_path):
    env = {"ARBOT_DATABASE_URL": f"sqlite:///{tmp_path}/j.db"}
    names = [line.split()[0] for line in arbot("jobs", "list", cwd=tmp_path, env=env).stdout.splitlines()]
    assert {"overdue_push", "reply_window_close", "promise_watch"} <= set(names)
    out = arbot("jobs", "run", "overdue_push", "--at", "2026-11-28T09:00", cwd=tmp_path, env=env)
    assert "not a working day" in out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_demo_answers_healthz_and_the_local_chat(tmp_path):
    """What `make run` does: serve with demo data on an empty database and the local web chat."""
    port = _free_port()
    cfg = tmp_path / "demo.toml"
    cfg.write_text(f'demo = true\n[database]\nurl = "sqlite:///{tmp_path}/demo.db"\n[server]\nport = {port}\n'
                   f'[local]\nenabled = true\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(cfg), "serve"], cwd=tmp_path,
                            env=with_checkout(dict(os.environ)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        health = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.5)
        assert health is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert health["database"] == "ok" and health["local_chat"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert "本地聊天" in r.read().decode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/local/messages", method="POST",
                                     data=json.dumps({"user": "gm", "chat": "mgmt", "text": "/账龄"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            replies = json.loads(r.read())["replies"]
        assert "账龄分析" in replies[0]["text"] and "90天以上" in replies[0]["text"]
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("arbot serve did not shut down within 20 s of SIGTERM")
    # README step 5's command, for the day it started (the push's window closes in the future)
    m = re.search(r"^  (.+ jobs run reply_window_close --at (\S+))$", out, re.M)
    assert m, out
    assert m.group(1).startswith(f"arbot --config {cfg} ")
    assert datetime.fromisoformat(m.group(2)) > datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)


async def test_csv_exports_start_with_the_bom_excel_needs(db, tmp_path):
    """Excel on Chinese Windows reads a CSV without a BOM as GBK: 张伟 becomes 寮犱紵. The bytes of
    every CSV the command line writes start with EF BB BF and the rest is UTF-8."""
    from sqlalchemy import select

    from storage import followups
    from storage.models import Receivable
    from tests import ledger_fixture
    from tests.conftest import at
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        a1 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-A1"))).scalar_one()
        await followups.log_followup(s, receivable=a1, person_id="rep1", at=at("2026-11-21 10:00"), channel="test",
                                     outcome="contacted", text="已电话联系王总，月底付款")
    env = {**os.environ, "ARBOT_DATABASE_URL": db.url}
    env.pop("ARBOT_CONFIG", None)
    exports = {("export", "followups"): ("at,person_id,person,customer", "上海恒信机电有限公司", "已电话联系王总，月底付款"),
               ("report", "aging", "--as-of", "2026-11-23", "--by", "rep", "--format", "csv"): ("rep,not_due", "rep1")}
    for args, wanted in exports.items():
        p = subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp_path, env=with_checkout(env),
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout.startswith(b"\xef\xbb\xbf"), (args, p.stdout[:20])
        text = p.stdout.decode("utf-8-sig")
        assert text.startswith(wanted[0])                           # one BOM, then the header
        assert all(w in text for w in wanted[1:])


def test_serve_at_starts_the_clock_there_and_lets_it_run(tmp_path):
    """`serve --at` (a rehearsal of a midday restart): the clock reads that time and runs on;
    a value that is not a date is refused before anything starts."""
    from datetime import timedelta

    from bot.clock import ShiftedClock
    clock = ShiftedClock(datetime(2026, 11, 23, 14, 30))
    first = clock.now()
    assert first.tzinfo is not None and first.utcoffset() == timedelta(hours=8)
    assert timedelta(0) <= first - datetime(2026, 11, 23, 14, 30, tzinfo=ZoneInfo("Asia/Shanghai")) < timedelta(seconds=5)
    time.sleep(0.05)
    assert clock.now() > first
    bad = arbot("serve", "--at", "tomorrow", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--at must be an ISO datetime" in bad.stderr
