"""Property: whatever the ledger and whatever happens to it (payments named or not, repeated bank
references, write-offs, invoice amounts amended by re-import), the books stay consistent:

* no receivable's open balance is negative,
* no payment allocates more than its amount (and ``unallocated`` is exactly the rest),
* every receivable's ``open_amount == amount − Σ allocations − Σ approved write-offs``.
"""
from __future__ import annotations

import asyncio
import itertools
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from domain.import_files import Record
from storage.db import Database
from storage.imports import import_rows
from storage.ledger import LedgerError, apply_write_off, balance_check, record_payment
from storage.models import Allocation, Customer, Payment, Receivable, WriteOff

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
TODAY = date(2026, 12, 1)
_serial = itertools.count(1)

cents = st.integers(min_value=1, max_value=3_000_000)
receivables = st.lists(st.tuples(cents, st.integers(0, 120), st.sampled_from(["CNY", "CNY", "USD"])),
                       min_size=1, max_size=6)
ops = st.lists(st.one_of(
    # pay: amount, named invoice (index) or none, reference bucket (small, so references repeat), currency
    st.tuples(st.just("pay"), cents, st.none() | st.integers(0, 5), st.integers(0, 4), st.sampled_from(["CNY", "USD"])),
    st.tuples(st.just("writeoff"), st.integers(0, 5), cents),
    st.tuples(st.just("amend"), st.integers(0, 5), cents),
), max_size=12)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('props')}/t.db"

    async def setup():
        db = Database(url)
        await db.migrate()
        await db.close()
    asyncio.run(setup())
    return url


def money(c: int) -> Decimal:
    return (Decimal(c) / 100).quantize(Decimal("0.01"))


async def run_example(url: str, ledger, operations) -> None:
    db = Database(url)
    code = f"P{next(_serial):05d}"          # each example has its own customer in the shared file
    try:
        async with db.session() as s, s.begin():
            cust = Customer(code=code, name=f"customer {code}")
            s.add(cust)
            await s.flush()
            invoices = []
            for i, (c, due_in, currency) in enumerate(ledger):
                due = date(2026, 6, 1) + timedelta(days=due_in)
                r = Receivable(invoice_no=f"{code}-{i}", customer_id=cust.id, issue_date=due - timedelta(days=30),
                               due_date=due, amount=money(c), open_amount=money(c), currency=currency,
                               created_at=NOW)
                s.add(r)
                invoices.append(r)
            await s.flush()
            for op in operations:
                if op[0] == "pay":
                    _, c, named, ref, currency = op
                    invoice_no = invoices[named % len(invoices)].invoice_no if named is not None else ""
                    try:
                        await record_payment(s, customer=cust, amount=money(c), paid_on=TODAY,
                                             reference=f"{code}-R{ref}", invoice_no=invoice_no, currency=currency,
                                             actor="t", channel="test", now=NOW)
                    except LedgerError:
                        pass              # same reference, different amount: refused, nothing changed
                elif op[0] == "writeoff":
                    _, idx, c = op
                    wo = WriteOff(receivable_id=invoices[idx % len(invoices)].id, amount=money(c),
                                  requested_by="t", requested_at=NOW)
                    s.add(wo)
                    await s.flush()
                    try:
                        await apply_write_off(s, wo, on=TODAY, actor="t", channel="test", now=NOW)
                    except LedgerError:
                        pass              # nothing open: the request stays pending and counts for nothing
                else:
                    _, idx, c = op
                    r = invoices[idx % len(invoices)]
                    before = (r.amount, r.open_amount)
                    rec = Record(2, {"invoice_no": r.invoice_no, "customer": code, "issue_date": r.issue_date,
                                     "due_date": r.due_date, "amount": money(c)}, {"amount": str(money(c))})
                    report = await import_rows(s, "receivables", [rec], actor="t", channel="test",
                                               now=NOW, today=TODAY)
                    settled = r.amount - r.open_amount
                    if money(c) < settled:
                        assert [e.code for e in report.errors] == ["amount_below_settled"]
                        assert (r.amount, r.open_amount) == before
                    else:
                        assert report.ok and r.open_amount == money(c) - settled
        async with db.session() as s:
            rs = (await s.execute(select(Receivable).where(Receivable.customer_id == cust.id))).scalars().all()
            for r in rs:
                assert r.open_amount >= 0, r.invoice_no
                assert r.open_amount == await balance_check(s, r.id), r.invoice_no
            pays = (await s.execute(select(Payment).where(Payment.customer_id == cust.id))).scalars().all()
            for p in pays:
                allocated = sum((a for a in (await s.execute(select(Allocation.amount)
                                                             .where(Allocation.payment_id == p.id))).scalars()),
                                Decimal("0.00"))
                assert allocated <= p.amount
                assert p.unallocated >= 0 and p.unallocated == p.amount - allocated
    finally:
        await db.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledger=receivables, operations=ops)
def test_ledger_stays_consistent(db_url, ledger, operations):
    # asyncio.run per example: hypothesis drives a plain function, each example gets a fresh engine
    asyncio.run(run_example(db_url, ledger, operations))
