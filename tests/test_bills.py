"""Acceptance bills (承兑汇票, issue #16): received in chat they settle the invoices; held, they are
watched to maturity (a reminder a week before and on the day); collected, endorsed or discounted,
they leave the watch. On tests/bank_fixture.py's ledger, through the local chat."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from domain.bank_statement import read_statement
from storage.bank import import_statement
from storage.models import AcceptanceBill, AuditEntry, Payment, Receivable
from tests import bank_fixture as fx
from tests.conftest import at
from tests.harness import Bot

D = Decimal


async def _open(db, invoice: str) -> Decimal:
    async with db.session() as s:
        return (await s.execute(select(Receivable.open_amount).where(Receivable.invoice_no == invoice))).scalar_one()


async def test_a_bill_settles_the_invoice_and_is_watched_to_maturity(aiohttp_client, db, tmp_path):
    async with db.session() as s, s.begin():
        await fx.build(s)
    bot = await Bot.start(aiohttp_client, db, at("2026-12-03 10:00"))
    [got] = await bot.say("fin1", "/承兑 FP2026-0001 11300 31000051-2026-0001 银承 工商银行深圳分行 2027-03-01")
    assert "已收银行承兑汇票 31000051-2026-0001" in got and "FP2026-0001 ¥11,300.00" in got
    assert await _open(db, "FP2026-0001") == 0
    [again] = await bot.say("fin1", "/承兑 FP2026-0001 11300 31000051-2026-0001 银承 工商银行深圳分行 2027-03-01")
    assert "已经登记过" in again
    async with db.session() as s:
        assert (await s.execute(select(Payment.reference))).scalars().all() == ["承兑:31000051-2026-0001"]
    assert "31000051-2026-0001" in (await bot.say("rep1", "/承兑"))[0]           # HD is rep1's
    assert (await bot.say("rep2", "/承兑"))[0] == "没有在手的承兑汇票。"
    assert "没有使用 /bill 的权限" in (await bot.say("rep1", "/承兑 托收 31000051-2026-0001"))[0]

    assert "1 bill reminder" in await bot.run("bill_watch", at("2027-02-22 09:00"))    # a week before
    [soon] = [m for m in await bot.inbox("fin1") if "承兑汇票到期提醒" in m]
    assert "31000051-2026-0001" in soon and "还有7天" in soon
    assert "0 bill reminder" in await bot.run("bill_watch", at("2027-02-23 09:00"))    # once
    [early] = await bot.say("fin1", "/承兑 托收 31000051-2026-0001")
    assert "到期后才能托收" in early
    assert "1 bill reminder" in await bot.run("bill_watch", at("2027-03-01 09:00"))    # on the day
    assert any("已到期，请提示付款" in m for m in await bot.inbox("fin1"))
    # the bank pays the bill: that credit is the bill collected, not a second payment of FP2026-0001
    f = tmp_path / "s.csv"
    f.write_text("交易日期,贷方金额,对方户名,摘要\n2027-03-01,\"11,300.00\",中国工商银行深圳分行,托收 票号31000051-2026-0001\n",
                 encoding="utf-8")
    async with db.session() as s, s.begin():
        result = await import_statement(s, read_statement(f, fx.TODAY), file_name="s.csv", account="", actor="fin1",
                                        now=bot.clock.now())
    assert (result.lines[0].status, result.lines[0].reasons) == ("ignored", ["bill_collected"])
    assert "不在手上" in (await bot.say("fin1", "/承兑 托收 31000051-2026-0001"))[0]        # collected already
    assert "0 bill reminder" in await bot.run("bill_watch", at("2027-03-02 09:00"))
    async with db.session() as s:
        assert (await s.execute(select(Payment.reference))).scalars().all() == ["承兑:31000051-2026-0001"]


async def test_endorsed_and_discounted_bills_leave_the_watch(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await fx.build(s)
    bot = await Bot.start(aiohttp_client, db, at("2026-12-03 10:00"))
    await bot.say("fin1", "/承兑 上海东升贸易有限责任公司 8000 B-1 商承 上海东升贸易有限责任公司 2027-01-31")
    await bot.say("fin1", "/承兑 DS 7000 B-2 银承 招商银行上海分行 2027-02-28")
    assert await _open(db, "DS-0001") == 0 and await _open(db, "DS-0002") == 0 and await _open(db, "DS-0003") == 0
    [e] = await bot.say("fin1", "/承兑 背书 B-1 宁波北仑港物流有限公司")
    assert "已背书转让给 宁波北仑港物流有限公司" in e
    [d] = await bot.say("fin1", "/承兑 贴现 B-2 85.50")
    assert "已贴现，贴现息 ¥85.50" in d
    assert "不在手上" in (await bot.say("fin1", "/承兑 贴现 B-2"))[0]
    assert (await bot.say("fin1", "/承兑"))[0] == "没有在手的承兑汇票。"
    assert "0 bill reminder" in await bot.run("bill_watch", at("2027-01-31 09:00"))
    async with db.session() as s:
        bills = {b.bill_no: (b.status, b.endorsed_to, b.discount_interest) for b in (await s.execute(select(AcceptanceBill))).scalars()}
        assert bills == {"B-1": ("endorsed", "宁波北仑港物流有限公司", None), "B-2": ("discounted", "", D("85.50"))}
        actions = set((await s.execute(select(AuditEntry.action))).scalars())
        assert {"bill.receive", "bill.endorsed", "bill.discounted"} <= actions
