"""Imports of people, customers, receivables and payments from the files in tests/data."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from domain.import_files import RowError, read_table, validate
from storage.imports import import_file, table_counts
from storage.models import Allocation, AuditEntry, Contact, Customer, Payment, Person, Receivable

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
TODAY = date(2026, 12, 1)
FILES = [("people", "people.csv", 10), ("customers", "customers_gbk.csv", 6),
         ("receivables", "receivables.xlsx", 9), ("payments", "payments.csv", 5)]


async def load(db, kind, path, **kw):
    return await import_file(db, kind, DATA / path if isinstance(path, str) else path, now=NOW, today=TODAY, **kw)


async def load_all(db, upto="payments"):
    for kind, name, rows in FILES:
        report = await load(db, kind, name)
        assert report.ok, report.to_dict()
        if kind == upto:
            break


async def counts(db):
    async with db.session() as s:
        return await table_counts(s)


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


# ---- reading ---------------------------------------------------------------------------------
def test_gbk_file_is_detected_and_decoded():
    raw = (DATA / "customers_gbk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")                       # really GBK, not UTF-8
    headers, rows = read_table(DATA / "customers_gbk.csv")
    assert headers[:2] == ["客户编码", "客户名称"]
    assert rows[0][0] == 2 and rows[0][1][1] == "上海恒信机电有限公司"


@pytest.mark.parametrize("encoding,prefix", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("gb18030", b"")])
@pytest.mark.parametrize("sep", [",", "\t", ";"])
def test_encodings_and_delimiters(tmp_path, encoding, prefix, sep):
    text = sep.join(["客户编码", "客户名称"]) + "\n" + sep.join(["C001", "上海恒信机电有限公司"]) + "\n"
    p = tmp_path / "c.csv"
    p.write_bytes(prefix + text.encode(encoding))
    assert read_table(p) == (["客户编码", "客户名称"], [(2, ["C001", "上海恒信机电有限公司"])])


def test_line_numbers_skip_blank_lines_and_follow_multiline_cells(tmp_path):
    p = write(tmp_path, "r.csv", 'code,name\n\nC001,"two\nlines"\n,\nC002,x\n')
    assert read_table(p)[1] == [(3, ["C001", "two\nlines"]), (6, ["C002", "x"])]


def test_headers_tolerate_width_case_markers_and_brackets():
    for headers in (["发票号*", "客户（名称）", "开票日期", "到期日", "应收金额（元）", "备注"],
                    [" Invoice_No ", "客户名称", "开票日期", "到期日", "应收金额（元）", "备注"]):
        parsed = validate("receivables", headers, [], today=TODAY)
        assert parsed.errors == []
        assert set(parsed.columns) == {"invoice_no", "customer", "issue_date", "due_date", "amount"}
        assert parsed.ignored == ["备注"]
    # the same column twice is refused, not guessed (issue 18): 发票号* and Invoice_No are one field
    parsed = validate("receivables", ["发票号*", " Invoice_No ", "客户名称", "开票日期", "到期日", "应收金额"], [],
                      today=TODAY)
    assert [(e.code, e.header, e.params["other"]) for e in parsed.errors] == [
        ("duplicate_column", " Invoice_No ", "发票号*")]


def test_missing_required_column_is_reported_once_on_line_1():
    rows = [(2, ["X1", "C001"]), (3, ["X2", "C001"])]
    parsed = validate("receivables", ["发票号", "客户"], rows, today=TODAY)
    assert {(e.line, e.column, e.code) for e in parsed.errors} == {
        (1, "issue_date", "missing_column"), (1, "due_date", "missing_column"), (1, "amount", "missing_column")}


@pytest.mark.parametrize("cell,expected", [
    (datetime(2026, 12, 5, 0, 0), date(2026, 12, 5)), (date(2026, 12, 5), date(2026, 12, 5)),
    (46361, date(2026, 12, 5)), (46361.0, date(2026, 12, 5)), ("46361", date(2026, 12, 5)),
    ("2026-12-05", date(2026, 12, 5)), ("2026/12/5", date(2026, 12, 5)), ("2026年12月5日", date(2026, 12, 5)),
    ("20261205", date(2026, 12, 5)), ("2026-12-05 00:00:00", date(2026, 12, 5)),
])
def test_date_cells(cell, expected):
    headers = ["reference", "customer", "amount", "paid_on"]
    parsed = validate("payments", headers, [(2, ["R1", "C001", "100", cell])], today=TODAY)
    assert parsed.errors == [] and parsed.records[0].values["paid_on"] == expected


@pytest.mark.parametrize("cell,code", [("12/5", "bad_date"), ("2026-02-30", "bad_date"), ("next week", "bad_date"),
                                       (-3, "bad_date")])
def test_bad_date_cells(cell, code):
    parsed = validate("payments", ["reference", "customer", "amount", "paid_on"], [(2, ["R1", "C1", "1", cell])],
                      today=TODAY)
    assert [(e.line, e.column, e.code) for e in parsed.errors] == [(2, "paid_on", code)]


@pytest.mark.parametrize("cell,expected", [
    ("12,345.60", Decimal("12345.60")), ("¥12345.6", Decimal("12345.60")), ("1.2万", Decimal("12000.00")),
    ("三万五千", Decimal("35000.00")), (86000, Decimal("86000.00")), (0.1 + 0.2, Decimal("0.30")),
    (45600.5, Decimal("45600.50")),
])
def test_amount_cells(cell, expected):
    parsed = validate("payments", ["reference", "customer", "amount", "paid_on"],
                      [(2, ["R1", "C1", cell, "2026-11-01"])], today=TODAY)
    assert parsed.records[0].values["amount"] == expected


def test_vocabularies():
    rows = [(2, ["E1", "a", "销售经理"]), (3, ["E2", "b", "财务"]), (4, ["E3", "c", "Manager"]), (5, ["E4", "d", "厨师"])]
    parsed = validate("people", ["工号", "姓名", "角色"], rows, today=TODAY)
    assert [r.values["role"] for r in parsed.records] == ["supervisor", "finance", "manager"]
    assert parsed.errors == [RowError(5, "role", "厨师", "unknown_role")]
    cust = validate("customers", ["客户编码", "客户名称", "客户等级", "跨境"],
                    [(2, ["C1", "x", "d", "是"]), (3, ["C2", "y", "A", "maybe"])], today=TODAY)
    assert [(e.line, e.code) for e in cust.errors] == [(2, "unknown_grade"), (3, "bad_bool")]


# ---- people ------------------------------------------------------------------------------------
async def test_people_roles_and_supervisors(db):
    report = await load(db, "people", "people.csv")
    assert report.ok and (report.rows, report.created, report.updated, report.unchanged) == (10, 10, 0, 0)
    async with db.session() as s:
        people = {p.id: p for p in (await s.execute(select(Person))).scalars()}
    assert {pid: p.role for pid, p in people.items()} == {
        "E001": "rep", "E002": "rep", "E003": "rep", "E004": "finance", "E005": "legal", "E010": "supervisor",
        "E011": "supervisor", "E020": "manager", "E030": "auditor", "E040": "admin"}
    # by id (defined later in the file), by name, and by name of someone further down
    assert {pid: p.supervisor_id for pid, p in people.items() if p.supervisor_id} == {
        "E001": "E010", "E002": "E010", "E003": "E011", "E010": "E020", "E011": "E020"}
    assert people["E003"].account("dingtalk") == "dt_liuyang" and people["E001"].account("dingtalk") is None
    assert people["E001"].account("wecom") == "zhangwei"
    assert people["E005"].mobile == "" and people["E001"].team == "华东一组"


async def test_people_errors(db, tmp_path):
    await load(db, "people", "people.csv")
    p = write(tmp_path, "p.csv", "id,name,role,supervisor,wecom_userid\n"
                                 "E020,周杰,manager,E001,zhoujie\nE050,钱多多,rep,E999,\nE051,孙二,rep,,zhangwei\n")
    report = await load(db, "people", p)
    assert {(e.line, e.column, e.code) for e in report.errors} == {
        (2, "supervisor", "supervisor_cycle"), (3, "supervisor", "unknown_supervisor"),
        (4, "wecom_userid", "duplicate_userid")}


# ---- customers ---------------------------------------------------------------------------------
async def test_customers_gbk(db):
    await load(db, "people", "people.csv")
    report = await load(db, "customers", "customers_gbk.csv")
    assert report.ok and report.created == 6
    async with db.session() as s:
        cs = {c.code: c for c in (await s.execute(select(Customer))).scalars()}
        contacts = {c.customer_id: c for c in (await s.execute(select(Contact))).scalars()}
    assert cs["C001"].credit_limit == Decimal("500000.00") and cs["C002"].credit_limit == Decimal("300000.00")
    assert cs["C005"].credit_limit == Decimal("0.00") and cs["C005"].id not in contacts
    assert cs["C002"].rep_id == "E001" and cs["C004"].rep_id == "E003" and cs["C006"].rep_id == "E002"
    assert [cs[c].grade for c in sorted(cs)] == ["A", "B", "C", "B", "B", "A"]
    assert [cs[c].cross_border for c in sorted(cs)] == [False, False, False, True, False, True]
    assert contacts[cs["C001"].id].mobile == "13911112222" and contacts[cs["C002"].id].channel == "sms"
    assert len(contacts) == 5


async def test_customer_update_is_audited(db, tmp_path):
    await load_all(db, upto="customers")
    p = write(tmp_path, "c.csv", "code,name,credit_limit,contact_mobile\nC001,上海恒信机电有限公司,600000,13900000000\n")
    report = await load(db, "customers", p)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    async with db.session() as s:
        c = (await s.execute(select(Customer).where(Customer.code == "C001"))).scalar_one()
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "customer.update"))).scalar_one()
    assert c.credit_limit == Decimal("600000.00") and c.grade == "A"   # absent columns are left alone
    assert entry.detail == {"credit_limit": ["500000.00", "600000.00"],
                            "contact.mobile": ["13911112222", "13900000000"]}


# ---- receivables -------------------------------------------------------------------------------
async def test_receivables_from_excel(db):
    await load_all(db, upto="customers")
    report = await load(db, "receivables", "receivables.xlsx")
    assert report.ok and (report.rows, report.created) == (9, 9)
    async with db.session() as s:
        rs = {r.invoice_no: r for r in (await s.execute(select(Receivable))).scalars()}
    hx = rs["HX-2026-001"]
    assert (hx.issue_date, hx.due_date, hx.amount, hx.open_amount) == (
        date(2026, 8, 31), date(2026, 9, 30), Decimal("12345.60"), Decimal("12345.60"))
    assert hx.rep_id == "E001" and hx.currency == "CNY" and hx.status == "open" and hx.terms == "月结30天"
    hr = rs["HR-2026-001"]
    assert hr.due_date == date(2026, 12, 5) and hr.amount == Decimal("45600.50")   # serial-number cell
    assert hr.rep_id == "E002" and hr.currency == "CNY"       # named rep overrides the customer's (E001)
    yh = rs["YH-2026-001"]
    assert (yh.issue_date, yh.due_date, yh.amount) == (date(2026, 9, 10), date(2026, 10, 10), Decimal("35000.00"))
    assert rs["HD-2026-001"].currency == "USD" and rs["HH-2026-001"].due_date == date(2027, 1, 15)
    assert rs["HX-2026-002"].amount == Decimal("86000.00") and rs["HX-2026-003"].amount == Decimal("20000.00")


async def test_amount_update_recomputes_open_balance(db, tmp_path):
    await load_all(db)
    header = "invoice_no,customer,issue_date,due_date,amount\n"
    p = write(tmp_path, "fix.csv", header + "HX-2026-002,C001,2026-09-01,2026-10-31,\"60,000.00\"\n")
    report = await load(db, "receivables", p)
    assert (report.updated, report.unchanged) == (1, 0)
    async with db.session() as s:
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == "HX-2026-002"))).scalar_one()
    assert (r.amount, r.open_amount, r.status) == (Decimal("60000.00"), Decimal("22345.60"), "partially_paid")
    before = await counts(db)
    p = write(tmp_path, "fix2.csv", header + "HX-2026-002,C001,2026-09-01,2026-10-31,30000\n")
    report = await load(db, "receivables", p)
    assert [(e.line, e.column, e.code, e.params) for e in report.errors] == [
        (2, "amount", "amount_below_settled", {"settled": "37654.40"})]
    assert await counts(db) == before


# ---- payments ----------------------------------------------------------------------------------
async def test_payments_allocate_named_invoice_then_oldest_first(db):
    await load_all(db, upto="receivables")
    report = await load(db, "payments", "payments.csv")
    assert report.ok and (report.created, report.unchanged) == (5, 0)
    async with db.session() as s:
        rs = {r.invoice_no: r for r in (await s.execute(select(Receivable))).scalars()}
        allocs = (await s.execute(select(Payment.reference, Receivable.invoice_no, Allocation.amount)
                                  .join(Payment, Payment.id == Allocation.payment_id)
                                  .join(Receivable, Receivable.id == Allocation.receivable_id))).all()
    assert sorted(allocs) == sorted([
        ("BK20261118001", "HX-2026-001", Decimal("12345.60")), ("BK20261118001", "HX-2026-002", Decimal("37654.40")),
        ("BK20261119001", "HX-2026-003", Decimal("20000.00")),
        ("BK20261120002", "HR-2026-001", Decimal("8000.00")),
        ("BK20261125001", "YH-2026-001", Decimal("35000.00")), ("BK20261125001", "YH-2026-002", Decimal("15000.00")),
        ("BK20261126001", "HD-2026-002", Decimal("1000.00"))])
    assert {k: (rs[k].open_amount, rs[k].status) for k in ("HX-2026-001", "HX-2026-002", "HX-2026-003", "YH-2026-002")} == {
        "HX-2026-001": (Decimal("0.00"), "paid"), "HX-2026-002": (Decimal("48345.60"), "partially_paid"),
        "HX-2026-003": (Decimal("0.00"), "paid"), "YH-2026-002": (Decimal("13000.00"), "partially_paid")}
    assert rs["HD-2026-001"].open_amount == Decimal("15800.00")     # USD invoice untouched by CNY money


async def test_payment_reference_conflict_and_unknown_invoice(db, tmp_path):
    await load_all(db)
    p = write(tmp_path, "p.csv", "customer,amount,paid_on,reference,invoice_no\n"
                                 "C001,50001,2026-11-18,BK20261118001,\nC002,100,2026-11-28,BK-X,HX-2026-001\n"
                                 "C002,100,2026-11-28,BK-Y,NO-SUCH\n")
    before = await counts(db)
    report = await load(db, "payments", p)
    assert [(e.line, e.column, e.code) for e in report.errors] == [
        (2, "reference", "reference_conflict"), (3, "invoice_no", "invoice_other_customer"),
        (4, "invoice_no", "unknown_invoice")]
    assert report.errors[0].params == {"fields": ["amount"]}
    assert await counts(db) == before


# ---- whole-file properties -----------------------------------------------------------------------
async def test_reimport_changes_nothing(db):
    await load_all(db)
    before = await counts(db)
    for kind, name, rows in FILES:
        report = await load(db, kind, name)
        assert report.ok and (report.rows, report.unchanged, report.created, report.updated) == (rows, rows, 0, 0)
    assert await counts(db) == before           # audit_log included: no entries for no changes


async def test_import_writes_audit_entries(db):
    await load_all(db)
    async with db.session() as s:
        actions = dict((await s.execute(select(AuditEntry.action, func.count()).group_by(AuditEntry.action))).all())
    assert actions == {"person.create": 10, "customer.create": 6, "receivable.create": 9, "payment.record": 5,
                       "import.file": 4}


async def test_bad_file_writes_nothing_and_lists_every_bad_row(db):
    await load_all(db)
    before = await counts(db)
    report = await load(db, "receivables", "receivables_bad.csv")
    assert not report.ok and (report.created, report.updated, report.unchanged) == (0, 0, 0)
    assert [(e.line, e.column, e.code) for e in report.errors] == [
        (3, "due_date", "bad_date"), (4, "amount", "credit_note_without_original"), (5, "customer", "unknown_customer"),
        (6, "due_date", "due_before_issue"), (7, "invoice_no", "duplicate_key"), (8, "amount", "required"),
        (9, "amount", "bad_amount"), (10, "rep", "unknown_rep")]
    assert report.errors[0].value == "2026-13-01" and report.errors[4].params == {"first_line": 2}
    assert await counts(db) == before
    d = report.to_dict()
    assert d["ok"] is False and d["errors"][2] == {"line": 5, "column": "customer", "header": "客户名称",
                                                   "value": "北京不存在科技有限公司", "code": "unknown_customer",
                                                   "params": {}}
    assert report.errors[0].header == "到期日"


async def test_dry_run_counts_but_writes_nothing(db):
    await load_all(db, upto="customers")
    before = await counts(db)
    report = await load(db, "receivables", "receivables.xlsx", dry_run=True)
    assert report.ok and report.created == 9
    assert await counts(db) == before


async def test_unreadable_and_unsupported_files(db, tmp_path):
    bad = tmp_path / "x.xlsx"
    bad.write_bytes(b"not a zip")
    assert [e.code for e in (await load(db, "people", bad)).errors] == ["unreadable_file"]
    # .xls is read since issue 18 (python-calamine); a missing or broken one is unreadable, not unsupported
    assert [e.code for e in (await load(db, "people", tmp_path / "x.xls")).errors] == ["unreadable_file"]
    assert [e.code for e in (await load(db, "people", tmp_path / "x.ods")).errors] == ["unsupported_format"]
    empty = write(tmp_path, "e.csv", "\n\n")
    assert [e.code for e in (await load(db, "people", empty)).errors] == ["no_header"]
