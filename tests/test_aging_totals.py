"""aging_totals (migration 0004): open cents and count per due date and currency, kept by triggers
on receivables, must always equal the same figures summed from receivables — after every kind of
ledger change (payments, write-offs, recoveries, disputes, imports, due-date and currency
changes, inserts and deletes by ORM, Core and raw SQL, rollbacks), on SQLite and PostgreSQL.

If a later migration recreates receivables on SQLite (``op.batch_alter_table``), the triggers are
dropped with it and these tests fail: the migration must create them again.
"""
from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import BigInteger, func, insert, select, text, type_coerce, update

from storage import aging, collection, ledger
from storage.db import Database, alembic_config
from storage.imports import import_file
from storage.models import AgingDelta, AgingTotal, Customer, Receivable, WriteOff
from storage.scope import Scope
from tests import ledger_fixture as fx
from tests.conftest import at, fresh_pg_database

NOW = at("2026-11-20 10:00")
DATA_NOW = at("2026-12-01 17:00")
TRIGGERS = {"aging_totals_ins", "aging_totals_upd", "aging_totals_del"}


async def stored(s) -> dict:
    rows = (await s.execute(select(AgingTotal.due_date, AgingTotal.currency, AgingTotal.open_cents,
                                   AgingTotal.open_count))).all()
    return {(d, c): (int(cents), n) for d, c, cents, n in rows}


async def recomputed(s) -> dict:
    rows = (await s.execute(select(Receivable.due_date, Receivable.currency,
                                   func.sum(type_coerce(Receivable.open_amount, BigInteger)), func.count())
                            .where(Receivable.open_amount > 0)
                            .group_by(Receivable.due_date, Receivable.currency))).all()
    return {(d, c): (int(cents), n) for d, c, cents, n in rows}


async def check(db: Database) -> None:
    """After a commit: the totals equal the recomputation, and nothing is left pending."""
    async with db.session() as s:
        assert await stored(s) == await recomputed(s)
        assert (await s.execute(select(func.count()).select_from(AgingDelta))).scalar_one() == 0


async def triggers(db: Database) -> set[str]:
    async with db.session() as s:
        if db.is_sqlite:
            q = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'receivables'"
        else:
            q = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'receivables'::regclass AND NOT tgisinternal"
        return {name for (name,) in (await s.execute(text(q))).all()}


async def same_as_reference(s, as_of: date) -> None:
    """Company-wide aging from the totals equals the CASE statement over receivables."""
    kw = dict(scope=Scope(), by=None, fx_rates=fx.FX, base_currency="CNY")
    before = aging.SOURCES.copy()
    fast = await aging.aging(s, as_of, (30, 60, 90), fx_rates=fx.FX)
    assert aging.SOURCES - before == {"totals": 1}
    assert fast == await aging._aging(s, as_of, (30, 60, 90), by_day=False, **kw)


def new_receivable(cust: Customer, no: str, due: date, amount: str, open_amount: str | None = None, currency="CNY"):
    return dict(invoice_no=no, contract_no="", customer_id=cust.id, rep_id=cust.rep_id, issue_date=date(2026, 11, 1),
                due_date=due, amount=Decimal(amount), open_amount=Decimal(open_amount or amount), currency=currency,
                terms="", status="open", disputed=False, created_at=NOW)


async def test_triggers_exist_after_migrate(any_db):
    assert TRIGGERS <= await triggers(any_db)


async def test_totals_follow_every_ledger_change(any_db):
    db = any_db
    async with db.session() as s, s.begin():
        customers = await fx.build(s, NOW)
    await check(db)
    c1, c2, c3 = customers["C1"], customers["C2"], customers["C3"]

    async def get(s, no):
        return (await s.execute(select(Receivable).where(Receivable.invoice_no == no))).scalar_one()

    # a payment across several due dates (full on the oldest, partial on the next), a dispute
    async with db.session() as s, s.begin():
        await ledger.record_payment(s, customer=c1, amount=Decimal("40000.00"), paid_on=fx.TODAY, reference="T-1",
                                    currency="CNY", actor="t", channel="test", now=NOW)
        await collection.open_dispute(s, receivable=await get(s, "INV-B2"), reason="qty", person_id="rep1", at=NOW,
                                      channel="test")
    await check(db)

    # a write-off, then a partial recovery of it, and a resolved dispute
    async with db.session() as s, s.begin():
        b2 = await get(s, "INV-B2")
        wo = WriteOff(receivable_id=b2.id, amount=b2.open_amount, requested_by="t", requested_at=NOW)
        s.add(wo)
        await s.flush()
        await ledger.apply_write_off(s, wo, on=fx.TODAY, actor="t", channel="test", now=NOW)
        await ledger.record_recovery(s, receivable=b2, amount=Decimal("2000.00"), paid_on=fx.TODAY, reference="T-2",
                                     actor="t", channel="test", now=NOW)
        await collection.resolve_disputes(s, receivable=b2, person_id="rep1", at=NOW, channel="test")
    await check(db)

    # ORM: a new due date, a new currency, a new invoice; Core executemany inserts (one paid);
    # raw SQL updates of several rows at once
    async with db.session() as s, s.begin():
        (await get(s, "INV-A3")).due_date = date(2026, 12, 31)
        (await get(s, "INV-C1")).currency = "USD"
        s.add(Receivable(**new_receivable(c2, "N-1", date(2026, 11, 13), "123.45")))
        await s.execute(insert(Receivable), [new_receivable(c3, "N-2", date(2026, 11, 13), "10.00"),
                                             new_receivable(c3, "N-3", date(2027, 1, 1), "20.00", "0.00"),
                                             new_receivable(c3, "N-4", date(2027, 1, 1), "30.00", currency="EUR")])
        await s.execute(text("UPDATE receivables SET due_date = :d WHERE invoice_no IN ('N-2', 'N-4', 'INV-A2')"),
                        {"d": date(2027, 2, 1)})
        await s.execute(update(Receivable).where(Receivable.invoice_no == "N-3").values(open_amount=500))
    await check(db)

    # deletes: ORM and raw SQL, an open one and a paid one
    async with db.session() as s, s.begin():
        await s.delete(await get(s, "N-1"))
        await s.execute(text("DELETE FROM receivables WHERE invoice_no IN ('N-3', 'N-2')"))
    await check(db)

    # a rolled-back transaction leaves no trace; inside it, aging sees its own changes
    async with db.session() as s:
        before = await stored(s)
    async with db.session() as s:
        await ledger.record_payment(s, customer=c3, amount=Decimal("100.00"), paid_on=fx.TODAY, reference="T-3",
                                    currency="USD", actor="t", channel="test", now=NOW)
        (await get(s, "INV-A1")).due_date = date(2026, 1, 1)
        await s.flush()
        await same_as_reference(s, fx.TODAY)
        await s.rollback()
    async with db.session() as s:
        assert await stored(s) == before
    await check(db)

    # a savepoint rolled back inside a committed transaction
    async with db.session() as s, s.begin():
        (await get(s, "INV-A1")).due_date = date(2026, 10, 1)
        try:
            async with s.begin_nested():
                (await get(s, "INV-D1")).due_date = date(2025, 1, 1)
                await s.flush()
                raise RuntimeError("undo")
        except RuntimeError:
            pass
    await check(db)
    async with db.session() as s:
        assert (await get(s, "INV-D1")).due_date == date(2026, 11, 3)
        await same_as_reference(s, fx.TODAY)


async def test_imports_keep_the_totals(any_db, tmp_path):
    db = any_db
    data = Path(__file__).parent / "data"
    for kind, name in (("people", "people.csv"), ("customers", "customers_gbk.csv"),
                       ("receivables", "receivables.xlsx"), ("payments", "payments.csv")):
        report = await import_file(db, kind, f"{data}/{name}", now=DATA_NOW, today=DATA_NOW.date())
        assert report.ok, report.to_dict()
        await check(db)
    # a re-import that moves a due date and changes an amount (open balance follows)
    p = tmp_path / "fix.csv"
    p.write_text("invoice_no,customer,issue_date,due_date,amount\nHX-2026-002,C001,2026-09-01,2026-12-31,70000\n",
                 encoding="utf-8")
    report = await import_file(db, "receivables", p, now=DATA_NOW, today=DATA_NOW.date())
    assert report.ok and report.updated == 1, report.to_dict()
    await check(db)
    async with db.session() as s:
        assert await stored(s)
        await same_as_reference(s, DATA_NOW.date())


async def test_downgrade_and_upgrade_backfill_the_totals(any_db):
    db = any_db
    async with db.session() as s, s.begin():
        await fx.build(s, NOW)
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0003"))
    assert not TRIGGERS & await triggers(db)
    async with db.session() as s, s.begin():      # a change while there are no triggers
        await s.execute(update(Receivable).where(Receivable.invoice_no == "INV-A1").values(due_date=date(2027, 3, 1)))
    await db.migrate()
    assert TRIGGERS <= await triggers(db)
    await check(db)
    async with db.session() as s:
        assert (date(2027, 3, 1), "CNY") in await stored(s)
        await same_as_reference(s, fx.TODAY)


@pytest.fixture
async def pg_db(pg_server):
    db = Database(await fresh_pg_database(pg_server))
    await db.migrate()
    yield db
    await db.close()


async def test_postgresql_transactions_crossing_days_in_opposite_orders_do_not_deadlock(pg_db):
    """Two transactions change receivables due on day 1 and day 2 in opposite orders. Had the
    triggers updated the shared per-day rows at once, each would hold one day and wait for the
    other's (a deadlock); they only touch them at commit, in key order, so both commit."""
    db = pg_db
    async with db.session() as s, s.begin():
        customers = await fx.build(s, NOW)
        c = customers["C1"]
        await s.execute(insert(Receivable), [new_receivable(c, f"X-{i}", date(2027, 1, 1 + i % 2), "100.00")
                                             for i in range(4)])
    await check(db)
    s1, s2, probe = db.session(), db.session(), db.session()
    try:
        await s1.begin()
        await s2.begin()

        async def pay(s, no, amount):
            await s.execute(update(Receivable).where(Receivable.invoice_no == no).values(open_amount=amount))

        await pay(s1, "X-0", Decimal("90.00"))     # day 1
        await pay(s2, "X-1", Decimal("80.00"))     # day 2
        await asyncio.wait_for(asyncio.gather(pay(s1, "X-3", Decimal("70.00")),      # day 2
                                              pay(s2, "X-2", Decimal("60.00"))), 10)  # day 1
        # nobody holds the shared rows before commit
        async with probe.begin():
            await probe.execute(text("SET LOCAL lock_timeout = '2s'"))
            locked = (await probe.execute(text("SELECT count(*) FROM (SELECT 1 FROM aging_totals"
                                               " FOR UPDATE NOWAIT) t"))).scalar_one()
            assert locked == len(await recomputed(probe))
        await asyncio.wait_for(asyncio.gather(s1.commit(), s2.commit()), 20)
    finally:
        for s in (s1, s2, probe):
            await s.close()
    await check(db)
    async with db.session() as s:
        assert (await stored(s))[(date(2027, 1, 1), "CNY")] == (15_000, 2)
        assert (await stored(s))[(date(2027, 1, 2), "CNY")] == (15_000, 2)
