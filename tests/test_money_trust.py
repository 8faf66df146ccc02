"""Money that never goes wrong silently (issue 13, with issue 19's payment cases), through the chat
as finance, reps and managers use it, on tests/ledger_fixture.py plus a few invoices added here.
Every expected figure is computed by hand next to it.

Added to the fixture (Monday 2026-11-23, USD at 7.10):
  C5 杭州明光 rep1: FP-52K  52,000.00 due 11-10 · FP-60K 60,685.11 due 11-15   (open 112,685.11)
  C6 深圳宏达 rep2: FP-USD1 USD 3,000.00 due 11-01
  C1 恒信    rep1: FP-11430 11,430.00 due 10-20
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

from storage.ledger import balance_check
from storage.models import (AgingTotal, Allocation, AuditEntry, Customer, Payment, PaymentClaim, Promise,
                            Receivable, WriteOff)
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal
EXTRA = [
    # invoice, customer code, name, rep, due, amount, currency
    ("FP-52K", "C5", "杭州明光照明有限公司", "rep1", date(2026, 11, 10), "52000.00", "CNY"),
    ("FP-60K", "C5", "杭州明光照明有限公司", "rep1", date(2026, 11, 15), "60685.11", "CNY"),
    ("FP-USD1", "C6", "深圳宏达电子有限公司", "rep2", date(2026, 11, 1), "3000.00", "USD"),
    ("FP-11430", "C1", None, "rep1", date(2026, 10, 20), "11430.00", "CNY"),
]


async def _bot(aiohttp_client, db, when="2026-11-23 10:00", extra=EXTRA, fx=ledger_fixture.FX):
    async with db.session() as s, s.begin():
        customers = await ledger_fixture.build(s, at("2026-11-20 10:00"))
        for inv, code, name, rep, due, amount, cur in extra:
            if code not in customers:
                customers[code] = Customer(code=code, name=name, grade="B", credit_limit=D("1000000"), rep_id=rep,
                                           region="华东" if rep == "rep1" else "华南")
                s.add(customers[code])
                await s.flush()
            s.add(Receivable(invoice_no=inv, contract_no="", customer_id=customers[code].id, rep_id=rep,
                             issue_date=date(2026, 10, 1), due_date=due, amount=D(amount), open_amount=D(amount),
                             currency=cur, terms="", created_at=at("2026-11-20 10:00")))
    return await Bot.start(aiohttp_client, db, at(when), company={"fx_rates": fx},
                           permissions={"finance_head": "fin1", "sales_director": "sup1", "general_manager": "gm"})


async def _open(db, invoice):
    async with db.session() as s:
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == invoice))).scalar_one()
        return r.open_amount, r.status


async def _count(db, model):
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def _ledger_consistent(db):
    async with db.session() as s:
        for r in (await s.execute(select(Receivable))).scalars():
            assert r.open_amount == await balance_check(s, r.id), r.invoice_no
        for p in (await s.execute(select(Payment))).scalars():
            allocated = sum((await s.execute(select(Allocation.amount).where(Allocation.payment_id == p.id))).scalars(),
                            D("0.00"))
            # a reversed payment keeps its row with nothing allocated and nothing on account
            assert p.unallocated == (D("0.00") if p.reversed_at else p.amount - allocated), p.id


# ------------------------------------------------------------------------- above the open balance

async def test_a_payment_above_what_is_owed_asks_before_anything_goes_on_account(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    payments = await _count(db, Payment)
    # 100万 on the ¥52,000 invoice: the customer owes 52,000 + 60,685.11 = 112,685.11 in all;
    # 1,000,000 − 112,685.11 = 887,314.89 would be an advance
    [ask] = await bot.say("fin1", "/paid FP-52K 100万")
    assert ask.splitlines()[0] == "**请确认回款 #1**：杭州明光照明有限公司 FP-52K ¥1,000,000.00，2026-11-23，尚未记账："
    assert "- 金额超过该客户未结余额 ¥112,685.11（其中 FP-52K 未付 ¥52,000.00），多出的 ¥887,314.89 将记为预收（未分配）。" \
           "金额是否写错了？" in ask
    assert "确认无误请在 10:30 前回复 `确认`" in ask            # asked at 10:00, 30 minutes
    assert await _count(db, Payment) == payments and await _open(db, "FP-52K") == (D("52000.00"), "open")

    [booked] = await bot.say("fin1", "确认")
    assert booked.splitlines()[:5] == [
        "**已登记回款 #2**：杭州明光照明有限公司 ¥1,000,000.00，2026-11-23",
        "- FP-52K：冲抵 ¥52,000.00，已结清",
        "- FP-60K：冲抵 ¥60,685.11，已结清",
        "- 预收（未分配）：¥887,314.89",
        "客户已无未结发票。",
    ]
    # the advance is visible on the customer's card
    assert "预收（未分配）：¥887,314.89，尚未冲抵任何发票" in (await bot.say("fin1", "/customer 杭州明光"))[0]
    # confirming again changes nothing, and says so
    assert (await bot.say("fin1", "确认"))[0].startswith("您没有待确认的操作")
    assert (await bot.say("fin1", "确认 1"))[0].startswith("待确认 #1 已经确认过，回款 #2 已登记，未重复记账。")
    assert await _count(db, Payment) == payments + 1

    # a question expires: 30 minutes later it books nothing
    [ask] = await bot.say("fin1", "/paid FP-60K 100")          # nothing open any more: all 100 would be advance
    assert "**请确认回款 #2**" in ask and "多出的 ¥100.00 将记为预收" in ask
    assert (await bot.say("admin", "确认 2"))[0].startswith("待确认 #2 不是您发起的")
    bot.clock.set(at("2026-11-23 10:31"))
    assert (await bot.say("fin1", "确认 2"))[0].startswith("待确认 #2 已超过30分钟失效，未记账")
    assert (await bot.say("fin1", "确认"))[0].startswith("您没有待确认的操作")
    assert await _count(db, Payment) == payments + 1
    # the same command typed twice is one question: a bare 确认 answers the newer one
    await bot.say("fin1", "/paid FP-60K 200")
    [again] = await bot.say("fin1", "/paid FP-60K 200")
    assert "**请确认回款 #4**" in again
    assert "已被您之后发送的同一条命令取代" in (await bot.say("fin1", "确认 3"))[0]
    assert (await bot.say("fin1", "确认"))[0].startswith("**已登记回款 #3**")
    assert await _count(db, Payment) == payments + 2
    # a rep's reply that starts with the word 确认 is still a reply, not a refused command
    assert "没有使用" not in (await bot.say("rep1", "确认 1 已联系"))[0]
    await _ledger_consistent(db)


async def test_a_claimed_payment_above_the_balance_is_flagged_and_goes_to_finance(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, when="2026-11-23 08:00")
    assert "pushed" in await bot.run("overdue_push", at("2026-11-23 09:00"))
    [push] = await bot.inbox("rep1")
    seq = next(line.split(".")[0] for line in push.splitlines() if "FP-11430" in line)
    bot.clock.set(at("2026-11-23 10:00"))
    # 已付五万 = 50,000 on an invoice with 11,430 open: 38,570 more than owed
    ack, noted = await bot.say("rep1", f"{seq} 已付五万")
    assert "您写的已付 ¥50,000.00 超过余额" in ack              # asked back (bot/replies.py), nothing booked
    assert "⚠ FP-11430 称已付 ¥50,000.00，但未付余额只有 ¥11,430.00（多 ¥38,570.00）" in noted
    assert "未记为回款" in noted and "已转财务核实到账（称已付款1笔）" in noted
    assert await _open(db, "FP-11430") == (D("11430.00"), "open")
    # finance hears of it once, as "to confirm"
    [told] = await bot.inbox("fin1")
    assert told.startswith("**到账待核实**：张伟 报告客户已付款，请与银行流水核对")
    assert "- 上海恒信机电有限公司 FP-11430：称已付 ¥50,000.00，未付余额 ¥11,430.00（⚠ 超过余额 ¥38,570.00，请核对金额）" in told
    [listed] = await bot.say("fin1", "/claims")
    assert "**到账待核实**：1条" in listed and "- #1 上海恒信机电有限公司 FP-11430：张伟 11-23 称已付 ¥50,000.00" in listed
    assert "FP-11430" in (await bot.say("rep1", "/claims"))[0]
    assert (await bot.say("rep2", "/claims"))[0] == "没有待核实的到账（称已付款）。"        # not rep2's customer
    # a correction that no longer says "paid" takes the claim back; saying it again opens it again
    await bot.say("rep1", f"更正 {seq} 已联系，客户说下周付")
    assert (await bot.say("fin1", "/claims"))[0] == "没有待核实的到账（称已付款）。"
    await bot.say("rep1", f"{seq} 已付五万")
    # finance books what the bank shows: the claim closes
    [booked] = await bot.say("fin1", "/paid FP-11430 11430 LS-C1")
    assert "- FP-11430：冲抵 ¥11,430.00，已结清" in booked
    assert "- 业务员报告的到账（称已付款）1 条已核实关闭" in booked
    assert (await bot.say("fin1", "/claims"))[0] == "没有待核实的到账（称已付款）。"
    # reversing that payment reopens the claim; finance can dismiss it
    [rev] = await bot.say("fin1", "/reverse LS-C1 银行退票")
    assert "- 它关闭的 1 条到账待核实（称已付款）重新打开" in rev
    assert "- #2 上海恒信机电有限公司 FP-11430" in (await bot.say("fin1", "/claims"))[0]    # #1 was withdrawn
    assert "没有使用" in (await bot.say("rep1", "/claims 驳回 2 查无此款"))[0]
    assert "已经处理过了" in (await bot.say("fin1", "/claims 驳回 1 查无此款"))[0]
    assert (await bot.say("fin1", "/claims 驳回 2 银行无此款"))[0] == \
        "已驳回到账待核实 #2（FP-11430）：银行无此款。发票仍按未付催收。"
    async with db.session() as s:
        claims = {c.id: (c.status, c.amount, c.open_then) for c in (await s.execute(select(PaymentClaim))).scalars()}
        assert claims == {1: ("withdrawn", D("50000.00"), D("11430.00")),
                          2: ("dismissed", D("50000.00"), D("11430.00"))}


# ---------------------------------------------------------------------------------- duplicates

async def test_the_same_payment_twice_without_a_serial_asks_first(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [first] = await bot.say("fin1", "/paid 杭州明光 5000")
    assert first.startswith("**已登记回款 #2**：杭州明光照明有限公司 ¥5,000.00，2026-11-23")
    [ask] = await bot.say("fin1", "/paid 杭州明光 5000")
    assert "- 可能重复：2026-11-23 已登记过同一客户同样金额的回款 #2（¥5,000.00，无流水号）。" in ask
    assert await _count(db, Payment) == 2 and await _open(db, "FP-52K") == (D("47000.00"), "partially_paid")
    [second] = await bot.say("fin1", "确认")
    assert second.startswith("**已登记回款 #3**") and "- FP-52K：冲抵 ¥5,000.00，尚欠 ¥42,000.00" in second
    # two different bank serials are two receipts: no question
    for ref in ("LS-A", "LS-B"):
        assert (await bot.say("fin1", f"/paid 杭州明光 3000 11月20日 {ref}"))[0].startswith("**已登记回款")
    assert await _open(db, "FP-52K") == (D("36000.00"), "partially_paid")      # 52,000 − 5,000 × 2 − 3,000 × 2


# ----------------------------------------------------------------------------------- currencies

async def test_paid_is_in_yuan_unless_written_and_converted_at_a_stated_rate(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    # ¥2,000 on a USD invoice: 2,000 / 7.10 = 281.690… → US$281.69 (not US$2,000)
    [r] = await bot.say("fin1", "/paid 深圳宏达 2000")
    assert "- 收到 ¥2,000.00，按 1 USD = 7.10 CNY 折算为 US$281.69" in r
    assert "- FP-USD1：冲抵 US$281.69，尚欠 US$2,718.31" in r
    async with db.session() as s:
        p = await s.get(Payment, 2)
        assert (p.amount, p.currency, p.received_amount, p.received_currency, p.fx_rate) == \
            (D("281.69"), "USD", D("2000.00"), "CNY", "7.10")
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "payment.record",
                                                          AuditEntry.entity_id == "2"))).scalar_one()
        assert (entry.detail["received"], entry.detail["received_currency"], entry.detail["fx_rate"]) == \
            ("2000.00", "CNY", "7.10")
    # written in dollars: booked as dollars
    [r] = await bot.say("fin1", "/paid 深圳宏达 500 USD")
    assert "- FP-USD1：冲抵 US$500.00，尚欠 US$2,218.31" in r and "折算" not in r
    # a rate written with the payment wins over the configured one: 2,000 / 7.2 = 277.78
    [r] = await bot.say("fin1", "/paid FP-USD1 2000 汇率7.2 LS-FX")
    assert "按 1 USD = 7.2 CNY 折算为 US$277.78" in r and "尚欠 US$1,940.53" in r
    # the same serial again is recognised, not asked about nor booked twice
    [r] = await bot.say("fin1", "/paid FP-USD1 2000 汇率7.2 LS-FX")
    assert r.startswith("流水号 LS-FX 已于 2026-11-23 登记过（深圳宏达电子有限公司 US$277.78），本次未重复记账。")
    assert "看不懂汇率" in (await bot.say("fin1", "/paid FP-USD1 2000 汇率七"))[0]
    await _ledger_consistent(db)


async def test_no_rate_no_booking(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, fx={})
    [r] = await bot.say("fin1", "/paid 深圳宏达 2000")
    assert r.startswith("这笔回款要记到 USD 发票上，但没有 USD 汇率（配置 [company] fx_rates），未记账。")
    assert "`/paid 深圳宏达 2,000.00 汇率7.10`" in r
    assert await _count(db, Payment) == 1
    [r] = await bot.say("fin1", "/paid 深圳宏达 2000 汇率7.10")
    assert "折算为 US$281.69" in r


async def test_usd_is_never_added_to_yuan_and_keeps_its_symbol(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, when="2026-11-23 08:00", extra=[])
    # overdue: A2 15,000 + A3 30,000 + B1 8,000.50 + B2 12,345.67 + C1 5,000 = 70,346.17, and D1 US$1,000
    [overdue] = await bot.say("gm", "/overdue")
    assert overdue.splitlines()[0] == "**逾期账款（11月23日）：6笔，¥70,346.17 + US$1,000.00**"
    assert "- Harbor Lighting Ltd INV-D1 US$1,000.00，逾期20天" in overdue
    # the window escalation lists the unanswered USD item in dollars; rep2 answered only item 2
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 10:00"))
    await bot.say("rep2", "2 已联系")
    await bot.run("reply_window_close", at("2026-11-24 09:00"))
    escalation = "\n".join(await bot.inbox("sup2"))
    assert "- Harbor Lighting Ltd INV-D1 US$1,000.00，逾期20天" in escalation
    # a late answer promising dollars is acknowledged in dollars
    bot.clock.set(at("2026-11-24 10:00"))
    [ack] = await bot.say("rep2", "1 答应12月5日付500")
    assert "承诺12月5日付 US$500.00" in ack and "¥500" not in ack


# ------------------------------------------------------------------------------------- reversal

async def _aging_rows(db):
    async with db.session() as s:
        return sorted((await s.execute(select(AgingTotal.due_date, AgingTotal.currency, AgingTotal.open_cents,
                                              AgingTotal.open_count))).all())


async def test_finance_reverses_a_payment_and_aging_is_exactly_as_before(aiohttp_client, any_db):
    db = any_db
    bot = await _bot(aiohttp_client, db, extra=[])
    [aging_before] = await bot.say("gm", "/aging")
    [card_before] = await bot.say("fin1", "/customer C2")
    totals_before = await _aging_rows(db)
    # 20,000 on A2: A2's 15,000 then 5,000 of A3; 2,000 on B2 (restarts B2's statute on 11-23)
    await bot.say("fin1", "/paid INV-A2 2万 11月22日 LS-11")
    await bot.say("fin1", "/paid INV-B2 2000 LS-12")
    [aging_paid] = await bot.say("gm", "/aging")
    assert "未收合计 ¥65,446.17" in aging_paid                 # 87,446.17 − 20,000 − 2,000

    assert "没有使用 /reverse 的权限" in (await bot.say("rep1", "/reverse LS-11 错了"))[0]
    assert "没有使用 /reverse 的权限" in (await bot.say("admin", "/reverse LS-11 错了"))[0]
    assert "缺少参数" in (await bot.say("fin1", "/reverse LS-11"))[0]          # a reason is required
    assert "找不到回款“LS-99”" in (await bot.say("fin1", "/reverse LS-99 错了"))[0]
    [rev] = await bot.say("fin1", "/冲销 LS-11 客户名称登记错误")
    assert rev.splitlines() == [
        "**已冲销回款 #2**：上海恒信机电有限公司 ¥20,000.00，2026-11-22，流水号 LS-11",
        "原因：客户名称登记错误",
        "- INV-A2：恢复未付 ¥15,000.00，现欠 ¥15,000.00（部分付款）",       # the fixture's 5,000 stays
        "- INV-A3：恢复未付 ¥5,000.00，现欠 ¥30,000.00（未付）",
        "客户尚欠：¥55,000.00",
    ]
    [rev] = await bot.say("fin1", "/reverse #3 银行退票")
    assert "- INV-B2：恢复未付 ¥2,000.00，现欠 ¥12,345.67（未付）" in rev
    assert (await bot.say("fin1", "/reverse 2 再来一次"))[0].startswith("回款 #2 已于 2026-11-23 冲销过（原因：客户名称登记错误）")

    # /aging as before, to the character (the week-ago comparison included), and its stored totals
    assert (await bot.say("gm", "/aging"))[0] == aging_before
    assert await _aging_rows(db) == totals_before
    # a reversed payment does not restart the statute
    assert (await bot.say("fin1", "/customer C2"))[0] == card_before
    await _ledger_consistent(db)
    async with db.session() as s:
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "payment.reverse")
                                 .order_by(AuditEntry.id))).scalars().first()
        assert (entry.actor, entry.entity_id) == ("fin1", "2")
        assert entry.detail["reason"] == "客户名称登记错误"
        assert entry.detail["allocations"] == {"INV-A2": "15000.00", "INV-A3": "5000.00"}
        p = await s.get(Payment, 2)
        assert (p.reversed_by, p.unallocated, p.amount) == ("fin1", D("0.00"), D("20000.00"))


async def test_reversing_a_recovery_writes_the_loss_off_again(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, extra=[])
    # INV-C2 (40,000) was written off on 11-01; 1,000 comes back on it
    [r] = await bot.say("fin1", "/paid INV-C2 1000 LS-R")
    assert "- INV-C2（已核销）：追回 ¥1,000.00，冲减坏账损失" in r
    [rev] = await bot.say("fin1", "/reverse LS-R 误登记")
    assert "- 核销后追回的 ¥1,000.00 已撤回，重新计入坏账损失" in rev
    async with db.session() as s:
        rows = (await s.execute(select(WriteOff.amount, WriteOff.recovered_amount)
                                .order_by(WriteOff.id))).all()
        assert rows == [(D("40000.00"), D("0.00"))]            # the recovery row is gone, nothing recovered
    assert await _open(db, "INV-C2") == (D("0.00"), "written_off")
    await _ledger_consistent(db)


# -------------------------------------------------------------------------------- one rounding rule

async def test_kpi_and_aging_show_the_same_figures_to_the_cent(aiohttp_client, db):
    """Two USD 500.05 invoices of two reps, both 1-30 days overdue. Converted once per figure:
    USD 1,000 + 500.05 + 500.05 = 2,000.10 × 7.10 = 14,200.71 (half up from 14,200.710). Converting
    each rep's part first would give 10,650.36 + 3,550.36 = 14,200.72 (1,500.05 × 7.10 = 10,650.355,
    500.05 × 7.10 = 3,550.355): the cent /kpi and /aging used to differ by."""
    extra = [("INV-E1", "C1", None, "rep1", date(2026, 11, 10), "500.05", "USD"),
             ("INV-E2", "C4", None, "rep2", date(2026, 11, 10), "500.05", "USD")]
    bot = await _bot(aiohttp_client, db, extra=extra)
    [aging] = await bot.say("gm", "/aging")
    [kpi] = await bot.say("gm", "/kpi")
    # open: 80,346.17 in yuan + 14,200.71 = 94,546.88; overdue: − A1 10,000 = 84,546.88
    assert "未收合计 ¥94,546.88，9笔；其中逾期 ¥84,546.88（89.4%）" in aging
    assert "- 1-30天：¥34,200.71，5笔，占36.2%" in aging          # 15,000 + 5,000 + 14,200.71
    assert "- 逾期率：89.4%（逾期 ¥84,546.88 / 未收 ¥94,546.88）" in kpi
    assert "- 逾期90天以上占比：13.1%（¥12,345.67）" in kpi and "- 90天以上：¥12,345.67" in aging
    # both say how the dollars became yuan
    assert "（外币按 1 USD = 7.10 元 折算为人民币）" in aging.splitlines()
    assert "（外币按 1 USD = 7.10 元 折算为人民币）" in kpi.splitlines()


async def test_followup_claim_and_help(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    # a claim by /followup reaches finance too; no figure written: "称已付" without an amount
    logged, noted = await bot.say("rep2", "/followup FP-USD1 客户说已经付款了")
    assert "已转财务核实到账（称已付款1笔）" in noted and "⚠" not in noted
    [told] = await bot.inbox("fin1")
    assert "- 深圳宏达电子有限公司 FP-USD1：称已付，未付余额 US$3,000.00" in told
    [fin] = await bot.say("fin1", "/help")
    assert "`/reverse`" in fin and "`/claims`" in fin and "`确认`" in fin
    [rep] = await bot.say("rep1", "/help")
    assert "`/reverse`" not in rep


async def test_a_payment_on_an_invoice_written_off_since_cannot_be_reversed(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, extra=[])
    await bot.say("fin1", "/paid INV-B2 2000 LS-W")                 # B2 12,345.67 → 10,345.67 open
    await bot.say("admin", "/writeoff INV-B2 客户失联")               # ≤ 50,000: finance head and director
    await bot.say("sup1", "/approve 2")
    assert "审批完成" in (await bot.say("fin1", "/approve 2"))[0]
    [r] = await bot.say("fin1", "/reverse LS-W 误登记")
    assert r.startswith("回款 #2 冲抵的 INV-B2 之后已核销，不能直接冲销")
    assert await _open(db, "INV-B2") == (D("0.00"), "written_off")
    async with db.session() as s:
        assert (await s.get(Payment, 2)).reversed_at is None


async def test_money_booked_by_any_path_closes_the_claim(db):
    """An imported bank statement books through storage.ledger.record_payment like /paid does: a
    rep's claim on the invoice it pays closes with it (and a reversal reopens it)."""
    from storage import claims as claims_q, ledger
    now = at("2026-11-23 10:00")
    async with db.session() as s, s.begin():
        customers = await ledger_fixture.build(s, at("2026-11-20 10:00"))
        c1 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-A3"))).scalar_one()
        claim = await claims_q.record_claim(s, receivable=c1, amount=D("30000.00"), person_id="rep1", at=now,
                                            channel="test")
        res = await ledger.record_payment(s, customer=customers["C1"], amount=D("30000.00"), paid_on=date(2026, 11, 23),
                                          reference="BANK-1", actor="import", channel="import", now=now)
        assert [r.invoice_no for r, _ in res.allocations] == ["INV-A3"] and res.claims_closed == 1
        assert (claim.status, claim.payment_id) == ("closed", res.payment.id)
        # the promise watch later judged a promise on A3 kept by this money
        promise = Promise(receivable_id=c1.id, promised_date=date(2026, 11, 23), amount=None, status="kept",
                          made_by="rep1", made_at=at("2026-11-20 10:00"), closed_at=at("2026-11-24 09:00"))
        s.add(promise)
        rev = await ledger.reverse_payment(s, res.payment, reason="test", actor="fin1", channel="test",
                                           now=at("2026-11-25 10:00"))
        assert rev.claims_reopened == 1
        assert (promise.status, promise.closed_at) == ("open", None)      # to be judged anew
    async with db.session() as s:
        assert (await s.get(PaymentClaim, claim.id)).status == "open"
