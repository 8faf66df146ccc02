"""Payment profiles, expected dates and priorities on hand-made histories."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from domain import payment_profile as pp
from domain.expected_dates import expect
from domain.priority import ItemFacts, Weights, ladder_stage, score


def month_end_payer() -> list[pp.PaidInvoice]:
    """Invoices due on the 10th, each paid on the 28th of its month."""
    return [pp.PaidInvoice(date(2026, m, 10), date(2026, m, 28)) for m in range(1, 11)]


def chronic_30_late() -> list[pp.PaidInvoice]:
    """Invoices due on various days, each paid 28-32 days late."""
    return [pp.PaidInvoice(date(2026, 1, 3) + timedelta(days=17 * i), date(2026, 1, 3) + timedelta(days=17 * i + 28 + i % 5))
            for i in range(12)]


def test_month_end_payer_has_the_habit_and_is_expected_at_month_end():
    p = pp.profile(month_end_payer())
    assert p.month_end_habit and p.month_end_share == 1.0
    assert p.median_days_late == 18 and p.on_time_share == 0.0
    # an invoice due 5 Nov, not yet paid on 3 Nov: expected at the end of November, not on 23 Nov
    e = expect(date(2026, 11, 5), date(2026, 11, 3), p)
    assert e.expected_date is not None and e.expected_date.month == 11 and e.expected_date.day >= 26


def test_chronic_thirty_day_late_payer():
    p = pp.profile(chronic_30_late(), promises_kept=1, promises_broken=3)
    assert 28 <= p.median_days_late <= 32 and p.spread_days <= 4
    assert p.on_time_share == 0.0 and not p.month_end_habit
    assert p.promises_kept_share == 0.25 and p.borrowed == ""
    # due 1 Dec, seen on 1 Dec: expected about a month later
    e = expect(date(2026, 12, 1), date(2026, 12, 1), p)
    assert date(2026, 12, 29) <= e.expected_date <= date(2027, 1, 2)
    # 40 days late already, later than ever: stale, only part of it expected in sight
    stale = expect(date(2026, 10, 1), date(2026, 11, 10), p)
    assert stale.stale and sum(w for _, w in stale.days) < 0.5


def test_new_customer_borrows_from_its_grade_then_from_everyone():
    history = {1: chronic_30_late(), 2: month_end_payer(), 3: [pp.PaidInvoice(date(2026, 3, 1), date(2026, 3, 1))]}
    grades = {1: "C", 2: "A", 3: "C", 4: "B"}
    profs = pp.profiles(history, grades)
    assert profs[3].borrowed == "all"              # grade C has 13 paid invoices: too few for its own pool
    assert profs[4].borrowed == "all" and profs[4].invoices == 23
    assert profs[1].borrowed == "" and profs[1].invoices == 12
    many = {i: chronic_30_late() for i in range(1, 4)}
    profs = pp.profiles(many, {1: "C", 2: "C", 3: "C", 9: "C"})
    assert profs[9].borrowed == "grade" and 28 <= profs[9].median_days_late <= 32


def test_trend_tells_a_customer_paying_later():
    paid = [pp.PaidInvoice(date(2026, 1, 1) + timedelta(days=20 * i), date(2026, 1, 1) + timedelta(days=20 * i + (2 if i < 8 else 25)))
            for i in range(14)]
    assert pp.profile(paid).trend == "later"
    assert pp.profile(month_end_payer()).trend == "steady"


def test_live_promise_weighs_by_the_promises_kept():
    p = pp.profile(chronic_30_late(), promises_kept=9, promises_broken=1)
    e = expect(date(2026, 12, 1), date(2026, 12, 1), p, promised=date(2026, 12, 4))
    assert dict(e.days)[date(2026, 12, 4)] >= 0.9 and e.expected_date == date(2026, 12, 4)


def test_priority_ranks_size_lateness_and_standing():
    w = Weights()
    big = ItemFacts(Decimal("200000"), 10, 10, 0, 1, 0.3)
    small = ItemFacts(Decimal("2000"), 10, 10, 0, 1, 0.3)
    assert score(big, w)[0] > score(small, w)[0]
    # as late as the customer always is, vs. a month later than its habit
    usual = ItemFacts(Decimal("20000"), 30, 30, 0, 2, None)
    beyond = ItemFacts(Decimal("20000"), 30, 0, 0, 2, None)
    assert score(beyond, w)[0] - score(usual, w)[0] == 1.0
    broken = ItemFacts(Decimal("2000"), 5, 5, 4, 0, None)
    assert score(broken, w)[1] == "broken"
    assert score(broken, Weights(broken=0))[0] < score(broken, w)[0]
    assert ladder_stage(20, (7, 15, 30)) == 2 and ladder_stage(3, (7, 15, 30)) == 0


def test_the_push_fast_score_is_the_formula():
    from domain.priority import fast_score
    w = Weights(amount=1.5, habit=2.0)
    for f in (ItemFacts(Decimal("200000"), 10, 10, 0, 1, 0.3), ItemFacts(Decimal("50"), 400, -3, 9, 5, 3.1),
              ItemFacts(Decimal("8000"), 0, 40, 2, 0, None)):
        fast = fast_score(float(f.open_amount), f.days_overdue, f.usual_days_late, f.broken_promises, f.ladder_stage,
                          f.credit_usage, w)
        assert abs(fast - score(f, w)[0]) < 1e-9


def test_a_month_end_payer_moves_up_in_the_last_week_of_the_month():
    from domain.priority import fast_score, in_month_end_week
    assert not in_month_end_week(date(2026, 11, 23)) and in_month_end_week(date(2026, 11, 24))
    assert in_month_end_week(date(2027, 2, 22)) and not in_month_end_week(date(2027, 2, 21))
    w = Weights()
    plain = ItemFacts(Decimal("5000"), 12, 18, 0, 1, 0.2)
    month_end = ItemFacts(Decimal("5000"), 12, 18, 0, 1, 0.2, timing=True)
    assert abs(score(month_end, w)[0] - score(plain, w)[0] - 1.0) < 1e-9
    assert score(month_end, w)[1] == "timing"
    assert abs(fast_score(5000.0, 12, 18, 0, 1, 0.2, w, True) - score(month_end, w)[0]) < 1e-9


async def test_a_credit_note_is_not_a_payment_day(any_db):
    """An invoice paid on its due date and corrected by a credit note six weeks later was paid on
    time: the customer's habit is read from its receipts, not from the note's date."""
    from datetime import datetime, timezone

    from storage import ledger
    from storage.models import Customer, Receivable
    from storage.payment_history import paid_history
    now = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
    async with any_db.session() as s, s.begin():
        c = Customer(code="C1", name="恒达精密")
        s.add(c)
        await s.flush()
        inv = Receivable(invoice_no="FP-1", customer_id=c.id, issue_date=date(2026, 9, 1), due_date=date(2026, 10, 1),
                         amount=Decimal("1000.00"), open_amount=Decimal("1000.00"), currency="CNY", created_at=now)
        s.add(inv)
        await s.flush()
        await ledger.record_payment(s, customer=c, amount=Decimal("900.00"), paid_on=date(2026, 10, 1),
                                    reference="B-1", actor="t", channel="test", now=now)
        await ledger.record_credit_note(s, original=inv, number="HZ-1", amount=Decimal("100.00"),
                                        issued_on=date(2026, 11, 15), actor="t", channel="test", now=now)
    async with any_db.reader() as s:
        assert (await s.get(Receivable, inv.id)).status == "paid"
        assert await paid_history(s, [c.id]) == {c.id: [pp.PaidInvoice(date(2026, 10, 1), date(2026, 10, 1))]}
