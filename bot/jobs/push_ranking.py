"""The morning push's ranking: which of a rep's overdue items are numbered today, and which
three to chase first.

Every item gets its priority (domain/priority.py, weights from ``[priority]``); the
``[collection] push_max_items`` highest are pushed, numbered in the list's usual order (customer,
then due date: a customer's invoices stay together, so "2,3 …" and "全部 …" read naturally);
the rest is counted on one line. The three highest are named at the top with their reason
and the day their money is expected.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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
    rest: list[coll.OverdueItem]                 # not pushed today, highest priority first
    focus: list[tuple[int, coll.OverdueItem]]    # (number, item): the first to chase


class Ranker:
    """Ranks the push's batches of reps; holds what stays the same for the whole push."""

    def __init__(self, config, pools: dict[str, PaymentProfile]):
        self.weights = prio.Weights(**dataclasses.asdict(config.priority))
        self.cap = config.collection.push_max_items
        self.step_days = tuple(s.days for s in config.policy.steps())
        self.rates = rates_for(config.company.fx_rates, config.company.currency)
        self.fx_rates, self.currency = config.company.fx_rates, config.company.currency
        self.pools = pools
        self._stages: dict[int, int] = {}
        self._month_end_week = False

    async def rank(self, session, today, by_rep: dict[str, list[coll.OverdueItem]]) -> dict[str, RankedPush]:
        customers = {it.customer.id for its in by_rep.values() for it in its if not it.disputed}
        standing = await ph.standings(session, list(customers), self.fx_rates, self.currency)
        profiles = await ph.profiles_of(session, {c: standing[c].grade for c in customers if c in standing}, today,
                                        self.pools)
        self._month_end_week = prio.in_month_end_week(today)
        out = {}
        for rep_id, items in by_rep.items():
            to_answer = [it for it in items if not it.disputed]
            for it in to_answer:
                self._score(it, standing.get(it.customer.id), profiles.get(it.customer.id))
            # ties keep the list's order (customer, due date): sorted() is stable
            ranked = sorted(to_answer, key=lambda it: -it.priority)
            top = {id(it) for it in ranked[:self.cap]}
            pushed = [it for it in to_answer if id(it) in top]
            seq = {id(it): n for n, it in enumerate(pushed, start=1)}
            focus = [(seq[id(it)], it) for it in ranked[:min(FOCUS, len(pushed))]] if len(pushed) > 1 else []
            for _, it in focus:
                prof = profiles.get(it.customer.id)
                it.reason = self._reason(it, standing.get(it.customer.id), prof)
                if prof is not None:
                    promised = it.promise.promised_date if it.promise is not None else None
                    e = expect(it.receivable.due_date, today, prof, promised)
                    # later than the customer ever paid: no date worth telling the rep
                    it.expected = None if e.stale else e.expected_date
            out[rep_id] = RankedPush(pushed, ranked[self.cap:], focus)
        return out

    def _score(self, it: coll.OverdueItem, standing: ph.Standing | None, prof: PaymentProfile | None) -> None:
        r = it.receivable
        rate = self.rates.get(r.currency)
        days = it.days_overdue
        stage = self._stages.get(days)
        if stage is None:
            stage = self._stages[days] = prio.ladder_stage(days, self.step_days)
        timing = self._month_end_week and prof is not None and prof.month_end_habit
        # the timing term is said on the item's line ("习惯月底付") where it weighs and the habit is
        # the customer's own (a new customer's borrowed profile is no habit to tell the rep of)
        it.month_end = timing and self.weights.timing > 0 and not prof.borrowed
        it.priority = prio.fast_score(float(r.open_amount) * (float(rate) if rate is not None else 1.0), days,
                                      prof.median_days_late if prof is not None else 0,
                                      standing.broken_promises if standing else 0, stage,
                                      standing.credit_usage if standing else None, self.weights, timing)

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
