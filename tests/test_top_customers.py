"""The top overdue customers of /aging and the reports: the database ranks, Python computes the
exact sums of the few at the top. Compared with the plain exact computation over every customer,
on random ledgers with three currencies (one without a rate), equal balances, written-off and
not-yet-due invoices, and a rep's scope."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

from storage import aging
from storage.models import Customer, Person, Receivable
from storage.scope import Scope

TODAY = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
RATES = {"USD": "7.10", "EUR": "7.6543"}          # JPY has no rate: left out, as in /aging


def expected(rows, customers, limit, rep=None):
    rates = {"CNY": Decimal(1), **{k: Decimal(v) for k, v in RATES.items()}}
    sums: dict[tuple[int, str], Decimal] = {}
    oldest: dict[int, date] = {}
    for r in rows:
        if r["status"] == "written_off" or r["due"] >= TODAY or r["currency"] not in rates:
            continue
        if rep and customers[r["customer"]]["rep"] != rep:
            continue
        sums[(r["customer"], r["currency"])] = sums.get((r["customer"], r["currency"]), Decimal(0)) + r["amount"]
        oldest[r["customer"]] = min(oldest.get(r["customer"], r["due"]), r["due"])
    total: dict[int, Decimal] = {}
    for (cid, cur), amount in sums.items():
        total[cid] = total.get(cid, Decimal("0.00")) + (amount * rates[cur]).quantize(Decimal("0.01"), ROUND_HALF_UP)
    ranked = sorted(total, key=lambda cid: (-total[cid], customers[cid]["name"]))[:limit]
    return [(customers[c]["name"], total[c], (TODAY - oldest[c]).days) for c in ranked]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_top_customers_are_the_exact_top(any_db, seed):
    rnd = random.Random(seed)
    customers, rows = {}, []
    async with any_db.session() as s, s.begin():
        s.add_all([Person(id=f"R{i}", name=f"rep {i}", role="rep") for i in range(3)])
        await s.flush()
        for i in range(60):
            c = Customer(code=f"C{i:03d}", name=f"客户{i:03d}", rep_id=f"R{i % 3}")
            s.add(c)
            await s.flush()
            customers[c.id] = {"name": c.name, "rep": c.rep_id}
            same = i % 7 == 0                        # a few customers with equal balances
            for j in range(rnd.randint(1, 12)):
                amount = Decimal("1000.00") if same else Decimal(rnd.randint(1, 5_000_000)) / 100
                cur = "CNY" if same else rnd.choice(["CNY", "CNY", "USD", "EUR", "JPY"])
                due = TODAY - timedelta(days=rnd.randint(-30, 400))
                status = "written_off" if rnd.random() < 0.05 else "open"
                s.add(Receivable(invoice_no=f"F{i:03d}-{j}", customer_id=c.id, rep_id=c.rep_id,
                                 issue_date=due - timedelta(days=30), due_date=due, amount=amount,
                                 open_amount=amount, currency=cur, status=status, created_at=NOW))
                rows.append({"customer": c.id, "amount": amount, "currency": cur, "due": due, "status": status})
    async with any_db.reader() as s:
        for limit, scope, rep in ((5, Scope(), None), (12, Scope(), None), (5, Scope(rep_ids=frozenset({"R1"})), "R1")):
            got = await aging.top_overdue_customers(s, TODAY, scope, limit, RATES)
            assert [(t.name, t.overdue, t.max_days) for t in got] == expected(rows, customers, limit, rep)
