"""Bank statements in (issue #16): every bank layout read, matched and booked the same way; a
re-import changes nothing; a broken file changes nothing and says which line; the CLI's JSON."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from sqlalchemy import func, select

from domain import cash_matching as cm
from domain.bank_statement import parse_rows, read_statement
from domain.import_files import ImportFileError
from storage.bank import import_statement
from storage.models import AuditEntry, BankLine, Payment, Receivable
from tests import bank_fixture as fx

BANK = Path(__file__).parent / "data" / "bank"
LAYOUTS = ["icbc.csv", "ccb.xlsx", "abc.xls", "boc.csv", "cmb.xlsx", "bocom.csv", "spdb.csv", "statement.sta"]
D = Decimal


async def _open(s) -> dict[str, Decimal]:
    return {no: amt for no, amt in (await s.execute(select(Receivable.invoice_no, Receivable.open_amount))).all()}


MOVEMENTS = [  # what every fixture says, whatever its bank's layout (tests/data/bank/make_fixtures.py)
    ("2026-12-01", "credit", "11300.00", "深圳市恒达精密机械有限公司", "4000021309200012345", "FP2026-0001"),
    ("2026-12-01", "debit", "2000.00", "某物流有限公司", "31001520313050001234", "运费"),
    ("2026-12-02", "credit", "8000.00", "上海东升贸易", "31050161393600000777", "货款"),
    ("2026-12-02", "credit", "5650.00", "张伟", "6217000010001234567", "FP2026-0003"),
]


@pytest.mark.parametrize("name", LAYOUTS)
def test_each_bank_layout_reads_the_same_movements(name):
    st = read_statement(BANK / name, fx.TODAY)
    assert not st.errors
    got = [(ln.booked_on.isoformat(), ln.direction, f"{ln.amount:.2f}", ln.payer, ln.account) for ln in st.lines]
    assert got == [m[:5] for m in MOVEMENTS]         # title rows above and 合计 rows below passed over
    assert all(m[5] in ln.memo for m, ln in zip(MOVEMENTS, st.lines))
    assert len({ln.identity for ln in st.lines}) == 4


async def test_a_statement_is_matched_and_booked(db):
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)
    async with db.session() as s, s.begin():
        await fx.build(s)
    async with db.session() as s, s.begin():
        result = await import_statement(s, st, file_name="ccb.xlsx", account="基本户", actor="fin1", now=fx.NOW)
    lines = result.lines
    assert [(r.direction, r.amount, r.status) for r in lines] == [
        ("credit", D("11300.00"), "applied"), ("debit", D("2000.00"), "ignored"),
        ("credit", D("8000.00"), "applied"), ("credit", D("5650.00"), "unclaimed")]
    assert lines[0].customer == "HD" and lines[0].allocations == [("FP2026-0001", D("11300.00"))]
    assert "memo_invoice" in lines[0].reasons
    # 8,000 = DS-0001 5,000 + DS-0002 3,000 exactly, though DS-0003 is also open
    assert lines[2].customer == "DS" and sorted(lines[2].allocations) == [("DS-0001", D("5000.00")), ("DS-0002", D("3000.00"))]
    assert lines[3].customer is None and lines[3].suggestions[0]["customer"] == "HD"
    assert lines[3].suggestions[0]["invoices"] == ["FP2026-0003"]
    async with db.session() as s:
        left = await _open(s)
        assert left["FP2026-0001"] == 0 and left["DS-0001"] == 0 and left["DS-0002"] == 0
        assert left["FP2026-0003"] == D("6000.00") and left["DS-0003"] == D("7000.00")
        assert (await s.execute(select(func.count()).select_from(Payment))).scalar_one() == 2
        assert (await s.execute(select(func.count()).select_from(BankLine))).scalar_one() == 4
        assert (await s.execute(select(func.count()).select_from(AuditEntry)
                                .where(AuditEntry.action == "bank.import"))).scalar_one() == 1


async def test_a_reimport_changes_nothing(db):
    async with db.session() as s, s.begin():
        await fx.build(s)
    for _ in range(2):
        st = read_statement(BANK / "spdb.csv", fx.TODAY)       # no bank serials: identities by hash
        async with db.session() as s, s.begin():
            result = await import_statement(s, st, file_name="spdb.csv", account="", actor="fin1", now=fx.NOW)
    assert [r.status for r in result.lines] == ["duplicate"] * 4
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Payment))).scalar_one() == 2
        assert (await s.execute(select(func.count()).select_from(BankLine))).scalar_one() == 4
        assert (await _open(s))["DS-0003"] == D("7000.00")


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from bot.cli import main
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_prints_the_documented_json_and_refuses_a_broken_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARBOT_DATABASE_URL", f"sqlite:///{tmp_path}/a.db")
    monkeypatch.delenv("ARBOT_CONFIG", raising=False)
    # the CLI sets up the process's logging; in pytest's process that would outlive this test
    monkeypatch.setattr("bot.logs.setup", lambda *a, **k: None)
    code, out, _ = _cli(capsys, "import", "bank", str(BANK / "icbc.csv"), "--account", "基本户", "--format", "json")
    assert code == 0
    data = json.loads(out)
    first = data["lines"][0]
    assert set(first) >= {"line", "ref", "date", "payer", "amount", "direction", "status", "customer", "confidence",
                          "reason", "allocations", "suggestions"}
    assert first == {**first, "line": 5, "ref": "SN0001", "date": "2026-12-01", "amount": "11300.00",
                     "direction": "credit", "status": "unclaimed", "customer": None}    # no customers yet
    assert [x["status"] for x in data["lines"]] == ["unclaimed", "ignored", "unclaimed", "unclaimed"]
    assert data["summary"]["lines"] == 4 and data["summary"]["unclaimed_amount"] == "24950.00"
    broken = tmp_path / "broken.csv"
    broken.write_text((BANK / "spdb.csv").read_text(encoding="utf-8").replace("2,000.00", "2,OOO.00", 1), encoding="utf-8")
    code, out, err = _cli(capsys, "import", "bank", str(broken))
    assert code == 1 and "第5行" in err and "借方金额" in err and "没有写入任何数据" in err
    import sqlite3
    with sqlite3.connect(tmp_path / "a.db") as con:         # the broken file's good lines were not kept either
        assert con.execute("select count(*) from bank_lines").fetchone() == (4,)
    code, out, _ = _cli(capsys, "import", "bank", str(BANK / "icbc.csv"), "--format", "json")
    assert code == 0 and {x["status"] for x in json.loads(out)["lines"]} == {"duplicate"}


# ---- whatever a bank writes: a statement or a clear error, never a crash ---------------------------
BANK_HEADERS = ["交易日期", "交易时间", "借方发生额", "贷方发生额", "交易金额", "借贷标志", "对方户名", "对方账号", "摘要",
                "附言", "流水号", "币种", "合计", "账号：", ""]
bank_cell = hst.one_of(hst.text(max_size=20), hst.sampled_from(["", "-", "2026-13-45", "20261202", "1,234.56", "-5",
                                                                "借", "贷", "C", "合计", "结息", "FP2026-0001", "张伟"]),
                       hst.integers(-10**9, 10**9), hst.floats(allow_nan=True), hst.none())


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(title=hst.lists(hst.lists(bank_cell, max_size=3), max_size=3),
       header=hst.lists(hst.sampled_from(BANK_HEADERS), min_size=1, max_size=8),
       rows=hst.lists(hst.lists(bank_cell, max_size=9), max_size=6))
def test_any_statement_reads_or_says_why(title, header, rows):
    table = [(i + 1, r) for i, r in enumerate(title + [header] + rows)]
    try:
        st = parse_rows(table, "csv", fx.TODAY)
    except ImportFileError as e:
        assert e.error.code == "no_bank_header"
        return
    assert all(e.line >= 1 for e in st.errors)
    if st.errors:
        return
    assert len({ln.identity for ln in st.lines}) == len(st.lines)
    book = cm.Book(parties={"A": cm.Party("A", "深圳市恒达精密机械有限公司")})
    for ln in st.lines:
        assert ln.amount > 0 and ln.direction in ("credit", "debit")
        m = cm.match(cm.Receipt(ln.amount, ln.payer, ln.account, ln.memo, ln.direction, ln.currency), book)
        assert m.status in ("apply", "unclaimed", "ignored")


async def test_what_a_claim_teaches(db, tmp_path):
    """A supply-chain company paying for a customer teaches nothing; an account confirmed for two
    customers stops naming either."""
    from storage import bank
    from storage.models import BankAlias, Customer
    async with db.session() as s, s.begin():
        await fx.build(s)
    f = tmp_path / "s.csv"
    f.write_text("交易日期,贷方金额,对方账号,对方户名,附言\n"
                 "2026-12-01,3000.00,3100001,深圳市盛世供应链管理有限公司,代付货款\n"
                 "2026-12-01,1000.00,6217001,王芳,\n"
                 "2026-12-02,2000.00,6217001,王芳,\n", encoding="utf-8")
    async with db.session() as s, s.begin():
        result = await import_statement(s, read_statement(f, fx.TODAY), file_name="s.csv", account="", actor="fin1",
                                        now=fx.NOW)
    assert [r.status for r in result.lines] == ["unclaimed"] * 3
    ids = [r.id for r in result.lines]
    async with db.session() as s, s.begin():
        hd = (await s.execute(select(Customer).where(Customer.code == "HD"))).scalar_one()
        ds = (await s.execute(select(Customer).where(Customer.code == "DS"))).scalar_one()
        taught = []
        for n, c in zip(ids, (hd, hd, ds)):
            res = await bank.claim(s, await s.get(BankLine, n), customer=c, invoices=[], actor="fin1", finance=True,
                                   now=fx.NOW, channel="test")
            taught.append(res.learned)
        assert taught == [[], ["account"], []]
        assert (await s.execute(select(func.count()).select_from(BankAlias))).scalar_one() == 0
    g = tmp_path / "t.csv"
    g.write_text("交易日期,贷方金额,对方账号,对方户名,附言\n2026-12-03,500.00,6217001,王芳,\n", encoding="utf-8")
    async with db.session() as s, s.begin():
        later = await import_statement(s, read_statement(g, fx.TODAY), file_name="t.csv", account="", actor="fin1",
                                       now=fx.NOW)
    assert later.lines[0].status == "unclaimed"           # the account pays for two customers: ask
