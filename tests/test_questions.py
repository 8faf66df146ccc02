"""Questions managers and finance ask the bot, answered on tests/ledger_fixture.py, where every
figure can be computed by hand. The hand computations are written next to each expectation.

Fixture, Monday 2026-11-23 (open balances; USD at 7.10):
  INV-A1 C1 rep1 due 11-30 10,000.00 not due        INV-B1 C2 rep1 due 08-25  8,000.50 90d disputed
  INV-A2 C1 rep1 due 11-13 15,000.00 10d (5,000 pd)  INV-B2 C2 rep1 due 05-01 12,345.67 206d
  INV-A3 C1 rep1 due 09-24 30,000.00 60d             INV-C1 C3 rep2 due 10-24  5,000.00 30d
  INV-C2 C3 rep2 due 07-01 written off 11-01 (0)     INV-D1 C4 rep2 due 11-03 USD 1,000 = 7,100.00 20d
"""
from __future__ import annotations

import dataclasses

import struct
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select, update

from bot.charts import aging_chart
from storage import aging as aging_q
from domain.late_fees import late_fee
from bot.policy import LateFeeConfig
from storage.ledger import balance_check
from storage.models import Allocation, AuditEntry, Customer, Payment, Receivable, WriteOff
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal
APPROVERS = {"finance_head": "fin1", "sales_director": "sup1", "general_manager": "gm"}


async def _bot(aiohttp_client, db, when="2026-11-23 10:00", limits=None, **sections):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        # the fixture's contracts have the company's standard late-fee clause
        await s.execute(update(Customer).values(late_fee_rate="standard"))
        for code, limit in (limits or {}).items():
            await s.execute(update(Customer).where(Customer.code == code).values(credit_limit=D(limit)))
    sections.setdefault("permissions", APPROVERS)
    return await Bot.start(aiohttp_client, db, at(when), company={"fx_rates": ledger_fixture.FX}, **sections)


async def _receivable(db, invoice):
    async with db.session() as s:
        return (await s.execute(select(Receivable).where(Receivable.invoice_no == invoice))).scalar_one()


async def _invariants_hold(db):
    async with db.session() as s:
        for r in (await s.execute(select(Receivable))).scalars().all():
            assert r.open_amount == await balance_check(s, r.id), r.invoice_no
            assert r.open_amount >= 0
        for p in (await s.execute(select(Payment))).scalars().all():
            allocated = (await s.execute(select(Allocation.amount).where(Allocation.payment_id == p.id))).scalars().all()
            assert p.unallocated == p.amount - sum(allocated, D("0.00")) >= 0, p.reference


# ---------------------------------------------------------------------------------------------- /aging

async def test_aging_every_figure(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("gm", "/aging")
    lines = reply.splitlines()
    # total 10,000 + 27,100 + 30,000 + 8,000.50 + 12,345.67 = 87,446.17 in 7 items; overdue = total − 10,000
    assert lines[0] == "**账龄分析（截至11月23日）**"
    assert lines[1] == "未收合计 ¥87,446.17，7笔；其中逾期 ¥77,446.17（88.6%）"   # 77,446.17 / 87,446.17
    assert lines[2:7] == [
        "- 未到期：¥10,000.00，1笔，占11.4%",        # A1
        "- 1-30天：¥27,100.00，3笔，占31.0%",        # A2 15,000 + C1 5,000 + D1 USD 1,000 × 7.10
        "- 31-60天：¥30,000.00，1笔，占34.3%",       # A3
        "- 61-90天：¥8,000.50，1笔，占9.1%",         # B1 (disputed still counts)
        "- 90天以上：¥12,345.67，1笔，占14.1%",      # B2; C2 written off is excluded
    ]
    # a week ago (11-16) the 5,000 payment of 11-20 had not arrived and C2 was already written off
    assert "较上周同日：合计减少 ¥5,000.00，逾期减少 ¥5,000.00" in lines
    assert lines[-4:] == [
        "1. 上海恒信机电有限公司：逾期 ¥45,000.00，最长60天",        # A2 15,000 + A3 30,000
        "2. 苏州明达电子科技有限公司：逾期 ¥20,346.17，最长206天",   # B1 + B2
        "3. Harbor Lighting Ltd：逾期 ¥7,100.00，最长20天",
        "4. 广州顺发贸易有限公司：逾期 ¥5,000.00，最长30天",
    ]
    # a rep sees their own customers only: A1 + A2 + A3 + B1 + B2 = 75,346.17
    [mine] = await bot.say("rep1", "/账龄")
    assert "未收合计 ¥75,346.17，5笔；其中逾期 ¥65,346.17（86.7%）" in mine
    assert "- 1-30天：¥15,000.00，1笔，占19.9%" in mine and "Harbor" not in mine and "顺发" not in mine


async def test_aging_chart_is_an_800_by_450_png(db):
    async with db.session() as s:
        async with s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
        report = await aging_q.aging(s, ledger_fixture.TODAY, fx_rates=ledger_fixture.FX)
    png = aging_chart(report)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (800, 450)
    assert struct.unpack(">II", aging_chart(report, 640, 360)[16:24]) == (640, 360)


async def test_the_aging_chart_follows_the_figures_it_shows(db):
    """Pictures are drawn once per distinct set of figures (plotting costs ~0.3 s): the same
    figures give the same picture, a payment gives a new one."""
    async with db.session() as s:
        async with s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
        before = await aging_q.aging(s, ledger_fixture.TODAY, fx_rates=ledger_fixture.FX)
        again = await aging_q.aging(s, ledger_fixture.TODAY, fx_rates=ledger_fixture.FX)
    assert aging_chart(again) == aging_chart(before)
    paid = dataclasses.replace(before, buckets=[dataclasses.replace(before.buckets[0], amount=before.buckets[0].amount - 1000),
                                                *before.buckets[1:]])
    assert aging_chart(paid) != aging_chart(before)


# ---------------------------------------------------------------------------------------------- /customer

async def test_customer_card_every_figure(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    assert "已记录还款承诺" in (await bot.say("rep1", "/promise INV-A3 11月30日 1万"))[0]
    for i in range(1, 7):     # six more follow-ups: only the last five are shown
        bot.clock.set(at(f"2026-11-23 1{i}:00"))
        assert (await bot.say("rep1", f"/followup INV-A{1 + i % 2} 第{i}次电话"))[0]
    [card] = await bot.say("rep1", "/customer 上海恒信")
    lines = card.splitlines()
    assert lines[0] == "**上海恒信机电有限公司**（C1，A类，华东，业务员 张伟）"
    # open 10,000 + 15,000 + 30,000 = 55,000; 55,000 / 500,000 = 11.0%: no warning level
    assert lines[1] == "信用额度 ¥500,000.00，已用 ¥55,000.00（11.0%）"
    assert [l for l in lines if l.startswith("- INV-")][:3] == [
        "- INV-A3 未付 ¥30,000.00，2026-09-24到期，逾期60天，承诺11月30日付 ¥10,000.00",
        "- INV-A2 未付 ¥15,000.00，2026-11-13到期，逾期10天，部分付款",
        "- INV-A1 未付 ¥10,000.00，2026-11-30到期，未到期",
    ]
    aging = lines[lines.index("**账龄**") + 1:lines.index("**账龄**") + 4]
    assert aging == ["- 未到期：¥10,000.00，1笔", "- 1-30天：¥15,000.00，1笔", "- 31-60天：¥30,000.00，1笔"]
    recent = lines[lines.index("**最近跟进**") + 1:lines.index("**最近跟进**") + 6]
    assert recent == [f"- 11-23 1{i}:00 已联系：第{i}次电话" for i in (6, 5, 4, 3, 2)]
    assert "**未到期的还款承诺**" in lines and "- INV-A3：11月30日前付 ¥10,000.00" in lines
    assert "未解决的异议" not in card
    # per invoice, nearest first: A3 from its due date 09-24 (2029-09-24, a Monday); A2 from the 5,000
    # paid on it 11-20, after its due date 11-13 (2029-11-20, Tuesday); A1 from its due date 11-30
    today = date(2026, 11, 23)
    statute = lines[lines.index("**诉讼时效**（按发票，最近届满的3笔）") + 1:][:3]
    assert statute == [
        f"- INV-A3：2029-09-24届满（还有{(date(2029, 9, 24) - today).days}天），自到期日 2026-09-24 次日起算3年",
        f"- INV-A2：2029-11-20届满（还有{(date(2029, 11, 20) - today).days}天），自回款 2026-11-20 次日起算3年",
        f"- INV-A1：2029-11-30届满（还有{(date(2029, 11, 30) - today).days}天），自到期日 2026-11-30 次日起算3年",
    ]
    # on each day's balance: A2 20,000 × 0.05% × 7 (to the 11-20 payment) + 15,000 × 0.05% × 3 = 70 + 22.50;
    # A3 30,000 × (0.05% × 30 + 0.1% × 30) = 450 + 900 = 1,350.00 → 1,442.50
    assert any(l.startswith("滞纳金估算：¥1,442.50（第1–30天每日0.05%，第31天起每日0.10%，按合同约定、每日未付余额计，"
                            "以逾期本金的30%为限") for l in lines)


async def test_customer_card_levels_dispute_usd_and_statute(aiohttp_client, any_db):
    db = any_db                  # SQLite and PostgreSQL
    bot = await _bot(aiohttp_client, db, limits={"C2": "25000", "C4": "7500"})
    [c2] = await bot.say("fin1", "/customer 明达")
    # 20,346.17 / 25,000 = 81.38% → yellow
    assert "信用额度 ¥25,000.00，已用 ¥20,346.17（81.4%） 🟡 黄色：超过70%" in c2
    assert "- INV-B1 未付 ¥8,000.50，2026-08-25到期，逾期90天，异议中" in c2
    assert "- INV-B1：发票抬头错误（2026-11-20提出）" in c2
    assert "- 61-90天：¥8,000.50，1笔" in c2 and "- 90天以上：¥12,345.67，1笔" in c2
    # B2 (due 05-01) expires first, 2029-05-01; B1's 2029-08-25 is a Saturday: it rolls to Monday
    # 08-27 (民法典 第二百零三条). The card used to show only the latest due date's, hiding B2's.
    today = date(2026, 11, 23)
    assert f"- INV-B2：2029-05-01届满（还有{(date(2029, 5, 1) - today).days}天），自到期日 2026-05-01 次日起算3年" in c2
    assert f"- INV-B1：2029-08-27届满（还有{(date(2029, 8, 27) - today).days}天），自到期日 2026-08-25 次日起算3年" in c2
    # B2 only (B1 disputed): 12,345.67 × (0.015 + 0.176) = 185.18505 + 2,172.83792 = 2,358.02
    assert "滞纳金估算：¥2,358.02" in c2
    [c4] = await bot.say("fin1", "/customer harbor")
    # USD 1,000 × 7.10 = 7,100; 7,100 / 7,500 = 94.67% → red
    assert "信用额度 ¥7,500.00，已用 ¥7,100.00（94.7%） 🔴 红色：超过90%，新发货需财务审批" in c4
    assert "- INV-D1 未付 US$1,000.00，2026-11-03到期，逾期20天" in c4
    assert "- 1-30天：¥7,100.00，1笔" in c4
    # cross-border: 4 years; 2030-11-03 is a Sunday, so the last day rolls to Monday (民法典 第二百零三条)
    assert "**诉讼时效**（按发票，最近届满的1笔，跨境4年）" in c4
    assert f"- INV-D1：2030-11-04届满（还有{(date(2030, 11, 4) - today).days}天），自到期日 2026-11-03 次日起算4年" in c4
    # USD 1,000 × 0.05% × 20 = USD 10 = ¥71.00
    assert "滞纳金估算：¥71.00" in c4
    # a partial payment restarts the statute: the 11-23 payment is later than the 08-25 due date
    await bot.say("fin1", "/paid INV-B2 1000")
    [c2] = await bot.say("fin1", "/customer C2")
    assert f"- INV-B2：2029-11-23届满（还有{(date(2029, 11, 23) - today).days}天），自回款 2026-11-23 次日起算3年" in c2


TIERS = LateFeeConfig().tiers


def test_late_fee_tiers():
    assert late_fee(D("30000"), 60, TIERS) == D("1350.00")
    assert late_fee(D("30000"), 30, TIERS) == D("450.00")
    assert late_fee(D("30000"), 31, TIERS) == D("480.00")
    assert late_fee(D("12345.67"), 206, TIERS) == D("2358.02")
    assert late_fee(D("1000"), 0, TIERS) == D("0.00") and late_fee(D("1000"), -5, TIERS) == D("0.00")


async def test_ambiguous_and_unknown_customers(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("fin1", "/customer S")        # pinyin initials: SHHX…, SZMD…
    assert reply.startswith("“S”对应多个客户，您是指：上海恒信机电有限公司、苏州明达电子科技有限公司？")
    assert "¥" not in reply
    [reply] = await bot.say("fin1", "/customer 星辰光电")
    assert reply.startswith("找不到客户“星辰光电”")
    [reply] = await bot.say("fin1", "/customer")
    assert reply.startswith("/customer 缺少参数。") and "用法：" in reply


# ---------------------------------------------------------------------------------------------- /kpi /dso

async def test_kpi_and_dso_every_figure(aiohttp_client, any_db):
    db = any_db                  # SQLite and PostgreSQL
    bot = await _bot(aiohttp_client, db, when="2026-11-20 08:00")
    # Friday 11-20: rep1 gets A3, A2, B2 (B1 disputed apart); rep2 gets D1, C1
    assert "pushed 2 rep(s)" in await bot.run("overdue_push", at("2026-11-20 09:00"))
    bot.clock.set(at("2026-11-20 11:00"))
    await bot.say("rep1", "1 已电话联系，月底付款\n2 联系不上，电话关机")          # 2 of 3 in time
    # the window counts working days: Friday's push closes Monday 09:00
    await bot.run("reply_window_close", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 09:30"))
    assert "已过回复时限" in (await bot.say("rep2", "1 联系不上"))[0]            # 0 of 2 in time
    bot.clock.set(at("2026-11-23 10:00"))

    [k] = await bot.say("fin1", "/kpi")
    lines = k.splitlines()
    assert lines[0] == "**回款考核（截至11月23日）**"
    # due in November: everything issued before 11-01 and due by 11-30 was open on 11-01:
    # 10,000 + 20,000 + 30,000 + 8,000.50 + 12,345.67 + 5,000 + 40,000 (C2, written off on 11-01) + 7,100
    # = 132,446.17; collected: the 5,000 of 11-20 → 3.775% → 3.8%
    assert lines[1] == "- 本月回款率：3.8%（已回款 ¥5,000.00 / 本月应收 ¥132,446.17）"
    # sales 08-26..11-23: A1 10,000 + A2 20,000 + C1 5,000 + D1 7,100 = 42,100 (A3 issued 08-25 is out);
    # 87,446.17 / 42,100 × 90 = 186.94
    assert lines[2] == "- DSO：186.9天"
    assert lines[3] == "- 逾期率：88.6%（逾期 ¥77,446.17 / 未收 ¥87,446.17）"
    assert lines[4] == "- 逾期90天以上占比：14.1%（¥12,345.67）"          # B2 only; B1 is exactly 90
    assert lines[5] == "- 回复及时率（近30天）：40.0%（2/5条按时回复）"
    assert "**按业务员**" in lines
    # rep1 due: 10,000 + 20,000 + 30,000 + 8,000.50 + 12,345.67 = 80,346.17; 5,000 / 80,346.17 = 6.2%
    assert "- 张伟：逾期 ¥65,346.17，本月回款 ¥5,000.00（回款率6.2%），回复及时率66.7%（2/3）" in lines
    # rep2 due: 5,000 + 40,000 + 7,100 = 52,100; overdue 5,000 + 7,100
    assert "- 李娜：逾期 ¥12,100.00，本月回款 ¥0.00（回款率0.0%），回复及时率0.0%（0/2）" in lines

    # a rep sees their own figures only
    [mine] = await bot.say("rep1", "/考核")
    assert "- 本月回款率：6.2%（已回款 ¥5,000.00 / 本月应收 ¥80,346.17）" in mine
    # 75,346.17 / (10,000 + 20,000) × 90 = 226.04
    assert "- DSO：226.0天" in mine
    assert "- 逾期率：86.7%（逾期 ¥65,346.17 / 未收 ¥75,346.17）" in mine
    assert "- 逾期90天以上占比：16.4%（¥12,345.67）" in mine
    assert "李娜" not in mine and "132,446.17" not in mine

    # a supervisor's team (华南 = rep2): 12,100 overdue of 12,100 open
    [team] = await bot.say("sup2", "/kpi")
    assert "- 逾期率：100.0%（逾期 ¥12,100.00 / 未收 ¥12,100.00）" in team and "张伟" not in team

    [dso] = await bot.say("gm", "/dso")
    assert "DSO = 未收 ¥87,446.17 ÷ 近90天销售 ¥42,100.00 × 90 = **186.9天**" in dso
    assert "销售按开票日 2026-08-26 至 2026-11-23 计" in dso


# ---------------------------------------------------------------------------------------------- /paid

async def test_paid_allocates_named_invoice_first_then_oldest(aiohttp_client, any_db):
    db = any_db                  # SQLite and PostgreSQL
    bot = await _bot(aiohttp_client, db)
    # INV-A2 named: its 15,000 first, the rest to the oldest open invoice (A3)
    [reply] = await bot.say("fin1", "/paid INV-A2 2万 11月22日 LS-11")
    assert reply.splitlines() == [
        "**已登记回款 #2**：上海恒信机电有限公司 ¥20,000.00，2026-11-22，流水号 LS-11",   # #1 is the fixture's
        "- INV-A2：冲抵 ¥15,000.00，已结清",
        "- INV-A3：冲抵 ¥5,000.00，尚欠 ¥25,000.00",
        "客户尚欠：¥35,000.00",                                 # 55,000 − 20,000
        "登记有误可冲销：`/reverse 2 原因`",
    ]
    # a customer named: oldest due first (A3 25,000, then A1)
    [reply] = await bot.say("fin1", "/回款 上海恒信 3万 LS-12")
    assert reply.splitlines()[:4] == [
        "**已登记回款 #3**：上海恒信机电有限公司 ¥30,000.00，2026-11-23，流水号 LS-12",
        "- INV-A3：冲抵 ¥25,000.00，已结清",
        "- INV-A1：冲抵 ¥5,000.00，尚欠 ¥5,000.00",
        "客户尚欠：¥5,000.00",
    ]
    async with db.session() as s:
        counts = [(await s.execute(select(func.count()).select_from(m))).scalar_one()
                  for m in (Payment, Allocation, AuditEntry)]
    # the same reference again: reported, nothing changes
    [reply] = await bot.say("fin1", "/paid 上海恒信 3万 LS-12")
    assert reply.startswith("流水号 LS-12 已于 2026-11-23 登记过（上海恒信机电有限公司 ¥30,000.00），本次未重复记账。")
    [reply] = await bot.say("fin1", "/paid 上海恒信 4万 LS-12")
    assert reply.startswith("流水号 LS-12 已登记为 2026-11-23 的 ¥30,000.00")
    async with db.session() as s:
        assert counts == [(await s.execute(select(func.count()).select_from(m))).scalar_one()
                          for m in (Payment, Allocation, AuditEntry)]
    assert (await _receivable(db, "INV-A1")).open_amount == D("5000.00")
    assert (await _receivable(db, "INV-A3")).status == "paid"
    # a USD customer named by a name with spaces, the amount written in US$: booked in USD as is
    [reply] = await bot.say("fin1", "/paid Harbor Lighting Ltd US$400 11月21日")
    assert "- INV-D1：冲抵 US$400.00，尚欠 US$600.00" in reply and "客户尚欠：US$600.00" in reply
    # more than the open invoices: C3 still owes the written-off INV-C2 (40,000, 核销后仍保留追偿权),
    # so the rest recovers that loss (issue #19) instead of going on account, and nothing is asked
    [reply] = await bot.say("fin1", "/paid C3 6000")
    assert "- INV-C1：冲抵 ¥5,000.00，已结清" in reply
    assert "- INV-C2（已核销）：追回 ¥1,000.00，冲减坏账损失（不是预收）" in reply
    assert "预收（未分配）" not in reply and "客户已无未结发票。" in reply
    # refused input changes nothing
    assert "还没到" in (await bot.say("fin1", "/paid INV-A1 100 12月1日"))[0]
    assert "看不懂金额" in (await bot.say("fin1", "/paid INV-A1 一些钱"))[0]
    assert "找不到发票号或客户" in (await bot.say("fin1", "/paid INV-ZZ 100"))[0]
    assert "没有使用 /paid 的权限" in (await bot.say("rep1", "/paid INV-A1 100"))[0]
    await _invariants_hold(db)


# ---------------------------------------------------------------------------------------------- /writeoff

async def test_writeoff_approval_booking_and_recovery(aiohttp_client, any_db):
    db = any_db                  # SQLite and PostgreSQL
    perms = dict(APPROVERS, writeoff_small_limit=D("20000"))
    bot = await _bot(aiohttp_client, db, permissions=perms)
    # 12,345.67 ≤ 20,000: finance head AND sales director
    [reply] = await bot.say("admin", "/writeoff INV-B2 客户失联三年")
    assert reply.splitlines() == ["已提交核销申请 #2：苏州明达电子科技有限公司 INV-B2 ¥12,345.67",
                                  "已请 钱会计、王主管 审批（需全部批准），批准后自动核销并通知您。"]
    for approver in ("fin1", "sup1"):
        [asked] = await bot.inbox(approver)
        assert asked.startswith("**坏账核销审批** #2\n管理员 申请核销 苏州明达电子科技有限公司 的 INV-B2：¥12,345.67")
        assert "原因：客户失联三年" in asked and "`/approve 2`" in asked and "`/reject 2`" in asked
    assert await bot.inbox("gm") == []
    assert "已有待审批的核销申请 #2" in (await bot.say("fin1", "/writeoff INV-B2 再次申请"))[0]
    # only the named approvers may act
    assert (await bot.say("gm", "/approve 2"))[0].startswith("您不是这笔核销的审批人。")
    assert (await bot.say("rep1", "/reject 2"))[0].startswith("您不是这笔核销的审批人。")
    [reply] = await bot.say("sup1", "/批准 2")
    assert reply == "已批准核销申请 #2（INV-B2），还需 钱会计 批准。"
    assert "已经批准过" in (await bot.say("sup1", "/approve 2"))[0]
    r = await _receivable(db, "INV-B2")
    assert (r.open_amount, r.status) == (D("12345.67"), "open")
    [reply] = await bot.say("fin1", "/approve 2")
    assert reply == "已批准核销申请 #2，审批完成：INV-B2 ¥12,345.67 已核销（2026-11-23），仍保留追偿权。"
    r = await _receivable(db, "INV-B2")
    assert (r.open_amount, r.status) == (D("0.00"), "written_off")
    [told] = await bot.inbox("admin")
    assert told == "您的核销申请 #2 已审批通过：INV-B2 ¥12,345.67 已于 2026-11-23 核销，仍保留追偿权。"
    assert "已经处理过了" in (await bot.say("fin1", "/approve 2"))[0]
    async with db.session() as s:
        wo = await s.get(WriteOff, 2)
        assert (wo.status, wo.amount, wo.approvals) == ("approved", D("12345.67"),
                                                        {"sales_director": "sup1", "finance_head": "fin1"})
    # the aging loses B2: 87,446.17 − 12,345.67
    assert "未收合计 ¥75,100.50，6笔" in (await bot.say("gm", "/aging"))[0]

    # recovery: a later payment on the written-off invoice reverses that much of the loss
    [reply] = await bot.say("fin1", "/paid INV-B2 2000 LS-R1")
    assert "- INV-B2（已核销）：追回 ¥2,000.00，冲减坏账损失" in reply
    # more than is left to recover: 10,345.67 recovered, the rest 9,654.33 to B1 (8,000.50), 1,653.83 on account
    # (1,653.83 would be left on account: asked first; a trailing 确认 answers the question in advance)
    [reply] = await bot.say("fin1", "/paid INV-B2 20000 LS-R2")
    assert "多出的 ¥1,653.83 将记为预收（未分配）" in reply and "尚未记账" in reply
    [reply] = await bot.say("fin1", "/paid INV-B2 20000 LS-R2 确认")
    assert "- INV-B2（已核销）：追回 ¥10,345.67，冲减坏账损失" in reply
    assert "- INV-B1：冲抵 ¥8,000.50，已结清" in reply and "- 预收（未分配）：¥1,653.83" in reply
    async with db.session() as s:
        wo = await s.get(WriteOff, 2)
        assert (wo.amount, wo.recovered_amount) == (D("12345.67"), D("12345.67"))
    assert "没有可追偿的核销金额" in (await bot.say("fin1", "/paid INV-B2 1 LS-R3"))[0]
    r = await _receivable(db, "INV-B2")
    assert (r.open_amount, r.status) == (D("0.00"), "written_off")
    await _invariants_hold(db)
    # aging as of any date stays exact: before the write-off B2 is there, after it is not
    async with db.session() as s:
        before = await aging_q.aging(s, date(2026, 11, 22), fx_rates=ledger_fixture.FX)
        after = await aging_q.aging(s, date(2026, 11, 23), fx_rates=ledger_fixture.FX)
    assert before.buckets[-1].amount == D("12345.67") and after.buckets[-1].amount == D("0.00")


async def test_writeoff_above_the_limit_goes_to_the_finance_head_and_the_general_manager(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, permissions=dict(APPROVERS, writeoff_small_limit=D("20000")))
    [reply] = await bot.say("admin", "/核销 INV-A3 客户倒闭")           # 30,000 > 20,000
    assert "已请 钱会计、周总 审批（需全部批准），批准后自动核销并通知您。" in reply
    assert await bot.inbox("sup1") == [] and len(await bot.inbox("gm")) == 1 and len(await bot.inbox("fin1")) == 1
    assert "不是这笔核销的审批人" in (await bot.say("sup1", "/approve 2"))[0]
    assert (await bot.say("gm", "/驳回 2"))[0] == "已驳回核销申请 #2（INV-A3），未核销，继续催收。"
    assert (await bot.inbox("admin"))[-1] == "您的核销申请 #2（INV-A3）被 周总 驳回，未核销。"
    r = await _receivable(db, "INV-A3")
    assert (r.open_amount, r.status) == (D("30000.00"), "open")
    assert "已经处理过了" in (await bot.say("gm", "/approve 2"))[0]
    assert "找不到核销申请 99" in (await bot.say("gm", "/approve 99"))[0]
    assert "没有未付余额" in (await bot.say("fin1", "/writeoff INV-C2 重复"))[0]


# ---------------------------------------------------------------------------------------------- /help

async def test_help_lists_only_the_callers_commands(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [rep] = await bot.say("rep1", "/help")
    [fin] = await bot.say("fin1", "/帮助")
    [gm] = await bot.say("gm", "/help")
    for text in (rep, fin, gm):
        assert "`/customer`" in text and "`/kpi`" in text and "`/dso`" in text and "`/aging`" in text
    assert "`/paid`" not in rep and "`/writeoff`" not in rep and "按编号回复" in rep
    assert "`/paid`" in fin and "`/writeoff`" in fin and "按编号回复" not in fin
    assert "`/paid`" not in gm and "`/followup`" not in gm and "`/approve`" in gm
