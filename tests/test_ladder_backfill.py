"""The escalation ladder meeting old invoices: after an import (or a restart, or a new step in
the ladder) only each invoice's current step fires, once; the steps it passed before the bot
saw it are recorded as skipped, visible in the record, and never sent. Before this, the first
run after importing the demo ledger sent every past step at once (724 messages to each finance
person, 179 lawyer-letter drafts, 470 customer e-mails)."""
from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from bot.policy import DEFAULT_LADDER
from storage import collection
from storage.imports import import_file
from storage.models import AuditEntry, CustomerMessage, DigestItem, LadderStep, OutboxMessage, Receivable
from tests.conftest import at
from tests.harness import Bot

# who hears of which step is the point here, not the letters' pages (read back in test_letters.py)
pytestmark = pytest.mark.usefixtures("placeholder_pdfs")
TODAY = date(2026, 12, 1)                     # a Tuesday
NOW = at("2026-12-01 09:00")
PEOPLE = """员工编号,姓名,角色,上级
S1,王主管,销售主管,
R1,张伟,业务员,S1
R2,李娜,业务员,S1
F1,陈静,财务,
F2,钱会计,财务,
L1,赵律师,法务,
"""
CUSTOMERS = ["上海恒信机电有限公司", "苏州华瑞电子科技有限公司", "广州粤海照明器材有限公司",
             "深圳宏达进出口贸易有限公司", "杭州明光灯饰有限公司", "南京金陵灯具有限公司"]
# days overdue of the imported invoices: one per customer at each age, from "not yet at d7" to 400
AGES = [3, 6, 7, 10, 14, 15, 20, 29, 30, 45, 59, 60, 75, 89, 90, 120, 200, 400]
LADDER = [st["days"] for st in DEFAULT_LADDER]            # 7, 15, 30, 60, 90


def current_step(days: int) -> int | None:
    reached = [d for d in LADDER if d <= days]
    return reached[-1] if reached else None


async def _import_ledger(db, tmp_path) -> dict[str, int]:
    """People, customers (with e-mail contacts) and 108 invoices from CSV files, as finance would
    load them; returns each invoice's days overdue."""
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    rows = ["客户编码,客户名称,信用等级,信用额度,业务员,联系人,邮箱"]
    for i, name in enumerate(CUSTOMERS, start=1):
        rows.append(f"K{i:03d},{name},B,100000000,R{1 + i % 2},财务{i},ap{i}@example.com")
    (tmp_path / "customers.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ages: dict[str, int] = {}
    rows = ["发票号,合同编号,客户名称,开票日期,到期日,应收金额,币种,付款条件"]
    for ci, name in enumerate(CUSTOMERS, start=1):
        for days in AGES:
            inv = f"FP-{ci}-{days:03d}"
            due = TODAY - timedelta(days=days)
            rows.append(f"{inv},HT-{inv},{name},{due - timedelta(days=30)},{due},12345.67,人民币,月结30天")
            ages[inv] = days
    (tmp_path / "receivables.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for kind in ("people", "customers", "receivables"):
        report = await import_file(db, kind, tmp_path / f"{kind}.csv", now=NOW, today=TODAY)
        assert report.ok, report.to_dict()
    return ages


async def _recorded(db) -> dict[str, dict[str, str]]:
    async with db.session() as s:
        rows = (await s.execute(select(Receivable.invoice_no, LadderStep.step, LadderStep.status)
                                .join(LadderStep, LadderStep.receivable_id == Receivable.id))).all()
    out: dict[str, dict[str, str]] = {}
    for inv, step, status in rows:
        out.setdefault(inv, {})[step] = status
    return out


async def _keys(db) -> list[str]:
    """The ladder's outbox keys (customer messages, letter drafts) and its staff notifications'
    keys (``ladder:{invoice}:{step}:{person}``: a line of that person's digest, issue #15)."""
    async with db.session() as s:
        return list((await s.execute(select(OutboxMessage.idem_key).where(OutboxMessage.idem_key.like("ladder:%"))
                                     )).scalars()) + \
            list((await s.execute(select(DigestItem.item_key).where(DigestItem.item_key.like("ladder:%")))).scalars())


async def _digests(db) -> Counter:
    """Digest messages queued per person."""
    async with db.session() as s:
        keys = (await s.execute(select(OutboxMessage.idem_key).where(OutboxMessage.idem_key.like("digest:%")))).scalars()
        return Counter(k.split(":")[3] for k in keys)


async def test_first_run_after_an_import_fires_only_each_invoices_current_step(aiohttp_client, any_db, tmp_path):
    db = any_db          # the ledger pass writes with dialect-specific inserts: both databases
    ages = await _import_ledger(db, tmp_path)
    # one imported invoice (45 days overdue, at d30) carries a promise to pay by Thursday 12-10
    async with db.session() as s, s.begin():
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == "FP-3-045"))).scalar_one()
        await collection.make_promise(s, receivable=r, promised_date=date(2026, 12, 10), amount=None,
                                      person_id="R2", at=NOW, channel="test")
    bot = await Bot.start(aiohttp_client, db, NOW)
    summary = await bot.run("escalations", at("2026-12-01 09:30"))

    # every invoice past d7 fires exactly its current step; every earlier step is a skipped row
    recorded = await _recorded(db)
    for inv, days in ages.items():
        cur = current_step(days)
        if cur is None:
            assert inv not in recorded
            continue
        expected = {f"d{d}": "skipped" for d in LADDER if d < cur} | {f"d{cur}": "fired"}
        if inv == "FP-3-045":
            expected["d30"] = "held"                   # the promise defers its current step
        assert recorded[inv] == expected, (inv, days)
    fired = sum(1 for d in ages.values() if current_step(d)) - 1
    skipped = sum(len([x for x in LADDER if x < current_step(d)]) for d in ages.values() if current_step(d))
    assert summary == f"{fired} ladder step(s) fired, {skipped} earlier step(s) skipped, 1 invoice(s) held " \
                      f"(dispute or promise), 6 digest(s)"          # R1, R2, S1, F1, F2, L1
    assert (fired, skipped) == (95, 204)       # 300 steps had passed: the old job fired them all

    # what people hear of is one step per invoice, not one per past step
    keys = await _keys(db)
    per_person = Counter(k.rsplit(":", 1)[1] for k in keys if k.count(":") >= 3)    # staff: ...:{person}
    at_d15 = sum(1 for d in ages.values() if current_step(d) == 15)            # 15-29 days: 18 invoices
    # finance hears of d15 only: a line per invoice, and one confirmation letter per customer
    # (the old job: every invoice past d15, 78 of them, 156 messages to each; then 36 each)
    assert per_person["F1"] == per_person["F2"] == at_d15 + len(CUSTOMERS) == 24
    at_d60 = sum(1 for d in ages.values() if current_step(d) == 60)
    at_d90 = sum(1 for d in ages.values() if current_step(d) == 90)
    drafts = [k for k in keys if k.startswith("ladder:") and ":d60:doc:" in k]
    assert len(drafts) == len(CUSTOMERS) and at_d60 == 18     # lawyer-letter drafts: one per customer at d60
    assert per_person["L1"] == at_d60 + len(CUSTOMERS) + at_d90     # d60 (with the drafts) and d90
    # ... and the lines go out as one digest per person (split in parts to fit WeCom-sized
    # messages): not a message per invoice
    digests = await _digests(db)
    assert set(digests) == {"R1", "R2", "S1", "F1", "F2", "L1"}
    async with db.session() as s:
        digest_keys = {k.rsplit(":", 1)[0] for k in (await s.execute(
            select(OutboxMessage.idem_key).where(OutboxMessage.idem_key.like("digest:%")))).scalars()}
    assert len(digest_keys) == 6                              # one digest each, whatever its parts
    # the customer hears only of invoices whose current step writes to the customer (d7: 7-14 days),
    # in one letter per customer listing them all, sent with the first of them (the most overdue)
    async with db.session() as s:
        cms = (await s.execute(select(Receivable.invoice_no, CustomerMessage.step)
                               .join(CustomerMessage, CustomerMessage.receivable_id == Receivable.id))).all()
        assert sorted(inv for inv, _ in cms) == [f"FP-{ci}-014" for ci in range(1, len(CUSTOMERS) + 1)]
        assert {step for _, step in cms} == {"d7"}
        # a customer is frozen only because an invoice is at the freeze step (d60) now: here every
        # customer has such an invoice; skipped d60 steps of older invoices froze nobody
        frozen = (await s.execute(select(AuditEntry.detail).where(AuditEntry.action == "customer.freeze"))
                  ).scalars().all()
        assert len(frozen) == len(CUSTOMERS)
        assert all(d["invoice"].split("-")[2] in ("060", "075", "089") for d in frozen)
        skips = (await s.execute(select(AuditEntry).where(AuditEntry.action == "ladder.skip"))).scalars().all()
        assert len(skips) == skipped and {e.detail["current"] for e in skips} == {"d15", "d30", "d60", "d90"}
        item = (await s.execute(select(DigestItem).where(DigestItem.item_key == "ladder:FP-1-200:d90:L1"))).scalar_one()
        text = "\n".join((await s.execute(select(OutboxMessage.text).where(
            OutboxMessage.idem_key.like(item.digest_key + ":%")))).scalars())
    assert item.label.startswith("逾期第90天（法务；法务启动诉讼") and item.label in text
    assert "第7、15、30、60天的步骤已错过，不补发" in item.line and item.line in text

    # the same run again sends nothing; the next day only the invoices that reach a new step fire
    assert (await bot.run("escalations", at("2026-12-01 15:00"), claim=False)).startswith("0 ladder step(s)")
    summary = await bot.run("escalations", at("2026-12-02 09:30"))
    crossing = sum(1 for d in ages.values() if d + 1 in LADDER)          # 6, 14, 29, 59, 89 days old
    assert summary.startswith(f"{crossing} ladder step(s) fired, 0 earlier step(s) skipped")
    recorded = await _recorded(db)
    assert recorded["FP-1-014"] == {"d7": "fired", "d15": "fired"}     # the ladder went on as usual

    # the promise ran out (12-10 plus one working day of grace): the held d30 fires, once
    await bot.run("escalations", at("2026-12-14 09:30"))
    recorded = await _recorded(db)
    assert recorded["FP-3-045"] == {"d7": "skipped", "d15": "skipped", "d30": "fired"}
    assert "ladder:FP-3-045:d30:S1" in await _keys(db)


async def test_the_ladder_decides_the_same_whatever_the_size_of_its_reads(aiohttp_client, db, tmp_path, monkeypatch):
    """The pass reads a few customers' open invoices at a time (at most ~INVOICES_PER_READ, so no
    read stalls chat at 1M receivables). Cut into reads of a few invoices, the outcome is the
    same: every step, every message key."""
    from bot.jobs import ledger_pass
    await _import_ledger(db, tmp_path)
    sizes: list[int] = []
    real_read = ledger_pass.LedgerPass._read

    async def counted(self, r, customer_ids, *args):
        chunk = await real_read(self, r, customer_ids, *args)
        sizes.append(len(customer_ids))
        return chunk

    monkeypatch.setattr(ledger_pass.LedgerPass, "_read", counted)
    monkeypatch.setattr(ledger_pass, "INVOICES_PER_READ", 7)
    bot = await Bot.start(aiohttp_client, db, NOW)
    summary = await bot.run("escalations", at("2026-12-01 09:30"))
    # the figures of the first-run test above, without its promise: 96 fired, none held
    assert summary == "96 ladder step(s) fired, 204 earlier step(s) skipped, 0 invoice(s) held (dispute or promise)" \
                      ", 6 digest(s)"
    assert len(sizes) > 1 and max(sizes) < len(CUSTOMERS)       # several reads, none of every customer
    recorded = await _recorded(db)
    assert sum(v == "fired" for steps in recorded.values() for v in steps.values()) == 96
    assert len(await _keys(db)) == len(set(await _keys(db)))


async def test_after_a_restart_and_a_new_step_only_the_current_step_fires(aiohttp_client, db, tmp_path):
    ages = await _import_ledger(db, tmp_path)
    bot = await Bot.start(aiohttp_client, db, NOW)
    await bot.run("escalations", at("2026-12-01 09:30"))
    assert (await _recorded(db))["FP-2-010"] == {"d7": "fired"}

    # the bot was down for 40 days: FP-2-010 is now 50 days overdue; d15 passed unseen
    summary = await bot.run("escalations", at("2027-01-10 09:30"))
    recorded = await _recorded(db)
    assert recorded["FP-2-010"] == {"d7": "fired", "d15": "skipped", "d30": "fired"}
    assert "earlier step(s) skipped" in summary

    # a step added to the ladder (d45) meets invoices already past it: skipped, never sent late
    ladder = (*DEFAULT_LADDER, {"days": 45, "notify": ["finance"], "document": "confirmation"})
    bot.services.config = dataclasses.replace(bot.services.config, policy=dataclasses.replace(
        bot.services.config.policy, ladder=ladder))
    await bot.run("escalations", at("2027-01-11 09:30"))
    recorded = await _recorded(db)
    assert recorded["FP-2-010"]["d45"] == "fired"            # 51 days: d45 is its current step now
    assert recorded["FP-2-075"]["d45"] == "skipped"          # 116 days: d90 is current, d45 passed
    keys = await _keys(db)
    assert not [k for k in keys if ":d45:" in k and k.startswith("ladder:FP-2-075")]
    assert ages["FP-2-075"] == 75

    # d90 moved to d85: the invoices that had d90 are past that stage, d85 is skipped for them;
    # it fires only for those now 85-89 days overdue (imported at 45, 87 days now)
    ladder = tuple({**st, "days": 85} if st["days"] == 90 else st for st in ladder)
    bot.services.config = dataclasses.replace(bot.services.config, policy=dataclasses.replace(
        bot.services.config.policy, ladder=ladder))
    await bot.run("escalations", at("2027-01-12 09:30"))
    recorded = await _recorded(db)
    assert recorded["FP-2-075"]["d90"] == "fired" and recorded["FP-2-075"]["d85"] == "skipped"
    assert recorded["FP-2-045"]["d85"] == "fired" and "d90" not in recorded["FP-2-045"]
    assert {k.split(":")[1] for k in await _keys(db) if ":d85:" in k} == {
        inv for inv, d in ages.items() if 85 <= d + 42 < 90}


async def test_a_dispute_that_comes_in_while_the_ladder_decides_stops_the_customer_message(
        aiohttp_client, db, tmp_path, monkeypatch):
    """The ladder reads a chunk of the ledger, decides, then writes. A rep who disputes an
    invoice in between must win: no reminder about a disputed invoice reaches the customer
    (the e-mail would otherwise be queued after the dispute had cancelled the others)."""
    from bot.jobs import ledger_pass
    ages = await _import_ledger(db, tmp_path)
    at_d7 = sorted(inv for inv, d in ages.items() if current_step(d) == 7)
    disputed = at_d7[0]
    real_read = ledger_pass.LedgerPass._read

    async def read_then_a_rep_disputes(self, r, *args):
        chunk = await real_read(self, r, *args)
        async def dispute(s):
            inv = (await s.execute(select(Receivable).where(Receivable.invoice_no == disputed))).scalar_one()
            if not inv.disputed:
                await collection.open_dispute(s, receivable=inv, reason="数量不符", person_id="R1", at=NOW,
                                              channel="test")
        await db.write(dispute)
        return chunk

    monkeypatch.setattr(ledger_pass.LedgerPass, "_read", read_then_a_rep_disputes)
    bot = await Bot.start(aiohttp_client, db, NOW)
    await bot.run("escalations", at("2026-12-01 09:30"))
    async with db.reader() as s:
        told = set((await s.execute(select(Receivable.invoice_no).join(
            CustomerMessage, CustomerMessage.receivable_id == Receivable.id))).scalars())
    to_customer = [k for k in await _keys(db) if k.count(":") == 2]
    # one letter per customer, with its most overdue d7 invoice; customer 1's would have listed the
    # invoice disputed meanwhile, so it is not sent
    assert disputed == "FP-1-007"
    assert told == {f"FP-{ci}-014" for ci in range(2, len(CUSTOMERS) + 1)}
    assert not [k for k in to_customer if k.startswith("ladder:FP-1-")] and len(to_customer) == len(CUSTOMERS) - 1
