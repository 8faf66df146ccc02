"""Acceptance bills (承兑汇票, issue #16): received in chat they settle the invoices; held, they are
watched to maturity (a reminder a week before and on the day); collected, endorsed or discounted,
they leave the watch. On tests/bank_fixture.py's ledger, through the local chat."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from bot.render import render
from domain.bank_statement import read_statement
from storage.imports import import_file
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


async def test_paid_with_a_bill_records_it_as_the_bill_command_does(aiohttp_client, db):
    """`/paid … 承兑 <票号> <银承|商承> <承兑人> <到期日>`: the same bill, booked and watched as
    /承兑 books it; a bad word in it is answered and changes nothing."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    bot = await Bot.start(aiohttp_client, db, at("2026-12-03 10:00"))
    [bad] = await bot.say("fin1", "/paid HD 8000 承兑 B-9 电子承兑 工商银行深圳分行 2027-03-01")
    assert "票据种类“电子承兑”看不懂" in bad and "/paid 发票号或客户 金额 [日期] 承兑 票号" in bad
    [short] = await bot.say("fin1", "/paid HD 8000 承兑 B-9 银承 2027-03-01")
    assert "承兑 票号 银承|商承 承兑人 到期日" in short
    [both] = await bot.say("fin1", "/paid HD 8000 LS-001 承兑 B-9 银承 工商银行深圳分行 2027-03-01")
    assert "LS-001" in both
    async with db.session() as s:
        assert (await s.execute(select(AcceptanceBill))).scalars().all() == []
        assert (await s.execute(select(Payment))).scalars().all() == []

    [got] = await bot.say("fin1", "/paid FP2026-0002 3000 12月1日 承兑 B-9 商承 深圳市恒达精密机械有限公司 2027-03-01")
    assert "已收商业承兑汇票 B-9" in got and "FP2026-0002 ¥3,000.00" in got
    assert await _open(db, "FP2026-0002") == 0
    async with db.session() as s:
        bill = (await s.execute(select(AcceptanceBill))).scalar_one()
        assert (bill.kind, bill.acceptor, bill.received_on, str(bill.maturity)) == \
            ("commercial", "深圳市恒达精密机械有限公司", fx.date(2026, 12, 1), "2027-03-01")
        assert (await s.execute(select(Payment.reference))).scalars().all() == ["承兑:B-9"]
    assert "B-9" in (await bot.say("fin1", "/承兑"))[0]
    [again] = await bot.say("fin1", "/回款 HD 3000 承兑 B-9 商承 深圳市恒达精密机械有限公司 2027-03-01")
    assert "已经登记过" in again


def _payments_file(tmp_path, rows: str):
    f = tmp_path / "payments.csv"
    f.write_text("客户编码,到账金额,到账日期,回单号,发票号,票据号码,票据种类,承兑人,汇票到期日\n" + rows, encoding="utf-8")
    return f


async def _counts(db):
    async with db.session() as s:
        return {m.__name__: (await s.execute(select(func.count()).select_from(m))).scalar_one()
                for m in (Payment, AcceptanceBill, AuditEntry)}


async def test_a_payments_file_records_the_bills_its_rows_were_paid_with(db, tmp_path):
    """A row with 票据号码/票据种类/承兑人/汇票到期日 records the bill (booked as /承兑 books it);
    a transfer row beside it stays a transfer; importing the file again changes nothing."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    f = _payments_file(tmp_path, "HD,11300,2026-12-01,SK-001,FP2026-0001,31000051-2026-0001,银行承兑汇票,工商银行深圳分行,2027-03-01\n"
                                 "DS,5000,2026-12-02,SK-002,,,,,\n")
    report = await import_file(db, "payments", f, actor="fin1", now=fx.NOW, today=fx.TODAY)
    assert report.ok and report.created == 2
    async with db.session() as s:
        [bill] = (await s.execute(select(AcceptanceBill))).scalars().all()
        assert (bill.bill_no, bill.kind, bill.status, bill.amount) == ("31000051-2026-0001", "bank", "held", D("11300.00"))
        assert (await s.get(Payment, bill.payment_id)).reference == "SK-001"
    assert await _open(db, "FP2026-0001") == 0 and await _open(db, "DS-0001") == 0
    before = await _counts(db)
    again = await import_file(db, "payments", f, actor="fin1", now=fx.NOW, today=fx.TODAY)
    assert again.ok and (again.unchanged, again.created) == (2, 0)
    assert await _counts(db) == before


async def test_a_bad_bill_row_is_reported_by_line_and_nothing_is_imported(db, tmp_path):
    async with db.session() as s, s.begin():
        await fx.build(s)
    async with db.session() as s, s.begin():
        s.add(AcceptanceBill(bill_no="B-OLD", kind="bank", acceptor="招商银行", amount=D("1.00"),
                             received_on=fx.TODAY, maturity=fx.date(2027, 1, 1), customer_id=1, status="held",
                             endorsed_to="", recorded_by="fin1", created_at=fx.NOW))
    f = _payments_file(tmp_path, "DS,5000,2026-12-02,SK-002,,,,,\n"
                                 "HD,3000,2026-12-01,SK-003,,B-1,电子票,工商银行,2027-03-01\n"
                                 "HD,3000,2026-12-01,SK-004,,B-OLD,银承,工商银行,2027-03-01\n"
                                 "HD,3000,2026-12-01,SK-005,,B-2,银承,,2027-03-01\n"
                                 "HD,3000,2026-12-01,SK-006,,B-3,银承,工商银行,2026-11-30\n"
                                 "HE,3000,2026-12-01,SK-007,,B-4,商承,东莞恒达,2027-03-01\n"
                                 "HE,3000,2026-12-01,SK-008,,B-4,商承,东莞恒达,2027-03-01\n")
    before = await _counts(db)
    report = await import_file(db, "payments", f, actor="fin1", now=fx.NOW, today=fx.TODAY)
    assert [(e.line, e.column, e.code) for e in report.errors] == [
        (3, "bill_kind", "bad_bill_kind"), (4, "bill_no", "bill_exists"), (5, "acceptor", "bill_incomplete"),
        (6, "maturity", "bill_matured"), (8, "bill_no", "bill_repeated")]
    assert await _counts(db) == before and await _open(db, "DS-0001") == D("5000.00")
    text = render("cli/import_report.txt.j2", r=report)
    assert "第3行，列“票据种类”，值“电子票”：票据种类看不懂" in text and "第8行，列“票据号码”" in text
    assert "与第7行是同一张承兑汇票" in text
