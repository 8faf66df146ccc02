"""Bank statements in (issue #16): every bank layout read, matched and booked the same way; a
re-import changes nothing; a broken file changes nothing and says which line; the CLI's JSON."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from domain.bank_statement import read_statement
from storage.bank import import_statement
from storage.models import AuditEntry, BankLine, Payment, Receivable
from tests import bank_fixture as fx
from tests.test_cli import DATA, arbot

BANK = DATA / "bank"
LAYOUTS = ["icbc.csv", "ccb.xlsx", "abc.xls", "boc.csv", "cmb.xlsx", "bocom.csv", "spdb.csv", "statement.sta"]
D = Decimal


async def _open(s) -> dict[str, Decimal]:
    return {no: amt for no, amt in (await s.execute(select(Receivable.invoice_no, Receivable.open_amount))).all()}


@pytest.mark.parametrize("name", LAYOUTS)
async def test_each_bank_layout_is_read_matched_and_booked(db, name):
    st = read_statement(BANK / name, fx.TODAY)
    assert not st.errors
    async with db.session() as s, s.begin():
        await fx.build(s)
    async with db.session() as s, s.begin():
        result = await import_statement(s, st, file_name=name, account="基本户", actor="fin1", now=fx.NOW)
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


def test_the_cli_prints_the_documented_json_and_refuses_a_broken_file(tmp_path):
    env = {"ARBOT_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    arbot("import", "people", str(DATA / "people.csv"), cwd=tmp_path, env=env)
    arbot("import", "customers", str(DATA / "customers_gbk.csv"), cwd=tmp_path, env=env)
    out = arbot("import", "bank", str(BANK / "icbc.csv"), "--account", "基本户", "--format", "json", cwd=tmp_path, env=env)
    data = json.loads(out.stdout)
    first = data["lines"][0]
    assert set(first) >= {"line", "ref", "date", "payer", "amount", "direction", "status", "customer", "confidence",
                          "reason", "allocations", "suggestions"}
    assert first == {**first, "line": 5, "ref": "SN0001", "date": "2026-12-01", "amount": "11300.00",
                     "direction": "credit"}
    assert [x["status"] for x in data["lines"]][1] == "ignored"
    assert data["summary"]["lines"] == 4
    broken = tmp_path / "broken.csv"
    broken.write_text((BANK / "spdb.csv").read_text(encoding="utf-8").replace("2,000.00", "2,OOO.00", 1), encoding="utf-8")
    bad = arbot("import", "bank", str(broken), cwd=tmp_path, env=env, check=False)
    assert bad.returncode == 1 and "第5行" in bad.stderr and "没有写入任何数据" in bad.stderr
    again = json.loads(arbot("import", "bank", str(BANK / "icbc.csv"), "--format", "json", cwd=tmp_path, env=env).stdout)
    assert {x["status"] for x in again["lines"]} == {"duplicate"}
