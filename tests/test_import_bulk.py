"""The bulk path of a receivables import (storage/import_stream.py: the driver ``executemany``
with the aging trigger's work done per chunk, ``receivable.create_many`` audit entries, chunks
undone when the import fails): it must store exactly what the Core insert stores, keep the
schema and the connection pool as they were, and leave "who created invoice X" answerable."""
from __future__ import annotations

import sqlite3
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from storage import audit, import_stream
from storage.imports import import_file, table_counts
from storage.models import AuditEntry, Customer, Receivable
from tests.test_import import NOW, TODAY, load_all

HEADER = "invoice_no,customer,issue_date,due_date,amount,currency,rep,terms,contract_no\n"


def bulk_csv(tmp_path, n: int, prefix: str = "BK") -> str:
    """n invoices over the test customers: named and blank reps, odd amounts, text that JSON escapes."""
    lines = []
    for i in range(n):
        cust = f"C00{i % 6 + 1}"
        issue = date(2026, 1 + i % 9, 1 + i % 27)
        rep = "E002" if i % 3 == 0 else ""
        amount = ("1.2万", "12,345.6", f"{i}.05", "86000")[i % 4] if i else "0.01"
        terms = ('月结"30"天', "net 30\\", "", "见合同")[i % 4]
        cur = ("CNY", "", "USD")[i % 3]
        lines.append(f'{prefix}-{i:05d},{cust},{issue},{issue.replace(day=28)},"{amount}",{cur},{rep},'
                     f'"{terms.replace(chr(34), chr(34) * 2)}",HT-{i % 7}')
    p = tmp_path / f"{prefix}.csv"
    p.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return str(p)


def sqlite_rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


RECEIVABLE_COLUMNS = ("invoice_no, contract_no, customer_id, rep_id, issue_date, due_date, amount, open_amount,"
                      " currency, terms, status, disputed, created_at")
TYPED = ", ".join(f"{c}, typeof({c})" for c in RECEIVABLE_COLUMNS.split(", "))


async def test_bulk_rows_are_what_the_core_insert_writes(tmp_path, monkeypatch):
    """Same file into two databases, the driver path and the Core insert: the stored values and
    their SQLite storage classes are identical, so are the audit rows (JSON text included)."""
    from storage.db import Database
    csv = bulk_csv(tmp_path, 1_200)
    stored = []
    for name, patch in (("fast", False), ("core", True)):
        db = Database(f"sqlite:///{tmp_path}/{name}.db")
        await db.migrate()
        await load_all(db, upto="customers")
        if patch:       # receivables through the Core insert (and the aging trigger left to itself)
            monkeypatch.setattr(import_stream, "FAST_SQLITE", False)
        report = await import_file(db, "receivables", csv, now=NOW, today=TODAY)
        assert report.ok and report.created == 1_200, report.to_dict()
        await db.close()
        path = f"{tmp_path}/{name}.db"
        stored.append((sqlite_rows(path, f"SELECT {TYPED} FROM receivables ORDER BY invoice_no"),
                       sqlite_rows(path, "SELECT at, actor, channel, action, entity, entity_id, detail FROM audit_log"
                                         " WHERE entity = 'receivable' ORDER BY id"),
                       sqlite_rows(path, "SELECT * FROM aging_totals ORDER BY due_date, currency")))
    assert stored[0] == stored[1]
    rows = stored[0][0]
    assert rows[0][:4] == ("BK-00000", "text", "HT-0", "text") and rows[0][12:16] == (1, "integer", 1, "integer")
    assert {r[25] for r in rows} == {"text"}                    # created_at as text, like the ORM writes it


async def test_bulk_import_reads_back_and_reimports_as_unchanged(db, tmp_path):
    await load_all(db, upto="customers")
    csv = bulk_csv(tmp_path, 1_100)
    report = await import_file(db, "receivables", csv, now=NOW, today=TODAY)
    assert report.ok and report.created == 1_100
    async with db.session() as s:
        rs = {r.invoice_no: r for r in (await s.execute(select(Receivable))).scalars()}
    async with db.session() as s:
        c005_rep = (await s.execute(select(Customer.rep_id).where(Customer.code == "C005"))).scalar_one()
    r = rs["BK-00004"]      # 1.2万, blank currency → CNY, blank rep → the customer's (C005's)
    assert (r.amount, r.open_amount, r.currency, r.rep_id, r.terms, r.status, r.disputed) == (
        Decimal("12000.00"), Decimal("12000.00"), "CNY", c005_rep, '月结"30"天', "open", False)
    assert rs["BK-00000"].amount == Decimal("0.01") and rs["BK-00001"].terms == "net 30\\"
    assert rs["BK-00001"].amount == Decimal("12345.60") and rs["BK-00002"].currency == "USD"
    assert rs["BK-00002"].amount == Decimal("2.05") and rs["BK-00003"].amount == Decimal("86000.00")
    assert rs["BK-00006"].rep_id == "E002" and rs["BK-00006"].created_at == NOW
    before = await _counts(db)
    again = await import_file(db, "receivables", csv, now=NOW, today=TODAY)
    assert again.ok and (again.unchanged, again.created, again.updated) == (1_100, 0, 0)
    assert await _counts(db) == before


async def _counts(db):
    async with db.session() as s:
        return await table_counts(s)


def schema(path):
    return sorted(sqlite_rows(path, "SELECT type, name, tbl_name, sql FROM sqlite_master"))


async def test_bulk_import_keeps_schema_and_statistics(db, tmp_path):
    """The aging trigger dropped and created again in each chunk's transaction: the schema and
    the ANALYZE statistics are as they were."""
    await load_all(db, upto="receivables")
    path = f"{tmp_path}/t.db"
    con = sqlite3.connect(path)
    con.execute("ANALYZE")
    con.commit()
    con.close()
    before_schema = schema(path)
    before_stats = sqlite_rows(path, "SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl = 'receivables' ORDER BY idx")
    assert len(before_stats) >= 5
    report = await import_file(db, "receivables", bulk_csv(tmp_path, 50), now=NOW, today=TODAY)
    assert report.ok and report.created == 50
    assert schema(path) == before_schema
    assert sqlite_rows(path, "SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl = 'receivables' ORDER BY idx") \
        == before_stats
    assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]
    assert sqlite_rows(path, "PRAGMA foreign_key_check") == []


async def test_failed_bulk_write_rolls_back_indexes_and_restores_foreign_keys(db, tmp_path, monkeypatch):
    """A write that fails half-way through the third chunk, after its rows went in (the aging
    trigger dropped and the rows inserted in that transaction): that chunk is rolled back, the
    two committed before it are undone, the schema (trigger included) and every count are as
    before, and the connection is the usual one."""
    await load_all(db, upto="customers")
    path = f"{tmp_path}/t.db"
    before_schema, before = schema(path), await _counts(db)
    before_aging = sqlite_rows(path, "SELECT * FROM aging_totals ORDER BY due_date, currency")
    monkeypatch.setattr(import_stream, "FIRST_CHUNK", 10)
    monkeypatch.setattr(import_stream, "MAX_CHUNK", 10)
    monkeypatch.setattr(import_stream, "MIN_CHUNK", 10)
    real_insert, calls = import_stream.ReceivablesImport._insert, []

    async def failing(self, conn, ids, creates):
        await real_insert(self, conn, ids, creates)
        calls.append(len(creates))
        if len(calls) == 3:
            raise RuntimeError("disk full")
    monkeypatch.setattr(import_stream.ReceivablesImport, "_insert", failing)
    with pytest.raises(RuntimeError):
        await import_file(db, "receivables", bulk_csv(tmp_path, 30), now=NOW, today=TODAY)
    assert calls == [10, 10, 10]
    assert schema(path) == before_schema and await _counts(db) == before
    assert sqlite_rows(path, "SELECT * FROM aging_totals ORDER BY due_date, currency") == before_aging
    for _ in range(3):     # whichever pooled connection comes back: checks are on
        async with db.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1


async def test_a_customer_rep_that_does_not_exist_is_refused(db, tmp_path):
    """With SQLite's own checks off during the bulk write, planning must refuse what they would
    have refused: here a customer whose rep was deleted behind the ledger's back."""
    await load_all(db, upto="customers")
    con = sqlite3.connect(f"{tmp_path}/t.db")       # foreign keys are off by default in sqlite3
    con.execute("UPDATE customers SET rep_id = 'GONE' WHERE code = 'C002'")
    con.commit()
    con.close()
    before = await _counts(db)
    p = tmp_path / "r.csv"
    p.write_text("invoice_no,customer,issue_date,due_date,amount\nX1,C001,2026-10-01,2026-10-31,100\n"
                 "X2,C002,2026-10-01,2026-10-31,100\n", encoding="utf-8")
    report = await import_file(db, "receivables", p, now=NOW, today=TODAY)
    assert [(e.line, e.column, e.code) for e in report.errors] == [(3, "rep", "unknown_rep")]
    assert await _counts(db) == before


async def test_who_created_an_invoice_in_a_bulk_import(any_db, tmp_path):
    db = any_db
    await load_all(db, upto="receivables")          # 9 invoices: one receivable.create entry each
    n = audit.BATCH + 7
    report = await import_file(db, "receivables", bulk_csv(tmp_path, n, prefix="B_%"), now=NOW, today=TODAY,
                               actor="finance:E004")
    assert report.ok and report.created == n
    async with db.session() as s:
        actions = dict((await s.execute(select(AuditEntry.action, func.count()).group_by(AuditEntry.action))).all())
        assert actions["receivable.create"] == 9 and actions["receivable.create_many"] == 2
        entry, values = await audit.creation_of(s, "receivable", "B_%-01003")
        assert (entry.actor, entry.channel, entry.at, entry.action) == ("finance:E004", "import", NOW,
                                                                       "receivable.create_many")
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == "B_%-01003"))).scalar_one()
        assert values == {"invoice_no": r.invoice_no, "customer_id": r.customer_id, "rep_id": r.rep_id,
                          "issue_date": str(r.issue_date), "due_date": str(r.due_date), "amount": str(r.amount),
                          "currency": r.currency, "contract_no": r.contract_no, "terms": r.terms}
        assert (await audit.creation_of(s, "receivable", "B_%-00004"))[1]["terms"] == '月结"30"天'
        small, detail = await audit.creation_of(s, "receivable", "HX-2026-001")
        assert small.action == "receivable.create" and detail["amount"] == "12345.60"
        assert await audit.creation_of(s, "receivable", "B_%-0100") is None      # a prefix is not a match
        assert await audit.creation_of(s, "receivable", "NO-SUCH") is None
