"""Operations: /healthz says what an operator needs, /metrics moves when messages and jobs
happen, and `arbot backup` makes a valid copy of the SQLite database."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from bot import notify
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot


async def _bot(aiohttp_client, db, tmp_path):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                           reports={"dir": str(tmp_path / "reports")})


async def _metrics(bot) -> dict[tuple, float]:
    resp = await bot.client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=")
    out = {}
    for fam in text_string_to_metric_families(await resp.text()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(m: dict, name: str, **labels) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_healthz_reports_database_outbox_jobs_scheduler_and_channels(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    health = await (await bot.client.get("/healthz")).json()
    assert health["status"] == "ok" and health["database"] == "ok"
    assert health["outbox"] == {"pending": 0, "sent": 0, "dead": 0} and health["dead_letters"] == []
    assert health["jobs"] == {} and health["scheduler"] == {"running": False}
    assert list(health["channels"]) == ["local"] and health["local_chat"] is True
    assert health["channels"]["local"]["status"] == "enabled"
    assert health["sender"]["sent"] == 0 and health["sender"]["last_latency_seconds"] is None

    await bot.run("overdue_push", at("2026-11-23 09:00"))
    health = await (await bot.client.get("/healthz")).json()
    job = health["jobs"]["overdue_push"]
    assert job["status"] == "ok" and job["fire"] == "2026-11-23" and "pushed 2 rep(s)" in job["summary"]
    assert job["finished_at"] is not None
    assert health["outbox"]["sent"] == 2 and health["sender"]["sent"] == 2

    # a message for a platform that is not switched on: dead-lettered, and the health says so
    async with db.session() as s, s.begin():
        await notify.to_chat(s, "wecom", "robot", "managers", "hello", key="t:1", now=bot.clock.now())
    await bot.state.sender.drain()
    health = await (await bot.client.get("/healthz")).json()
    assert health["status"] == "degraded" and health["outbox"]["dead"] == 1
    [dead] = health["dead_letters"]
    assert dead["key"] == "t:1" and dead["platform"] == "wecom" and "not enabled" in str(health["outbox_alerts"])


async def test_metrics_move_when_a_message_is_handled_and_a_job_runs(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    before = await _metrics(bot)
    assert _get(before, "arbot_messages_in_total", platform="local", result="stored") == 0

    await bot.say("gm", "/aging", msg_id="m-1")
    await bot.say("gm", "/aging", msg_id="m-1")           # a redelivery: stored once
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    m = await _metrics(bot)
    assert _get(m, "arbot_messages_in_total", platform="local", result="stored") == 1
    assert _get(m, "arbot_messages_in_total", platform="local", result="duplicate") == 1
    assert _get(m, "arbot_job_runs_total", job="overdue_push", status="ok") == 1
    assert _get(m, "arbot_job_duration_seconds_count", job="overdue_push", status="ok") == 1
    assert _get(m, "arbot_job_duration_seconds_sum", job="overdue_push", status="ok") > 0
    assert _get(m, "arbot_messages_out_total", platform="local", result="sent") == 2     # the two reps' pushes
    assert _get(m, "arbot_outbox_latency_seconds_count", platform="local") == 2
    assert _get(m, "arbot_outbox_messages", status="sent") == 2
    assert _get(m, "arbot_outbox_messages", status="pending") == 0


def test_backup_makes_a_valid_sqlite_copy(tmp_path):
    import asyncio

    from storage.db import Database

    async def build():
        db = Database(f"sqlite:///{tmp_path}/live.db")
        await db.migrate()
        async with db.session() as s, s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
        return db

    db = asyncio.run(build())          # the database stays open (WAL) while we back it up
    env = {**os.environ, "ARBOT_DATABASE_URL": f"sqlite:///{tmp_path}/live.db"}
    env.pop("ARBOT_CONFIG", None)
    out = tmp_path / "backups" / "copy.db"

    def arbot(*args):
        return subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)

    p = arbot("backup", str(out))
    assert p.returncode == 0, p.stderr
    assert "备份完成" in p.stdout and "receivables: 8 行" in p.stdout
    with sqlite3.connect(out) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM receivables").fetchone()[0] == 8
        assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == len(ledger_fixture.PEOPLE)
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "backups" / "copy.db.partial").exists()
    # never overwrites; a directory gets a timestamped file; PostgreSQL is pg_dump's job
    assert arbot("backup", str(out)).returncode == 2
    p = arbot("backup", str(tmp_path / "backups"))
    assert p.returncode == 0 and len(list((tmp_path / "backups").glob("arbot-*.db"))) == 1
    env["ARBOT_DATABASE_URL"] = "postgresql://u:p@127.0.0.1:1/x"
    p = arbot("backup")
    assert p.returncode == 2 and "pg_dump" in p.stderr
    asyncio.run(db.close())


async def test_shutdown_lets_an_in_flight_send_finish(aiohttp_client, db):
    """Graceful shutdown (create_app's cleanup): a delivery under way when the app stops completes
    and its row is marked sent, instead of being cut off and sent again after the restart."""
    import asyncio

    from bot.app import STATE, create_app
    from bot.clock import FixedClock
    from bot.services import Services
    from storage.models import OutboxMessage
    from bot.core.channel import Capabilities
    from tests.harness import config_for

    cfg = config_for(db.url)
    services = Services.build(cfg, clock=FixedClock(at("2026-11-23 09:00"), cfg.company.timezone), db=db)
    app = create_app(cfg, services, start_scheduler=False, start_sender=True)
    client = await aiohttp_client(app)
    state = app[STATE]
    started, delivered = asyncio.Event(), []

    class SlowChannel:
        platform, capabilities = "slow", Capabilities(targets=frozenset({"group"}))

        async def deliver(self, out):
            started.set()
            await asyncio.sleep(0.5)
            delivered.append(out.text)

    state.channels["slow"] = SlowChannel()
    async with db.session() as s, s.begin():
        await notify.to_chat(s, "slow", "group", "g", "再见", key="bye", now=services.clock.now())
    state.sender.wake()
    await asyncio.wait_for(started.wait(), timeout=10)
    await client.close()                                   # runs the app's cleanup while the send is in flight
    assert delivered == ["再见"]
    async with db.session() as s:
        [row] = (await s.execute(OutboxMessage.__table__.select())).all()
        assert row.status == "sent" and row.attempts == 1


async def test_an_instance_with_send_off_queues_but_does_not_send(aiohttp_client, db):
    """[outbox] send = false: the multi-instance set-up where one instance sends."""
    import asyncio

    from bot.app import STATE, create_app
    from bot.clock import FixedClock
    from bot.core.messages import OutgoingMessage
    from bot.outbox import enqueue
    from bot.services import Services
    from tests.harness import config_for
    cfg = config_for(db.url, outbox={"send": False, "poll_seconds": 0.05})   # send=True delivers it within 0.3 s
    services = Services.build(cfg, clock=FixedClock(at("2026-11-23 10:00"), cfg.company.timezone), db=db)
    client = await aiohttp_client(create_app(cfg, services, start_scheduler=False))
    async with db.session() as s, s.begin():
        await enqueue(s, OutgoingMessage(platform="local", target_kind="user", target="rep1", text="hi"), "k", services.clock.now())
    await asyncio.sleep(0.3)                 # several poll intervals of a running sender
    health = await (await client.get("/healthz")).json()
    assert health["outbox"]["pending"] == 1 and health["outbox"]["sent"] == 0
    await client.app[STATE].sender.drain()   # an instance that sends would deliver it
    health = await (await client.get("/healthz")).json()
    assert health["outbox"]["sent"] == 1
