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
