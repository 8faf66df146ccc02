"""Payments, credit notes (红字发票) and unapplied cash (预收/未核销) as finance checks them
(issue #19), through the chat on tests/ledger_fixture.py plus invoices added here. Every figure is
worked out by hand next to it.

Added to the fixture (Monday 2026-11-23, USD at 7.10):
  C5 杭州明光 rep1: FP-52K 52,000.00 due 11-10
  C6 深圳宏达 rep2: FP-USD1 USD 3,000.00 due 11-01
  C7 宁波远洋 rep2: FP-WO 6,000.00 due 2025-06-30, written off on 2026-06-01 (all its debt)
Company-wide open balance: the fixture's 87,446.17 + 52,000.00 + 3,000 × 7.10 = 21,300.00
→ 160,746.17.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from bot.config import Config
from bot.letters import letter
from domain.money import AmountError, parse_amount
from storage import aging as aging_q
from storage import ledger
from storage import unapplied as unapplied_q
from storage.ledger import balance_check
from storage.models import Allocation, AuditEntry, Customer, Payment, Receivable, WriteOff
from storage.scope import Scope
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal


async def _bot(aiohttp_client, db, tmp_path=None):
    async with db.session() as s, s.begin():
        customers = await ledger_fixture.build(s, at("2026-11-20 10:00"))
        for code, name, rep in (("C5", "杭州明光照明有限公司", "rep1"), ("C6", "深圳宏达电子有限公司", "rep2"),
                                ("C7", "宁波远洋贸易有限公司", "rep2")):
            customers[code] = Customer(code=code, name=name, grade="B", credit_limit=D("1000000"), rep_id=rep,
                                       region="华东" if rep == "rep1" else "华南")
            s.add(customers[code])
        await s.flush()
        for inv, code, rep, due, amount, cur in (("FP-52K", "C5", "rep1", date(2026, 11, 10), "52000.00", "CNY"),
                                                 ("FP-USD1", "C6", "rep2", date(2026, 11, 1), "3000.00", "USD"),
                                                 ("FP-WO", "C7", "rep2", date(2025, 6, 30), "6000.00", "CNY")):
            s.add(Receivable(invoice_no=inv, contract_no="", customer_id=customers[code].id, rep_id=rep,
                             issue_date=date(2025, 5, 31) if inv == "FP-WO" else date(2026, 10, 1), due_date=due,
                             amount=D(amount), open_amount=D(amount), currency=cur, terms="",
                             created_at=at("2026-11-20 10:00")))
        await s.flush()
        wo_r = (await s.execute(select(Receivable).where(Receivable.invoice_no == "FP-WO"))).scalar_one()
        wo = WriteOff(receivable_id=wo_r.id, amount=D("6000.00"), reason="破产", status="pending", requested_by="fin1",
                      requested_at=at("2026-06-01 10:00"), approvals={}, approvers_needed=[])
        s.add(wo)
        await s.flush()
        await ledger.apply_write_off(s, wo, on=date(2026, 6, 1), actor="gm", channel="test", now=at("2026-06-01 11:00"))
    extra = {"reports": {"dir": str(tmp_path / "reports"), "manager_groups": ("local:mgmt",)}, "web": {"secret": "s3cret-for-tests-0123456789abcdef"}} \
        if tmp_path else {}
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           permissions={"finance_head": "fin1", "sales_director": "sup1", "general_manager": "gm"},
                           **extra)


async def _open(db, invoice):
    async with db.session() as s:
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == invoice))).scalar_one()
        return r.open_amount


async def _payments(db):
    async with db.session() as s:
        return len((await s.execute(select(Payment.id))).all())


async def _consistent(db):
    async with db.session() as s:
        for r in (await s.execute(select(Receivable))).scalars():
            assert r.open_amount == await balance_check(s, r.id), r.invoice_no
        for p in (await s.execute(select(Payment))).scalars():
            allocated = sum((await s.execute(select(Allocation.amount).where(Allocation.payment_id == p.id))).scalars(),
                            D("0.00"))
            assert p.unallocated == (D("0.00") if p.reversed_at else p.amount - allocated), p.id


# ------------------------------------------------------------------------------------ payments

async def test_paid_currency_duplicates_and_reversal_meet(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    # ¥2,000 written as yuan on the USD invoice: 2,000 / 7.10 = 281.690… → US$281.69, and said so
    [r] = await bot.say("fin1", "/paid 深圳宏达 2000 CNY")
    assert "- 收到 ¥2,000.00，按 1 USD = 7.10 CNY 折算为 US$281.69" in r
    assert "- FP-USD1：冲抵 US$281.69，尚欠 US$2,718.31" in r            # 3,000 − 281.69
    converted = int(re.search(r"已登记回款 #(\d+)", r).group(1))
    # the reversal puts back exactly the dollars booked, not the yuan received
    [rev] = await bot.say("fin1", f"/reverse {converted} 币种登记错误")
    assert "- FP-USD1：恢复未付 US$281.69，现欠 US$3,000.00（未付）" in rev
    assert await _open(db, "FP-USD1") == D("3000.00")

    # the same receipt typed twice without a bank serial: asked, booked on 确认, then reversed
    [first] = await bot.say("fin1", "/paid 杭州明光 5000")
    assert "- FP-52K：冲抵 ¥5,000.00，尚欠 ¥47,000.00" in first
    before = await _payments(db)
    [ask] = await bot.say("fin1", "/paid 杭州明光 5000")
    assert "- 可能重复：2026-11-23 已登记过同一客户同样金额的回款" in ask and "无流水号" in ask
    assert await _payments(db) == before and await _open(db, "FP-52K") == D("47000.00")
    [second] = await bot.say("fin1", "确认")
    dup = int(re.search(r"已登记回款 #(\d+)", second).group(1))
    assert await _open(db, "FP-52K") == D("42000.00")                   # 52,000 − 5,000 × 2
    [rev] = await bot.say("fin1", f"/冲销 {dup} 重复登记")
    assert "- FP-52K：恢复未付 ¥5,000.00，现欠 ¥47,000.00（部分付款）" in rev
    # after the reversal the same entry no longer counts as a booked twin: asked again only for the live one
    [ask] = await bot.say("fin1", "/paid 杭州明光 5000")
    assert ask.count("可能重复") == 1
    # a negative receipt is refused and says where credit notes and reversals go
    [neg] = await bot.say("fin1", "/paid 杭州明光 -5000")
    assert neg.startswith("回款金额“-5000”是负数") and "/credit" in neg and "/reverse" in neg
    await _consistent(db)


# -------------------------------------------------------------------------------- credit notes

def test_accounting_negatives_read_as_negative():
    assert parse_amount("(500.00)") == D("-500.00")
    assert parse_amount("（2,000.00）") == D("-2000.00")             # full-width parentheses
    assert parse_amount("¥(1,234.50)") == D("-1234.50")
    assert parse_amount("-2,000.00") == D("-2000.00")
    for bad in ("(-5)", "()", "(5"):
        with pytest.raises(AmountError):
            parse_amount(bad)


async def test_credit_notes_reduce_the_original_from_their_date(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [r] = await bot.say("fin1", "/credit FP-52K (500.00) HZ-001 11月20日 价格折让")
    assert r.splitlines()[:2] == [
        "**已登记红字发票 HZ-001**：杭州明光照明有限公司 FP-52K 冲减 ¥500.00，2026-11-20（价格折让）",
        "- FP-52K：原金额 ¥52,000.00，冲减前未付 ¥52,000.00，现欠 ¥51,500.00",
    ]
    [r] = await bot.say("fin1", "/红字 FP-52K -2,000.00 HZ-002")
    assert "现欠 ¥49,500.00" in r                                        # 51,500 − 2,000
    assert (await bot.say("fin1", "/红字 FP-52K -2,000.00 HZ-002"))[0].startswith("红字发票 HZ-002 已于 2026-11-23 登记过")
    # above the invoice: 52,000 − 500 − 2,000 = 49,500 is the most still creditable
    [r] = await bot.say("fin1", "/credit FP-52K 60000 HZ-003")
    assert "最多还能冲减 ¥49,500.00，未记账" in r
    assert "没有使用 /credit 的权限" in (await bot.say("rep1", "/credit FP-52K 100 HZ-004"))[0]
    assert "看不懂金额" in (await bot.say("fin1", "/credit FP-52K 五百块钱吧 HZ-004"))[0]
    # a receipt cannot reuse a credit note's number
    assert "已登记为" in (await bot.say("fin1", "/paid 杭州明光 2000 HZ-002"))[0]
    assert await _open(db, "FP-52K") == D("49500.00")

    # aging as of each date follows the notes: 52,000 on 11-19, 51,500 from 11-20, 49,500 from 11-23
    async with db.session() as s:
        c5 = (await s.execute(select(Customer).where(Customer.code == "C5"))).scalar_one()
        scope = Scope(customer_ids=frozenset({c5.id}))
        totals = [(await aging_q.aging(s, d, scope=scope)).total
                  for d in (date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 23))]
        assert totals == [D("52000.00"), D("51500.00"), D("49500.00")]
        note = (await s.execute(select(Payment).where(Payment.reference == "HZ-001"))).scalar_one()
        assert (note.kind, note.invoice_no, note.amount, note.unallocated) == ("credit_note", "FP-52K", D("500.00"),
                                                                               D("0.00"))
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "credit_note.record")
                                 .order_by(AuditEntry.id))).scalars().first()
        assert entry.detail["credit_note"] == "HZ-001" and entry.detail["reason"] == "价格折让"
    # a note is not money collected: this month's collection (fixture: 5,000 on INV-A2) is unchanged,
    # and it earns no commission (C5's notes, 2,500.00, are not among rep1's collections)
    [k] = await bot.say("gm", "/kpi")
    assert "¥5,000.00" in k
    from storage.commission import month_commission
    async with db.session() as s:
        month = await month_commission(s, date(2026, 11, 23), Scope(customer_ids=frozenset({c5.id})), (), None, "CNY")
        assert month.collected == D("0.00")

    # a note entered in error is reversed like a payment
    [rev] = await bot.say("fin1", "/reverse HZ-002 开错了")
    assert rev.splitlines()[0] == "**已冲销红字发票 HZ-002**：杭州明光照明有限公司 FP-52K ¥2,000.00，2026-11-23"
    assert await _open(db, "FP-52K") == D("51500.00")
    # a note above what is still open leaves the rest as a credit on the customer's account
    await bot.say("fin1", "/paid 杭州明光 51500")
    [r] = await bot.say("fin1", "/credit FP-52K 800 HZ-005 退货")
    assert "现已结清" in r and "超出未付余额的 ¥800.00 记为客户贷项（预收/未核销）" in r
    assert "预收（未分配）：¥800.00" in (await bot.say("fin1", "/customer 杭州明光"))[0]
    await _consistent(db)


# ------------------------------------------------------------------------------- unapplied cash

async def _dashboard_html(bot, user):
    [reply] = await bot.say(user, "/dashboard")
    u = urlsplit(re.search(r"(https?://\S+/dashboard/login\?t=[A-Za-z0-9_.-]+)", reply).group(1))
    await bot.client.post("/dashboard/login", data={"t": u.query.split("t=", 1)[1]}, allow_redirects=False)
    return await (await bot.client.get("/dashboard")).text()


async def test_unapplied_cash_is_shown_wherever_a_balance_is_and_applied_on_confirmation(aiohttp_client, db,
                                                                                           tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    # 53,800 on the 52,000 invoice: 1,800 over, asked, kept on account on 确认
    [ask] = await bot.say("fin1", "/paid 杭州明光 53800")
    assert "多出的 ¥1,800.00 将记为预收" in ask
    [paid] = await bot.say("fin1", "确认")
    assert "- 预收（未分配）：¥1,800.00" in paid
    pay_no = int(re.search(r"已登记回款 #(\d+)", paid).group(1))

    # /aging: the open total 160,746.17 − 52,000.00 = 108,746.17; net of the 1,800 → 106,946.17
    [aging] = await bot.say("gm", "/aging")
    assert "未收合计 ¥108,746.17" in aging
    assert "预收/未核销（客户已付、尚未冲抵发票）：¥1,800.00；扣除后应收净额 ¥106,946.17" in aging
    # a rep sees only their own customers' money: rep2's customers have none
    assert "预收" not in (await bot.say("rep2", "/aging"))[0]
    # the same on the dashboard
    html = await _dashboard_html(bot, "gm")
    assert 'id="unapplied">¥1,800.00<' in html and "应收净额 ¥106,946.17" in html
    # the weekly report (it reads the same figures)
    await bot.run("weekly_aging_report", at("2026-11-23 10:05"))
    assert any("预收/未核销 ¥1,800.00，扣除后应收净额 ¥106,946.17" in m for m in await bot.inbox(chat="mgmt"))
    # and the as-of figure of a day before the receipt has none
    async with db.session() as s:
        assert await unapplied_q.on_account(s, date(2026, 11, 22)) == {}
        assert await unapplied_q.on_account(s, date(2026, 11, 23)) == {"CNY": D("1800.00")}

    # the customer's next invoice: the card says how to apply the money; the confirmation letter
    # states it and the balance net of it (3,000 − 1,800 = 1,200)
    async with db.session() as s, s.begin():
        c5 = (await s.execute(select(Customer).where(Customer.code == "C5"))).scalar_one()
        s.add(Receivable(invoice_no="FP-NEW", contract_no="", customer_id=c5.id, rep_id="rep1",
                         issue_date=date(2026, 11, 23), due_date=date(2026, 12, 20), amount=D("3000.00"),
                         open_amount=D("3000.00"), currency="CNY", terms="", created_at=at("2026-11-23 10:30")))
    [card] = await bot.say("fin1", "/customer 杭州明光")
    assert "预收（未分配）：¥1,800.00，尚未冲抵任何发票；财务可用 `/apply C5` 冲抵未结发票" in card
    # finance is told the next morning, once, that the new invoice could take it
    assert "1 unapplied-cash note(s)" in await bot.run("credit_watch", at("2026-11-24 09:10"))
    assert "0 unapplied-cash note(s)" in await bot.run("credit_watch", at("2026-11-25 09:10"))
    told = "\n".join(await bot.inbox("fin1"))
    assert "预收/未核销可冲抵 ¥1,800.00：FP-NEW ¥1,800.00；发送 `/apply C5` 查看并确认" in told
    bot.clock.set(at("2026-11-23 11:00"))
    async with db.session() as s:
        new = (await s.execute(select(Receivable).where(Receivable.invoice_no == "FP-NEW"))).scalar_one()
        doc = (await letter(s, Config(), "confirmation", new, date(2026, 11, 23))).markdown
    assert "合计：¥3,000.00" in doc
    assert "贵司已付、尚未冲抵上列发票的款项（预收/未核销）：¥1,800.00；扣除后余额：¥1,200.00" in doc

    # applying it takes finance's confirmation
    assert "没有使用 /apply 的权限" in (await bot.say("rep1", "/apply 杭州明光"))[0]
    [ask] = await bot.say("fin1", "/apply 杭州明光")
    assert f"- FP-NEW（2026-12-20到期，未付 ¥3,000.00）：用回款 #{pay_no}（2026-11-23）冲抵 ¥1,800.00" in ask
    assert await _open(db, "FP-NEW") == D("3000.00")
    [done] = await bot.say("fin1", "确认")
    assert f"- FP-NEW：冲抵 ¥1,800.00（回款 #{pay_no}），尚欠 ¥1,200.00" in done and "预收已全部冲抵。" in done
    assert "预收（未分配）" not in (await bot.say("fin1", "/customer 杭州明光"))[0]
    assert "预收/未核销" not in (await bot.say("gm", "/aging"))[0]
    assert "没有预收/未核销款项" in (await bot.say("fin1", "/apply 杭州明光"))[0]

    # a question asked before the ledger changed is not answered on stale figures
    await bot.say("fin1", "/paid 杭州明光 2000 确认")                  # 1,200 due: 800 on account
    [ask] = await bot.say("fin1", "/apply 杭州明光")
    assert "没有同币种的未结发票可冲抵" in ask
    async with db.session() as s, s.begin():
        s.add(Receivable(invoice_no="FP-NEW2", contract_no="", customer_id=c5.id, rep_id="rep1",
                         issue_date=date(2026, 11, 23), due_date=date(2026, 12, 25), amount=D("500.00"),
                         open_amount=D("500.00"), currency="CNY", terms="", created_at=at("2026-11-23 11:00")))
    [ask] = await bot.say("fin1", "/apply 杭州明光")
    async with db.session() as s, s.begin():
        s.add(Receivable(invoice_no="FP-NEW3", contract_no="", customer_id=c5.id, rep_id="rep1",
                         issue_date=date(2026, 11, 23), due_date=date(2026, 12, 1), amount=D("100.00"),
                         open_amount=D("100.00"), currency="CNY", terms="", created_at=at("2026-11-23 11:05")))
    assert "账在提问后有了变化" in (await bot.say("fin1", "确认"))[0]
    assert await _open(db, "FP-NEW2") == D("500.00")
    await _consistent(db)


async def test_a_receipt_on_debts_all_written_off_is_a_recovery(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    # 宁波远洋 owes nothing open; its 6,000 was written off: 1,500 coming in recovers part of it
    [r] = await bot.say("fin1", "/paid 宁波远洋 1500")
    assert "- FP-WO（已核销）：追回 ¥1,500.00，冲减坏账损失（不是预收）" in r
    assert "预收" not in r.replace("不是预收", "")
    async with db.session() as s:
        wo = (await s.execute(select(WriteOff).where(WriteOff.amount > 0))).scalars().all()
        assert [(w.amount, w.recovered_amount) for w in wo if w.reason == "破产"] == [(D("6000.00"), D("1500.00"))]
        assert await unapplied_q.on_account(s, date(2026, 11, 23)) == {}
    # more than the loss left (6,000 − 1,500 = 4,500): asked, and only the rest is kept on account
    [ask] = await bot.say("fin1", "/paid 宁波远洋 5000")
    assert "未结余额 ¥4,500.00（含已核销待追偿 ¥4,500.00）" in ask and "多出的 ¥500.00 将记为预收" in ask
    [r] = await bot.say("fin1", "确认")
    assert "- FP-WO（已核销）：追回 ¥4,500.00" in r and "- 预收（未分配）：¥500.00" in r
    # reversing the recovery writes the loss off again
    no = int(re.search(r"已登记回款 #(\d+)", r).group(1))
    [rev] = await bot.say("fin1", f"/reverse {no} 误登记")
    assert "- 核销后追回的 ¥4,500.00 已撤回，重新计入坏账损失" in rev
    async with db.session() as s:
        wo = (await s.execute(select(WriteOff).where(WriteOff.reason == "破产"))).scalar_one()
        assert wo.recovered_amount == D("1500.00")
    await _consistent(db)


# --------------------------------------------------------------------------- credit notes in files

async def test_credit_notes_in_a_receivables_file(db, tmp_path):
    from bot.render import render
    from storage.imports import import_file
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        c5 = Customer(code="C5", name="杭州明光照明有限公司", grade="B", rep_id="rep1")
        s.add(c5)
        await s.flush()
        s.add(Receivable(invoice_no="FP-52K", contract_no="", customer_id=c5.id, rep_id="rep1",
                         issue_date=date(2026, 10, 1), due_date=date(2026, 11, 10), amount=D("52000.00"),
                         open_amount=D("52000.00"), currency="CNY", terms="", created_at=at("2026-11-20 10:00")))

    def csv(name, text):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    async def load(path, kind="receivables"):
        return await import_file(db, kind, path, now=at("2026-11-23 10:00"), today=date(2026, 11, 23))

    good = csv("invoices.csv", "发票号,客户名称,开票日期,到期日,金额,原发票号\n"
                               "FP-70K,C5,2026-11-01,2026-12-01,\"70,000.00\",\n"
                               "HZ-101,C5,2026-11-20,2026-12-01,(500.00),FP-52K\n"
                               "HZ-102,C5,2026-11-21,2026-12-01,\"-2,000.00\",FP-70K\n")
    report = await load(good)
    assert report.ok, report.to_dict()
    assert (report.created, report.credit_notes) == (1, 2)
    assert "新增1，更新0，无变化0，红字发票2张（已冲减原发票）" in render("cli/import_report.txt.j2", r=report)
    assert await _open(db, "FP-52K") == D("51500.00")              # 52,000 − 500
    assert await _open(db, "FP-70K") == D("68000.00")              # 70,000 − 2,000 (an invoice of the same file)
    again = await load(good)                                       # a re-import books nothing twice
    assert again.ok and (again.created, again.credit_notes, again.unchanged) == (0, 0, 3)
    assert await _open(db, "FP-52K") == D("51500.00")

    bad = csv("bad.csv", "发票号,客户名称,开票日期,到期日,金额,原发票号\n"
                         "HZ-103,C5,2026-11-22,2026-12-01,(300.00),\n"
                         "HZ-104,C5,2026-11-22,2026-12-01,-300,FP-NOPE\n"
                         "HZ-105,C5,2026-11-22,2026-12-01,-60000,FP-52K\n"
                         "HZ-106,C1,2026-11-22,2026-12-01,-100,FP-52K\n")
    report = await load(bad)
    assert [(e.line, e.column, e.code) for e in report.errors] == [
        (2, "amount", "credit_note_without_original"), (3, "original_invoice", "unknown_original"),
        (4, "amount", "credit_above_invoice"), (5, "original_invoice", "original_other_customer")]
    assert report.errors[2].params == {"room": "51500.00"}          # 52,000 − 500 already credited
    text = render("cli/import_report.txt.j2", r=report)
    assert "第2行，列“金额”，值“(300.00)”：负数金额是红字发票，须在“原发票号”列填写它冲减的原发票号" in text
    no_column = csv("no_column.csv", "发票号,客户名称,开票日期,到期日,金额\nHZ-107,C5,2026-11-22,2026-12-01,(300.00)\n")
    assert "须在文件中加一列“原发票号”" in render("cli/import_report.txt.j2", r=await load(no_column))
    # a bank statement has no negative receipts: refused, saying where credit notes belong
    pays = csv("pays.csv", "customer,amount,paid_on,reference\nC5,(500.00),2026-11-22,BK-1\n")
    report = await load(pays, "payments")
    assert [(e.line, e.code) for e in report.errors] == [(2, "negative_amount")]
    assert "红字发票请放进发票文件" in render("cli/import_report.txt.j2", r=report)
    assert await _open(db, "FP-52K") == D("51500.00")
    await _consistent(db)
