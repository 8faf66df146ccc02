"""A believable demo company (演示数据): people, customers, a 15-month ledger, payments, and the
collection work around it (disputes, promises, follow-ups, write-offs).

Everything is drawn from ``random.Random(seed)`` and the given ``today``/``now``: the same seed and
dates give the same company, row for row. Demo data only goes into an empty database
(:func:`database_is_empty`); :func:`load_demo` refuses otherwise.

How the overdue picture is made
-------------------------------
Invoices are spread over the ~15 months before ``today``. Their open balances are then *planned*
so the aging looks like a real distributor's (roughly not due 35%, 1–30 25%, 31–60 15%, 61–90 10%,
90+ 15% of the open balance): the not-yet-due invoices set the scale, each overdue bucket gets its
share of the total, and invoices of risky customers (younger ones first in 90+) are left open
until the bucket reaches its share. Every other invoice is paid, on or after its due date, in one
or two transfers, or in the 30/60/10 stages of a 预付/到货/质保 contract.

Why payments are not all booked through ``ledger.record_payment``
-------------------------------------------------------------------
``record_payment`` costs ~4 statements per payment (reference check, invoice lookup, flush, open
items of the customer); 3,000 invoices have ~5,000 payments, which would take tens of seconds on
SQLite. So payments dated more than ``LEDGER_DAYS`` before ``today`` (the settled history) are
booked here directly, in bulk: each names exactly one invoice and never exceeds its open balance,
and for such a payment ``record_payment`` allocates the whole amount to the named invoice and
nothing elsewhere. So each gets one allocation of its full amount, ``unallocated`` is 0, and the
receivable is inserted with ``open_amount = amount − Σ those allocations`` and the status
``ledger.refresh_status`` gives. That history is one import, recorded by one ``demo.load`` audit
entry. Payments of the last ``LEDGER_DAYS`` days (finance's recent bank imports) and the write-offs
go through ``ledger.record_payment`` / ``ledger.apply_write_off`` themselves, with their audit
entries. The invariants (open = amount − allocations − write-offs; unallocated = amount −
allocations) are checked by tests/test_demo.py, against ``ledger.balance_check`` among others.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, ledger
from storage.followups import log_followup
from storage.models import (Allocation, Contact, Customer, Dispute, Payment, Person, PersonAccount,
                            Promise, Receivable, WriteOff)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MANAGER_CHAT = "mgmt"
SPAN_DAYS = 456                 # invoices over the last ~15 months
LEDGER_DAYS = 14                # payments this recent (two weeks of bank imports) go through ledger.record_payment
PLAN_USD_RATE = Decimal("7.1")  # only to weigh USD invoices when planning the aging shape
BUCKET_SHARES = (Decimal("0.35"), Decimal("0.25"), Decimal("0.15"), Decimal("0.10"), Decimal("0.15"))
STAGED = "预付30%/到货60%/质保10%"
# (terms, days from issue to due, weight). 货到付款: due when the goods arrive, about a week;
# staged: the last 10% (质保金) falls due after a 90-day warranty period.
TERMS = (("月结30天", 30, 40), ("月结60天", 60, 30), ("货到付款", 7, 15), (STAGED, 90, 15))
TERM_DAYS = {t: d for t, d, _ in TERMS}

# -- vocabulary (data) -----------------------------------------------------------------------

TEAMS = (  # team/region, supervisor id suffix, cities of the region
    ("华东", "hd", ("上海", "苏州", "杭州", "南京", "宁波", "无锡", "合肥", "常州", "温州", "绍兴")),
    ("华南", "hn", ("广州", "深圳", "东莞", "佛山", "厦门", "珠海", "中山", "福州", "惠州", "汕头")),
    ("华北", "hb", ("北京", "天津", "石家庄", "济南", "青岛", "太原", "唐山", "保定", "烟台", "廊坊")),
    ("西南", "xn", ("成都", "重庆", "昆明", "贵阳", "绵阳", "宜宾", "遵义", "南充", "德阳", "泸州")),
)
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程"
            "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯史陶贺顾毛郝龚邵")
# two-character given names only: ordinary, and unlikely to spell a well-known person
GIVEN_NAMES = ("建华", "晓东", "志强", "海燕", "文博", "思远", "雪梅", "欣怡", "建国", "秀英", "玉兰", "春梅",
               "晓燕", "宏伟", "丽娟", "红霞", "立新", "志明", "文静", "博文", "晓峰", "建平", "丽萍", "永刚",
               "桂芳", "晓丽", "建军", "海波", "春燕", "亚楠", "晓军", "振宇", "嘉怡", "子豪", "雨婷", "明辉",
               "晓婷", "志勇", "俊峰", "静怡", "佳慧", "凤英", "玉梅", "德明", "绍华", "锦程", "瑞峰", "家豪",
               "伟东", "丽华", "永强", "红梅", "海峰", "雅琴", "艳红", "金凤", "婉婷", "梦瑶", "少军", "国平")
BRANDS = ("恒信", "明达", "顺发", "宏远", "鑫源", "华瑞", "中科", "金鼎", "永盛", "天成", "嘉禾", "博远", "东升",
          "新锐", "盛世", "汇通", "凯达", "瑞丰", "众诚", "安泰", "远航", "卓越", "利华", "广源", "恒达", "聚鑫",
          "正泰", "德隆", "海纳", "银河", "长兴", "富达", "百川", "华光", "三和", "隆基", "宏图", "精工", "日升",
          "万通", "协力", "天佑", "祥和", "捷诚", "立信", "宝丰", "兴旺", "鼎盛", "佳成", "润泽", "诚信", "昌隆",
          "金桥", "新纪元", "大华", "晨光", "同创", "思源", "惠民", "铭扬")
INDUSTRIES = ("机电", "电子科技", "贸易", "五金", "照明电器", "建材", "化工", "包装材料", "精密机械", "新能源科技",
              "汽车配件", "塑胶制品", "电气设备", "光电科技", "自动化设备", "医疗器械", "食品", "纺织", "家具",
              "物流", "工程", "网络科技", "钢结构", "环保科技", "酒店用品")
CROSS_BORDER_INDUSTRIES = ("进出口", "国际贸易", "跨境电商", "国际物流")
SUFFIXES = (("有限公司", 70), ("股份有限公司", 12), ("有限责任公司", 10), ("实业有限公司", 8))
STAFF = (  # id, role, title, supervisor
    ("gm", "manager", "总经理", None),
    ("director", "manager", "销售总监", "gm"),
    ("fin1", "finance", "财务经理", "gm"),
    ("fin2", "finance", "应收会计", "fin1"),
    ("fin3", "finance", "出纳", "fin1"),
    ("legal1", "legal", "法务专员", "gm"),
    ("audit1", "auditor", "审计专员", "gm"),
    ("admin", "admin", "系统管理员", "gm"),
)
DISPUTE_REASONS = ("发票抬头错误，要求重开", "质量问题待检测", "送货数量与对账单不符", "单价与合同不一致",
                   "部分货物退货，待开红字发票", "税率开错，需重开专票", "客户称未收到发票原件")
WRITE_OFF_REASONS = ("债务人已破产清算，经法务确认无可执行财产", "客户已被工商注销，股东下落不明，经法务确认无法追偿")
CONTACTED_TEXTS = ("已电话联系{c}，对方说财务在走付款流程，这周内给答复",
                   "已把对账单发给{c}，金额确认无误，等老板签字",
                   "上门拜访了客户，{c}说资金紧张，下周一给付款计划",
                   "{c}说款项已提交审批，OA流程还没走完",
                   "微信联系了{c}，说月底统一安排付款")
PROMISE_ALL_TEXTS = ("{c}承诺{d}前付清{a}元", "和{c}对完账了，{d}安排付款{a}元",
                     "已电话联系{c}，说{d}前一次性付清")
PROMISE_HALF_TEXTS = ("已电话联系{c}，答应{d}前付一半", "客户说最近回款慢，{d}先付{a}元，剩余月底前结清",
                      "{c}说资金周转紧张，{d}前先付一半")
UNREACHABLE_TEXTS = ("联系不上，电话关机", "打了三次电话都没人接，微信也没回", "{c}出差了，前台说下周回来再联系",
                     "{c}电话一直占线，已发短信留言")


def _by_weight(rng: random.Random, pairs):
    items, weights = zip(*pairs)
    return rng.choices(items, weights=weights)[0]


@dataclass
class DemoSummary:
    people: int
    customers: int
    contacts: int
    receivables: int
    payments: int
    allocations: int
    disputes: int
    promises_open: int
    promises_broken: int
    followups: int
    write_offs: int
    people_ids: dict[str, list[str]]               # role → person ids (the web chat's person picker)
    teams: dict[str, list[str]]                    # team → rep ids
    amount_by_currency: dict[str, Decimal] = field(default_factory=dict)
    open_by_currency: dict[str, Decimal] = field(default_factory=dict)
    manager_chat: str = MANAGER_CHAT

    def counts(self) -> dict[str, int]:
        """The rows made, by kind (``arbot demo-data`` prints them)."""
        return {k: getattr(self, k) for k in ("people", "customers", "contacts", "receivables", "payments",
                                              "allocations", "disputes", "promises_open", "promises_broken",
                                              "followups", "write_offs")}


class DemoError(RuntimeError):
    """The demo cannot be loaded (the database already holds data)."""


async def database_is_empty(session: AsyncSession) -> bool:
    """True when there are no people and no receivables: only then may demo data go in."""
    has_people = (await session.execute(select(Person.id).limit(1))).first() is not None
    has_receivables = (await session.execute(select(Receivable.id).limit(1))).first() is not None
    return not has_people and not has_receivables


# -- planning (pure Python, no database) --------------------------------------------------------

@dataclass
class _Inv:
    cust: int                   # index into the customer list
    issue: date
    due: date
    amount: Decimal
    currency: str
    terms: str
    stages: list[Decimal]       # what falls due when; one element unless staged
    arrival: date               # staged: when the 60% arrival payment is made
    invoice_no: str = ""
    contract_no: str = ""
    open: Decimal = ZERO        # planned open balance before any write-off
    payments: list[tuple[date, Decimal]] = field(default_factory=list)
    write_off: bool = False
    in_legal: bool = False
    receivable: Receivable | None = None

    def dpd(self, today: date) -> int:
        return (today - self.due).days

    def bucket(self, today: date) -> int:
        d = self.dpd(today)
        return 0 if d <= 0 else 1 if d <= 30 else 2 if d <= 60 else 3 if d <= 90 else 4


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _round_down(value: Decimal, step: int) -> Decimal:
    """Round down to a whole step (1000 → 5万-style transfers) when that leaves something."""
    r = (value / step).to_integral_value(rounding=ROUND_DOWN) * step
    return _cents(r) if r > 0 else _cents(value)


def _clip(d: date, lo: date, hi: date) -> date:
    return max(lo, min(d, hi))


class _Names:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def person(self) -> str:
        for _ in range(200):
            name = self.rng.choice(SURNAMES) + self.rng.choice(GIVEN_NAMES)
            if name not in self.used:
                self.used.add(name)
                return name
        raise DemoError("ran out of distinct names")

    def contact(self) -> str:
        surname = self.rng.choice(SURNAMES)
        if self.rng.random() < 0.6:
            return surname + self.rng.choice(("先生", "女士"))
        return surname + self.rng.choice(GIVEN_NAMES)


def _pinyin(name: str) -> str:
    try:
        from pypinyin import lazy_pinyin
        return "".join(lazy_pinyin(name))
    except Exception:  # pragma: no cover - pypinyin is a dependency; the fallback keeps emails valid
        return "user"


def _plan_people(rng: random.Random, reps: int) -> list[dict]:
    names = _Names(rng)
    people: list[dict] = []
    for pid, role, title, sup in STAFF:
        people.append(dict(id=pid, name=names.person(), role=role, supervisor_id=sup, team="", title=title))
    for team, suffix, _cities in TEAMS:
        people.append(dict(id=f"sup_{suffix}", name=names.person(), role="supervisor", supervisor_id="director",
                           team=team, title=f"{team}销售经理"))
    for i in range(reps):
        team, suffix, _cities = TEAMS[i * len(TEAMS) // reps] if reps >= len(TEAMS) else TEAMS[i]
        people.append(dict(id=f"rep{i + 1:02d}", name=names.person(), role="rep", supervisor_id=f"sup_{suffix}",
                           team=team, title="销售专员"))
    emails: set[str] = set()
    for n, p in enumerate(people, start=1):
        base = _pinyin(p["name"])
        email, k = base, 2
        while email in emails:
            email, k = f"{base}{k}", k + 1
        emails.add(email)
        p.update(mobile=f"1380000{n:04d}", email=f"{email}@example.com")
    return people


def _plan_customers(rng: random.Random, n: int, rep_people: list[dict]) -> list[dict]:
    grades = ["A"] * round(n * 0.15) + ["C"] * round(n * 0.30)
    grades += ["B"] * (n - len(grades))
    grades = grades[:n]
    rng.shuffle(grades)
    n_cross = max(1, round(n * 0.03)) if n >= 10 else 0
    cross = set(rng.sample(range(n), n_cross))
    names_used: set[str] = set()
    contact_names = _Names(rng)
    width = max(4, len(str(n)))
    customers: list[dict] = []
    for i in range(n):
        rep = rep_people[i % len(rep_people)] if rng.random() < 0.7 else rng.choice(rep_people)
        cities = next(c for t, _s, c in TEAMS if t == rep["team"])
        is_cross = i in cross
        industries = CROSS_BORDER_INDUSTRIES if is_cross else INDUSTRIES
        for attempt in range(500):
            brand = rng.choice(BRANDS) + (rng.choice(BRANDS) if attempt > 100 else "")
            industry = rng.choice(industries)
            suffix = _by_weight(rng, SUFFIXES)
            if industry.endswith("科技") and suffix == "实业有限公司":
                suffix = "有限公司"
            name = rng.choice(cities) + brand + industry + suffix
            if name not in names_used:
                break
        else:  # pragma: no cover - only for absurd customer counts
            raise DemoError("ran out of distinct company names")
        names_used.add(name)
        grade = grades[i]
        lo, hi = {"A": (1000, 5000), "B": (200, 1000), "C": (50, 200)}[grade]
        code = f"C{i + 1:0{width}d}"
        contact = contact_names.contact()
        surname_py = _pinyin(contact[0])
        customers.append(dict(
            code=code, name=name, grade=grade, credit_limit=Decimal(rng.randint(lo, hi) * 1000),
            rep_id=rep["id"], region=rep["team"], cross_border=is_cross,
            risk=rng.uniform(0.3, 1.2) * {"A": 0.7, "B": 1.0, "C": 1.8}[grade],
            terms=STAGED if is_cross and rng.random() < 0.5 else _by_weight(rng, [(t, w) for t, _d, w in TERMS]),
            contact=dict(name=contact, mobile=f"1390000{i + 1:04d}" if i < 9999 else f"1370000{i % 10000:04d}",
                         email=f"{surname_py}.{code.lower()}@example.com",
                         channel="sms" if rng.random() < 0.08 else "email"),
        ))
    return customers


def _amount(rng: random.Random, grade: str, currency: str) -> Decimal:
    if currency == "USD":
        lo, hi = 800, 60_000
    elif rng.random() < {"A": 0.16, "B": 0.07, "C": 0.02}[grade]:
        lo, hi = 100_000, 500_000
    else:
        lo, hi = 5_000, 80_000
    # log-uniform: most invoices are small, a few are large (the shape, not money: made exact below)
    yuan = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    style = rng.random()
    if style < 0.35:
        cents = int(yuan / 100) * 10_000           # round hundreds
    elif style < 0.6:
        cents = int(yuan) * 100                    # whole yuan
    else:
        cents = int(yuan * 100)                    # with fen
    return (Decimal(max(cents, lo * 100)) / 100).quantize(CENT)


def _plan_invoices(rng: random.Random, n: int, customers: list[dict], today: date) -> list[_Inv]:
    domestic = [i for i, c in enumerate(customers) if not c["cross_border"]] or list(range(len(customers)))
    cross = [i for i, c in enumerate(customers) if c["cross_border"]]
    n_usd = round(n * 0.02) if cross else 0

    def cum(idx: list[int]) -> list[float]:
        total, out = 0.0, []
        for i in idx:
            total += {"A": 4.0, "B": 2.0, "C": 1.0}[customers[i]["grade"]] * rng.uniform(0.5, 1.5)
            out.append(total)
        return out

    dom_cum, cross_cum = cum(domestic), cum(cross)
    invoices: list[_Inv] = []
    start = today - timedelta(days=SPAN_DAYS - 1)
    for k in range(n):
        usd = k < n_usd
        ci = rng.choices(cross, cum_weights=cross_cum)[0] if usd else rng.choices(domestic, cum_weights=dom_cum)[0]
        c = customers[ci]
        # a little more business lately (the company grows); invoices are issued on weekdays
        issue = today - timedelta(days=int(SPAN_DAYS * rng.random() ** 1.15))
        if issue.weekday() >= 5:
            issue -= timedelta(days=issue.weekday() - 4)
        issue = max(issue, start)
        terms = c["terms"] if rng.random() < 0.85 else _by_weight(rng, [(t, w) for t, _d, w in TERMS])
        currency = "USD" if usd else "CNY"
        amount = _amount(rng, c["grade"], currency)
        if terms == STAGED:
            s1, s2 = _cents(amount * Decimal("0.3")), _cents(amount * Decimal("0.6"))
            stages = [s1, s2, amount - s1 - s2]
        else:
            stages = [amount]
        invoices.append(_Inv(cust=ci, issue=issue, due=issue + timedelta(days=TERM_DAYS[terms]), amount=amount,
                             currency=currency, terms=terms, stages=stages,
                             arrival=issue + timedelta(days=rng.randint(5, 20))))
    invoices.sort(key=lambda v: v.issue)          # stable: ties keep their drawing order
    fp_seq: dict[int, int] = {}
    ht_seq: dict[int, int] = {}
    current_contract: dict[int, tuple[int, str]] = {}
    for v in invoices:
        y = v.issue.year
        fp_seq[y] = fp_seq.get(y, rng.randint(100, 900)) + 1
        v.invoice_no = f"FP{y}{fp_seq[y]:05d}"
        cur = current_contract.get(v.cust)
        if cur is None or cur[0] != y or rng.random() < 0.45:
            ht_seq[y] = ht_seq.get(y, rng.randint(10, 300)) + 1
            cur = (y, f"HT-{y}-{ht_seq[y]:04d}")
            current_contract[v.cust] = cur
        v.contract_no = cur[1]
    return invoices


def _weighted_order(rng: random.Random, items: list[_Inv], weight) -> list[_Inv]:
    """A weighted shuffle (Efraimidis–Spirakis): heavier items tend to come first."""
    keyed = [(rng.random() ** (1.0 / weight(v)), i) for i, v in enumerate(items)]
    keyed.sort(reverse=True)
    return [items[i] for _k, i in keyed]


def _open_choice(rng: random.Random, v: _Inv) -> Decimal:
    """How much of an overdue invoice is still open when it is one of the unpaid ones."""
    if len(v.stages) == 3:
        return v.stages[2] if rng.random() < 0.75 else v.stages[1] + v.stages[2]   # 质保金, or 到货款 too
    if rng.random() < 0.55:
        return v.amount
    paid = _round_down(v.amount * (1 - Decimal(rng.choice(("0.3", "0.5", "0.6", "0.7", "0.8")))), 1000)
    return v.amount - paid if paid < v.amount else v.amount


def _plan_balances(rng: random.Random, invoices: list[_Inv], customers: list[dict], today: date) -> None:
    """Decide every invoice's open balance so the aging has the intended shape."""
    # 1–2 very old invoices go to the write-off register
    n_wo = 2 if len(invoices) >= 1000 else 1 if len(invoices) >= 20 else 0
    old = sorted((v for v in invoices if v.currency == "CNY" and len(v.stages) == 1 and v.dpd(today) > 90),
                 key=lambda v: -v.dpd(today))
    picks = [v for v in old[:40] if v.amount < 50_000][:1] + [v for v in old[:80] if 50_000 <= v.amount < 200_000][:1]
    for v in (picks or old[:1])[:n_wo]:
        v.write_off, v.open = True, v.amount

    by_bucket: list[list[_Inv]] = [[], [], [], [], []]
    for v in invoices:
        if not v.write_off:
            by_bucket[v.bucket(today)].append(v)
    # not yet due: open unless paid early; staged contracts have their prepayment (and arrival payment)
    for v in by_bucket[0]:
        v.open = v.stages[-1] + (v.stages[1] if v.arrival > today else ZERO) if len(v.stages) == 3 else v.amount
    natural = sum((v.open * (PLAN_USD_RATE if v.currency == "USD" else 1) for v in by_bucket[0]), ZERO)
    capacity = [sum(((v.stages[1] + v.stages[2] if len(v.stages) == 3 else v.amount)
                     * (PLAN_USD_RATE if v.currency == "USD" else 1) for v in b), ZERO) for b in by_bucket]
    limits = [natural / BUCKET_SHARES[0]] if natural > 0 else []
    limits += [capacity[b] * Decimal("0.8") / BUCKET_SHARES[b] for b in range(1, 5) if capacity[b] > 0]
    total = min(limits) if limits else ZERO
    targets = [total * s for s in BUCKET_SHARES]

    # pay some not-yet-due invoices early until the bucket is at its share
    current = natural
    week_ago = today - timedelta(days=7)
    for v in _weighted_order(rng, [v for v in by_bucket[0] if len(v.stages) == 1 and v.issue <= week_ago],
                             lambda v: 1.0):
        if current <= targets[0]:
            break
        before = v.open
        v.open = ZERO if rng.random() < 0.7 else v.amount - _round_down(v.amount / 2, 1000)
        current -= (before - v.open) * (PLAN_USD_RATE if v.currency == "USD" else 1)

    for b in range(1, 5):
        if b == 4:   # in 90+, younger debts are likelier to be open than very old ones
            def w(v, c=customers): return c[v.cust]["risk"] / (1 + max(0, v.dpd(today) - 90) / 45)
        else:
            def w(v, c=customers): return c[v.cust]["risk"]
        acc = ZERO
        for v in _weighted_order(rng, by_bucket[b], w):
            if acc >= targets[b]:
                break
            o = _open_choice(rng, v)
            ow = o * (PLAN_USD_RATE if v.currency == "USD" else 1)
            if acc > 0 and acc + ow > targets[b] * Decimal("1.08"):
                continue                     # too big to fit: try a smaller one
            v.open, acc = o, acc + ow
        if acc == 0 and by_bucket[b]:        # tiny ledgers: still show something in every bucket
            v = min(by_bucket[b], key=lambda v: v.amount)
            v.open = _open_choice(rng, v)


def _plan_payments(rng: random.Random, v: _Inv, today: date) -> None:
    """Transfers that leave the planned open balance: stage by stage, or one or two payments."""
    paid = v.amount - v.open
    if paid <= 0:
        return
    lo = v.issue
    if len(v.stages) == 3:
        dates = [v.issue, _weekday(_clip(v.arrival, lo, today), lo, today),
                 _pay_day(rng, v.due + timedelta(days=rng.randint(-5, 40)), lo, today, v.due)]
        dates[2] = max(dates[2], dates[1])
        left = paid
        for d, stage in zip(dates, v.stages):
            amt = min(stage, left)
            if amt > 0:
                v.payments.append((d, amt))
                left -= amt
        return
    if v.open == 0:
        r = rng.random()
        delay = (rng.randint(-10, 0) if r < 0.45 else rng.randint(1, 30) if r < 0.8
                 else rng.randint(31, 90) if r < 0.95 else rng.randint(91, 180))
        when = _pay_day(rng, v.due + timedelta(days=delay), lo, today, v.due)
    else:                                     # partly paid: some time between issue and today
        when = _weekday(lo + timedelta(days=rng.randint(0, (today - lo).days)), lo, today)
    if rng.random() < 0.2 and paid >= 2000:
        first = _round_down(paid / 2, 1000)
        earlier = _weekday(_clip(when - timedelta(days=rng.randint(5, 30)), lo, today), lo, when)
        v.payments += [(earlier, first), (when, paid - first)]
    else:
        v.payments.append((when, paid))


def _weekday(d: date, lo: date, today: date | None = None) -> date:
    """Banks book transfers on working days: Saturday moves to Friday, Sunday to Monday
    (to Friday when that Monday is still ahead); never before lo."""
    if d.weekday() == 6 and (today is None or d + timedelta(days=1) <= today):
        return d + timedelta(days=1)
    return max(d - timedelta(days=max(0, d.weekday() - 4)), lo)


def _pay_day(rng: random.Random, wanted: date, lo: date, today: date, due: date) -> date:
    """The planned day, or, if that is still ahead, a day from shortly before the due date up
    to today (the invoice is planned as paid, so the money came in sooner; not all of it today)."""
    if wanted > today:
        start = max(lo, min(due - timedelta(days=10), today - timedelta(days=20)))
        wanted = start + timedelta(days=rng.randint(0, (today - start).days))
    return _weekday(_clip(wanted, lo, today), lo, today)


# -- loading --------------------------------------------------------------------------------------

def _at(d: date, now: datetime, hour: int, minute: int = 0) -> datetime:
    """A business-hours timestamp on day d, in now's timezone, never after now."""
    return min(datetime.combine(d, time(hour, minute), tzinfo=now.tzinfo), now)


async def load_demo(session: AsyncSession, *, today: date, now: datetime, seed: int = 7, reps: int = 12,
                    customers: int = 200, receivables: int = 3000, platforms: Sequence[str] = ()) -> DemoSummary:
    """Fill an empty database with a demo company; the caller owns the transaction.
    ``platforms``: chat platforms on which everyone gets an account, "<platform>_<person id>"
    (the demo's follow-ups say they came on the first of them, else on the local chat)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if reps < 1 or customers < 1 or receivables < 0:
        raise ValueError("need at least one rep and one customer")
    if not await database_is_empty(session):
        raise DemoError("the database already holds people or receivables; demo data only goes into an empty one")
    rng = random.Random(seed)

    # --- plan everything first (deterministic, no I/O) ---
    people_plan = _plan_people(rng, reps)
    rep_plan = [p for p in people_plan if p["role"] == "rep"]
    cust_plan = _plan_customers(rng, customers, rep_plan)
    invoices = _plan_invoices(rng, receivables, cust_plan, today)
    _plan_balances(rng, invoices, cust_plan, today)
    for v in invoices:
        _plan_payments(rng, v, today)

    cutoff = today - timedelta(days=LEDGER_DAYS)
    legal_picks = sorted((v for v in invoices if v.open > 0 and not v.write_off and v.bucket(today) == 4
                          and v.currency == "CNY"), key=lambda v: -v.open)[:max(1, receivables // 1000)]
    frozen: set[int] = set()
    for v in legal_picks:       # legal has taken these over; the customer's new orders are frozen
        v.in_legal = True
        frozen.add(v.cust)

    # --- write ---
    # Bulk INSERTs without RETURNING: with RETURNING (the unit of work, or sort_by_parameter_order)
    # SQLAlchemy sends SQLite one statement per row; a plain executemany is one. Ids are read back
    # by the natural keys (customer code, invoice number, bank reference), which are unique.
    session.add_all([Person(id=p["id"], name=p["name"], role=p["role"], supervisor_id=p["supervisor_id"],
                            team=p["team"], mobile=p["mobile"], email=p["email"], active=True) for p in people_plan])
    await session.flush()
    if platforms:
        await session.execute(insert(PersonAccount), [dict(platform=platform, user_id=f"{platform}_{p['id']}",
                                                           person_id=p["id"])
                                                      for p in people_plan for platform in platforms])
    await session.execute(insert(Customer), [
        dict(code=c["code"], name=c["name"], grade=c["grade"], credit_limit=c["credit_limit"], rep_id=c["rep_id"],
             region=c["region"], cross_border=c["cross_border"], status="frozen" if i in frozen else "active",
             # a third of the contracts carry the standard late-fee clause (not drawn: the rest of
             # the demo stays as the seed makes it)
             late_fee_rate="standard" if i % 3 == 0 else "",
             broken_promises=0) for i, c in enumerate(cust_plan)])
    by_code = {c.code: c for c in (await session.execute(select(Customer))).scalars()}
    cust_rows = [by_code[c["code"]] for c in cust_plan]
    await session.execute(insert(Contact), [
        dict(customer_id=row.id, name=c["contact"]["name"], mobile=c["contact"]["mobile"],
             email=c["contact"]["email"], channel=c["contact"]["channel"]) for row, c in zip(cust_rows, cust_plan)])

    # receivables go in with the balance their settled history leaves (see module doc)
    rec_rows = []
    for v in invoices:
        historic = sum((a for d, a in v.payments if d <= cutoff), ZERO)
        probe = Receivable(amount=v.amount, open_amount=v.amount - historic, status="open")   # not added
        ledger.refresh_status(probe)
        rec_rows.append(dict(invoice_no=v.invoice_no, contract_no=v.contract_no, customer_id=cust_rows[v.cust].id,
                             rep_id=cust_plan[v.cust]["rep_id"], issue_date=v.issue, due_date=v.due, amount=v.amount,
                             open_amount=probe.open_amount, currency=v.currency, terms=v.terms,
                             status="in_legal" if v.in_legal else probe.status, disputed=False,
                             created_at=_at(v.issue, now, 9, rng.randint(0, 59))))
    if rec_rows:
        await session.execute(insert(Receivable), rec_rows)
    by_invoice = {r.invoice_no: r for r in (await session.execute(select(Receivable))).scalars()}
    for v in invoices:
        v.receivable = by_invoice[v.invoice_no]

    # --- payments: settled history directly, recent ones through the ledger ---
    plan = sorted(((d, k, j, a) for k, v in enumerate(invoices) for j, (d, a) in enumerate(v.payments)),
                  key=lambda t: (t[0], t[1], t[2]))
    per_day: dict[date, int] = {}
    refs = []
    for d, _k, _j, _a in plan:
        per_day[d] = per_day.get(d, 0) + 1
        refs.append(f"LS{d:%Y%m%d}{per_day[d]:04d}")
    direct = [(ref, a, d, invoices[k]) for (d, k, _j, a), ref in zip(plan, refs) if d <= cutoff]
    if direct:
        await session.execute(insert(Payment), [
            dict(customer_id=v.receivable.customer_id, amount=a, unallocated=ZERO, paid_on=d, reference=ref,
                 invoice_no=v.invoice_no, currency=v.currency, recorded_by="fin2", created_at=_at(d, now, 16))
            for ref, a, d, v in direct])
        pay_id = dict((await session.execute(select(Payment.reference, Payment.id))).all())
        await session.execute(insert(Allocation), [
            dict(payment_id=pay_id[ref], receivable_id=v.receivable.id, amount=a, applied_on=d)
            for ref, a, d, v in direct])
    for (d, k, _j, a), ref in zip(plan, refs):
        if d <= cutoff:
            continue
        v = invoices[k]
        await ledger.record_payment(session, customer=cust_rows[v.cust], amount=a, paid_on=d, reference=ref,
                                    invoice_no=v.invoice_no, currency=v.currency, actor="fin2", channel="import",
                                    now=_at(d, now, 16))

    # --- collection work: disputes, promises, follow-ups, write-offs ---
    counts = await _collection_work(session, rng, invoices, cust_plan, cust_rows, rep_plan, today, now,
                                    reply_channel=platforms[0] if platforms else "local")

    audit.record(session, at=now, actor="admin", channel="local", action="demo.load", entity="demo",
                 entity_id=str(seed), customers=customers, receivables=receivables, reps=reps)
    await session.flush()

    people_ids: dict[str, list[str]] = {}
    for p in people_plan:
        people_ids.setdefault(p["role"], []).append(p["id"])
    teams = {t: [p["id"] for p in rep_plan if p["team"] == t] for t, _s, _c in TEAMS}
    amount_by: dict[str, Decimal] = {}
    open_by: dict[str, Decimal] = {}
    for v in invoices:
        amount_by[v.currency] = amount_by.get(v.currency, ZERO) + v.amount
        open_by[v.currency] = open_by.get(v.currency, ZERO) + v.receivable.open_amount
    n_payments = len(plan)
    return DemoSummary(people=len(people_plan), customers=customers, contacts=customers, receivables=len(invoices),
                       payments=n_payments, allocations=n_payments, people_ids=people_ids, teams=teams,
                       amount_by_currency=amount_by, open_by_currency=open_by, **counts)


async def _collection_work(session, rng, invoices, cust_plan, cust_rows, rep_plan, today, now, *,
                           reply_channel: str) -> dict[str, int]:
    n = len(invoices)
    overdue = [v for v in invoices if v.receivable.open_amount > 0 and v.due < today and not v.write_off]
    taken: set[str] = set()

    def pick(pool: list[_Inv], k: int) -> list[_Inv]:
        pool = [v for v in pool if v.invoice_no not in taken]
        out = rng.sample(pool, min(k, len(pool)))
        taken.update(v.invoice_no for v in out)
        return out

    def contact_of(v: _Inv) -> str:
        return cust_plan[v.cust]["contact"]["name"]

    # disputes (异议): reminders pause on these
    disputes = pick([v for v in overdue if 1 <= v.dpd(today) <= 90 and not v.in_legal],
                    max(1, min(8, n // 400)) if overdue else 0)
    for v in disputes:
        r = v.receivable
        r.disputed = True
        opened = max(today - timedelta(days=rng.randint(2, 25)), v.issue)
        session.add(Dispute(receivable_id=r.id, reason=rng.choice(DISPUTE_REASONS), opened_by=r.rep_id,
                            opened_at=_at(opened, now, rng.randint(9, 17), rng.randint(0, 59))))

    # planned first (the random draws keep their order), written afterwards through
    # storage.followups.log_followup like every other follow-up, so each has its audit entry
    planned: list[tuple[dict, _Inv, dict | None]] = []

    def followup(v: _Inv, day: date, outcome: str, text: str, promise: dict | None = None) -> None:
        r = v.receivable
        fu = dict(receivable=r, person_id=r.rep_id, at=_at(day, now, rng.randint(9, 18), rng.randint(0, 59)),
                  channel=reply_channel, counterpart=contact_of(v), outcome=outcome, text=text,
                  promised_date=promise["date"] if promise else None,
                  promised_amount=promise["amount"] if promise else None)
        planned.append((fu, v, promise))

    def promise_terms(v: _Inv, pdate: date) -> tuple[Decimal, str]:
        """The promised amount (all, or about half) and the rep's words for it."""
        o = v.receivable.open_amount
        half = rng.random() < 0.4 and o >= 2000
        amt = _round_down(o / 2, 100) if half else o
        text = rng.choice(PROMISE_HALF_TEXTS if half else PROMISE_ALL_TEXTS)
        return amt, text.format(c=contact_of(v), d=f"{pdate.month}月{pdate.day}日", a=f"{amt:,.2f}")

    eligible = [v for v in overdue if not v.receivable.disputed and not v.in_legal]
    # broken promises: the date passed without the money
    broken = pick(eligible, max(1, n // 600) if eligible else 0)
    for v in broken:
        pdate = max(today - timedelta(days=rng.randint(2, 20)), v.due)      # promised after it fell due
        made = max(pdate - timedelta(days=rng.randint(3, 10)), v.issue)
        amt, text = promise_terms(v, pdate)
        followup(v, made, "promised", text, dict(date=pdate, amount=amt, status="broken",
                                                 closed=_at(pdate + timedelta(days=1), now, 9, 30)))
        cust_rows[v.cust].broken_promises += 1
    # open promises: dates in the next two weeks, made in the last week
    for v in pick(eligible, max(2, n // 120) if eligible else 0):
        pdate = today + timedelta(days=rng.randint(1, 14))
        made = max(today - timedelta(days=rng.randint(1, 7)), v.issue)
        amt, text = promise_terms(v, pdate)
        followup(v, made, "promised", text, dict(date=pdate, amount=amt, status="open", closed=None))
    # other follow-ups of the last week, a few per rep
    for rep in rep_plan:
        mine: dict[int, _Inv] = {}           # one invoice per customer: one call covers a customer
        for v in eligible:
            if v.receivable.rep_id == rep["id"] and v.invoice_no not in taken:
                mine.setdefault(v.cust, v)
        for v in rng.sample(list(mine.values()), min(len(mine), rng.randint(1, 3))):
            outcome = "contacted" if rng.random() < 0.6 else "unreachable"
            texts = CONTACTED_TEXTS if outcome == "contacted" else UNREACHABLE_TEXTS
            followup(v, today - timedelta(days=rng.randint(1, 7)), outcome, rng.choice(texts).format(c=contact_of(v)))
    followups = [(await log_followup(session, **fu), v, p) for fu, v, p in planned]
    n_open = n_broken = 0
    for fu, v, p in followups:
        if p is None:
            continue
        session.add(Promise(receivable_id=v.receivable.id, promised_date=p["date"], amount=p["amount"],
                            status=p["status"], made_by=fu.person_id, made_at=fu.at, followup_id=fu.id,
                            closed_at=p["closed"]))
        n_open += p["status"] == "open"
        n_broken += p["status"] == "broken"

    # write-offs (坏账核销), approved and booked through the ledger
    n_wo = 0
    for i, v in enumerate(w for w in invoices if w.write_off):
        r = v.receivable
        requested = today - timedelta(days=rng.randint(20, 60))
        booked = requested + timedelta(days=rng.randint(3, 10))
        big = r.open_amount >= 50_000
        approvers = ["fin1", "gm"] if big else ["fin1", "director"]
        wo = WriteOff(receivable_id=r.id, amount=r.open_amount, reason=WRITE_OFF_REASONS[i % len(WRITE_OFF_REASONS)],
                      status="pending", requested_by="legal1", requested_at=_at(requested, now, 10),
                      approvals={"finance": "fin1", "manager": approvers[1]}, approvers_needed=approvers,
                      recovered_amount=ZERO)
        session.add(wo)
        await ledger.apply_write_off(session, wo, on=booked, actor=approvers[1], channel="local",
                                     now=_at(booked, now, 15))
        n_wo += 1
    return dict(disputes=len(disputes), promises_open=n_open, promises_broken=n_broken,
                followups=len(followups), write_offs=n_wo)
