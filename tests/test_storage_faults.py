"""The database cannot be written — a full disk, a read-only file — with a real ``arbot serve``
on a real SQLite file: what an operator and a platform notice, and that nothing is lost.

* While it cannot write, the chat endpoint answers 503 (the platforms deliver again later),
  never a 500 and never a 200 for an event that was not stored; /healthz answers 503 and says
  "not writable"; the log says it once, not a traceback per request.
* When the space or the permission comes back the bot recovers by itself: /healthz is ok
  again, a new message is handled, and the events refused meanwhile, sent again, are handled
  once each.

How the faults are made, on any Linux machine and as root too (where chmod stops nothing):
a full disk is a file-size limit (RLIMIT_FSIZE) set on the running bot from outside with
``prlimit`` (the child ignores SIGXFSZ, as a process on a full disk gets no signal either:
its writes fail); a read-only file is chmod 0444 for a normal user, and the immutable
attribute (``chattr +i``) as root. SQLite reads both as the real thing: "disk I/O error" /
"attempt to write a readonly database".
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from storage.db import Database
from tests import ledger_fixture
from tests.conftest import at
from tests.multiproc import AES_KEY, Served, ThreadedFakeWeCom, free_port, write_config

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit and chattr are Linux's")]
AT = "2026-11-23T08:00"          # a working Monday before any job's time: no catch-up runs meanwhile
FAULT_LINE = "database cannot be written"
BACK_LINE = "database writable again"


def _seed(url: str) -> None:
    async def go():
        db = Database(url)
        await db.migrate()
        async with db.session() as s, s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
            await ledger_fixture.add_reps(
                s, count=4, rep_id=lambda i: f"sf{i:02d}", customer_code=lambda i: f"SF{i:02d}",
                customer_name=lambda i: f"存储故障{i:02d}有限公司", invoice_no=lambda i, k: f"SF{i:02d}-{k:03d}",
                invoices=6, step_days=12, unit=Decimal("1000"))
        await db.close()
    asyncio.run(go())


def _query(url: str, sql: str) -> list[tuple]:
    import sqlite3
    con = sqlite3.connect(url.split("///", 1)[1])
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def say(bot: Served, user: str, text: str, msg_id: str) -> tuple[int, str]:
    """POST to the local chat; (status, the replies' text or the error body)."""
    req = urllib.request.Request(f"{bot.url}/local/messages", method="POST", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"user": user, "text": text, "id": msg_id}).encode())
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, " / ".join(x["text"] for x in json.loads(r.read())["replies"])
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def health(bot: Served) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{bot.url}/healthz", timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_healthy(bot: Served, limit: float = 30) -> dict:
    deadline = time.monotonic() + limit
    while True:
        status, body = health(bot)
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, body
            return body
        time.sleep(0.5)


def ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def followup(n: str) -> str:
    return f"已电话联系财务，在走付款流程 {n}"


def request_tracebacks(output: str) -> list[str]:
    """Log lines with a traceback from request handling (a job's own failure is not a request's)."""
    out = []
    for line in output.splitlines():
        if "Traceback" in line or "Error handling request" in line:
            try:
                logger = json.loads(line).get("logger", "")
            except ValueError:
                logger = ""
            if not logger.startswith(("bot.jobs", "apscheduler")):
                out.append(line[:300])
    return out


@pytest.fixture
def company(tmp_path):
    url = f"sqlite:///{tmp_path}/arbot.db"
    _seed(url)
    port = free_port()
    return url, write_config(tmp_path / "arbot.toml", url, port), port, tmp_path


def wecom_callback(bot: Served, corp_id: str, user: str, text: str, msg_id: int) -> int:
    """What WeCom posts for a user's text message (encrypted, signed); the HTTP status."""
    from bot.channels.wecom_crypto import WeComCrypto
    from tests.fakes.wecom_server import build_callback, build_text_message_xml
    xml = build_text_message_xml(corp_id, user, text, msg_id=msg_id, agent_id=1000002)
    query, body = build_callback(WeComCrypto("QDG6eK", AES_KEY, corp_id), xml, int(time.time()), f"n{msg_id}")
    req = urllib.request.Request(f"{bot.url}/wecom/callback?{urllib.parse.urlencode(query)}", method="POST",
                                 data=body.encode(), headers={"Content-Type": "text/xml"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_disk_full_is_refused_with_503_said_once_and_recovered_by_itself(company):
    url, _, port, tmp = company
    fake = ThreadedFakeWeCom(apps={1000002: "fake-app-secret"})
    cfg = write_config(tmp / "wecom.toml", url, port, wecom_url=fake.fake.url, corp_id=fake.fake.corp_id)
    bot = Served(cfg, port, None, args=("--at", AT), preexec_fn=ignore_sigxfsz)
    try:
        assert say(bot, "sf00", f"/followup SF00-000 {followup('before')}", "before")[0] == 200
        resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))   # the disk is full
        # WeCom is told 503, so it delivers again later (a 200 would drop an event never stored)
        assert wecom_callback(bot, fake.fake.corp_id, "wx_gm", "/aging", 880001) == 503
        refused = []
        for i in range(6):
            status, body = say(bot, f"sf{i % 4:02d}", f"/followup SF{i % 4:02d}-00{1 + i // 4} {followup(f'full{i}')}",
                               f"full-{i}")
            refused.append((status, body))
        assert all(status == 503 for status, _ in refused), refused
        status, body = health(bot)
        assert status == 503 and body["database"].startswith("not writable") and body["status"] == "degraded", body
        assert health(bot)[0] == 503                 # still, on the next probe

        resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        body = wait_healthy(bot)                     # nobody wrote: /healthz's own probe saw the space return
        assert body["database"] == "ok"
        status, answer = say(bot, "sf01", f"/followup SF01-005 {followup('after')}", "after")
        assert status == 200 and "已记录" in answer
        for i in range(6):                           # the platform delivers the refused events again
            status, answer = say(bot, f"sf{i % 4:02d}", f"/followup SF{i % 4:02d}-00{1 + i // 4} {followup(f'full{i}')}",
                                 f"full-{i}")
            assert status == 200 and "已记录" in answer, answer
        assert say(bot, "sf00", f"/followup SF00-001 {followup('full0')}", "full-0") == (200, "")   # once only
        assert wecom_callback(bot, fake.fake.corp_id, "wx_gm", "/aging", 880001) == 200          # WeCom's retry
        assert wecom_callback(bot, fake.fake.corp_id, "wx_gm", "/aging", 880001) == 200          # and a duplicate
        deadline = time.monotonic() + 30
        while not fake.call(lambda f: f.messages_to("wx_gm")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        answers = fake.call(lambda f: f.messages_to("wx_gm"))
        assert bot.stop() is not None
    finally:
        bot.stop()
        fake.close()
    # answered once: the text, and the chart as its own image message
    assert [a.payload["msgtype"] for a in answers] == ["markdown", "image"], answers
    assert "账龄" in json.dumps(answers[0].payload, ensure_ascii=False), answers
    out = bot.output()
    assert out.count(FAULT_LINE) == 1 and out.count(BACK_LINE) == 1, out[-3000:]
    assert request_tracebacks(out) == []
    texts = [t for (t,) in _query(url, "SELECT text FROM followups WHERE text LIKE '已电话联系财务%' ORDER BY id")]
    assert sorted(texts) == sorted(followup(n) for n in ["before", "after", *(f"full{i}" for i in range(6))])
    assert _query(url, "SELECT platform, status, count(*) FROM inbound_events GROUP BY platform, status") == [
        ("local", "handled", 8), ("wecom", "handled", 1)]


def _make_read_only(path: Path) -> str | None:
    """Make the database file read-only for the bot; None when this machine cannot (reason instead)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return None
    if shutil.which("chattr") is None:
        return "running as root without chattr: a read-only file cannot be made"
    p = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        return f"running as root and chattr +i is refused here ({p.stderr.strip()[:100]})"
    return None


def _make_writable(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o644)
    else:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_database_is_refused_with_503_and_recovered_when_writable_again(company):
    """The file restored from a backup with the wrong owner, a volume mounted read-only: the bot
    starts, says it cannot write, refuses events with 503, and heals when the file is writable."""
    url, cfg, port, tmp = company
    db_file = Path(url.split("///", 1)[1])
    first = Served(cfg, port, None, args=("--at", AT))
    try:
        assert say(first, "sf00", f"/followup SF00-000 {followup('before')}", "before")[0] == 200
    finally:
        assert first.stop() is not None
    why = _make_read_only(db_file)
    if why:
        pytest.skip(why)
    try:
        bot = Served(cfg, port, None, args=("--at", AT), any_health=True)
        try:
            refused = [say(bot, "sf01", f"/followup SF01-00{i} {followup(f'ro{i}')}", f"ro-{i}") for i in range(3)]
            assert [s for s, _ in refused] == [503] * 3, refused
            status, body = health(bot)
            assert status == 503 and body["database"].startswith("not writable"), body
            _make_writable(db_file)
            wait_healthy(bot)
            status, answer = say(bot, "sf02", f"/followup SF02-000 {followup('after')}", "after")
            assert status == 200 and "已记录" in answer, answer
            for i in range(3):
                status, answer = say(bot, "sf01", f"/followup SF01-00{i} {followup(f'ro{i}')}", f"ro-{i}")
                assert status == 200 and "已记录" in answer, answer
            assert bot.stop() is not None
        finally:
            bot.stop()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db_file)], capture_output=True)
    out = bot.output()
    assert out.count(FAULT_LINE) == 1 and out.count(BACK_LINE) == 1, out[-3000:]
    assert request_tracebacks(out) == []
    texts = [t for (t,) in _query(url, "SELECT text FROM followups WHERE text LIKE '已电话联系财务%'")]
    assert sorted(texts) == sorted(followup(n) for n in ["before", "after", "ro0", "ro1", "ro2"])
    assert _query(url, "SELECT status, count(*) FROM inbound_events GROUP BY status") == [("handled", 5)]
