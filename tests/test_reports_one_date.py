"""Every figure of a report is as of the report's date (issue #19).

The monthly report for November is sent on 12-05. Between 11-30 and 12-05 the customers paid:
恒信 (C1) cleared INV-A3 (¥30,000.00) on 12-02 and 明达 (C2) paid ¥12,345.67 on INV-B2 on 12-03.
As of 11-30, by hand (tests/ledger_fixture.py's table, A1 not yet due on 11-30):

  customer  overdue on 11-30                                   oldest due   days on 11-30
  C1 恒信   A2 15,000.00 + A3 30,000.00      = 45,000.00        09-24        67
  C2 明达   B1 8,000.50 + B2 12,345.67       = 20,346.17        05-01        213
  C3 顺发   C1 5,000.00                                         10-24        37
  C4 Harbor D1 USD 1,000 × 7.10              = 7,100.00         11-03        27

Open on 11-30 in all: 10,000.00 (A1) + 45,000.00 + 20,346.17 + 5,000.00 + 7,100.00 = 87,446.17,
the 明细 sheet's lines, which must add up to the report's total.
"""
from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal

from openpyxl import load_workbook
from sqlalchemy import select

from storage import ledger
from storage.models import Customer
from tests import cli_inprocess, ledger_fixture
from tests.conftest import at
from tests.harness import Bot
from tests.test_reports import _fetch, _links, _money

D = Decimal


async def _pay(db, code: str, invoice: str, amount: str, day: date) -> None:
    async with db.session() as s, s.begin():
        c = (await s.execute(select(Customer).where(Customer.code == code))).scalar_one()
        await ledger.record_payment(s, customer=c, amount=D(amount), paid_on=day, reference=f"LS-{invoice}",
                                    invoice_no=invoice, actor="fin1", channel="test", now=at(f"{day} 10:00"))


async def _ledger_paid_in_december(db) -> None:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    await _pay(db, "C1", "INV-A3", "30000.00", date(2026, 12, 2))
    await _pay(db, "C2", "INV-B2", "12345.67", date(2026, 12, 3))


async def test_the_monthly_report_ranks_overdue_customers_by_their_month_end_balances(aiohttp_client, db, tmp_path):
    await _ledger_paid_in_december(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-12-05 08:00"), company={"fx_rates": ledger_fixture.FX},
                          reports={"dir": str(tmp_path / "reports")}, web={"secret": "test-secret"})
    await bot.run("monthly_aging_report", at("2026-12-05 09:00"))
    [fin] = await bot.inbox("fin1")
    lines = fin.splitlines()
    assert "- 未收合计 ¥87,446.17，7笔（较上月末 -45,000.00）" in lines
    assert "1. 上海恒信机电有限公司：逾期 ¥45,000.00，最长67天" in lines
    assert "2. 苏州明达电子科技有限公司：逾期 ¥20,346.17，最长213天" in lines
    assert "3. Harbor Lighting Ltd：逾期 ¥7,100.00，最长27天" in lines
    assert "4. 广州顺发贸易有限公司：逾期 ¥5,000.00，最长37天" in lines

    status, xlsx = await _fetch(bot, _links(fin)["下载Excel月报"])
    assert status == 200
    wb = load_workbook(io.BytesIO(xlsx), data_only=True)
    top = [tuple(r) for r in wb["逾期客户"].iter_rows(min_row=2, values_only=True)]
    assert [(r[1], _money(r[2]), r[3]) for r in top] == [
        ("上海恒信机电有限公司", D("45000.00"), 67), ("苏州明达电子科技有限公司", D("20346.17"), 213),
        ("Harbor Lighting Ltd", D("7100.00"), 27), ("广州顺发贸易有限公司", D("5000.00"), 37)]
    detail = [tuple(r) for r in wb["明细"].iter_rows(values_only=True)]
    assert detail[0] == ("客户编码", "客户名称", "发票号", "合同号", "业务员", "开票日期", "到期日", "币种",
                         "未收金额（原币）", "折合本币", "逾期天数", "账龄区间")
    by_invoice = {r[2]: (r[0], r[1], r[4], r[7], _money(r[8]), _money(r[9]), r[10], r[11]) for r in detail[1:]}
    assert by_invoice == {
        "INV-A1": ("C1", "上海恒信机电有限公司", "张伟", "CNY", D("10000.00"), D("10000.00"), 0, "未到期"),
        "INV-A2": ("C1", "上海恒信机电有限公司", "张伟", "CNY", D("15000.00"), D("15000.00"), 17, "1-30天"),
        "INV-A3": ("C1", "上海恒信机电有限公司", "张伟", "CNY", D("30000.00"), D("30000.00"), 67, "61-90天"),
        "INV-B1": ("C2", "苏州明达电子科技有限公司", "张伟", "CNY", D("8000.50"), D("8000.50"), 97, "90天以上"),
        "INV-B2": ("C2", "苏州明达电子科技有限公司", "张伟", "CNY", D("12345.67"), D("12345.67"), 213, "90天以上"),
        "INV-C1": ("C3", "广州顺发贸易有限公司", "李娜", "CNY", D("5000.00"), D("5000.00"), 37, "31-60天"),
        "INV-D1": ("C4", "Harbor Lighting Ltd", "李娜", "USD", D("1000.00"), D("7100.00"), 27, "1-30天"),
    }
    summary = {r[0]: r[1] for r in wb["汇总"].iter_rows(values_only=True)}
    assert sum(v[5] for v in by_invoice.values()) == _money(summary["未收合计"]) == D("87446.17")


async def test_the_weekly_workbook_lists_the_invoices(aiohttp_client, db, tmp_path):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                          reports={"manager_groups": ("local:mgmt",), "dir": str(tmp_path / "reports")},
                          web={"secret": "test-secret"})
    await bot.run("weekly_aging_report", at("2026-11-23 09:00"))
    text, _chart = await bot.inbox(chat="mgmt")
    status, xlsx = await _fetch(bot, _links(text)["下载Excel明细"])
    assert status == 200
    rows = [tuple(r) for r in load_workbook(io.BytesIO(xlsx), data_only=True)["明细"].iter_rows(min_row=2, values_only=True)]
    # the fixture's table on 11-23: seven open invoices (C2 written off is not one of them)
    assert sorted(r[2] for r in rows) == ["INV-A1", "INV-A2", "INV-A3", "INV-B1", "INV-B2", "INV-C1", "INV-D1"]
    assert sum(_money(r[9]) for r in rows) == D("87446.17")
    assert {r[2]: r[10] for r in rows}["INV-B2"] == 206


def test_report_aging_by_customer_names_code_and_name(tmp_path, capfd):
    import asyncio

    from storage.db import Database

    async def build() -> str:
        db = Database(f"sqlite:///{tmp_path}/t.db")
        await db.migrate()
        async with db.session() as s, s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
        await db.close()
        return db.url
    url = asyncio.run(build())
    config = cli_inprocess.config_file(tmp_path, url, '[company]\nfx_rates = { USD = "7.10" }\n')

    def arbot(*args: str) -> str:
        capfd.readouterr()
        assert cli_inprocess.arbot(config, "report", "aging", "--as-of", "2026-11-23", "--by", "customer", *args) == 0
        return capfd.readouterr().out.lstrip("\ufeff")

    csv_lines = arbot("--format", "csv").splitlines()
    assert csv_lines[0] == "customer_code,customer_name,not_due,1-30,31-60,61-90,90+,total"
    # C1: A1 10,000 not due, A2 15,000 (10 days), A3 30,000 (60 days)
    assert csv_lines[1] == "C1,上海恒信机电有限公司,10000.00,15000.00,30000.00,0.00,0.00,55000.00"
    assert csv_lines[2] == "C2,苏州明达电子科技有限公司,0.00,0.00,0.00,8000.50,12345.67,20346.17"
    assert [line.split(",")[0] for line in csv_lines[1:]] == ["C1", "C2", "C3", "C4"]
    data = json.loads(arbot("--format", "json"))
    assert sorted(data["groups"]) == ["C1", "C2", "C3", "C4"]
    assert data["names"]["C4"] == "Harbor Lighting Ltd"
    text = arbot()
    assert "C1 上海恒信机电有限公司：未到期 10,000.00；1-30天 15,000.00；31-60天 30,000.00" in text


def test_report_invoices_lists_the_open_invoices_of_a_past_date(tmp_path, capfd):
    import asyncio
    import csv as csv_mod

    from storage.db import Database

    async def build() -> str:
        db = Database(f"sqlite:///{tmp_path}/t.db")
        await db.migrate()
        await _ledger_paid_in_december(db)
        await db.close()
        return db.url
    config = cli_inprocess.config_file(tmp_path, asyncio.run(build()), '[company]\nfx_rates = { USD = "7.10" }\n')
    capfd.readouterr()
    assert cli_inprocess.arbot(config, "report", "invoices", "--as-of", "2026-11-30") == 0
    rows = list(csv_mod.DictReader(io.StringIO(capfd.readouterr().out.lstrip("\ufeff"))))
    got = {r["invoice_no"]: (r["customer_code"], r["open_amount"], r["open_amount_cny"], r["days_overdue"]) for r in rows}
    # INV-A3 and INV-B2 were paid in December: on 11-30 they were still open
    assert got["INV-A3"] == ("C1", "30000.00", "30000.00", "67")
    assert got["INV-B2"] == ("C2", "12345.67", "12345.67", "213")
    assert got["INV-D1"] == ("C4", "1000.00", "7100.00", "27")
    assert sum(D(r["open_amount_cny"]) for r in rows) == D("87446.17") and len(rows) == 7


async def test_a_detail_sheet_past_its_row_limit_says_where_the_rest_is(aiohttp_client, db, tmp_path, monkeypatch):
    from bot import workbooks
    monkeypatch.setattr(workbooks, "DETAIL_MAX_ROWS", 3)
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                          reports={"manager_groups": ("local:mgmt",), "dir": str(tmp_path / "reports")},
                          web={"secret": "test-secret"})
    await bot.run("weekly_aging_report", at("2026-11-23 09:00"))
    text, _chart = await bot.inbox(chat="mgmt")
    status, xlsx = await _fetch(bot, _links(text)["下载Excel明细"])
    rows = [tuple(r) for r in load_workbook(io.BytesIO(xlsx), data_only=True)["明细"].iter_rows(min_row=2, values_only=True)]
    assert [r[2] for r in rows[:3]] == ["INV-B2", "INV-B1", "INV-A3"]          # the oldest due first
    assert rows[3][0] == "仅列出最早到期的3笔；全部发票请用命令 arbot report invoices --as-of 2026-11-23 导出"
    assert len(rows) == 4
