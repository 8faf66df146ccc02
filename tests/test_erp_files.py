"""Files as ERP systems (用友 U8, 金蝶 K3, 金蝶云星空, YonSuite) export them: what the readers make of
titles, totals, their headers, dates, amounts and multi-line invoices (domain/import_files.py)."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from openpyxl import load_workbook
from sqlalchemy import select

from bot.render import render
from bot.workbooks import weekly
from domain.export_cells import csv_cell
from domain.import_files import data_rows, find_header, is_footer_row, is_total_row, open_table, validate
from domain.import_vocab import header_field
from storage import import_stream
from storage.aging import aging
from storage.imports import import_file
from storage.models import Customer, FollowUp, Receivable


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
        if name.endswith(".xls"):
            assert _report_text(report).splitlines()[1:] == [
                "未使用的列：存货名称、数量、原币税额、客户简称、原币金额、本币价税合计",
                "已跳过表头上方的标题行：第1、2行", "已跳过合计/小计及制表人等行：2行（第9、11行）",
                "同一发票的多行明细已合计：1行并入其发票"]
    async with db.session() as s:
        stored = {r.invoice_no: (code, r.due_date, r.amount) for r, code in
                  (await s.execute(select(Receivable, Customer.code).join(Customer))).all()}
        got = await aging(s, TODAY)
    assert stored == EXPECTED
    by_hand = [Decimal("0.00")] * 5
    for _, due, amount in EXPECTED.values():
        by_hand[_bucket((TODAY - due).days)] += amount
    assert [b.amount for b in got.buckets] == by_hand
    assert got.total == sum(a for _, _, a in EXPECTED.values()) == Decimal("215771.09")
    # the same files again: nothing changes (multi-line totals compare equal to what is stored)
    for name, invoices, _, _ in EXPORTS:
        again = await _load(db, "receivables", ERP / name)
        assert again.ok and (again.created, again.updated, again.unchanged) == (0, 0, invoices), name


def test_the_fixture_xls_is_a_genuine_excel_97_file():
    assert (ERP / "U8_销售发票列表.xls").read_bytes()[:8] == bytes.fromhex("d0cf11e0a1b11ae1")   # OLE2 (BIFF8)


# ---- cells: amounts, dates, columns ----------------------------------------------------------------
HEAD = ["发票号", "客户编码", "开票日期", "到期日", "应收金额"]


def _report_text(report) -> str:
    return render("cli/import_report.txt.j2", r=report)


async def test_fractions_of_a_cent_and_absurd_amounts_are_line_errors_and_nothing_is_written(db, tmp_path):
    await _ledger(db)
    p = _csv(tmp_path / "r.csv", [HEAD, ["F1", "C001", "2026-10-01", "2026-11-01", "1.2万"],
                                  ["F2", "C001", "2026-10-01", "2026-11-01", "12345.605"],
                                  ["F3", "C001", "2026-10-01", "2026-11-01", "92000000000000000"],
                                  ["F4", "C001", "2026-10-01", "2026-11-01", "12,345.600"]])
    report = await _load(db, "receivables", p)
    assert [(e.line, e.header, e.code) for e in report.errors] == [(3, "应收金额", "too_many_decimals"),
                                                                    (4, "应收金额", "amount_too_large")]
    text = _report_text(report)
    assert "第3行，列“应收金额”，值“12345.605”：金额最多两位小数" in text and "超过上限 10,000,000,000 元" in text
    async with db.session() as s:
        assert (await s.execute(select(Receivable))).first() is None


def test_amounts_from_excel_cells_keep_the_same_rules():
    rows = [(2, ["F1", "C001", date(2026, 10, 1), date(2026, 11, 1), 12345.605]),
            (3, ["F2", "C001", date(2026, 10, 1), date(2026, 11, 1), 1234.5600000000002]),   # Excel's float noise
            (4, ["F3", "C001", date(2026, 10, 1), date(2026, 11, 1), 9.2e16])]
    parsed = validate("receivables", HEAD, rows, today=TODAY)
    assert [(e.line, e.code) for e in parsed.errors] == [(2, "too_many_decimals"), (4, "amount_too_large")]
    assert [r.values["amount"] for r in parsed.records] == [Decimal("1234.56")]


def test_dates_as_erps_write_them_in_the_configured_order():
    def read(order, *texts):
        rows = [(i + 2, [f"F{i}", "C001", t, "2026-12-31", "100"]) for i, t in enumerate(texts)]
        parsed = validate("receivables", HEAD, rows, today=TODAY, date_order=order)
        return [r.values["issue_date"] for r in parsed.records], parsed.errors

    march5 = date(2026, 3, 5)
    assert read("ymd", "26-3-5", "2026/3/5", "3/5/2026", "2026.3.5", "2026-03-05 00:00:00") == ([march5] * 5, [])
    assert read("mdy", "3/5/26", "3/5/2026") == ([march5] * 2, [])
    assert read("dmy", "5/3/26", "5/3/2026", "5.3.2026", "2026/3/5") == ([march5] * 4, [])
    dates, errors = read("ymd", "13/5/2026")           # month 13: the order is wrong for this file
    assert dates == [] and [(e.code, e.params) for e in errors] == [("bad_date", {"order": "ymd"})]
    report = SimpleNamespace(ok=False, kind="receivables", errors=[e.__class__(**{**e.__dict__, "header": "开票日期"})
                                                                    for e in errors], more_errors=0)
    assert 'date_order = "ymd" 读：3/5/2026 是3月5日' in _report_text(report)
    assert "--date-order ymd、mdy 或 dmy" in _report_text(report)


def test_import_date_order_is_configuration(tmp_path):
    from bot.config import ConfigError, load_config
    cfg = tmp_path / "c.toml"
    cfg.write_text('[import]\ndate_order = "dmy"\n', encoding="utf-8")
    assert load_config(cfg, env={}).imports.date_order == "dmy"
    assert load_config(None, env={"ARBOT_IMPORT_DATE_ORDER": "mdy"}).imports.date_order == "mdy"
    assert load_config(None, env={}).imports.date_order == "ymd"
    cfg.write_text('[import]\ndate_order = "d/m/y"\n', encoding="utf-8")
    try:
        load_config(cfg, env={})
    except ConfigError as e:
        assert "[import] date_order" in str(e)
    else:
        raise AssertionError("a bad date_order was accepted")


async def test_errors_name_the_files_own_columns_in_chinese(db, tmp_path):
    await _ledger(db)
    # a 金蝶云星空 file without its 到期日 column: the missing column is named in Chinese
    p = _csv(tmp_path / "k.csv", [["单据编号", "业务日期", "客户", "价税合计"], ["AR1", "2026-10-01", "C001", "100"]])
    text = _report_text(await _load(db, "receivables", p))
    assert "第1行，列“到期日”：缺少必填列" in text
    # a bad cell is named by the file's own title, on the line Excel shows (below two title rows)
    p = _csv(tmp_path / "u.csv", [["应收单"], ["期间：2026-10"], ["单据编号", "单据日期", "客户编码", "到期日", "本币金额"],
                                  ["AR1", "2026-10-01", "C001", "2026-13-01", "100"]])
    text = _report_text(await _load(db, "receivables", p))
    assert "第4行，列“到期日”，值“2026-13-01”：日期看不懂，请写成 2026-12-05、2026/12/5 或 2026年12月5日\n" in text + "\n"
    for kind, header in (("customers", ["客户名称"]), ("payments", ["客户名称", "金额"]), ("people", ["姓名"])):
        text = _report_text(await _load(db, kind, _csv(tmp_path / f"{kind}.csv", [header, ["x"] * len(header)])))
        assert "缺少必填列" in text and not any(c.isascii() and c.isalpha() for c in text.split("列“")[1][:3]), text


async def test_duplicate_headers_are_refused_with_both_columns_named(db, tmp_path):
    await _ledger(db)
    before = await _counts(db)
    for header, said in ((["发票号", "客户编码", "开票日期", "到期日", "金额", "金额"],
                          "第1行，列“金额”：与第E列“金额”重复（本列在第F列）：同一项只能有一列"),
                         (["发票号", "客户编码", "开票日期", "到期日", "到期日期", "价税合计"],
                          "第1行，列“到期日期”：与第D列“到期日”重复（本列在第E列）：同一项只能有一列")):
        p = _csv(tmp_path / "d.csv", [header, ["F1", "C001", "2026-10-01", "2026-11-01", "2026-11-01", "100"]])
        report = await _load(db, "receivables", p)
        assert [e.code for e in report.errors] == ["duplicate_column"]
        assert said in _report_text(report)
    assert await _counts(db) == before


async def _counts(db):
    from storage.imports import table_counts
    async with db.session() as s:
        return await table_counts(s)


# ---- multi-line invoices and invoices changing hands ------------------------------------------------
ROWS = [["F1", "C001", "2026-10-01", "2026-11-01", "100.00", "筒灯"],
        ["F2", "C002", "2026-10-02", "2026-11-02", "50.00", "面板灯"],
        ["F3", "C003", "2026-10-03", "2026-11-03", "70.00", "灯带"],
        ["F1", "C001", "2026-10-01", "2026-11-01", "25.50", "安装费"],        # F1's second line, three lines on
        ["F1", "C001", "2026-10-01", "2026-11-01", "100.00", "筒灯"],         # F1's first line pasted twice
        ["F1", "C001", "2026-10-01", "2026-11-01", "25.50", "安装费"]]        # ... and its second line


async def _amounts(db):
    async with db.session() as s:
        return {r.invoice_no: (r.amount, r.open_amount) for r in (await s.execute(select(Receivable))).scalars()}


async def test_a_multi_line_invoice_is_summed_even_when_its_lines_are_far_apart(db, tmp_path, monkeypatch):
    await _ledger(db)
    monkeypatch.setattr(import_stream, "KEY_BATCH", 2)   # F1 is judged before its second line is read
    p = _csv(tmp_path / "m.csv", [HEAD + ["存货名称"], *ROWS])
    report = await _load(db, "receivables", p)
    assert report.ok and (report.created, report.merged_lines, report.unchanged) == (3, 1, 2)
    assert "同一发票的多行明细已合计：1行" in _report_text(report)
    assert await _amounts(db) == {"F1": (Decimal("125.50"),) * 2, "F2": (Decimal("50.00"),) * 2,
                                  "F3": (Decimal("70.00"),) * 2}
    again = await _load(db, "receivables", p)
    assert again.ok and (again.created, again.updated, again.unchanged) == (0, 0, 5)
    # the list path (import_rows, used beside the streamed one) reads the same file the same way
    parsed = validate("receivables", HEAD + ["存货名称"], [(i + 2, r) for i, r in enumerate(ROWS)], today=TODAY)
    assert [(r.values["invoice_no"], r.values["amount"]) for r in parsed.records if r.duplicate_of is None] == [
        ("F1", Decimal("125.50")), ("F2", Decimal("50.00")), ("F3", Decimal("70.00"))]


async def test_adjacent_lines_across_a_batch_boundary_need_no_second_look(db, tmp_path, monkeypatch):
    """The usual export (an invoice's lines together) is read once, even where a batch ends
    between two lines of one invoice."""
    await _ledger(db)
    monkeypatch.setattr(import_stream, "KEY_BATCH", 2)

    def no_second_look(self):
        raise AssertionError("the file was read a second time")
    monkeypatch.setattr(import_stream.ReceivablesImport, "again", no_second_look)
    p = _csv(tmp_path / "a.csv", [HEAD + ["存货名称"], ROWS[1], ROWS[0], ROWS[3], ROWS[2]])
    report = await _load(db, "receivables", p)
    assert report.ok and (report.created, report.merged_lines) == (3, 1)
    assert (await _amounts(db))["F1"] == (Decimal("125.50"),) * 2


async def test_lines_of_one_number_with_another_customer_or_date_are_a_conflict(db, tmp_path):
    await _ledger(db)
    p = _csv(tmp_path / "c.csv", [HEAD, ROWS[0][:5], ["F1", "C002", "2026-10-01", "2026-11-01", "20.00"],
                                  ["F1", "C001", "2026-10-09", "2026-11-01", "20.00"]])
    report = await _load(db, "receivables", p)
    assert [(e.line, e.code, e.params) for e in report.errors] == [(3, "duplicate_key", {"first_line": 2}),
                                                                    (4, "duplicate_key", {"first_line": 2})]
    assert await _amounts(db) == {}


async def test_a_reimport_moving_an_invoice_to_another_customer_needs_explicit_consent(db, tmp_path):
    await _ledger(db)
    assert (await _load(db, "receivables", _csv(tmp_path / "a.csv", [HEAD, ROWS[0][:5]]))).ok
    moved = _csv(tmp_path / "b.csv", [HEAD, ["F1", "C002", "2026-10-01", "2026-11-01", "100.00"]])
    report = await _load(db, "receivables", moved)
    assert [(e.line, e.code) for e in report.errors] == [(2, "customer_changed")]
    text = _report_text(report)
    assert "已登记在客户“C001 上海恒信机电有限公司”名下，文件改成了“C002 苏州华瑞电子科技有限公司”" in text
    assert "--allow-customer-change" in text

    async def owner():
        async with db.session() as s:
            return (await s.execute(select(Customer.code).join(Receivable))).scalar_one()
    assert await owner() == "C001"
    report = await _load(db, "receivables", moved, allow_customer_change=True)
    assert report.ok and report.updated == 1 and await owner() == "C002"


async def test_the_list_path_refuses_a_change_of_customer_too(db):
    from storage.imports import import_rows
    await _ledger(db)
    parsed = validate("receivables", HEAD, [(2, ROWS[0][:5])], today=TODAY)
    async with db.session() as s, s.begin():
        assert (await import_rows(s, "receivables", parsed.records, actor="t", channel="t", now=NOW, today=TODAY)).ok
    parsed = validate("receivables", HEAD, [(2, ["F1", "C002", "2026-10-01", "2026-11-01", "100.00"])], today=TODAY)
    async with db.session() as s, s.begin():
        report = await import_rows(s, "receivables", parsed.records, actor="t", channel="t", now=NOW, today=TODAY)
    assert [e.code for e in report.errors] == ["customer_changed"]


async def test_lines_adding_up_beyond_the_limit_are_refused(db, tmp_path):
    await _ledger(db)
    big = "6000000000.00"                                 # each line under the limit, the invoice over it
    p = _csv(tmp_path / "b.csv", [HEAD + ["存货名称"], ["F9", "C001", "2026-10-01", "2026-11-01", big, "a"],
                                  ["F9", "C001", "2026-10-01", "2026-11-01", big, "b"]])
    report = await _load(db, "receivables", p)
    assert [(e.line, e.code) for e in report.errors] == [(2, "amount_too_large")]
    assert await _amounts(db) == {}


async def test_customer_and_payment_exports_with_titles_and_totals(db, tmp_path):
    """A 客户档案 and a 收款单 export as U8 writes them: titles above, 合计 below, 客户简称 unused."""
    await _ledger(db)
    customers = _csv(tmp_path / "客户档案.csv", [
        ["客户档案"], ["客户编码", "客户名称", "客户简称", "专管业务员", "信用额度", "地区"],
        ["C101", "宁波新光电器有限公司", "新光电器", "张伟", "200,000.00", "华东"]], encoding="gbk")
    report = await _load(db, "customers", customers)
    assert report.ok and report.created == 1 and report.title_lines == [1] and "客户简称" in report.ignored_columns
    assert (await _load(db, "receivables", ERP / "YonSuite_应收单.csv")).ok
    payments = _csv(tmp_path / "收款单.csv", [
        ["收款单列表"], ["单据编号", "单据日期", "客户编码", "客户名称", "原币金额", "本币金额"],
        ["SK0001", "2026-11-25", "C004", "深圳宏达进出口贸易有限公司", "3,000.00", "3,000.00"],
        ["合计", "", "", "", "3,000.00", "3,000.00"]])
    report = await _load(db, "payments", payments)
    assert report.ok and report.created == 1 and report.total_lines == [4]
    assert (await _amounts(db))["YS-AR-0001"] == (Decimal("8000.00"), Decimal("5000.00"))


# ---- safe exports -----------------------------------------------------------------------------------
EVIL = '=HYPERLINK("http://evil.example/x","点此查看")'


def test_formula_looking_text_is_neutralised_and_numbers_stay_numbers():
    for risky in (EVIL, "+86 138", "-1+2", "@SUM(A1)", "\t=1", "\r=1", "＝1"):
        assert csv_cell(risky) == "'" + risky
    for plain in ("-1234.50", "1234.50", "-5", "上海恒信", "", "a=b", Decimal("-12.30"), -7, None):
        assert csv_cell(plain) == plain


def test_the_cli_csv_exports_write_a_reps_formula_as_text(tmp_path, monkeypatch, capfd):
    import asyncio

    from bot.cli import main
    from storage.db import Database
    url = f"sqlite:///{tmp_path}/x.db"
    monkeypatch.setenv("ARBOT_DATABASE_URL", url)
    monkeypatch.delenv("ARBOT_CONFIG", raising=False)
    for kind, path in (("people", DATA / "people.csv"), ("customers", DATA / "customers_gbk.csv"),
                       ("receivables", ERP / "YonSuite_应收单.csv")):
        assert main(["import", kind, str(path)]) == 0

    async def followup():   # what `/followup =HYPERLINK(...)` stores
        db = Database(url)
        async with db.session() as s, s.begin():
            s.add(FollowUp(person_id="E001", at=NOW, channel="local", outcome="other", text=EVIL, parse={}))
        await db.close()
    asyncio.run(followup())
    capfd.readouterr()
    assert main(["export", "followups"]) == 0
    rows = list(csv.DictReader(io.StringIO(capfd.readouterr().out.lstrip("\ufeff"))))
    assert [r["text"] for r in rows] == ["'" + EVIL]
    # a file in British order, for this one import: 5/3/2026 is March 5
    dmy = _csv(tmp_path / "dmy.csv", [HEAD, ["UK-1", "C001", "5/3/2026", "4/4/2026", "10.00"]])
    assert main(["import", "receivables", str(dmy), "--date-order", "dmy"]) == 0

    async def dates():
        db = Database(url)
        async with db.session() as s:
            got = (await s.execute(select(Receivable.issue_date, Receivable.due_date)
                                   .where(Receivable.invoice_no == "UK-1"))).one()
        await db.close()
        return tuple(got)
    assert asyncio.run(dates()) == (date(2026, 3, 5), date(2026, 4, 4))
    capfd.readouterr()
    assert main(["report", "aging", "--as-of", "2026-12-01", "--format", "csv"]) == 0
    lines = list(csv.reader(io.StringIO(capfd.readouterr().out.lstrip("\ufeff"))))
    assert lines[1][-1] == "72331.09"                     # figures are written as figures


async def test_report_workbooks_store_formula_looking_names_as_text(db):
    from storage.aging import TopCustomer
    await _ledger(db)
    for name, *_ in EXPORTS:
        assert (await _load(db, "receivables", ERP / name)).ok
    async with db.session() as s:
        now, earlier = await aging(s, date(2026, 8, 1)), await aging(s, TODAY)
    top = [TopCustomer(1, EVIL, Decimal("100.00"), 30)]
    teams = [{"name": "@SUM(A1)", "buckets": now.buckets, "total": now.total, "overdue": now.overdue}]
    wb = load_workbook(io.BytesIO(weekly("测试公司", now, earlier, teams, top)))
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row]
    risky = [c for c in cells if isinstance(c.value, str) and c.value[:1] in "=@"]
    assert {c.value for c in risky} == {EVIL, "@SUM(A1)"}
    assert all(c.data_type == "s" and c.quotePrefix for c in risky)
    changes = [c.value for c in cells if isinstance(c.value, (int, float, Decimal)) and c.value < 0]
    assert changes and all(c.data_type == "n" for c in cells if isinstance(c.value, (int, float)) and c.value < 0)
