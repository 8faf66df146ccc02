"""The audit log read as an auditor reads it (issue #19): /audit in chat, `arbot audit` on the
command line, imports by a named operator, and a credit freeze shown on /customer and lifted by
finance, audited.

On the fixture company (tests/ledger_fixture.py), Monday 2026-11-23: 钱会计 (fin1) books ¥3,000.00
on INV-A1 at 10:05; 张伟 (rep1) disputes INV-A3 at 10:10; on 11-24 钱会计 books ¥1,000.00 on INV-A2.
明达 (C2) owes 8,000.50 + 12,345.67 = 20,346.17; with a credit limit of ¥20,000.00 its usage is
101.7 % — past red (90 %) — so the credit watch freezes it.
"""
from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select, update

from storage.models import AuditEntry, Customer
from tests import cli_inprocess, ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal
DATA = Path(__file__).parent / "data"


async def _bot(aiohttp_client, db) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:05"), company={"fx_rates": ledger_fixture.FX})
    await bot.say("fin1", "/paid INV-A1 3000 LS-A1")
    bot.clock.set(at("2026-11-23 10:10"))
    await bot.say("rep1", "/dispute INV-A3 数量不符")
    bot.clock.set(at("2026-11-24 09:00"))
    await bot.say("fin1", "/paid INV-A2 1000 LS-A2")
    return bot


def _entries(reply: str) -> list[str]:
    return [line for line in reply.splitlines() if line.startswith("- ")]


async def test_audit_in_chat_narrowed_by_invoice_person_and_dates(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("aud1", "/audit INV-A1")
    assert reply.splitlines()[0] == "**审计日志**（INV-A1）：共1条"
    [line] = _entries(reply)
    # the payment's entry (entity payment) found by the invoice it paid
    assert line.startswith("- 2026-11-23 10:05 钱会计（本地聊天）登记回款 ") and "allocations={'INV-A1': '3000.00'}" in line

    [reply] = await bot.say("fin1", "/审计 @张伟")
    lines = _entries(reply)          # a dispute is logged as a follow-up too; the fixture's own dispute of 11-20
    assert sorted(line.split("：")[0] for line in lines) == [
        "- 2026-11-20 10:00 张伟（test）登记异议 INV-B1", "- 2026-11-23 10:10 张伟（本地聊天）催收记录 INV-A3",
        "- 2026-11-23 10:10 张伟（本地聊天）登记异议 INV-A3"]
    # both days' entries by 钱会计; the 24th alone
    [reply] = await bot.say("aud1", "/audit @钱会计 2026-11-23~2026-11-24")
    lines = _entries(reply)
    assert [line[:32] for line in lines] == ["- 2026-11-24 09:00 钱会计（本地聊天）登记回款", "- 2026-11-23 10:05 钱会计（本地聊天）登记回款"]
    assert "'INV-A2': '1000.00'" in lines[0] and "'INV-A1': '3000.00'" in lines[1]
    [reply] = await bot.say("aud1", "/audit @fin1 2026-11-24")
    assert len(_entries(reply)) == 1 and "INV-A2" in _entries(reply)[0]
    # a customer: its own entries and its invoices' (C1 恒信: INV-A1, A2, A3 and the fixture's INV-A2 payment)
    [reply] = await bot.say("aud1", "/audit C1 2026-11-23~2026-11-24")
    lines = _entries(reply)
    assert len(lines) == 4 and any("登记异议 INV-A3" in line for line in lines)    # and its follow-up line
    assert "customer=C1" in lines[0] and "customer=C1" in lines[-1]                # the two payments
    [reply] = await bot.say("aud1", "/audit C3 2026-11-23~2026-11-24")          # 顺发: nothing those days
    assert "共0条" in reply and "没有符合条件的记录。" in reply
    # what it cannot read is said, with how to write it
    [reply] = await bot.say("aud1", "/audit 2026-13-40")
    assert reply.startswith("看不懂“2026-13-40”：请写发票号、客户、@人员")
    # reps do not read the audit log
    assert "没有使用 /audit 的权限" in (await bot.say("rep1", "/audit"))[0]


async def test_audit_in_chat_a_page_at_a_time(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    for n in range(1, 21):                          # twenty follow-ups by 张伟 on INV-A1
        bot.clock.set(at(f"2026-11-24 10:{n:02d}"))
        await bot.say("rep1", f"/followup INV-A1 第{n}次电话，客户说在走流程")
    [page1] = await bot.say("aud1", "/audit @张伟 2026-11-24")
    assert page1.splitlines()[0] == "**审计日志**（@张伟 2026-11-24）：共20条，第1/2页"
    assert len(_entries(page1)) == 15
    assert _entries(page1)[0].startswith("- 2026-11-24 10:20 张伟（本地聊天）催收记录 INV-A1")
    assert _entries(page1)[-1].startswith("- 2026-11-24 10:06 ")
    assert page1.splitlines()[-1] == "下一页：`/audit @张伟 2026-11-24 第2页`"
    [page2] = await bot.say("aud1", "/audit @张伟 2026-11-24 第2页")
    assert [line[13:18] for line in _entries(page2)] == ["10:05", "10:04", "10:03", "10:02", "10:01"]
    assert "下一页" not in page2


def _cli(db, tmp_path, capfd, *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    code = cli_inprocess.arbot(cli_inprocess.config_file(tmp_path, db.url), *args)
    out = capfd.readouterr()
    return code, out.out, out.err


async def test_arbot_audit_filters_and_json(aiohttp_client, db, tmp_path, capfd):
    await _bot(aiohttp_client, db)
    loop = asyncio.get_running_loop()

    async def cli(*args):
        return await loop.run_in_executor(None, lambda: _cli(db, tmp_path, capfd, *args))

    code, out, _ = await cli("audit", "--person", "fin1", "--action", "payment", "--since", "2026-11-23", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["detail"]["allocations"], r["actor_name"], r["detail"]["amount"]) for r in rows] == [
        ({"INV-A2": "1000.00"}, "钱会计", "1000.00"), ({"INV-A1": "3000.00"}, "钱会计", "3000.00")]
    assert rows[0]["at"] == "2026-11-24T09:00:00+08:00" and rows[0]["action"] == "payment.record"
    code, out, _ = await cli("audit", "--entity", "receivable", "--id", "INV-A3")
    assert code == 0 and "dispute.open（登记异议）  receivable INV-A3" in out and "rep1（张伟）" in out
    code, _, err = await cli("audit", "--until", "11/30")
    assert code == 2 and "YYYY-MM-DD" in err and "Traceback" not in err


def test_an_import_records_its_operator(tmp_path, capfd):
    import getpass
    config = cli_inprocess.config_file(tmp_path, f"sqlite:///{tmp_path}/i.db")
    assert cli_inprocess.arbot(config, "import", "people", str(DATA / "people.csv"), "--operator", "陈静") == 0
    assert cli_inprocess.arbot(config, "import", "customers", str(DATA / "customers_gbk.csv")) == 0
    capfd.readouterr()
    assert cli_inprocess.arbot(config, "audit", "--action", "import.file", "--format", "json") == 0
    rows = json.loads(capfd.readouterr().out)
    # newest first: the customers by whoever runs the command (the OS user), the people by 陈静
    assert [(r["actor"], r["detail"]["kind"]) for r in rows] == [(getpass.getuser(), "customers"), ("陈静", "people")]
    assert "cli" not in {r["actor"] for r in rows}


async def test_a_credit_freeze_is_shown_and_lifted_by_finance(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        await s.execute(update(Customer).where(Customer.code == "C2").values(credit_limit=D("20000.00")))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 09:00"), company={"fx_rates": ledger_fixture.FX})
    await bot.run("credit_watch", at("2026-11-23 09:00"))
    [card] = await bot.say("rep1", "/customer C2")
    assert "🔒 **已冻结（暂停新订单）**：2026-11-23，信用额度超红线。财务可发送 `/unfreeze C2 原因` 解除" in card
    assert "没有使用 /unfreeze 的权限" in (await bot.say("rep1", "/unfreeze C2 客户已付款"))[0]
    bot.clock.set(at("2026-11-23 15:00"))
    [reply] = await bot.say("fin1", "/unfreeze 苏州明达电子科技有限公司 已补签担保函")
    assert reply == "已解除 苏州明达电子科技有限公司（C2）的冻结，可以恢复接单发货；原因：已补签担保函。已记入审计日志。"
    [card] = await bot.say("rep1", "/customer C2")
    assert "已冻结" not in card
    assert (await bot.say("fin1", "/解冻 C2"))[0].startswith("苏州明达电子科技有限公司 没有被冻结。")
    async with db.session() as s:
        assert (await s.execute(select(Customer.status).where(Customer.code == "C2"))).scalar_one() == "active"
        [e] = (await s.execute(select(AuditEntry).where(AuditEntry.action == "customer.unfreeze"))).scalars().all()
        assert (e.actor, e.entity_id, e.detail["reason"], e.detail["frozen_by"]) == ("fin1", "C2", "已补签担保函", "credit")
        assert e.detail["old"] == {"status": "frozen"} and e.detail["new"] == {"status": "active"}
    [log] = await bot.say("aud1", "/audit C2 2026-11-23")
    assert "钱会计（本地聊天）解除冻结 C2" in log and "信用预警 C2" in log
