"""Several bot instances on one PostgreSQL database: each scheduled fire runs once, each outbox
row is delivered once, each inbound event is handled once — with real ``arbot`` processes.

Topology under test (docs/deployment-scale.md): N × ``python -m bot serve`` → one PostgreSQL;
WeCom is a FakeWeCom on loopback, shared by the instances like the real API would be.
"""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from bot import outbox
from bot.core.messages import OutgoingMessage
from storage.db import Database
from storage.models import InboundEvent, JobRun, OutboxMessage, Push, PushItem
from tests import ledger_fixture
from tests.conftest import at, fresh_pg_database
from tests.multiproc import Served, ThreadedFakeWeCom, free_port, run_together, write_config

pytestmark = pytest.mark.timeout(300)
EXTRA_REPS = 12            # on top of the fixture's two, so the instances contend on many rows
CLAIM_SCRIPT = """
import asyncio, os, sys, time
from datetime import datetime
from bot.clock import FixedClock
from bot.config import load_config
from bot.jobs.scheduler import run_job
from bot.services import Services
cfg = load_config(sys.argv[1])
when = datetime.fromisoformat(sys.argv[2]).replace(tzinfo=cfg.tz)
async def main():
    services = Services.build(cfg, clock=FixedClock(when, cfg.company.timezone))
    time.sleep(max(0.0, float(os.environ["ARBOT_TEST_START"]) - time.time()))
    try:
        print(await run_job(services, "overdue_push", when))
    finally:
        await services.db.close()
asyncio.run(main())
"""


async def _seed(url: str) -> None:
    db = Database(url)
    await db.migrate()
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        await ledger_fixture.add_reps(
            s, count=EXTRA_REPS, rep_id=lambda i: f"xrep{i:02d}", customer_code=lambda i: f"XC{i:02d}",
            customer_name=lambda i: f"测试客户{i:02d}有限公司", invoice_no=lambda i, k: f"X{i:02d}-{k}",
            invoices=8, step_days=10, unit=Decimal("1000.00"))
    await db.close()


def _query(url: str, fn):
    async def go():
        db = Database(url)
        try:
            async with db.session() as s:
                return await fn(s)
        finally:
            await db.close()
    return asyncio.run(go())


@pytest.fixture(scope="module")
def cluster(pg_server, tmp_path_factory):
    """Two served instances on one fresh PostgreSQL database, both sending to one FakeWeCom."""
    tmp = tmp_path_factory.mktemp("cluster")
    url = asyncio.run(fresh_pg_database(pg_server))
    asyncio.run(_seed(url))
    fake = ThreadedFakeWeCom(apps={1000002: "fake-app-secret"})
    servers = []
    try:
        for name in ("a", "b"):
            port = free_port()
            cfg = write_config(tmp / f"{name}.toml", url, port, wecom_url=fake.fake.url, corp_id=fake.fake.corp_id)
            with cfg.open("a", encoding="utf-8") as f:
                f.write("\n[collection]\nmax_message_bytes = 600\n")    # several parts per push
            servers.append(Served(cfg, port, tmp / f"{name}.log"))
        yield {"url": url, "fake": fake, "servers": servers, "configs": [tmp / "a.toml", tmp / "b.toml"], "tmp": tmp}
    finally:
        for s in servers:
            s.stop()
        fake.close()


def _make_due(url: str, where) -> None:
    """Rows queued by a job run "as if" at a later --at wait for that time; the instances' senders
    run on the real clock, so bring the wait forward (delivery itself is what is under test)."""
    async def go(s):
        async with s.begin():
            now = datetime.now(timezone.utc)
            await s.execute(update(OutboxMessage).where(where, OutboxMessage.next_attempt_at > now)
                            .values(next_attempt_at=now))
    _query(url, go)


def _wait_sent(url: str, where, limit_s: float = 60) -> int:
    _make_due(url, where)
    deadline = time.monotonic() + limit_s
    while True:
        left = _query(url, lambda s: _scalar(s, select(func.count()).select_from(OutboxMessage)
                                             .where(OutboxMessage.status == "pending", where)))
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.3)


async def _scalar(s, stmt):
    return (await s.execute(stmt)).scalar_one()


def _received_texts(fake: ThreadedFakeWeCom) -> Counter:
    def texts(f):
        out = Counter()
        for r in f.received:
            body = r.payload.get(r.payload.get("msgtype", ""), {})
            out[(tuple(r.touser), body.get("content"))] += 1
        return out
    return fake.call(texts)


def test_concurrent_push_runs_push_each_rep_once_and_every_part_is_delivered_once(cluster):
    url, cfgs = cluster["url"], cluster["configs"]
    cmd = [sys.executable, "-m", "bot", "--config"]
    results = run_together([cmd + [str(c), "jobs", "run", "overdue_push", "--at", "2026-11-23T09:00"] for c in cfgs])
    ok = [r for r in results if r.returncode == 0]
    assert ok, [r.stderr[-1500:] for r in results]
    for r in results:          # the loser of the race may fail on the unique push, never with anything else
        assert r.returncode == 0 or "UniqueViolation" in r.stderr or "IntegrityError" in r.stderr, r.stderr[-2000:]

    async def state(s):
        pushes = (await s.execute(select(Push.rep_id, func.count()).where(Push.for_date == date(2026, 11, 23))
                                  .group_by(Push.rep_id))).all()
        items = (await s.execute(select(PushItem.push_id, PushItem.receivable_id, func.count())
                                 .group_by(PushItem.push_id, PushItem.receivable_id))).all()
        rows = (await s.execute(select(OutboxMessage).where(OutboxMessage.idem_key.like("push:2026-11-23:%")))).scalars().all()
        return pushes, items, list(rows)
    pushes, items, rows = _query(url, state)
    assert dict(pushes) == {r: 1 for r in ["rep1", "rep2"] + [f"xrep{i:02d}" for i in range(EXTRA_REPS)]}
    assert all(n == 1 for *_, n in items)
    parts: dict[str, list[int]] = {}
    for row in rows:                                   # push:<date>:<part>:<person>
        _, _, part, person = row.idem_key.split(":")
        parts.setdefault(person, []).append(int(part))
    assert set(parts) == set(dict(pushes))
    assert all(sorted(p) == list(range(1, len(p) + 1)) for p in parts.values()), parts
    assert any(len(p) > 1 for p in parts.values())      # the byte limit really split some

    # both instances' senders drain the same rows: each part reaches WeCom exactly once
    assert _wait_sent(url, OutboxMessage.idem_key.like("push:2026-11-23:%")) == 0
    got = _received_texts(cluster["fake"])
    for row in _query(url, lambda s: _rows(s, "push:2026-11-23:%")):
        assert row.status == "sent" and row.attempts == 1, (row.idem_key, row.status, row.attempts, row.last_error)
        assert got[((row.target,), row.text)] == 1, row.idem_key


async def _rows(s, pattern):
    return list((await s.execute(select(OutboxMessage).where(OutboxMessage.idem_key.like(pattern)))).scalars())


def test_a_claimed_fire_runs_in_one_process_only(cluster):
    url, cfgs = cluster["url"], cluster["configs"]
    results = run_together([[sys.executable, "-c", CLAIM_SCRIPT, str(c), "2026-11-24T09:00"] for c in cfgs])
    outs = sorted(r.stdout.strip() for r in results)
    assert all(r.returncode == 0 for r in results), [r.stderr[-1500:] for r in results]
    assert outs[0].startswith("overdue_push: already ran for 2026-11-24"), outs
    assert outs[1].startswith("pushed 14 rep(s)"), outs
    runs = _query(url, lambda s: _all(s, select(JobRun.status).where(JobRun.job == "overdue_push",
                                                                    JobRun.fire_key == "2026-11-24")))
    assert runs == ["ok"]
    assert _wait_sent(url, OutboxMessage.idem_key.like("push:2026-11-24:%")) == 0


async def _all(s, stmt):
    return list((await s.execute(stmt)).scalars())


def test_outbox_rows_are_delivered_once_by_two_senders(cluster):
    url, fake = cluster["url"], cluster["fake"]
    n = 300

    async def enqueue(s):
        async with s.begin():
            now = at("2026-11-24 10:00")
            for i in range(n):     # one message per member: the member limit is not what is tested here
                await outbox.enqueue(s, OutgoingMessage(platform="wecom", target_kind="user", target=f"bulk{i:04d}",
                                                        text=f"bulk message {i}", format="text"), f"bulk:{i}", now)
    _query(url, enqueue)
    for srv in cluster["servers"]:           # nudge both: POST-free wake-up is the poll (0.2 s)
        assert srv.proc.poll() is None
    assert _wait_sent(url, OutboxMessage.idem_key.like("bulk:%")) == 0
    rows = _query(url, lambda s: _rows(s, "bulk:%"))
    assert len(rows) == n and all(r.status == "sent" and r.attempts == 1 and r.claimed_by is None for r in rows)
    got = _received_texts(fake)
    assert all(got[((f"bulk{i:04d}",), f"bulk message {i}")] == 1 for i in range(n))
    # none of these was dropped by WeCom's member limit (earlier tests' multi-part pushes to one rep
    # from two instances can exceed it: the limiter is per instance, see docs/deployment-scale.md)
    dropped = fake.call(lambda f: [r.payload["text"]["content"] for r in f.dropped if r.payload.get("msgtype") == "text"])
    assert not [t for t in dropped if t.startswith("bulk message")]
    assert fake.call(lambda f: f.gettoken_calls) >= 2        # both instances sent (each has its own token)


def test_the_same_inbound_message_posted_to_both_instances_is_handled_once(cluster):
    url, servers = cluster["url"], cluster["servers"]
    body = json.dumps({"user": "rep1", "text": "/help", "id": "dup-across-instances"}).encode()
    answers: list[dict] = []
    start = threading.Barrier(2)

    def post(srv):
        req = urllib.request.Request(f"{srv.url}/local/messages", data=body,
                                     headers={"Content-Type": "application/json"})
        start.wait(5)
        with urllib.request.urlopen(req, timeout=30) as r:
            answers.append({"status": r.status, **json.loads(r.read())})
    threads = [threading.Thread(target=post, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(a["status"] for a in answers) == [200, 200]
    assert sorted(len(a["replies"]) > 0 for a in answers) == [False, True]
    events = _query(url, lambda s: _all(s, select(InboundEvent.status).where(
        InboundEvent.platform == "local", InboundEvent.event_key == "dup-across-instances")))
    assert events == ["handled"]
