"""A believable ledger, streamed to CSV: up to 1,000,000 receivables, 20,000 customers, 1,000 reps.

Deterministic for a seed (``random.Random(seed)``, no wall clock). Shapes taken from what AR
ledgers look like: issue dates spread over two years before ``TODAY``, terms of 30/45/60/90 days
(more 30s), amounts log-normal (a few thousand yuan typical, a long tail), ~5 % in USD, about a
quarter fully paid, a tenth partly paid, older invoices paid more often than new ones.

Rows are written as they are generated; nothing is held in memory but the current row.

    python -m bench.dataset --out /tmp/ds --receivables 1000000
"""
from __future__ import annotations

import argparse
import csv
import math
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator

TODAY = date(2026, 11, 23)          # a Monday, a working day
SUPERVISOR_SPAN = 20                # reps per supervisor
TERMS = (30, 30, 30, 45, 60, 60, 90)
REGIONS = ("华东", "华南", "华北", "华中", "西南", "西北", "东北")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"
NAME_PARTS = ("恒信", "明达", "顺发", "华泰", "金源", "宏远", "鑫盛", "永安", "天成", "博瑞", "汇通", "新世纪")
TRADES = ("机电", "电子科技", "贸易", "建材", "物流", "食品", "化工", "纺织", "医疗器械", "汽车配件")
CITIES = ("上海", "苏州", "广州", "深圳", "北京", "杭州", "成都", "武汉", "西安", "沈阳", "南京", "重庆")


@dataclass(frozen=True)
class Sizes:
    receivables: int = 100_000
    customers: int = 20_000
    reps: int = 1_000

    @property
    def supervisors(self) -> int:
        return max(1, math.ceil(self.reps / SUPERVISOR_SPAN))


def rep_id(i: int) -> str:
    return f"R{i:05d}"


def customer_code(i: int) -> str:
    return f"C{i:06d}"


def people_rows(sizes: Sizes, seed: int = 1) -> Iterator[dict]:
    rng = random.Random(seed * 7 + 1)
    yield {"id": "GM", "name": "周总", "role": "manager", "supervisor": "", "team": "", "wecom_userid": "wx_GM"}
    for s in range(sizes.supervisors):
        yield {"id": f"S{s:04d}", "name": f"{rng.choice(SURNAMES)}主管{s}", "role": "supervisor", "supervisor": "GM",
               "team": REGIONS[s % len(REGIONS)], "wecom_userid": f"wx_S{s:04d}"}
    for r in range(sizes.reps):
        s = r // SUPERVISOR_SPAN
        yield {"id": rep_id(r), "name": f"{rng.choice(SURNAMES)}{rng.choice(GIVEN)}{r}", "role": "rep",
               "supervisor": f"S{s:04d}", "team": REGIONS[s % len(REGIONS)], "wecom_userid": f"wx_{rep_id(r)}"}


def customer_rows(sizes: Sizes, seed: int = 1) -> Iterator[dict]:
    rng = random.Random(seed * 7 + 2)
    for c in range(sizes.customers):
        name = f"{rng.choice(CITIES)}{rng.choice(NAME_PARTS)}{rng.choice(TRADES)}有限公司{c}"
        rep = rep_id(c % sizes.reps)
        yield {"code": customer_code(c), "name": name, "grade": rng.choice("AABBBC"),
               "credit_limit": str(rng.choice((100_000, 200_000, 500_000, 1_000_000))), "rep": rep,
               "region": REGIONS[(c % sizes.reps) // SUPERVISOR_SPAN % len(REGIONS)]}


@dataclass
class Receivable:
    invoice_no: str
    customer: int
    rep: int
    issue: date
    due: date
    amount_cents: int
    currency: str
    paid_cents: int            # what payments settled (0 .. amount)
    paid_on: date | None


def receivables(sizes: Sizes, seed: int = 1) -> Iterator[Receivable]:
    rng = random.Random(seed * 7 + 3)
    for i in range(sizes.receivables):
        c = rng.randrange(sizes.customers)
        age = int(rng.triangular(0, 730, 60))            # days since issue, more recent ones more common
        issue = TODAY - timedelta(days=age)
        due = issue + timedelta(days=rng.choice(TERMS))
        amount = max(100, int(rng.lognormvariate(math.log(800_000), 1.1)))   # cents; median ¥8,000
        currency = "USD" if rng.random() < 0.05 else "CNY"
        # older invoices are more often paid; overall ~25 % paid, ~10 % partly paid
        p_paid = min(0.5, 0.05 + age / 2000)
        roll = rng.random()
        if roll < p_paid:
            paid = amount
        elif roll < p_paid + 0.10:
            paid = amount * rng.randrange(10, 90) // 100
        else:
            paid = 0
        paid_on = min(TODAY, due + timedelta(days=rng.randrange(-10, 60))) if paid else None
        if paid_on is not None and paid_on < issue:
            paid_on = issue
        yield Receivable(f"INV{i:08d}", c, c % sizes.reps, issue, due, amount, currency, paid, paid_on)


def cents_text(c: int) -> str:
    return f"{c // 100}.{c % 100:02d}"


RECEIVABLE_HEADER = ["invoice_no", "customer", "issue_date", "due_date", "amount", "currency", "rep", "terms"]


def receivable_csv_row(r: Receivable) -> list[str]:
    return [r.invoice_no, customer_code(r.customer), r.issue.isoformat(), r.due.isoformat(),
            cents_text(r.amount_cents), r.currency, rep_id(r.rep), f"月结{(r.due - r.issue).days}天"]


def write(out: Path, sizes: Sizes, seed: int = 1) -> dict[str, Path]:
    """people.csv, customers.csv, receivables.csv, payments.csv under ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{k}.csv" for k in ("people", "customers", "receivables", "payments")}
    for kind, rows in (("people", people_rows(sizes, seed)), ("customers", customer_rows(sizes, seed))):
        with paths[kind].open("w", newline="", encoding="utf-8") as f:
            w = None
            for row in rows:
                if w is None:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    w.writeheader()
                w.writerow(row)
    with paths["receivables"].open("w", newline="", encoding="utf-8") as fr, \
            paths["payments"].open("w", newline="", encoding="utf-8") as fp:
        wr, wp = csv.writer(fr), csv.writer(fp)
        wr.writerow(RECEIVABLE_HEADER)
        wp.writerow(["customer", "amount", "paid_on", "reference", "invoice_no", "currency"])
        for r in receivables(sizes, seed):
            wr.writerow(receivable_csv_row(r))
            if r.paid_cents:
                wp.writerow([customer_code(r.customer), cents_text(r.paid_cents), r.paid_on.isoformat(),
                             f"BANK{r.invoice_no}", r.invoice_no, r.currency])
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--receivables", type=int, default=100_000)
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=1_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    sizes = Sizes(min(a.receivables, 1_000_000), min(a.customers, 20_000), min(a.reps, 1_000))
    for kind, path in write(Path(a.out), sizes, a.seed).items():
        print(f"{kind:12} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
