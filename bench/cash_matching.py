"""Cash application: how many bank receipts are applied, how many wrongly, how fast.

A generated ledger (2,000 customers with place, brand, trade and legal form in their names, some
sharing a brand; about 8 open invoices each) and a 10,000-line statement in the 工商银行 layout
(GBK CSV, title rows, 合计 row) with the noise real statements have: the customer's name in full,
with another legal form or none, without its city, as a branch (…分公司), shortened, misspelt;
the boss's own account; a third party paying for the customer; a trading name or account
confirmed earlier (learned aliases, seeded); invoice numbers in the memo in several writings;
one invoice, several together, part of one, more than owed; the same bill paid twice; supplier
refunds, bank interest and debit lines.

Every line carries its truth from the generator: whose money it is (or nobody's), and whether a
careful clerk could tell from the line alone (the name or a shortening naming one customer only,
a learned alias, or invoice numbers of one customer adding up to the amount — a misspelt name
counts as determinable: a clerk would recognise it). The statement goes through
``arbot import bank``'s own path (``domain.bank_statement.read_statement`` then
``storage.bank.import_bank_statement``: matched on a read session, then written in chunks of
``storage.bank.CHUNK_LINES`` lines under an import run, on a migrated SQLite file), and the
figures are:

* applied share of the determinable lines (target ≥ 95%);
* wrong applications: a line booked to a customer other than its payer's, or booked at all when
  it is nobody's (target 0);
* duplicates (a bill paid twice) flagged and left unapplied; allocations that differ from the
  generator's intent (informational);
* lines/s for the whole import (reading, matching, booking);
* the longest write transaction it held (the time chat writes may wait behind it), and the same
  for the whole import run inside one write (``storage.bank.import_statement``, as first built)
  on a copy of the ledger in the same run, as a ratio; and how many lines the two answered
  differently (0 expected: nothing changes the ledger between the phases here).
"""
from __future__ import annotations

import asyncio
import csv
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from bench.common import Result, fresh_sqlite

D = Decimal
TODAY = date(2026, 12, 3)
NOW = datetime(2026, 12, 3, 1, 0, tzinfo=timezone.utc)
PLACES = ["深圳市", "广州市", "东莞市", "上海", "苏州市", "杭州市", "宁波市", "佛山市", "北京", "成都市", "武汉市", "厦门市",
          "无锡市", "青岛市", "南京市", "郑州市", "长沙市", "合肥市"]
BRAND_CHARS = "恒达东升华南明光宏顺发鑫源金泰永盛天成瑞丰嘉和新亚中科远航德信凯旋博越通汇正大佳美联创富贵隆昌兴荣海洋"
TRADES = ["精密机械", "精密电子", "电子科技", "贸易", "实业", "新材料", "包装材料", "五金制品", "塑胶制品", "自动化设备",
          "照明电器", "纺织", "化工", "食品", "建材", "光电科技", "医疗器械", "汽车配件", "模具", "电气"]
FORMS = ["有限公司", "有限责任公司", "股份有限公司"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英"
THIRD = ["深圳市盛世供应链管理有限公司", "广州市万通商业保理有限公司", "上海浦江融资租赁有限公司", "杭州金桥贸易代理有限公司"]
SUPPLIERS = ["宁波北仑港物流有限公司", "苏州工业园区水务有限公司", "广东电网有限责任公司东莞供电局", "中国移动通信集团广东有限公司"]


@dataclass
class Cust:
    code: str
    name: str
    place: str
    brand: str
    trade: str
    form: str
    boss: str
    boss_account: str
    account: str
    invoices: list = field(default_factory=list)     # [invoice_no, open cents, due]


@dataclass
class Truth:
    customer: str | None              # whose money (None: nobody's — refunds, interest)
    determinable: bool                # could a careful clerk tell from the line alone?
    kind: str                         # the noise applied (for the breakdown)
    intended: list[str] = field(default_factory=list)   # invoices the generator meant it to pay
    duplicate: bool = False
    debit: bool = False
    amount: str = ""                  # one_invoice | several | part | more_than_owed


def _ledger(rng: random.Random, n_customers: int, invoices_each: int):
    brands: list[str] = []
    while len(brands) < n_customers * 0.8:
        b = "".join(rng.sample(BRAND_CHARS, 2))
        if b not in brands:
            brands.append(b)
    customers: list[Cust] = []
    used: set[str] = set()
    for i in range(n_customers):
        # one in five shares a brand with another customer (恒达精密机械 / 恒达精密电子)
        brand = rng.choice(brands[: len(brands) // 4]) if i >= len(brands) else brands[i]
        for _ in range(20):
            trade, place = rng.choice(TRADES), rng.choice(PLACES)
            if brand + trade not in used:
                break
        used.add(brand + trade)
        name = place + brand + trade + rng.choice(FORMS)
        boss = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, rng.choice((1, 2))))
        c = Cust(f"K{i:05d}", name, place, brand, trade, name[len(place + brand + trade):], boss,
                 f"6217{rng.randrange(10**14):014d}", f"44{rng.randrange(10**16):016d}")
        for k in range(invoices_each + rng.randrange(-3, 4)):
            due = TODAY - timedelta(days=rng.randrange(-30, 200))
            cents = rng.choice((rng.randrange(50_000, 5_000_000), rng.randrange(100, 2000) * 10_000))
            c.invoices.append([f"FP2026-{i:05d}{k:02d}", cents, due])
        c.invoices.sort(key=lambda x: (x[2], x[0]))
        customers.append(c)
    return customers


def _writing(rng: random.Random, no: str) -> str:
    """An invoice number as payers write it in a memo."""
    digits = no.split("-")[1]
    return rng.choice([no, no.lower(), no.replace("-", ""), f"发票号：{no}", f"FP 2026 {digits}", f"发票{no}号"])


def _statement(rng: random.Random, customers: list[Cust], lines: int):
    by_name_sub = [c.name for c in customers]
    trades = {c.brand + c.trade for c in customers}

    def unique(s: str) -> bool:
        return sum(1 for n in by_name_sub if s in n) == 1

    rows: list[tuple] = []
    truths: list[Truth] = []
    paid_lines: list[tuple] = []           # (payer, account, memo, cents, cust) of lines naming invoices
    aliases: list[tuple[str, str, str]] = []   # (kind, value, code) confirmed earlier
    alias_for: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    for c in rng.sample(customers, len(customers) // 10):
        if rng.random() < 0.5 and c.brand + "商行" not in taken:     # a trading name belongs to one customer
            taken.add(c.brand + "商行")
            alias_for[c.code] = ("name", c.brand + "商行")
            aliases.append(("name", c.brand + "商行", c.code))
        else:
            alias_for[c.code] = ("account", c.boss_account)
            aliases.append(("account", c.boss_account, c.code))
    day = TODAY - timedelta(days=20)
    for n in range(lines):
        if n % 500 == 499:
            day += timedelta(days=1)
        r = rng.random()
        if r < 0.15:                                            # money out
            payee = rng.choice(SUPPLIERS)
            rows.append((day, "debit", rng.randrange(10_000, 2_000_000), payee, f"31{rng.randrange(10**16):016d}", "付款"))
            truths.append(Truth(None, False, "debit", debit=True))
            continue
        if r < 0.16:                                            # bank interest
            rows.append((day, "credit", rng.randrange(100, 50_000), "", "", "结息"))
            truths.append(Truth(None, False, "interest"))
            continue
        if r < 0.18:                                            # a supplier's refund: nobody's receivable
            rows.append((day, "credit", rng.randrange(10_000, 500_000), rng.choice(SUPPLIERS),
                         f"31{rng.randrange(10**16):016d}", "退款"))
            truths.append(Truth(None, False, "refund"))
            continue
        if r < 0.19 and paid_lines:                             # the same bill paid twice
            payer, acct, memo, cents, code = rng.choice(paid_lines)
            rows.append((day, "credit", cents, payer, acct, memo))
            truths.append(Truth(code, False, "paid_twice", duplicate=True))
            continue
        c = rng.choice([x for x in rng.sample(customers, 8) if any(i[1] > 0 for i in x.invoices)] or customers)
        open_inv = [i for i in c.invoices if i[1] > 0]
        if not open_inv:
            continue
        # the amount
        a = rng.random()
        if a < 0.45:
            chosen = [rng.choice(open_inv)]
            cents, amount_kind = chosen[0][1], "one_invoice"
        elif a < 0.65 and len(open_inv) >= 2:
            chosen = rng.sample(open_inv, min(len(open_inv), rng.choice((2, 2, 3))))
            cents, amount_kind = sum(i[1] for i in chosen), "several"
        elif a < 0.97:
            chosen = []
            cents = max(100, int(open_inv[0][1] * rng.uniform(0.2, 0.9)) // 100 * 100)
            amount_kind = "part"
        else:
            chosen = []
            cents = sum(i[1] for i in open_inv) + rng.randrange(10_000, 1_000_000)
            amount_kind = "more_than_owed"
        # the memo
        named = chosen if chosen and rng.random() < 0.35 else []
        memo = rng.choice(["货款", "", "12月货款", "往来款", "付款", "业务款"])
        if named:
            memo = rng.choice(["货款 ", "付", "", "支付"]) + "，".join(_writing(rng, i[0]) for i in named)
        # the payer
        p = rng.random()
        account = c.account
        if p < 0.22:
            payer, kind, det = c.name, "full_name", True
        elif p < 0.34:
            payer, kind, det = c.place + c.brand + c.trade + rng.choice(["有限公司", "公司", ""]), "legal_form", True
        elif p < 0.44:
            payer, kind, det = c.brand + c.trade + c.form, "no_city", True
        elif p < 0.52:
            payer, kind, det = c.name + rng.choice(["东莞", "苏州", "成都", "天津"]) + "分公司", "branch", True
        elif p < 0.64:
            payer, kind = c.brand + c.trade[:2], "short_name"
            det = unique(payer)
        elif p < 0.72:
            payer, account, kind, det = c.boss, c.boss_account, "boss_account", False
        elif p < 0.76:
            payer, account, kind, det = rng.choice(THIRD), f"31{rng.randrange(10**16):016d}", "third_party", False
        elif p < 0.78:
            s = list(c.brand)
            s[rng.randrange(2)] = rng.choice(BRAND_CHARS)
            typo = "".join(s)
            if typo == c.brand or typo + c.trade in trades:
                payer, kind, det = c.name, "full_name", True     # the "typo" is a real name: not a typo
            else:
                payer, kind, det = c.place + typo + c.trade + c.form, "misspelt", True
        elif c.code in alias_for:
            kind_, value = alias_for[c.code]
            if kind_ == "name":
                payer, kind, det = value, "learned_name", True
            else:
                payer, account, kind, det = c.boss, value, "learned_account", True
        else:
            payer, kind, det = c.name, "full_name", True
        if not det and named and sum(i[1] for i in named) == cents:
            det = True                       # the memo's invoices and the exact amount say whose it is
        rows.append((day, "credit", cents, payer, account, memo))
        truths.append(Truth(c.code, det, kind, intended=[i[0] for i in chosen], amount=amount_kind))
        if named:
            paid_lines.append((payer, account, memo, cents, c.code))
        if det:
            left = cents
            for i in (chosen or []) + [i for i in open_inv if i not in chosen]:
                take = min(left, i[1])
                i[1] -= take
                left -= take
    return rows, truths, aliases


def _write_csv(path: Path, rows: list[tuple]) -> None:
    with path.open("w", encoding="gbk", newline="") as f:
        w = csv.writer(f)
        w.writerow(["中国工商银行账户历史明细"])
        w.writerow(["账号：6222020200112233445", "户名：本公司"])
        w.writerow(["凭证号", "交易时间", "借方发生额", "贷方发生额", "对方账号", "对方单位名称", "摘要", "用途"])
        credit = debit = 0
        for n, (day, dirn, cents, payer, acct, memo) in enumerate(rows, 1):
            amt = f"{D(cents) / 100:,.2f}"
            credit += cents if dirn == "credit" else 0
            debit += cents if dirn == "debit" else 0
            w.writerow([f"B{n:07d}", day.strftime("%Y%m%d") + " 10:00:00", amt if dirn == "debit" else "",
                        amt if dirn == "credit" else "", acct, payer, "转账", memo])
        w.writerow(["合计", "", f"{D(debit) / 100:,.2f}", f"{D(credit) / 100:,.2f}"])


async def _load(url: str, customers: list[Cust], original: dict[str, list], aliases) -> None:
    from storage.db import Database
    from storage.models import BankAlias, Customer, Person, Receivable
    from domain.cash_matching import normalise_name
    db = Database(url)
    async with db.session() as s, s.begin():
        for i in range(20):
            s.add(Person(id=f"r{i}", name=f"业务员{i}", role="rep", team="销售"))
        await s.flush()
        ids = {}
        for k, c in enumerate(customers):
            row = Customer(code=c.code, name=c.name, rep_id=f"r{k % 20}", region="华东")
            s.add(row)
            ids[c.code] = row
        await s.flush()
        for c in customers:
            for no, cents, due in original[c.code]:
                s.add(Receivable(invoice_no=no, contract_no="", customer_id=ids[c.code].id, rep_id=ids[c.code].rep_id,
                                 issue_date=due - timedelta(days=30), due_date=due, amount=D(cents) / 100,
                                 open_amount=D(cents) / 100, currency="CNY", created_at=NOW))
        for kind, value, code in aliases:
            s.add(BankAlias(kind=kind, value=normalise_name(value) if kind == "name" else value,
                            customer_id=ids[code].id, created_by="fin", created_at=NOW))
    await db.close()


async def _import(url: str, path: Path, *, one_transaction: bool = False):
    """The import as ``arbot import bank`` runs it (matching on a read session, then short
    writes of a chunk each), or ``one_transaction``: everything inside one write, as it was first built. Returns
    the result, the whole import's seconds and the longest write transaction's seconds."""
    from domain.bank_statement import read_statement
    from storage.bank import import_bank_statement, import_statement
    from storage.db import Database
    db = Database(url)
    writes: list[float] = []
    write = db.write

    async def timed(work, **kw):
        t0 = time.perf_counter()
        try:
            return await write(work, **kw)
        finally:
            writes.append(time.perf_counter() - t0)
    db.write = timed
    t = time.perf_counter()
    st = read_statement(path, TODAY)
    assert not st.errors, st.errors[:3]
    if one_transaction:
        result = await db.write(lambda s: import_statement(s, st, file_name=path.name, account="", actor="bench",
                                                           now=NOW))
    else:
        result = await import_bank_statement(db, st, file_name=path.name, account="", actor="bench", now=NOW)
    elapsed = time.perf_counter() - t
    await db.close()
    return result, elapsed, max(writes)


def run(lines: int = 10_000, customers: int = 2_000, seed: int = 16, workdir: Path | None = None,
        compare: bool = True) -> Result:
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="arbot-cash-") as tmp:
            return run(lines, customers, seed, Path(tmp), compare)
    rng = random.Random(seed)
    book = _ledger(rng, customers, 8)
    original = {c.code: [list(i) for i in c.invoices] for c in book}
    rows, truths, aliases = _statement(rng, book, lines)
    work = workdir
    path = work / "statement.csv"
    _write_csv(path, rows)
    url = fresh_sqlite(work / "cash.db")
    asyncio.run(_load(url, book, original, aliases))
    before = None
    if compare:
        # the same ledger in a second file, imported the first way (everything in one write), for
        # the longest write transaction before and after, in the same run
        url_before = fresh_sqlite(work / "cash-before.db")
        asyncio.run(_load(url_before, book, original, aliases))
        before = asyncio.run(_import(url_before, path, one_transaction=True))
    result, elapsed, longest_write = asyncio.run(_import(url, path))
    assert len(result.lines) == len(truths)
    det = applied = wrong = dup_flagged = dups = alloc_diff = applied_total = 0
    by_kind: dict[str, list[int]] = {}
    by_amount: dict[str, list[int]] = {}
    wrong_examples = []
    for res, t in zip(result.lines, truths):
        if res.status == "applied":
            applied_total += 1
            if res.customer != t.customer or t.duplicate:
                wrong += 1
                if len(wrong_examples) < 5:
                    wrong_examples.append(f"{t.kind}: {res.payer} → {res.customer} (truth {t.customer}) {res.reasons}")
        if t.duplicate:
            dups += 1
            dup_flagged += "duplicate_payment" in res.anomalies and res.status != "applied"
            continue
        if t.determinable and not t.debit:
            det += 1
            k = by_kind.setdefault(t.kind, [0, 0])
            a = by_amount.setdefault(t.amount, [0, 0])
            k[0] += 1
            a[0] += 1
            if res.status == "applied" and res.customer == t.customer:
                applied += 1
                k[1] += 1
                a[1] += 1
                if t.intended and sorted(no for no, _ in res.allocations[:len(t.intended)]) != sorted(t.intended):
                    alloc_diff += 1
    r = Result("cash-matching")
    r.add(lines=len(truths), customers=customers, determinable=det, applied=applied,
          applied_pct=round(100 * applied / det, 2) if det else 0.0, wrong=wrong, applied_all=applied_total,
          duplicates=dups, duplicates_flagged=dup_flagged, allocation_differs=alloc_diff,
          seconds=round(elapsed, 2), lines_per_s=round(len(truths) / elapsed, 1),
          longest_write_s=round(longest_write, 2))
    if before is not None:
        b_result, b_elapsed, b_write = before
        differ = sum((x.status, x.customer, x.allocations) != (y.status, y.customer, y.allocations)
                     for x, y in zip(b_result.lines, result.lines))
        r.rows[-1].update(one_transaction_seconds=round(b_elapsed, 2), one_transaction_write_s=round(b_write, 2),
                          write_ratio=round(b_write / longest_write, 2) if longest_write else None,
                          lines_differing_from_one_transaction=differ)
    r.notes.append("determinable lines applied, by kind: " + ", ".join(
        f"{k} {v[1]}/{v[0]}" for k, v in sorted(by_kind.items())))
    r.notes.append("determinable lines applied, by amount: " + ", ".join(
        f"{k} {v[1]}/{v[0]}" for k, v in sorted(by_amount.items())))
    r.notes.append("undeterminable lines (boss's account, third parties without exact invoice numbers, shortenings "
                   "shared by two customers) are left unclaimed with suggestions by design")
    for w in wrong_examples:
        r.notes.append("wrong: " + w)
    return r


if __name__ == "__main__":
    import sys
    res = run(*(int(a) for a in sys.argv[1:3]))
    res.print()
    print(f"  saved {res.save()}")
