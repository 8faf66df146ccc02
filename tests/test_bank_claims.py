"""回款认领 in chat (issue #16): finance's digest of the receipts nobody is sure of, a rep asked
about their customer's, the rep's claim confirmed by finance, the alias learned and used on the
next statement, finance's own claim booked at once, the anomalies pushed to finance. Through the
local chat on loopback, on tests/bank_fixture.py's ledger."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from bot import cash
from domain.bank_statement import read_statement
from storage.bank import import_statement
from storage.models import AuditEntry, BankAlias, BankLine, Receivable
from tests import bank_fixture as fx
from tests.conftest import at
from tests.harness import Bot

BANK = Path(__file__).parent / "data" / "bank"
D = Decimal
HEAD = "交易日期,交易时间,借方金额,贷方金额,余额,对方账号,对方户名,摘要,附言\n"


async def _import(bot: Bot, db, path: Path):
    st = read_statement(path, fx.TODAY)
    assert not st.errors
    async with db.session() as s, s.begin():
        result = await import_statement(s, st, file_name=path.name, account="", actor="fin1", now=bot.clock.now())
    await cash.notify_statement(bot.services, result, now=bot.clock.now())
    return result


async def _open(db, invoice: str) -> Decimal:
    async with db.session() as s:
        return (await s.execute(select(Receivable.open_amount).where(Receivable.invoice_no == invoice))).scalar_one()


async def _start(aiohttp_client, db) -> Bot:
    async with db.session() as s, s.begin():
        await fx.build(s)
    return await Bot.start(aiohttp_client, db, at("2026-12-03 09:00"))


async def test_a_reps_claim_confirmed_by_finance_books_it_and_the_alias_is_used_next_time(aiohttp_client, db, tmp_path):
    bot = await _start(aiohttp_client, db)
    result = await _import(bot, db, BANK / "ccb.xlsx")
    n = result.lines[3].id                       # 5,650.00 from 张伟, memo 恒达精密 FP2026-0003 (open 6,000)
    assert result.lines[3].status == "unclaimed"
    [digest] = [m for m in await bot.inbox("fin1") if "银行到账待认领" in m]
    assert f"第{n}笔" in digest and "张伟" in digest and "¥5,650.00" in digest
    [asked] = [m for m in await bot.inbox("rep1") if "银行到账待认领" in m]
    assert f"认领 {n} HD" in asked and "FP2026-0003" in asked
    assert not [m for m in await bot.inbox("rep2") if "银行到账待认领" in m]      # not their customer

    assert f"第{n}笔" not in (await bot.say("rep2", "认领"))[0]                  # scoped: rep2 sees nothing of it
    [refused] = await bot.say("rep2", f"认领 {n} HD")
    assert "HD" in refused and "已认领" not in refused
    [claimed] = await bot.say("rep1", f"认领 {n} 恒达精密 FP2026-0003")
    assert "等财务确认" in claimed
    assert await _open(db, "FP2026-0003") == D("6000.00")                        # nothing booked yet
    [ask] = [m for m in await bot.inbox("fin1") if "回款认领待确认" in m]
    assert f"认领 确认 {n}" in ask and "张伟" in ask

    [done] = await bot.say("fin1", f"认领 确认 {n}")
    assert "已核销到 深圳市恒达精密机械有限公司" in done and "FP2026-0003 ¥5,650.00" in done and "付款账号" in done
    assert await _open(db, "FP2026-0003") == D("350.00")
    assert any("已由财务确认" in m for m in await bot.inbox("rep1"))
    [again] = await bot.say("fin1", f"认领 确认 {n}")
    assert "没有待确认的认领" in again and await _open(db, "FP2026-0003") == D("350.00")
    async with db.session() as s:
        aliases = (await s.execute(select(BankAlias.kind, BankAlias.value))).all()
        assert aliases == [("account", "6217000010001234567")]                 # a person's name is never learned
        actions = set((await s.execute(select(AuditEntry.action))).scalars())
        assert {"bank.claim", "bank.claim_applied", "bank.alias", "payment.record"} <= actions

    nxt = tmp_path / "next.csv"
    nxt.write_text(HEAD + "2026/12/03,10:00:00,,350.00,0,6217000010001234567,张伟,转账,尾款\n", encoding="utf-8")
    later = await _import(bot, db, nxt)
    assert (later.lines[0].status, later.lines[0].customer, later.lines[0].reasons[0]) == ("applied", "HD", "account_alias")
    assert await _open(db, "FP2026-0003") == D("0.00")


async def test_finance_claims_at_once_and_a_claimed_line_cannot_be_claimed_again(aiohttp_client, db, tmp_path):
    bot = await _start(aiohttp_client, db)
    f = tmp_path / "s.csv"
    f.write_text(HEAD + "2026/12/02,10:00:00,,7000.00,0,622200001,王老板,转账,货款\n", encoding="utf-8")
    result = await _import(bot, db, f)
    n = result.lines[0].id
    assert result.lines[0].status == "unclaimed"
    assert "王老板" in (await bot.say("fin1", "认领"))[0]
    [done] = await bot.say("fin1", f"认领 {n} DS DS-0003")
    assert "已核销到 上海东升贸易有限责任公司" in done and "DS-0003 ¥7,000.00" in done
    assert await _open(db, "DS-0003") == D("0.00") and await _open(db, "DS-0001") == D("5000.00")
    [closed] = await bot.say("rep2", f"认领 {n} DS")
    assert "已经核销" in closed
    [bad] = await bot.say("fin1", "认领 9999 DS")
    assert "找不到第9999笔" in bad
    [gm] = await bot.say("gm", f"认领 {n} DS")
    assert "没有使用 /claim 的权限" in gm


async def test_anomalies_go_to_finance_in_one_digest(aiohttp_client, db, tmp_path):
    bot = await _start(aiohttp_client, db)
    f = tmp_path / "a.csv"
    f.write_text(HEAD
                 + "2026/12/02,10:00:00,,20000.00,0,1,上海东升贸易有限责任公司,转账,货款\n"      # owes 15,000
                 + "2026/12/02,10:01:00,,9999.00,0,2,东莞恒达精密电子有限公司,转账,HE-0001\n"
                 + "2026/12/02,10:02:00,,500.00,0,2,东莞恒达精密电子有限公司,转账,\n"          # nothing open now
                 + "2026/12/02,10:03:00,,9999.00,0,2,东莞恒达精密电子有限公司,转账,付HE-0001\n",  # paid already
                 encoding="utf-8")
    result = await _import(bot, db, f)
    assert [(r.status, r.anomalies) for r in result.lines] == [
        ("applied", ["over_balance"]), ("applied", []), ("applied", ["nothing_open"]),
        ("unclaimed", ["duplicate_payment"])]
    assert result.lines[0].unallocated == D("5000.00")                 # kept on account, never lost
    [digest] = [m for m in await bot.inbox("fin1") if "回款异常" in m]
    assert "疑似重复付款" in digest and "超过未付余额" in digest and "无未付账款" in digest
    assert "¥5,000.00记为预收" in digest
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(BankLine)
                                .where(BankLine.status == "applied"))).scalar_one() == 3


async def test_a_suggestions_card_button_claims_the_line(aiohttp_client, db):
    bot = await _start(aiohttp_client, db)
    result = await _import(bot, db, BANK / "icbc.csv")
    n = result.lines[3].id
    [one] = await bot.say("rep1", f"认领 {n}")
    assert "可能是：深圳市恒达精密机械有限公司（FP2026-0003）" in one
    [hidden] = await bot.say("rep2", f"认领 {n}")
    assert f"找不到第{n}笔" in hidden                        # not one of rep2's customers
    resp = await bot.client.post("/local/messages", json={"user": "rep1", "text": "",
                                                          "card": {"task_id": f"bank-{n}", "key": f"bank:{n}:HD"}})
    [claimed] = [r["text"] for r in (await resp.json())["replies"]]
    assert "已认领" in claimed and "FP2026-0003" in claimed and "等财务确认" in claimed
    async with db.session() as s:
        line = await s.get(BankLine, n)
        assert (line.status, line.claimed_by, line.claim_invoices) == ("claimed", "rep1", ["FP2026-0003"])
    # finance answers the claim with the card's 确认 button
    resp = await bot.client.post("/local/messages", json={"user": "fin1", "text": "",
                                                          "card": {"task_id": f"bankclaim-{n}", "key": f"bank:confirm:{n}"}})
    [done] = [r["text"] for r in (await resp.json())["replies"]]
    assert "已核销到 深圳市恒达精密机械有限公司" in done
    async with db.session() as s:
        assert (await s.get(BankLine, n)).status == "applied"
