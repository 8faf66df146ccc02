"""Property: /aging's fast path (open cents per due date and currency — company-wide read from
aging_totals, which triggers keep; for a restricted scope summed in SQL over the partial covering
index — bucketed in Python) gives exactly the report of the original statement
(buckets computed with ``CASE`` in SQL), on random ledgers with payments on several dates,
write-offs, recoveries (negative approved write-off rows), disputes, due dates and currencies
changed afterwards (as a re-import does), several currencies (one without a rate),
any as-of date (settled "now" and past dates that undo later payments, write-offs, recoveries and
invoices issued after them) and any scope. Past dates are answered both ways the fast path can:
stored sums corrected for the receivables touched after the date, and the full recomputation;
``aging_mod.PATHS`` shows which one ran, ``aging_mod.SOURCES`` where the per-day sums came from.
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
from storage.collection import open_dispute
from storage.ledger import LedgerError, apply_write_off, record_payment, record_recovery
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
    st.tuples(st.just("recover"), st.integers(0, 11), cents, st.integers(0, 200)),           # invoice, amount, day
    st.tuples(st.just("redate"), st.integers(0, 11), st.integers(0, 270)),                   # invoice, new due day
    st.tuples(st.just("recurrency"), st.integers(0, 11), st.sampled_from(["CNY", "USD", "EUR"])),
    st.tuples(st.just("dispute"), st.integers(0, 11)),
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
                elif op[0] == "redate":      # an import moving a due date (the balance follows it)
                    _, idx, day = op
                    r = rows[idx % len(rows)]
                    r.due_date = max(r.issue_date, START + timedelta(days=day))
                    await s.flush()
                elif op[0] == "recurrency":  # allowed by the importer only while nothing is settled
                    _, idx, currency = op
                    r = rows[idx % len(rows)]
                    if r.open_amount == r.amount and r.status == "open":
                        r.currency = currency
                        await s.flush()
                elif op[0] == "dispute":
                    await open_dispute(s, receivable=rows[op[1] % len(rows)], reason="t", person_id="AR0", at=NOW,
                                       channel="test")
                elif op[0] == "recover":
                    _, idx, c, day = op
                    try:
                        await record_recovery(s, receivable=rows[idx % len(rows)], amount=money(c),
                                              paid_on=START + timedelta(days=day), reference=f"{code}-R{n}",
                                              actor="t", channel="test", now=NOW)
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
        # Scope(): the whole ledger so far (every example's invoices), from aging_totals
        scopes = [Scope(), Scope(customer_ids=frozenset({cust.id})), Scope(region=f"r-{code}"),
                  Scope(region=f"r-{code}", rep_ids=frozenset({"AR1"})), Scope(region=f"r-{code}", team="东")]
        fx = {"USD": "7.10"}                       # EUR has no rate: reported apart
        due0 = rows[0].due_date
        days = (as_of, date(2030, 1, 1),                 # a past date, and one after everything
                due0 + timedelta(days=bounds[0]), due0 + timedelta(days=bounds[-1] + 1))   # on the boundaries
        async with db.session() as s:
            for scope in scopes:
                for day in days:
                    kw = dict(scope=scope, by=None, fx_rates=fx, base_currency="CNY")
                    ref = await aging_mod._aging(s, day, bounds, by_day=False, **kw)
                    settled = (await aging_mod._history_after(s, day))[0]
                    for past in ("corrected", "recomputed"):
                        before, sources = aging_mod.PATHS.copy(), aging_mod.SOURCES.copy()
                        fast = await aging_mod._aging(s, day, bounds, by_day=True, past=past, **kw)
                        assert fast == ref, (scope, day, past)
                        ran = aging_mod.PATHS - before
                        assert ran == {("stored" if settled else past): 1}, (day, settled, ran)
                        if settled or past == "corrected":
                            source = "totals" if scope == Scope() else "receivables"
                            assert aging_mod.SOURCES - sources == {source: 1}, (scope, day, past)
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


def test_past_dates_choose_the_correction_unless_the_touched_set_is_large(tmp_path, monkeypatch):
    """The same week-ago question, answered by correction while few receivables were touched after
    it, and by full recomputation past either limit; both give the reference report."""
    async def go():
        db = Database(f"sqlite:///{tmp_path}/p.db")
        await db.migrate()
        try:
            async with db.session() as s, s.begin():
                s.add(Person(id="AR0", name="rep", role="rep", team="东"))
                await s.flush()
                cust = Customer(code="P1", name="p", region="r", rep_id="AR0")
                s.add(cust)
                await s.flush()
                rows = []
                for i in range(40):
                    issue = START + timedelta(days=i * 3)
                    r = Receivable(invoice_no=f"P-{i}", customer_id=cust.id, rep_id="AR0", issue_date=issue,
                                   due_date=issue + timedelta(days=30), amount=money(10_000 + i), open_amount=money(10_000 + i),
                                   currency="CNY", created_at=NOW)
                    s.add(r)
                    rows.append(r)
                await s.flush()
                as_of = START + timedelta(days=100)
                # after as_of: a payment on the oldest invoices, a write-off and its partial recovery
                await record_payment(s, customer=cust, amount=money(25_000), paid_on=as_of + timedelta(days=2),
                                     reference="P-pay", currency="CNY", actor="t", channel="test", now=NOW)
                wo = WriteOff(receivable_id=rows[20].id, amount=money(10_020), requested_by="t", requested_at=NOW)
                s.add(wo)
                await s.flush()
                await apply_write_off(s, wo, on=as_of + timedelta(days=3), actor="t", channel="test", now=NOW)
                await record_recovery(s, receivable=rows[20], amount=money(4_000), paid_on=as_of + timedelta(days=5),
                                      reference="P-rec", actor="t", channel="test", now=NOW)
            async with db.session() as s:
                settled, touched, size = await aging_mod._history_after(s, as_of)
                assert not settled and 0 < touched < size
                kw = dict(scope=Scope(), by=None, fx_rates=None, base_currency="CNY")
                ref = await aging_mod._aging(s, as_of, (30, 60, 90), by_day=False, **kw)
                for limit, share, path in ((touched, 1.0, "corrected"), (touched - 1, 1.0, "recomputed"),
                                           (10_000, touched / size, "corrected"),
                                           (10_000, (touched - 1) / size, "recomputed")):
                    monkeypatch.setattr(aging_mod, "PAST_TOUCHED_MAX", limit)
                    monkeypatch.setattr(aging_mod, "PAST_TOUCHED_MAX_SHARE", share)
                    before = aging_mod.PATHS.copy()
                    assert await aging_mod.aging(s, as_of, (30, 60, 90)) == ref
                    assert aging_mod.PATHS - before == {path: 1}, (limit, share)
                assert ref.count and ref.total
        finally:
            await db.close()
    asyncio.run(go())
