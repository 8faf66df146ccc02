"""Every follow-up lands in the audit log (issue #14): each way one is written — a reply to the
push (tied to an item or kept as a note on the push), a click on an item's card, /followup on an
invoice or a customer, /promise, /dispute, and the demo company — leaves exactly one
``followup.log`` entry naming the follow-up, who wrote it and on which channel. And only
storage/followups.py builds follow-up rows, so a new path cannot skip the entry."""
from __future__ import annotations

import re
import subprocess
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select

from storage.demo import load_demo
from storage.models import AuditEntry, FollowUp, PushItem, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

ROOT = Path(__file__).parent.parent


async def _bot(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX})
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 11:00"))
    return bot


async def _unaudited(db) -> list[FollowUp]:
    """Follow-ups without their one audit entry (matched by the entry's ``followup`` id)."""
    async with db.session() as s:
        fus = (await s.execute(select(FollowUp))).scalars().all()
        entries = (await s.execute(select(AuditEntry).where(AuditEntry.action == "followup.log"))).scalars().all()
    by_fu: dict[int, list[AuditEntry]] = {}
    for e in entries:
        by_fu.setdefault(e.detail.get("followup"), []).append(e)
    return [f for f in fus if [(e.actor, e.channel) for e in by_fu.get(f.id, [])] != [(f.person_id, f.channel)]]


async def _count(db) -> int:
    async with db.session() as s:
        return len((await s.execute(select(FollowUp.id))).all())


async def test_every_chat_path_leaves_an_audit_entry(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    steps = [
        ("rep1", "1 已联系"),                                   # a reply tied to item 1
        ("rep1", "客户说下个月再说"),                            # no item: kept as a note on the push
        ("rep1", "/followup INV-A2 已电话联系王总"),             # /followup on an invoice
        ("rep1", "/followup 上海恒信 上门拜访，对方答应核对"),     # /followup on a customer
        ("rep1", "/promise INV-A3 12月20日"),                    # /promise
        ("rep1", "/dispute INV-B2 货物质量问题"),                 # /dispute
    ]
    for user, text in steps:
        before = await _count(db)
        replies = await bot.say(user, text)
        assert replies and await _count(db) > before, (text, replies)
    # a click on a pushed item's card (where the platform shows cards)
    async with db.session() as s:
        item = (await s.execute(select(PushItem).join(Receivable, Receivable.id == PushItem.receivable_id)
                                .where(Receivable.invoice_no == "INV-B2"))).scalar_one()
    before = await _count(db)
    resp = await bot.client.post("/local/messages", json={"user": "rep1", "text": "",
                                                          "card": {"key": f"fu:{item.id}:contacted"}})
    assert resp.status == 200 and await _count(db) == before + 1
    assert await _count(db) >= 7
    assert await _unaudited(db) == []
    async with db.session() as s:
        entities = {e.entity for e in (await s.execute(
            select(AuditEntry).where(AuditEntry.action == "followup.log"))).scalars()}
    assert entities == {"receivable", "customer", "push"}


async def test_the_demo_companys_followups_are_audited(db):
    async with db.session() as s, s.begin():
        summary = await load_demo(s, today=date(2026, 3, 18), now=datetime.fromisoformat("2026-03-18T10:30:00+08:00"),
                                  customers=20, receivables=300)
    assert summary.followups >= 1 and await _count(db) == summary.followups
    assert await _unaudited(db) == []


def test_only_storage_followups_builds_followup_rows():
    """A follow-up row is made in one place: constructing the model or inserting into its table
    anywhere else would be a write without an audit entry."""
    out = subprocess.run(["grep", "-rnE", r"(^|[^A-Za-z_])FollowUp\(|insert\(FollowUp|FollowUp\.__table__\.insert|INTO followups",
                          "bot", "storage", "domain", "--include=*.py"],
                         cwd=ROOT, capture_output=True, text=True).stdout
    writers = {line.split(":", 1)[0] for line in out.splitlines() if not re.search(r"/migrations/|:class FollowUp\(", line)}
    assert writers == {"storage/followups.py"}, out
