"""Payment plans (分期回款计划): a promise with several dates and amounts.

A rep writes a plan the way the customer said it — ``12月20日 3万，1月20日 余款`` — as the
arguments of /promise or in a reply to the morning push. Instalments are separated by 、 ; ；
， or , (a comma inside 30,000 is a thousands separator); each names one date and one amount,
or "the rest" (余款/剩余/剩下/尾款/the rest) for what the instalments before it leave of the
invoice's open amount. "The rest" is only the last instalment.

Each instalment is judged like a promise on its date (plus the grace working days): it is kept
when the money paid on the invoice since the plan was made covers every instalment due so far
(:func:`due_by`), so a customer who pays instalment 2 early has kept instalment 2, and one who
paid half of instalment 1 has kept nothing yet.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from domain.dates import half_width, read_dates
from domain.money import AmountError, parse_amount
from domain.workdays import WorkCalendar

MIN_INSTALMENTS, MAX_INSTALMENTS = 2, 12

# 、 ; ； ， , — but not the comma of 30,000
_SEP = re.compile(r"[、;；，]|,(?!\d{3}(?!\d))")
_REST = re.compile(r"余款|剩余|剩下|余下|尾款|余额|其余|\bthe (?:rest|balance|remainder)\b|\brest\b", re.IGNORECASE)
# one amount: arabic with an optional unit (3万, 30,000, ¥5000, 5k), or Chinese with a unit (三万)
_AMOUNT = re.compile(r"[¥￥]?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*(?:[万千wk](?![a-z])|元|块)?|"
                     r"[一二两三四五六七八九十百千零]+\s*(?:万|千)(?:[一二两三四五六七八九十百千零]+)?(?:元|块)?",
                     re.IGNORECASE)
# a number that is not money: 第1期, 3天, 2笔
_NOT_MONEY = re.compile(r"\s*(?:期|天|个|笔|次|号|日|%)")


class PlanError(ValueError):
    """A plan that cannot be recorded; ``code`` names what is wrong (errors/plan_*)."""

    def __init__(self, code: str, **data):
        super().__init__(code)
        self.code, self.data = code, data


@dataclass(frozen=True)
class Instalment:
    date: date
    amount: Decimal | None          # None: the rest (余款), worked out by :func:`settle`
    text: str                       # the piece as written, for the refusal messages


def read_plan(text: str, today: date, calendar: WorkCalendar | None = None, *,
              strict: bool = True) -> list[Instalment] | None:
    """The instalments written in ``text``, or None when it is not a plan (a plain promise, read
    as before).

    ``strict`` (/promise, where the text is only the plan): two or more pieces naming a date make
    a plan, and a piece with no amount, two dates or two amounts raises :class:`PlanError`, as
    does "the rest" before the end. Not strict (a free-text reply): the pieces that name one date
    and one amount (or "the rest") are the plan when there are two or more; the other pieces are
    the rep's words around it (已联系王总 / 明天再对账)."""
    pieces = [p.strip() for p in _SEP.split(text or "") if p.strip()]
    read = [(p, _piece(p, today, calendar)) for p in pieces]
    if strict:
        if sum(1 for _, r in read if r[0] is not None) < MIN_INSTALMENTS:
            return None
        first = next(i for i, (_, r) in enumerate(read) if r[0] is not None)
        out = []
        for piece, (when, amount, ok) in read[first:]:
            if not ok:
                raise PlanError("plan_bad_piece", piece=piece)
            out.append(Instalment(when, amount, piece))
    else:
        out = [Instalment(when, amount, piece) for piece, (when, amount, ok) in read if ok]
        if len(out) < MIN_INSTALMENTS:
            return None
    if any(i.amount is None for i in out[:-1]):
        raise PlanError("plan_rest_not_last", piece=next(i.text for i in out if i.amount is None))
    return out


def _piece(piece: str, today: date, calendar) -> tuple[date | None, Decimal | None, bool]:
    """(its date if it names exactly one, its amount — None for the rest —, whether it is one
    whole instalment)."""
    found = read_dates(piece, today, calendar)
    if len(found) != 1:
        return None, None, False
    s = half_width(piece)
    a, b = found[0].span
    rest = s[:a] + " " * (b - a) + s[b:]                     # the date masked out
    amounts = [m for m in _AMOUNT.finditer(rest) if m.group().strip() and not _NOT_MONEY.match(rest, m.end())]
    is_rest = bool(_REST.search(rest))
    if is_rest and not amounts:
        return found[0].date, None, True
    if len(amounts) != 1 or is_rest:
        return found[0].date, None, False
    try:
        return found[0].date, parse_amount(amounts[0].group()), True
    except AmountError:
        return found[0].date, None, False


@dataclass(frozen=True)
class Plan:
    instalments: tuple[tuple[date, Decimal], ...]     # date order, every amount known
    uncovered: Decimal                                # what the plan leaves of the open amount


def settle(instalments: list[Instalment], open_amount: Decimal, today: date) -> Plan:
    """The plan for an invoice with ``open_amount`` left on ``today``: "the rest" worked out,
    and every rule checked. A plan whose amounts come to less than the open amount is fine (a
    partial plan); ``uncovered`` says how much it leaves. Raises :class:`PlanError`."""
    if not MIN_INSTALMENTS <= len(instalments) <= MAX_INSTALMENTS:
        raise PlanError("plan_count", count=len(instalments), most=MAX_INSTALMENTS)
    for i in instalments:
        if i.date < today:
            raise PlanError("plan_date_in_past", piece=i.text, date=i.date)
        if i.amount is not None and i.amount <= 0:
            raise PlanError("plan_bad_piece", piece=i.text)
    for before, after in zip(instalments, instalments[1:]):
        if after.date <= before.date:
            raise PlanError("plan_dates_order", first=before.text, second=after.text)
    fixed = sum((i.amount for i in instalments if i.amount is not None), Decimal("0"))
    rest = instalments[-1].amount is None
    if fixed > open_amount or (rest and fixed >= open_amount):
        raise PlanError("plan_above_balance", total=fixed, open=open_amount, rest=rest)
    amounts = [i.amount if i.amount is not None else open_amount - fixed for i in instalments]
    return Plan(tuple((i.date, a) for i, a in zip(instalments, amounts)), open_amount - sum(amounts, Decimal("0")))


def due_by(instalments: list[tuple[date, Decimal]], day: date) -> Decimal:
    """What the plan asks to have been paid by ``day``: every instalment dated on or before it."""
    return sum((a for d, a in instalments if d <= day), Decimal("0"))


def unpaid(instalments: list[tuple[date, Decimal]], paid: Decimal) -> list[tuple[date, Decimal]]:
    """Each instalment's part not yet paid, when ``paid`` came in since the plan was made (the
    money goes to the earliest instalment first)."""
    out, before = [], Decimal("0")
    for d, a in instalments:
        out.append((d, min(a, max(Decimal("0"), before + a - paid))))
        before += a
    return out
