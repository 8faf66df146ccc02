"""Late fees (滞纳金): an estimate for letters and reports, never booked to the ledger.

A fee is claimed only where the contract says so: each customer's ``late_fee_rate`` holds its
contract's clause (empty: no clause, no fee; ``standard``: the company's tiered standard clause,
``[late_fees] tiers``; a decimal such as ``0.0005``: that daily rate). Tiered daily rates: the
tier with the highest ``from_day`` not above a day's number applies to that day (default
0.05%/day for days 1-30, 0.1%/day from day 31).

The fee of a day is charged on the balance outstanding that day (:func:`contract_fee`): a part
payment lowers the base from the day after it was received, as a court computes it ("以未付款项
为基数，自逾期之日起计算至实际付清之日"), never today's balance over the whole period. It is capped
at a share of the overdue principal (``[late_fees] cap_ratio``; 民法典 第五百八十五条: a
liquidated sum well above the loss may be reduced, and courts use 30% as the line). Exact decimal
arithmetic, rounded once at the end to the cent (half up).
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Iterable, Mapping

CENT = Decimal("0.01")
STANDARD = "standard"
STANDARD_WORDS = ("standard", "标准", "标准条款")


class TermsError(ValueError):
    """A late-fee clause that is neither empty, ``standard`` nor a daily rate between 0 and 1%."""


def _tiers(tiers: Iterable) -> list[tuple[int, Decimal]]:
    out = []
    for t in tiers:
        if isinstance(t, Mapping):
            from_day, rate = t["from_day"], t["rate"]
        else:
            from_day, rate = t
        if isinstance(rate, float):
            raise TypeError("late-fee rates must be decimal strings, not floats")
        out.append((int(from_day), Decimal(str(rate))))
    return sorted(out)


def parse_terms(text: str | None) -> str | Decimal | None:
    """A customer's clause as written (import, chat): None (no clause), STANDARD, or a daily
    rate. ``0.05%`` and ``0.0005`` are the same rate; above 1% a day is taken for a typing slip."""
    t = (text or "").strip().replace("％", "%")
    if not t or t in ("无", "否", "none"):
        return None
    if t.lower() in STANDARD_WORDS:
        return STANDARD
    try:
        rate = Decimal(t[:-1]) / 100 if t.endswith("%") else Decimal(t)
    except InvalidOperation:
        raise TermsError(t) from None
    if not rate.is_finite() or rate <= 0 or rate > Decimal("0.01"):
        raise TermsError(t)
    return rate.normalize()


def terms_tiers(terms: str | Decimal | None, standard_tiers) -> list[tuple[int, Decimal]]:
    """The tiers a clause means (empty: no fee)."""
    if terms is None:
        return []
    if terms == STANDARD:
        return _tiers(standard_tiers)
    return [(1, Decimal(terms))]


def rate_sum(tiers, first_day: int, last_day: int) -> Decimal:
    """The sum of the daily rates of days ``first_day``..``last_day`` (day 1: the day after the due date)."""
    ts = _tiers(tiers)
    total = Decimal(0)
    for i, (start, rate) in enumerate(ts):
        end = ts[i + 1][0] - 1 if i + 1 < len(ts) else last_day
        lo, hi = max(start, first_day), min(end, last_day)
        if hi >= lo:
            total += rate * (hi - lo + 1)
    return total


def late_fee(amount: Decimal, days_overdue: int, tiers) -> Decimal:
    """The fee on a constant ``amount`` after ``days_overdue`` days (0 or less: nothing)."""
    if isinstance(amount, float):
        raise TypeError("amount must be Decimal, not float")
    if days_overdue <= 0 or amount <= 0 or not _tiers(tiers):
        return Decimal("0.00")
    return (Decimal(amount) * rate_sum(tiers, 1, days_overdue)).quantize(CENT, rounding=ROUND_HALF_UP)


def contract_fee(amount: Decimal, due_date: date, today: date, reductions: Iterable[tuple[date, Decimal]],
                 tiers, cap_ratio: Decimal | None = None) -> Decimal:
    """The fee on an invoice of ``amount`` due ``due_date``, up to ``today``, on the daily balance.

    ``reductions``: (day, amount) of what lowered the balance (payments applied, write-offs).
    Day n (n ≥ 1) is ``due_date + n``; its base is the balance before that day's reductions, so
    the day money arrives still counts. ``cap_ratio`` (None or 0: no cap) caps the fee at that
    share of the principal overdue on day 1."""
    if isinstance(amount, float):
        raise TypeError("amount must be Decimal, not float")
    days = (today - due_date).days
    if days <= 0 or not _tiers(tiers):
        return Decimal("0.00")
    cuts = sorted((d, Decimal(a)) for d, a in reductions)
    balance = Decimal(amount) - sum((a for d, a in cuts if d <= due_date), Decimal(0))
    principal = balance
    later = [(d, a) for d, a in cuts if due_date < d]
    total = Decimal(0)
    day = 1
    for d, a in later + [(today + timedelta(days=1), Decimal(0))]:
        # days day..n(d) are charged on the balance before d's reduction; from d+1 the lower one
        last = min((d - due_date).days, days)
        if last >= day and balance > 0:
            total += balance * rate_sum(tiers, day, last)
        day = max(day, last + 1)
        balance -= a
        if day > days:
            break
    fee = total.quantize(CENT, rounding=ROUND_HALF_UP)
    if cap_ratio and principal > 0:
        fee = min(fee, (principal * Decimal(cap_ratio)).quantize(CENT, rounding=ROUND_HALF_UP))
    return max(fee, Decimal("0.00"))
