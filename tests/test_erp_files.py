"""Files as ERP systems (用友 U8, 金蝶 K3, 金蝶云星空, YonSuite) export them: what the readers make of
titles, totals, their headers, dates, amounts and multi-line invoices (domain/import_files.py)."""
from __future__ import annotations

import csv
from pathlib import Path

from domain.import_files import data_rows, find_header, is_footer_row, is_total_row, open_table
from domain.import_vocab import header_field


def _csv(path: Path, rows: list[list], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_title_rows_above_the_header_and_total_rows_are_skipped(tmp_path):
    p = _csv(tmp_path / "u8.csv", [
        ["应收账款明细表", "", "", "", ""],
        ["编制单位：杭州明光贸易有限公司", "", "", "期间：2026-01", ""],
        ["发票号", "客户名称", "开票日期", "到期日", "应收金额"],
        ["F1", "甲", "2026-01-01", "2026-02-01", "100"],
        ["小计", "", "", "", "100"],
        ["F2", "乙", "2026-01-02", "2026-02-02", "50"],
        ["合计：", "", "", "", "150"],
        ["制表人：张三", "", "", "打印日期：2026-03-05", ""],
    ], encoding="gbk")
    with open_table(p, "receivables") as t:
        rows = list(t.rows)
        assert t.headers == ["发票号", "客户名称", "开票日期", "到期日", "应收金额"]
        assert (t.header_line, t.title_lines, t.total_lines) == (3, [1, 2], [5, 7, 8])
    assert [line for line, _ in rows] == [4, 6]


def test_total_words_stand_alone_or_before_a_colon_or_bracket():
    assert is_total_row(["小计(华东区)", "", 3.0])
    assert is_total_row([None, " 合 计 ", 5.0])
    assert is_total_row(["", "本页合计", ""]) and is_total_row(["Total"]) and is_total_row(["总计："])
    assert not is_total_row(["合计科技有限公司", "F1"])       # a customer whose name starts so
    assert not is_total_row(["FP001", "小计公司", 100.0])
    assert is_footer_row(["制表人：张三", "", None]) and not is_footer_row(["制表人：张三", 100.0])


def test_find_header_is_a_stream_helper_for_any_vocabulary():
    """The bank-statement reader uses it with its own words: the header is the first row with
    two known titles; what follows stays a stream."""
    rows = iter([(1, ["中国工商银行 账户明细"]), (2, ["账号：6222…", "币种：人民币"]),
                 (3, ["交易日期", "对方户名", "贷方发生额", "摘要"]), (4, ["2026-03-05", "甲", "100", ""]),
                 (5, ["合计", "", "100", ""])])
    words = {"交易日期", "对方户名", "贷方发生额"}
    header, above, rest = find_header(rows, words.__contains__)
    assert header == (3, ["交易日期", "对方户名", "贷方发生额", "摘要"]) and above == [1, 2]
    skipped: list[int] = []
    assert list(data_rows(rest, skipped)) == [(4, ["2026-03-05", "甲", "100", ""])] and skipped == [5]


def test_without_a_recognisable_header_the_first_row_is_the_header():
    rows = iter([(1, ["a", "b"]), (2, ["1", "2"])])
    header, above, rest = find_header(rows, lambda h: header_field("receivables", h) is not None)
    assert header == (1, ["a", "b"]) and above == [] and list(rest) == [(2, ["1", "2"])]


# ---- the fixture folder: real-looking exports into the ledger, aging checked independently -------
import asyncio  # noqa: E402
import io  # noqa: E402
from datetime import date, datetime, timezone  # noqa: E402
from decimal import Decimal  # noqa: E402

import pytest  # noqa: E402
from openpyxl import load_workbook  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bot.render import render  # noqa: E402
from domain.import_files import validate  # noqa: E402
from storage.aging import aging  # noqa: E402
from storage.imports import import_file  # noqa: E402
from storage.models import Customer, Receivable  # noqa: E402

DATA = Path(__file__).parent / "data"
ERP = DATA / "erp"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
TODAY = date(2026, 12, 1)

# What the four exports hold, invoice by invoice, read off the files by a person (make_erp_files.py):
# number → (customer code, due date, amount: a multi-line invoice's lines added up by hand)
EXPECTED = {
    "U8-2607001": ("C001", date(2026, 8, 4), Decimal("11300.00") + Decimal("5650.00")),
    "U8-2608015": ("C002", date(2026, 10, 19), Decimal("10000.00")),
    "U8-2610003": ("C005", date(2026, 12, 9), Decimal("3000.00")),
    "ZP26090011": ("C003", date(2026, 10, 1), Decimal("23400") + Decimal("1600")),
    "ZP26060002": ("C004", date(2026, 7, 15), Decimal("48000")),
    "AR00000101": ("C001", date(2026, 10, 15), Decimal("20000")),
    "AR00000102": ("C006", date(2026, 12, 31), Decimal("12345.6") + Decimal("654.4")),
    "AR00000103": ("C002", date(2026, 8, 31), Decimal("7500")),
    "YS-AR-0001": ("C004", date(2026, 11, 19), Decimal("8000.00")),
    "YS-AR-0002": ("C003", date(2026, 11, 20), Decimal("4321.09")),
    "YS-AR-0003": ("C006", date(2026, 10, 30), Decimal("60000.00")),
}
EXPORTS = [("U8_销售发票列表.xls", 3, [1, 2], 1), ("K3_销售发票序时簿.xlsx", 2, [1], 1),
           ("金蝶云星空_应收单列表.xlsx", 3, [1, 2], 1), ("YonSuite_应收单.csv", 3, [1, 2], 0)]


def _bucket(days_overdue: int) -> int:
    """0 not due, 1: 1-30, 2: 31-60, 3: 61-90, 4: 90+ — the default [aging] buckets, by hand."""
    if days_overdue <= 0:
        return 0
    return next((i + 1 for i, bound in enumerate((30, 60, 90)) if days_overdue <= bound), 4)


async def _load(db, kind, path, **kw):
    return await import_file(db, kind, path, now=NOW, today=TODAY, **kw)


async def _ledger(db):
    for kind, name in (("people", "people.csv"), ("customers", "customers_gbk.csv")):
        assert (await _load(db, kind, DATA / name)).ok


async def test_erp_exports_import_and_age_as_computed_by_hand(db):
    await _ledger(db)
    for name, invoices, titles, merged in EXPORTS:
        report = await _load(db, "receivables", ERP / name)
        assert report.ok, (name, report.to_dict())
        assert (report.created, report.title_lines, report.merged_lines) == (invoices, titles, merged), name
        assert report.total_lines, name                    # the 合计 row was left out, not imported
    async with db.session() as s:
        stored = {r.invoice_no: (code, r.due_date, r.amount) for r, code in
                  (await s.execute(select(Receivable, Customer.code).join(Customer))).all()}
        got = await aging(s, TODAY)
    assert stored == EXPECTED
    by_hand = [Decimal("0.00")] * 5
    for _, due, amount in EXPECTED.values():
        by_hand[_bucket((TODAY - due).days)] += amount
    assert [b.amount for b in got.buckets] == by_hand
    assert got.total == sum(a for _, _, a in EXPECTED.values()) == Decimal("219116.09")
    # the same files again: nothing changes (multi-line totals compare equal to what is stored)
    for name, invoices, _, _ in EXPORTS:
        again = await _load(db, "receivables", ERP / name)
        assert again.ok and (again.created, again.updated, again.unchanged) == (0, 0, invoices), name


def test_the_fixture_xls_is_a_genuine_excel_97_file():
    assert (ERP / "U8_销售发票列表.xls").read_bytes()[:8] == bytes.fromhex("d0cf11e0a1b11ae1")   # OLE2 (BIFF8)
