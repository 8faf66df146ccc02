"""The morning push's ranking: which of a rep's overdue items are numbered today, and which
three to chase first.

Every item gets its priority (domain/priority.py, weights from ``[priority]``); the
``[collection] push_max_items`` highest are pushed, numbered in the list's usual order (customer,
then due date: a customer's invoices stay together, so "2,3 …" and "全部 …" read naturally);
the rest is counted on one line. The three highest are named at the top with their reason
and the day their money is expected.

At 1M receivables a rep has ~750 overdue items and the push shows 20 of them, so the ranking
never holds a rep's whole list: ``Ranker.select`` scores the rows of one unordered scan as they
come (plain numbers, no objects per item) and keeps per rep only the ``push_max_items`` best
in a heap, the rest as a count and a sum per currency; ``Ranker.rank`` then reads the few
kept items in full. Ties keep the list's order (customer name, due date, id), as a stable sort
of the whole list would: the heap's key carries that order.
"""
from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from domain import priority as prio
from domain.expected_dates import expect
from domain.payment_profile import PaymentProfile
from storage import collection as coll
from storage import payment_history as ph
from storage.fx import convert, rates_for

FOCUS = 3                  # items named "今天先催" at the top of the push


@dataclass
class RankedPush:
    to_answer: list[coll.OverdueItem]            # the pushed items, in the list's order
    rest_count: int                              # not pushed today ...
    rest_amounts: dict[str, Decimal]             # ... and their open amounts per currency
    focus: list[tuple[int, coll.OverdueItem]]    # (number, item): the first to chase
    disputed: list[coll.OverdueItem]             # listed apart, in the list's order


@dataclass(slots=True)
class Selection:
    """One rep's share of the scan: the best items so far (a min-heap of keys
    ``(priority, -name place, -due day, -id, cents, currency)``: the smallest is the first
    to drop), how many items and how much the rep has in all (not disputed: the cents in the
    company's currency, and per other currency), and the disputed items (``(name place,
    due day, id)``). What is not in the heap is the rest: the totals less the heap."""
    top: list = field(default_factory=list)
    count: int = 0
    cents: int = 0
    other_cents: dict[str, int] = field(default_factory=dict)
    disputed: list = field(default_factory=list)

    def rest(self, currency: str) -> tuple[int, dict[str, Decimal]]:
        """How many items are not in the heap, and their amounts per currency."""
        cents = {currency: self.cents, **self.other_cents}
        for key in self.top:
            cents[key[5]] -= key[4]
        return self.count - len(self.top), {cur: Decimal(c).scaleb(-2) for cur, c in cents.items() if c}


class Ranker:
    """Ranks the push's reps; holds what stays the same for the whole push."""

    def __init__(self, config, pools: dict[str, PaymentProfile]):
        self.weights = prio.Weights(**dataclasses.asdict(config.priority))
        self.cap = config.collection.push_max_items
        self.step_days = tuple(s.days for s in config.policy.steps())
        self.rates = rates_for(config.company.fx_rates, config.company.currency)
        self.fx_rates, self.currency = config.company.fx_rates, config.company.currency
        self.pools = pools
        self.standing: dict[int, ph.Standing] = {}
        self.profiles: dict[int, PaymentProfile] = {}
        self._facts: dict[int, tuple] = {}      # per customer, see prepare()
        self._dues: dict = {}                    # driver's due-date value → (date, days, ordinal, stage)
        self._month_end_week = False

    async def prepare(self, session, today: date) -> None:
        """What the scores read of every customer: standing, profile, place in the list's order."""
        self.standing = await ph.standings(session, None, self.fx_rates, self.currency)
        self.profiles = await ph.profiles_of(session, {c: s.grade for c, s in self.standing.items()}, today,
                                             self.pools, every=True)
        month_end_week = prio.in_month_end_week(today)
        # per customer: (place in the list's order, usual days late, broken promises, credit
        # usage, month-end timing today), what an item's score reads of its customer
        self._facts = {}
        for cid, place in (await coll.customer_name_ranks(session)).items():
            st, prof = self.standing.get(cid), self.profiles.get(cid)
            self._facts[cid] = (place, prof.median_days_late if prof is not None else 0,
                                st.broken_promises if st else 0, st.credit_usage if st else None,
                                month_end_week and prof is not None and prof.month_end_habit)
        self._month_end_week = month_end_week

    def select(self, today: date, rows, reps: set[str], out: dict[str, Selection]) -> None:
        """Score ``rows`` (``coll.overdue_keys``' tuples) of the reps in ``reps`` into ``out``.
        The hot loop of the push (750,000 rows at 1M receivables): plain numbers, and a key
        built only for an item that may enter its rep's heap."""
        cap, w, score, base = self.cap, self.weights, prio.fast_score, self.currency
        rates = {k: float(v) for k, v in self.rates.items()}
        heappush, heapreplace = heapq.heappush, heapq.heapreplace
        customers, dues = self._facts, self._dues
        for rid, cid, rep, due, cents, cur, disputed in rows:
            sel = out.get(rep)
            if sel is None:
                if rep not in reps:
                    continue
                sel = out[rep] = Selection()
            d = dues.get(due) or self._due(today, due)
            c = customers[cid]
            if disputed:
                sel.disputed.append((c[0], d[2], rid))
                continue
            # the amount as Ranker's reference reads it: float(open amount) × float(rate), 1.0 for
            # the company's currency and for one without a rate (× 1.0 changes no float)
            p = score(cents / 100 if cur == base else cents / 100 * rates.get(cur, 1.0), d[1], c[1], c[2], d[3],
                      c[3], w, c[4])
            sel.count += 1
            if cur == base:
                sel.cents += cents
            else:
                sel.other_cents[cur] = sel.other_cents.get(cur, 0) + cents
            top = sel.top
            if len(top) < cap:
                heappush(top, (p, -c[0], -d[2], -rid, cents, cur))
            elif p >= top[0][0]:
                key = (p, -c[0], -d[2], -rid, cents, cur)
                if key > top[0]:
                    heapreplace(top, key)

    def _due(self, today: date, due) -> tuple:
        """(due date, days overdue, its ordinal, ladder stage) of a driver's due-date value: a
        few hundred distinct ones, worked out once each."""
        day = due if isinstance(due, date) else date.fromisoformat(due)
        days = (today - day).days
        f = self._dues[due] = (day, days, day.toordinal(), prio.ladder_stage(days, self.step_days))
        return f

    async def rank(self, session, today: date, selected: dict[str, Selection]) -> dict[str, RankedPush]:
        """The selected items of a few reps, read in full: numbered, focus and reasons."""
        items = await coll.overdue_details(session, today, [
            *(-k[3] for sel in selected.values() for k in sel.top),
            *(rid for sel in selected.values() for *_, rid in sel.disputed)])
        out = {}
        for rep_id, sel in selected.items():
            ranked = []
            for key in sorted(sel.top, reverse=True):        # highest first; ties in the list's order
                it = items[-key[3]]
                it.priority = key[0]
                prof = self.profiles.get(it.customer.id)
                # the timing term is said on the item's line ("习惯月底付") where it weighs and the
                # habit is the customer's own (a borrowed profile is no habit to tell the rep of)
                it.month_end = (self._month_end_week and prof is not None and prof.month_end_habit
                                and self.weights.timing > 0 and not prof.borrowed)
                ranked.append(it)
            # numbered in the list's order (customer, due date, id)
            pushed = [items[-k[3]] for k in sorted(sel.top, key=lambda k: (-k[1], -k[2], -k[3]))]
            seq = {id(it): n for n, it in enumerate(pushed, start=1)}
            focus = [(seq[id(it)], it) for it in ranked[:min(FOCUS, len(pushed))]] if len(pushed) > 1 else []
            for _, it in focus:
                prof = self.profiles.get(it.customer.id)
                it.reason = self._reason(it, self.standing.get(it.customer.id), prof)
                if prof is not None:
                    promised = it.promise.promised_date if it.promise is not None else None
                    e = expect(it.receivable.due_date, today, prof, promised)
                    # later than the customer ever paid: no date worth telling the rep
                    it.expected = None if e.stale else e.expected_date
            rest_count, rest = sel.rest(self.currency)
            disputed = [items[rid] for *_, rid in sorted(sel.disputed)]
            out[rep_id] = RankedPush(pushed, rest_count, rest, focus, disputed)
        return out

    def _reason(self, it: coll.OverdueItem, standing: ph.Standing | None, prof: PaymentProfile | None) -> str:
        """The term that weighs most in the item's priority (``habit:N``: N days later than usual)."""
        r = it.receivable
        amount = convert(r.open_amount, r.currency, self.rates)
        facts = prio.ItemFacts(
            open_amount=amount if amount is not None else Decimal(r.open_amount),
            days_overdue=it.days_overdue,
            usual_days_late=prof.median_days_late if prof is not None else 0,
            broken_promises=standing.broken_promises if standing else 0,
            ladder_stage=prio.ladder_stage(it.days_overdue, self.step_days),
            credit_usage=standing.credit_usage if standing else None,
            timing=self._month_end_week and prof is not None and prof.month_end_habit)
        reason = prio.score(facts, self.weights)[1]
        if reason == "habit" and prof is not None:
            return f"habit:{it.days_overdue - prof.median_days_late}"
        return reason
