"""The morning push keeps per rep only its highest items as one unordered scan streams by
(bot/jobs/push_ranking.py). Whatever that saves, the rep must read what the plain way gives:
every overdue item of the rep loaded as ORM rows, scored with domain.priority.score, sorted by
priority (ties in the list's order), the top ``push_max_items`` numbered in the list's order
and the rest counted and summed. A random ledger with ties, twin customer names, two currencies,
disputes, promises and paid history, both ways."""
from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from bot.render import environment
from domain import priority as prio
from domain.payment_profile import MIN_HISTORY
from storage import collection as coll
from storage import payment_history as ph
from storage.fx import convert, rates_for
from storage.models import Allocation, Customer, FollowUp, Payment, Promise, Push, PushItem, Receivable
from storage.scope import Scope
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

TODAY = date(2026, 11, 23)
CAP = 6
NAMES = ("甲方科技有限公司", "乙方贸易有限公司", "丙方建材有限公司", "Acme Trading", "丁方物流有限公司")


async def _random_ledger(s, rng: random.Random) -> None:
    await ledger_fixture.build(s, at("2026-11-20 10:00"))
    customers = []
    for k in range(6):
        # triplets of one standing: two of one name, the list orders them by name, then due date,
        # then id; the third, added last, comes first by name; without a history of their own
        # they score alike, so the list's order, not the order rows are stored in, breaks the tie
        grade, limit, broken = rng.choice("ABC"), Decimal(rng.choice(("0", "50000", "200000"))), rng.choice((0, 1, 3))
        history = 0 if k < 4 else rng.choice((1, MIN_HISTORY + 2, 12))
        for twin, name in enumerate((NAMES[k % len(NAMES)], NAMES[k % len(NAMES)], f"A{k}分公司")):
            c = Customer(code=f"R{k}{twin}", name=name, grade=grade, credit_limit=limit,
                         rep_id=("rep1", "rep2")[k % 2], region="华东", broken_promises=broken)
            s.add(c)
            customers.append((c, history))
    await s.flush()
    n = 0
    same_due = TODAY - timedelta(days=150)
    for c, history in customers:
        # paid history: some customers with a habit, some too new (they borrow their grade's pool)
        for _ in range(history):
            n += 1
            due = TODAY - timedelta(days=rng.randint(30, 300))
            paid_on = due + timedelta(days=rng.choice((0, 5, 20, 40)))
            amount = Decimal(rng.randint(1000, 90000))
            r = Receivable(invoice_no=f"P{n}", customer_id=c.id, rep_id=c.rep_id, issue_date=due - timedelta(days=30),
                           due_date=due, amount=amount, open_amount=Decimal("0"), currency="CNY", status="paid")
            p = Payment(customer_id=c.id, amount=amount, unallocated=Decimal("0"), paid_on=paid_on,
                        reference=f"B{n}", currency="CNY")
            s.add_all([r, p])
            await s.flush()
            s.add(Allocation(payment_id=p.id, receivable_id=r.id, amount=amount, applied_on=paid_on))
        # open invoices: some alike to the cent and the day (ties, near the top of the ranking),
        # some in dollars, some disputed, some with a promise or a follow-up
        ties = rng.randint(1, 4)
        for i in range(ties + rng.randint(3, 12)):
            n += 1
            tie = i < ties
            due = same_due if tie else TODAY - timedelta(days=rng.randint(-20, 400))
            amount = Decimal("800000.00") if tie else Decimal(rng.randint(100, 5_000_000)) / 100
            cur = "CNY" if tie or rng.random() < 0.85 else "USD"
            open_amount = amount if tie or rng.random() < 0.8 else (amount / 2).quantize(Decimal("0.01"))
            r = Receivable(invoice_no=f"O{n}", customer_id=c.id, rep_id=c.rep_id, issue_date=due - timedelta(days=30),
                           due_date=due, amount=amount, open_amount=open_amount, currency=cur,
                           status=rng.choice(("open", "open", "partially_paid")),
                           disputed=not tie and rng.random() < 0.08)
            s.add(r)
            await s.flush()
            # promises and follow-ups weigh nothing in the priority; the first of the alike
            # invoices (near the top) always carries one of each, an older promise closed
            for status in (("broken", "open") if i == 0 else (rng.choice(("open", "broken", "kept")),)
                           if rng.random() < 0.2 else ()):
                s.add(Promise(receivable_id=r.id, promised_date=TODAY + timedelta(days=rng.randint(-10, 20)),
                              amount=None, status=status, made_by=c.rep_id, made_at=at("2026-11-10 10:00")))
            if i == 0 or rng.random() < 0.2:
                s.add(FollowUp(receivable_id=r.id, customer_id=c.id, person_id=c.rep_id, at=at("2026-11-18 15:00"),
                               channel="wecom", outcome=rng.choice(("contacted", "promised", "other"))))


async def _reference(s, config) -> tuple[dict[str, tuple[list[int], list[int], int, dict[str, Decimal]]], dict]:
    """Per rep: (pushed receivable ids in the list's order, the first three by priority, the rest's
    count, the rest's amounts per currency), the plain way; and the items by receivable id."""
    weights = prio.Weights(**dataclasses.asdict(config.priority))
    steps = tuple(st.days for st in config.policy.steps())
    rates = rates_for(config.company.fx_rates, config.company.currency)
    items = [it for it in await coll.overdue_items(s, TODAY, Scope.everything()) if not it.disputed]
    ids = sorted({it.customer.id for it in items})
    standing = await ph.standings(s, ids, config.company.fx_rates, config.company.currency)
    profiles = await ph.profiles_of(s, {c: standing[c].grade for c in ids}, TODAY)
    month_end_week = prio.in_month_end_week(TODAY)
    out = {}
    for rep in ("rep1", "rep2"):
        mine = [it for it in items if it.receivable.rep_id == rep]
        scored = []
        for it in mine:
            st, prof, r = standing[it.customer.id], profiles[it.customer.id], it.receivable
            amount = convert(r.open_amount, r.currency, rates)
            scored.append(prio.score(prio.ItemFacts(
                open_amount=amount, days_overdue=it.days_overdue, usual_days_late=prof.median_days_late,
                broken_promises=st.broken_promises, ladder_stage=prio.ladder_stage(it.days_overdue, steps),
                credit_usage=st.credit_usage, timing=month_end_week and prof.month_end_habit), weights)[0])
        ranked = sorted(range(len(mine)), key=lambda i: -scored[i])          # stable: ties keep the list's order
        top = set(ranked[:CAP])
        rest: dict[str, Decimal] = {}
        for i in ranked[CAP:]:
            r = mine[i].receivable
            rest[r.currency] = rest.get(r.currency, Decimal("0.00")) + r.open_amount
        out[rep] = ([mine[i].receivable.id for i in sorted(top)], [mine[i].receivable.id for i in ranked[:3]],
                    len(mine) - len(top), rest)
    return out, {it.receivable.id: it for it in items}


async def test_the_fast_push_numbers_what_the_plain_ranking_does(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await _random_ledger(s, random.Random(20261204))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                          collection={"push_max_items": CAP})
    async with db.session() as s:
        expected, items = await _reference(s, bot.services.config)
    assert all(rest_count > 0 for _, _, rest_count, _ in expected.values())      # the cap bites for both reps
    assert "pushed 2 rep(s)" in await bot.run("overdue_push", at("2026-11-23 09:00"))
    amounts = environment().from_string("{{ fmt.amounts(a) }}")
    md = environment().from_string("{{ fmt.md(d) }}")
    shown = {"promise": 0, "followup": 0}
    for rep, (pushed, first, rest_count, rest) in expected.items():
        async with db.session() as s:
            got = (await s.execute(select(PushItem.receivable_id).join(Push, Push.id == PushItem.push_id)
                                   .where(Push.rep_id == rep).order_by(PushItem.seq))).scalars().all()
        assert got == pushed                                   # the same items, numbered in the same order
        text = "\n".join(await bot.inbox(rep))
        focus = "今天先催：" + "；".join(f"{pushed.index(rid) + 1}号" for rid in first[:1])
        assert focus in text
        for a, b in zip(first, first[1:]):                     # the three to chase first, in priority order
            assert text.index(f"{pushed.index(a) + 1}号 ") < text.index(f"{pushed.index(b) + 1}号 ")
        # each numbered line shows its invoice's open promise and newest follow-up
        lines = text.splitlines()
        for seq, rid in enumerate(pushed, start=1):
            it = items[rid]
            [line] = [x for x in lines if x.startswith(f"{seq}. {it.receivable.invoice_no} ")]
            if it.promise is not None:
                shown["promise"] += 1
                assert f"，承诺{md.render(d=it.promise.promised_date)}付" in line
            else:
                assert "，承诺" not in line                  # (a follow-up's outcome may read 承诺付款)
            if it.last_followup is not None:
                shown["followup"] += 1
                assert f"上次跟进 {md.render(d=it.last_followup.at.date())}" in line
            else:
                assert "上次跟进" not in line
        line = f"另有 {rest_count} 笔共 {amounts.render(a=dict(sorted(rest.items(), key=lambda kv: kv[0] != 'CNY')))}"
        assert line in text
    assert shown["promise"] and shown["followup"]            # the ledger put both on some pushed items
