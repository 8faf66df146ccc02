"""The demo company: loads into an empty database, is deterministic, and keeps the ledger's
invariants (open = amount − allocations − write-offs) so every report built on it is true."""
from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import BigInteger, func, select, type_coerce

from storage.aging import aging
from storage.db import Database
from storage.demo import DemoError, database_is_empty, load_demo
from storage.ledger import balance_check
from storage.models import (Allocation, Contact, Customer, Dispute, FollowUp, Payment, Person, Promise,
                            Receivable, WriteOff)

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 18, 10, 30, tzinfo=TZ)
TODAY = NOW.date()


async def fresh_db(tmp_path, name: str = "d.db") -> Database:
    db = Database(f"sqlite:///{tmp_path}/{name}")
    await db.migrate()
    return db


async def load(db: Database, **kw):
    async with db.session() as s, s.begin():
        return await load_demo(s, today=kw.pop("today", TODAY), now=kw.pop("now", NOW),
                               platforms=kw.pop("platforms", ("wecom", "dingtalk")), **kw)


async def count(s, model) -> int:
    return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def test_loads_requested_counts_into_empty_database(tmp_path):
    db = await fresh_db(tmp_path)
    async with db.session() as s:
        assert await database_is_empty(s)
    summary = await load(db, reps=8, customers=40, receivables=600)
    async with db.session() as s:
        assert not await database_is_empty(s)
        assert await count(s, Customer) == summary.customers == 40
        assert await count(s, Contact) == summary.contacts == 40
        assert await count(s, Receivable) == summary.receivables == 600
        assert await count(s, Payment) == summary.payments
        assert await count(s, Allocation) == summary.allocations
        assert await count(s, Person) == summary.people == 8 + 4 + 8
        assert await count(s, Dispute) == summary.disputes >= 1
        assert await count(s, FollowUp) == summary.followups >= 1
        assert await count(s, WriteOff) == summary.write_offs >= 1
        promises = (await s.execute(select(Promise.status, func.count()).group_by(Promise.status))).all()
        assert dict(promises) == {"open": summary.promises_open, "broken": summary.promises_broken}
        assert summary.manager_chat == "mgmt"
        assert len(summary.people_ids["rep"]) == 8
        assert summary.people_ids["manager"] == ["gm", "director"]
        assert sorted(summary.people_ids["supervisor"]) == ["sup_hb", "sup_hd", "sup_hn", "sup_xn"]
        assert summary.people_ids["legal"] == ["legal1"] and summary.people_ids["auditor"] == ["audit1"]
        assert summary.people_ids["admin"] == ["admin"] and "fin1" in summary.people_ids["finance"]
    # a second load is refused: demo data only goes into an empty database
    async with db.session() as s:
        with pytest.raises(DemoError):
            async with s.begin():
                await load_demo(s, today=TODAY, now=NOW)
    await db.close()


async def test_deterministic_per_seed(tmp_path):
    async def fingerprint(name: str, seed: int):
        db = await fresh_db(tmp_path, name)
        summary = await load(db, seed=seed, reps=6, customers=30, receivables=400)
        async with db.session() as s:
            rows = (await s.execute(select(Receivable.invoice_no, Receivable.amount, Receivable.open_amount,
                                           Receivable.due_date).order_by(Receivable.invoice_no))).all()
            pays = (await s.execute(select(Payment.reference, Payment.amount).order_by(Payment.reference))).all()
            names = (await s.execute(select(Customer.code, Customer.name).order_by(Customer.code))).all()
            people = (await s.execute(select(Person.id, Person.name).order_by(Person.id))).all()
        await db.close()
        return rows, pays, names, people, summary.amount_by_currency, summary.open_by_currency

    a, b, c = await fingerprint("a.db", 7), await fingerprint("b.db", 7), await fingerprint("c.db", 8)
    assert a == b
    assert a[0] != c[0] and a[2] != c[2]


async def test_ledger_invariants_hold(tmp_path):
    db = await fresh_db(tmp_path)
    await load(db, customers=50, receivables=700)
    async with db.session() as s:
        ids = (await s.execute(select(Receivable.id).order_by(Receivable.id))).scalars().all()
        for rid in random.Random(1).sample(ids, 200):
            r = await s.get(Receivable, rid)
            assert r.open_amount == await balance_check(s, rid), r.invoice_no
            assert Decimal("0") <= r.open_amount <= r.amount
        # and over everything at once, in integer cents
        def cents(col):
            return type_coerce(col, BigInteger)

        alloc = (select(Allocation.receivable_id.label("rid"), func.sum(cents(Allocation.amount)).label("s"))
                 .group_by(Allocation.receivable_id).subquery())
        wo = (select(WriteOff.receivable_id.label("rid"), func.sum(cents(WriteOff.amount)).label("s"))
              .where(WriteOff.status == "approved").group_by(WriteOff.receivable_id).subquery())
        bad = (await s.execute(
            select(func.count()).select_from(Receivable)
            .outerjoin(alloc, alloc.c.rid == Receivable.id).outerjoin(wo, wo.c.rid == Receivable.id)
            .where(cents(Receivable.amount) - func.coalesce(alloc.c.s, 0) - func.coalesce(wo.c.s, 0)
                   != cents(Receivable.open_amount)))).scalar_one()
        assert bad == 0
        pay_alloc = (select(Allocation.payment_id.label("pid"), func.sum(cents(Allocation.amount)).label("s"))
                     .group_by(Allocation.payment_id).subquery())
        bad_pay = (await s.execute(
            select(func.count()).select_from(Payment).outerjoin(pay_alloc, pay_alloc.c.pid == Payment.id)
            .where(cents(Payment.amount) - func.coalesce(pay_alloc.c.s, 0) != cents(Payment.unallocated)))).scalar_one()
        assert bad_pay == 0
        # every payment is dated between its invoice's issue date and today; applied_on = paid_on
        late_or_early = (await s.execute(
            select(func.count()).select_from(Allocation).join(Payment, Payment.id == Allocation.payment_id)
            .join(Receivable, Receivable.id == Allocation.receivable_id)
            .where((Payment.paid_on > TODAY) | (Payment.paid_on < Receivable.issue_date)
                   | (Allocation.applied_on != Payment.paid_on)))).scalar_one()
        assert late_or_early == 0
        # statuses agree with balances
        for status, ok in (await s.execute(
                select(Receivable.status, Receivable.open_amount == 0).distinct())).all():
            if status == "paid":
                assert ok
            elif status in ("open", "partially_paid", "in_legal"):
                assert not ok
        wos = (await s.execute(select(WriteOff))).scalars().all()
        for w in wos:
            r = await s.get(Receivable, w.receivable_id)
            assert w.status == "approved" and r.status == "written_off" and r.open_amount == 0
            assert w.written_off_on <= TODAY and set(w.approvers_needed) == set(w.approvals.values())
    await db.close()


async def test_every_aging_bucket_has_money(tmp_path):
    db = await fresh_db(tmp_path)
    summary = await load(db, reps=12, customers=80, receivables=900)
    async with db.session() as s:
        report = await aging(s, TODAY)
    assert [b.label for b in report.buckets] == ["not_due", "1-30", "31-60", "61-90", "90+"]
    for b in report.buckets:
        assert b.amount > 0 and b.count > 0, b.label
    # the intended shape, roughly: 35 / 25 / 15 / 10 / 15 %
    shares = [b.share(report.total) for b in report.buckets]
    for got, want in zip(shares, (35, 25, 15, 10, 15)):
        assert abs(got - want) <= 6, shares
    assert report.total == summary.open_by_currency["CNY"]
    assert "USD" in report.unconverted          # ~2% of invoices are in USD, reported apart
    await db.close()


async def test_people_teams_and_customers_are_wired(tmp_path):
    db = await fresh_db(tmp_path)
    summary = await load(db, reps=12, customers=60, receivables=300)
    async with db.session() as s:
        people = {p.id: p for p in (await s.execute(select(Person))).scalars()}
        customers = (await s.execute(select(Customer))).scalars().all()
        contacts = (await s.execute(select(Contact))).scalars().all()
        receivables = (await s.execute(select(Receivable))).scalars().all()
        disputes = (await s.execute(select(Dispute))).scalars().all()
        promises = (await s.execute(select(Promise))).scalars().all()
        followups = (await s.execute(select(FollowUp))).scalars().all()
    reps = [p for p in people.values() if p.role == "rep"]
    assert sorted(p.id for p in reps) == [f"rep{i:02d}" for i in range(1, 13)]
    assert {p.team for p in reps} == {"华东", "华南", "华北", "西南"}
    for rep in reps:
        sup = people[rep.supervisor_id]
        assert sup.role == "supervisor" and sup.team == rep.team
        assert sup.supervisor_id == "director"
    assert summary.teams == {t: sorted(p.id for p in reps if p.team == t) for t in summary.teams}
    assert people["gm"].role == people["director"].role == "manager"
    assert [p.role for p in people.values() if p.id.startswith("fin")] == ["finance"] * 3
    for p in people.values():
        assert {(a.platform, a.user_id) for a in p.accounts} == {("wecom", f"wecom_{p.id}"),
                                                                 ("dingtalk", f"dingtalk_{p.id}")}
        assert re.fullmatch(r"13800000\d{3}", p.mobile) and p.email.endswith("@example.com")
        assert re.fullmatch(r"[\u4e00-\u9fff]{2,4}", p.name)
    assert len({p.name for p in people.values()}) == len(people)

    assert len({c.name for c in customers}) == len(customers)
    assert sorted(c.code for c in customers) == [f"C{i:04d}" for i in range(1, 61)]
    grades = [c.grade for c in customers]
    assert grades.count("A") == 9 and grades.count("C") == 18
    limits = {"A": (1_000_000, 5_000_000), "B": (200_000, 1_000_000), "C": (50_000, 200_000)}
    for c in customers:
        lo, hi = limits[c.grade]
        assert lo <= c.credit_limit <= hi and c.credit_limit % 1000 == 0
        assert c.region == people[c.rep_id].team and people[c.rep_id].role == "rep"
        assert c.name.endswith("公司")
    assert any(c.cross_border for c in customers)
    assert len(contacts) == len(customers) and all(k.email.endswith("@example.com") for k in contacts)
    assert {k.channel for k in contacts} <= {"email", "sms"}

    by_id = {c.id: c for c in customers}
    for r in receivables:
        assert r.rep_id == by_id[r.customer_id].rep_id
        assert re.fullmatch(r"FP20\d{7}", r.invoice_no) and re.fullmatch(r"HT-20\d\d-\d{4}", r.contract_no)
        assert TODAY - timedelta(days=470) <= r.issue_date <= TODAY and r.due_date >= r.issue_date
        assert r.amount == r.amount.quantize(Decimal("0.01")) and r.amount > 0
        assert r.created_at.tzinfo is not None
    assert {r.currency for r in receivables} == {"CNY", "USD"}

    disputed = {r.id for r in receivables if r.disputed}
    assert disputed and disputed == {d.receivable_id for d in disputes if d.resolved_at is None}
    week_ago = NOW - timedelta(days=8)
    assert any(f.at >= week_ago for f in followups)
    assert {f.outcome for f in followups} <= {"contacted", "promised", "unreachable"}
    for p in promises:
        if p.status == "open":
            assert TODAY < p.promised_date <= TODAY + timedelta(days=14)
        else:
            assert p.status == "broken" and p.promised_date < TODAY and p.closed_at is not None
    assert sum(c.broken_promises for c in customers) == sum(p.status == "broken" for p in promises)
    await db.close()


async def test_refuses_naive_now(tmp_path):
    db = await fresh_db(tmp_path)
    async with db.session() as s:
        with pytest.raises(ValueError):
            await load_demo(s, today=TODAY, now=datetime(2026, 3, 18, 10, 30), customers=5, receivables=10)
    await db.close()


async def test_other_dates_work(tmp_path):
    """Nothing is tied to 2026: another 'today' gives the same kind of company."""
    db = await fresh_db(tmp_path)
    now = datetime(2027, 1, 4, 9, 0, tzinfo=TZ)
    await load(db, today=now.date(), now=now, reps=4, customers=20, receivables=300)
    async with db.session() as s:
        report = await aging(s, now.date())
        latest = (await s.execute(select(func.max(Payment.paid_on)))).scalar_one()
        first_issue = (await s.execute(select(func.min(Receivable.issue_date)))).scalar_one()
    assert all(b.amount > 0 for b in report.buckets)
    assert latest <= now.date() and first_issue >= date(2025, 9, 1)
    await db.close()
