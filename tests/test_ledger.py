"""The ledger's storage functions, run on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bot import inbound, outbox
from bot.core.messages import IncomingMessage, OutgoingMessage
from storage import aging, ledger
from storage.customers import find_customer
from storage.models import AuditEntry, OutboxMessage, Receivable
from storage.scope import Scope
from tests import ledger_fixture as fx
from tests.conftest import at

NOW = at("2026-11-20 10:00")


@pytest.fixture
async def book(any_db):
    async with any_db.session() as s, s.begin():
        customers = await fx.build(s, NOW)
    return any_db, customers


def figures(report):
    return [(b.label, b.amount, b.count) for b in report.buckets]


async def test_aging_by_bucket_matches_hand_computation(book):
    db, _ = book
    async with db.session() as s:
        rep = await aging.aging(s, fx.TODAY, (30, 60, 90), fx_rates=fx.FX)
    assert figures(rep) == [
        ("not_due", Decimal("10000.00"), 1), ("1-30", Decimal("27100.00"), 3), ("31-60", Decimal("30000.00"), 1),
        ("61-90", Decimal("8000.50"), 1), ("90+", Decimal("12345.67"), 1)]
    assert rep.total == Decimal("87446.17") and rep.overdue == Decimal("77446.17")


async def test_aging_by_rep_team_region_and_scope(book):
    db, customers = book
    async with db.session() as s:
        by_rep = await aging.aging(s, fx.TODAY, (30, 60, 90), by="rep", fx_rates=fx.FX)
        by_team = await aging.aging(s, fx.TODAY, (30, 60, 90), by="team", fx_rates=fx.FX)
        only_rep2 = await aging.aging(s, fx.TODAY, (30, 60, 90), scope=Scope(rep_ids=frozenset({"rep2"})),
                                      fx_rates=fx.FX)
        region = await aging.aging(s, fx.TODAY, (30, 60, 90), scope=Scope(region="华东"), fx_rates=fx.FX)
    assert by_rep.group_total("rep1") == Decimal("75346.17")       # 10000+15000+30000+8000.50+12345.67
    assert by_rep.group_total("rep2") == Decimal("12100.00")       # 5000 + USD 1000 × 7.10
    assert by_team.group_total("华东") == Decimal("75346.17") and by_team.group_total("华南") == Decimal("12100.00")
    assert figures(only_rep2)[1] == ("1-30", Decimal("12100.00"), 2)
    assert region.total == Decimal("75346.17")


async def test_aging_as_of_a_past_date_undoes_later_payments_and_write_offs(book):
    db, _ = book
    async with db.session() as s:
        # on 2026-10-31 the 5,000 payment (11-20) and the write-off (11-01) had not happened; INV-A1 was issued that day
        rep = await aging.aging(s, date(2026, 10, 31), (30, 60, 90), fx_rates=fx.FX)
    # computed by hand for 2026-10-31:
    #   A1 due 11-30 not due 10000; A2 due 11-13 not due 20000; D1 due 11-03 not due 7100
    #   C1 due 10-24: 7 days 5000; A3 due 09-24: 37 days 30000; B1 due 08-25: 67 days 8000.50
    #   C2 due 07-01: 122 days 40000 (written off only on 11-01); B2 due 05-01: 183 days 12345.67
    assert figures(rep) == [
        ("not_due", Decimal("37100.00"), 3), ("1-30", Decimal("5000.00"), 1), ("31-60", Decimal("30000.00"), 1),
        ("61-90", Decimal("8000.50"), 1), ("90+", Decimal("52345.67"), 2)]


async def test_payment_allocates_oldest_first_and_is_idempotent_by_reference(book):
    db, customers = book
    async with db.session() as s, s.begin():
        c1 = await s.get(type(customers["C1"]), customers["C1"].id)
        res = await ledger.record_payment(s, customer=c1, amount=Decimal("40000.00"), paid_on=date(2026, 11, 22),
                                          reference="LS-0002", actor="fin1", channel="test", now=NOW)
        assert [(r.invoice_no, a) for r, a in res.allocations] == [
            ("INV-A3", Decimal("30000.00")), ("INV-A2", Decimal("10000.00"))]
        again = await ledger.record_payment(s, customer=c1, amount=Decimal("40000.00"), paid_on=date(2026, 11, 22),
                                            reference="LS-0002", actor="fin1", channel="test", now=NOW)
        assert again.duplicate and again.allocations == []
        with pytest.raises(ledger.LedgerError):
            await ledger.record_payment(s, customer=c1, amount=Decimal("1.00"), paid_on=date(2026, 11, 22),
                                        reference="LS-0002", actor="fin1", channel="test", now=NOW)
    async with db.session() as s:
        rows = {r.invoice_no: r for r in (await s.execute(select(Receivable))).scalars()}
        assert rows["INV-A3"].open_amount == Decimal("0.00") and rows["INV-A3"].status == "paid"
        assert rows["INV-A2"].open_amount == Decimal("5000.00") and rows["INV-A2"].status == "partially_paid"
        for r in rows.values():
            assert await ledger.balance_check(s, r.id) == r.open_amount
        audits = (await s.execute(select(func.count()).select_from(AuditEntry)
                                  .where(AuditEntry.action == "payment.record"))).scalar_one()
        assert audits == 2          # the fixture's payment and this one; the duplicate wrote nothing


async def test_top_overdue_customers(book):
    db, _ = book
    async with db.session() as s:
        top = await aging.top_overdue_customers(s, fx.TODAY, Scope(), 3, fx.FX)
    assert [(t.name, t.overdue, t.max_days) for t in top] == [
        ("上海恒信机电有限公司", Decimal("45000.00"), 60),
        ("苏州明达电子科技有限公司", Decimal("20346.17"), 206),
        ("Harbor Lighting Ltd", Decimal("7100.00"), 20)]


async def test_customer_lookup_is_loose(book):
    db, _ = book
    async with db.session() as s:
        assert (await find_customer(s, "C2")).exact.code == "C2"
        assert (await find_customer(s, "恒信")).exact.code == "C1"
        assert (await find_customer(s, "上海恒信机电")).exact.code == "C1"
        assert (await find_customer(s, "SHHX")).exact.code == "C1"           # pinyin initials
        assert (await find_customer(s, "苏州明达电子")).exact.code == "C2"
        rep2_only = Scope(rep_ids=frozenset({"rep2"}))
        m = await find_customer(s, "明达电子", rep2_only)                    # another rep's customer
        assert m.candidates == [] or all(c.rep_id == "rep2" for c in m.candidates)


async def test_outbox_enqueue_is_idempotent(any_db):
    out = OutgoingMessage(platform="local", target_kind="user", target="rep1", text="hi")
    async with any_db.session() as s, s.begin():
        assert await outbox.enqueue(s, out, "k1", NOW) is True
        assert await outbox.enqueue(s, out, "k1", NOW) is False
    async with any_db.session() as s:
        assert (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one() == 1


async def test_inbound_events_deduplicate(any_db):
    msg = IncomingMessage(platform="wecom", platform_user_id="wx_rep1", text="/aging", message_id="4561255354251345929")
    first = await inbound.store(any_db, msg, NOW)
    assert first is not None
    assert await inbound.store(any_db, msg, NOW + timedelta(seconds=5)) is None
    assert await inbound.store(any_db, msg, NOW + timedelta(seconds=10)) is None
