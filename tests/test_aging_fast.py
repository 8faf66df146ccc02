"""Property: /aging's fast path (open cents summed per due date and currency in SQL over the
partial covering index, bucketed in Python) gives exactly the report of the original statement
(buckets computed with ``CASE`` in SQL), on random ledgers with payments on several dates,
write-offs, several currencies (one without a rate), any as-of date (settled "now" and past dates
that undo later payments) and any scope.
"""
from __future__ import annotations

import asyncio
import itertools
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import aging as aging_mod
from storage.db import Database
from storage.ledger import LedgerError, apply_write_off, record_payment
from storage.models import Customer, Person, Receivable, WriteOff
from storage.scope import Scope

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
START = date(2026, 6, 1)
_serial = itertools.count(1)

cents = st.integers(min_value=1, max_value=3_000_000)
invoices = st.lists(st.tuples(cents, st.integers(0, 180), st.integers(0, 90), st.sampled_from(["CNY", "CNY", "USD", "EUR"]),
                              st.integers(0, 2)),            # amount, issued day, terms, currency, rep
                    min_size=1, max_size=12)
ops = st.lists(st.one_of(
    st.tuples(st.just("pay"), cents, st.integers(0, 200), st.sampled_from(["CNY", "USD"])),   # amount, day, currency
    st.tuples(st.just("writeoff"), st.integers(0, 11), cents, st.integers(0, 200)),          # invoice, amount, day
), max_size=10)
as_of_days = st.integers(-10, 260)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('aging')}/t.db"

    async def setup():
        db = Database(url)
        await db.migrate()
        async with db.session() as s, s.begin():
            for i, team in enumerate(("东", "南", "")):
                s.add(Person(id=f"AR{i}", name=f"rep {i}", role="rep", team=team))
        await db.close()
    asyncio.run(setup())
    return url


def money(c: int) -> Decimal:
    return (Decimal(c) / 100).quantize(Decimal("0.01"))


async def run_example(url: str, ledger, operations, as_of_day: int, bounds) -> None:
    db = Database(url)
    code = f"A{next(_serial):05d}"
    try:
        async with db.session() as s, s.begin():
            # each example has its own customer and region, so scopes see only its invoices
            cust = Customer(code=code, name=f"customer {code}", region=f"r-{code}", rep_id="AR0")
            s.add(cust)
            await s.flush()
            rows = []
            for i, (c, issued, terms, currency, rep) in enumerate(ledger):
                issue = START + timedelta(days=issued)
                r = Receivable(invoice_no=f"{code}-{i}", customer_id=cust.id, rep_id=f"AR{rep}", issue_date=issue,
                               due_date=issue + timedelta(days=terms), amount=money(c), open_amount=money(c),
                               currency=currency, created_at=NOW)
                s.add(r)
                rows.append(r)
            await s.flush()
            for n, op in enumerate(operations):
                if op[0] == "pay":
                    _, c, day, currency = op
                    try:
                        await record_payment(s, customer=cust, amount=money(c), paid_on=START + timedelta(days=day),
                                             reference=f"{code}-P{n}", currency=currency, actor="t", channel="test",
                                             now=NOW)
                    except LedgerError:
                        pass
                else:
                    _, idx, c, day = op
                    wo = WriteOff(receivable_id=rows[idx % len(rows)].id, amount=money(c), requested_by="t",
                                  requested_at=NOW)
                    s.add(wo)
                    await s.flush()
                    try:
                        await apply_write_off(s, wo, on=START + timedelta(days=day), actor="t", channel="test",
                                              now=NOW)
                    except LedgerError:
                        pass
        as_of = START + timedelta(days=as_of_day)
        scopes = [Scope(customer_ids=frozenset({cust.id})), Scope(region=f"r-{code}"),
                  Scope(region=f"r-{code}", rep_ids=frozenset({"AR1"})), Scope(region=f"r-{code}", team="东")]
        fx = {"USD": "7.10"}                       # EUR has no rate: reported apart
        due0 = rows[0].due_date
        days = (as_of, date(2030, 1, 1),                 # a past date, and one after everything
                due0 + timedelta(days=bounds[0]), due0 + timedelta(days=bounds[-1] + 1))   # on the boundaries
        async with db.session() as s:
            for scope in scopes:
                for day in days:
                    kw = dict(scope=scope, by=None, fx_rates=fx, base_currency="CNY")
                    fast = await aging_mod._aging(s, day, bounds, by_day=True, **kw)
                    ref = await aging_mod._aging(s, day, bounds, by_day=False, **kw)
                    assert fast == ref, (scope, day)
                    assert await aging_mod.aging(s, day, bounds, scope=scope, fx_rates=fx) == ref
    finally:
        await db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledger=invoices, operations=ops, as_of_day=as_of_days,
       bounds=st.sampled_from([(30, 60, 90), (30,), (15, 45, 90, 180), (1, 2)]))
def test_fast_aging_equals_the_case_statement(db_url, ledger, operations, as_of_day, bounds):
    asyncio.run(run_example(db_url, ledger, operations, as_of_day, bounds))


def test_bucket_of_matches_the_boundaries():
    as_of = date(2026, 11, 23)
    got = [aging_mod._bucket_of(as_of, (30, 60, 90), as_of - timedelta(days=d)) for d in (-5, 0, 1, 30, 31, 60, 61, 90, 91, 400)]
    assert got == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
