"""Cash application (回款核销): which customer a bank receipt is from, and which invoices it pays.

Pure: the caller hands over a :class:`Book` (customers, their open invoices, the invoice and
contract numbers, the aliases finance and reps confirmed earlier) and a receipt; :func:`match`
answers with a :class:`Match`: the customer when it is *certain*, the invoices to pay first,
a confidence, the reasons, and the best suggestions when it is not certain.

A wrong application is worse than none, so a customer is certain only on evidence a careful
clerk would accept without asking anyone:

* an account number or a payer name confirmed earlier for that customer (learned alias);
* the payer's name equal to one customer's, once legal forms (有限公司, 有限责任公司, 股份有限
  公司…), a leading city or province and a branch (…分公司) are taken off both;
* the payer's name a shortening of exactly one customer's name (恒达精密 for 深圳市恒达精密机械
  有限公司: the start of its distinctive part, at least four characters) and of no other's;
* invoice or contract numbers in the memo belonging to one customer, whose open amounts add up
  to the receipt exactly (a third party or the boss's own account paying named invoices).

Names and numbers that disagree (the payer is one customer, the memo names another's invoice)
are never resolved here: the line is left for a person. Fuzzy similarity (rapidfuzz) only ever
suggests.

Once the customer is certain the amount is placed: the invoices named in the memo, else the
one open invoice of exactly that amount, else a set of open invoices adding up exactly, else
oldest first (the ledger's own order).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from itertools import combinations

from rapidfuzz import fuzz, process

ZERO = Decimal("0.00")

# legal forms, longest first, taken off the end of a name (after a branch is taken off)
LEGAL_FORMS = ("股份有限公司", "有限责任公司", "集团有限公司", "集团股份有限公司", "有限公司", "股份公司", "集团公司",
               "集团", "公司", "有限合伙", "合伙企业", "个体工商户", "经营部", "商行", "工作室")
BRANCH = re.compile(r"(分公司|分厂|办事处|分部|营业部|分店)$")
_PROVINCES = ("北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建",
              "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海",
              "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门")
_CITIES = ("深圳", "广州", "东莞", "佛山", "珠海", "中山", "惠州", "杭州", "宁波", "温州", "苏州", "无锡", "南京", "常州",
           "合肥", "厦门", "福州", "泉州", "济南", "青岛", "郑州", "武汉", "长沙", "成都", "西安", "昆明", "沈阳", "大连",
           "哈尔滨", "长春", "石家庄", "太原", "南昌", "南宁", "贵阳", "兰州", "乌鲁木齐", "嘉兴", "绍兴", "金华", "台州",
           "昆山", "义乌", "烟台", "潍坊", "唐山")
_PLACE = re.compile(r"^(?:(?:%s)(?:省|市|自治区)?)?(?:(?:%s)市?|[\u4e00-\u9fff]{2,3}市)?" % (
    "|".join(_PROVINCES), "|".join(_CITIES)))
_BRACKET_PLACE = re.compile(r"[(（](?:%s|%s)[省市]?[)）]" % ("|".join(_PROVINCES), "|".join(_CITIES)))
_BRACKETS = re.compile(r"[()（）\[\]【】]")
_SPACES = re.compile(r"\s+")
# a personal name: 2–3 Chinese characters (or a transcribed name with its dot, 阿依古丽·买买提) and
# nothing that makes it an organisation; 恒达化工 is a company's shortening, not a person
_PERSON = re.compile(r"^(?:[\u4e00-\u9fff]{2,3}|[\u4e00-\u9fff]+·[\u4e00-\u9fff]+)$")
_ORG_WORDS = re.compile(r"(公司|集团|厂|店|部|行|社|中心|所|院|局|会|科技|贸易|实业|工业|电子|机械|精密|制造|商贸|材料|"
                        r"化工|食品|建材|纺织|模具|电气|电器|五金|塑胶|包装|照明|光电|医疗|器械|汽车|配件|设备|物流|"
                        r"餐饮|服装|印刷|家具|陶瓷|玻璃|钢|铝|铜)")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_/.]*[A-Za-z0-9]")
SHORT_MIN = 4                 # a shortening shorter than this (恒达) names too many companies
SUBSET_ITEMS = 20             # the oldest open invoices searched for an exact combination
SUBSET_SIZE = 4               # at most this many invoices in one combination
BANK_WORDS = re.compile(r"(结息|利息|存息|息收入|冲正|退汇|手续费返还|银行.*返还)")


def normalise_name(name: str) -> str:
    """Full-width to half-width, no spaces or brackets: the form names are compared in."""
    s = unicodedata.normalize("NFKC", name or "")
    return _BRACKETS.sub("", _SPACES.sub("", s)).upper()


def core_name(name: str) -> str:
    """The distinctive part of a company name: no branch, legal form or leading place.
    深圳市恒达精密机械有限公司东莞分公司 → 恒达精密机械."""
    s = normalise_name(_BRACKET_PLACE.sub("", unicodedata.normalize("NFKC", name or "")))
    if BRANCH.search(s):
        # the parent's name ends at its legal form; without one, the branch's place goes too
        base = BRANCH.sub("", s)
        cut = max((base.rfind(f) + len(f) for f in LEGAL_FORMS if f in base), default=-1)
        s = base[:cut] if cut > 0 else base[:-2] if len(base) > 4 else base
    changed = True
    while changed:
        changed = False
        for f in LEGAL_FORMS:
            if s.endswith(f) and len(s) > len(f):
                s, changed = s[:-len(f)], True
                break
    placed = _PLACE.sub("", s, count=1)
    return placed if len(placed) >= 2 else s


_MUNICIPALITIES = ("北京", "上海", "天津", "重庆")
_LEAD = re.compile(r"^(?:(%s)(?:省|市|自治区)?)?(?:(%s)市?|([\u4e00-\u9fff]{2,3})市)?" % (
    "|".join(_PROVINCES), "|".join(_CITIES)))


def place_of(name: str) -> tuple[str, str]:
    """(province, city) a company name starts with, or has in brackets: 广东省深圳市… → (广东, 深圳)."""
    raw = unicodedata.normalize("NFKC", name or "")
    m = _LEAD.match(normalise_name(_BRACKET_PLACE.sub("", raw)))
    prov, city = (m.group(1) or "", m.group(2) or m.group(3) or "") if m else ("", "")
    if prov in _MUNICIPALITIES and not city:
        prov, city = "", prov
    b = _BRACKET_PLACE.search(raw)
    if b:
        inner = re.sub(r"[()（）省市]", "", b.group(0))
        if inner in _CITIES or inner in _MUNICIPALITIES:
            city = city or inner
        else:
            prov = prov or inner
    return prov, city


def places_differ(a: str, b: str) -> bool:
    """Do two names say different places (苏州恒达精密 vs 深圳市恒达精密)? Then they are two
    companies, not one written two ways. A name without a place differs from none."""
    (pa, ca), (pb, cb) = place_of(a), place_of(b)
    if ca and cb:
        return ca != cb
    return bool(pa and pb and pa != pb)


# payers who pay for others (factoring, supply-chain, payment and leasing companies, banks): their
# name or account says nothing about whose money it is, so it is never learned as an alias
_INTERMEDIARY = re.compile(r"(保理|供应链|融资租赁|金融租赁|支付|财付通|支付宝|银行|信用社|代付|代收|清算|结算中心|财务公司|信托)")


def is_intermediary(name: str) -> bool:
    return bool(_INTERMEDIARY.search(normalise_name(name)))


def is_person(name: str) -> bool:
    s = normalise_name(name)
    return bool(_PERSON.match(s)) and not _ORG_WORDS.search(s)


def norm_number(s: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", unicodedata.normalize("NFKC", s or "").upper())


def numbers_in(memo: str) -> list[str]:
    """Candidate invoice/contract numbers in a memo, normalised (FP2026-0001 → FP20260001); also
    the memo read without its spaces (FP 2026 0001)."""
    s = unicodedata.normalize("NFKC", memo or "")
    found = [norm_number(t) for t in _TOKEN.findall(s)]
    found += [norm_number(t) for t in _TOKEN.findall(s.replace(" ", ""))]
    # a list of numbers joined by separators (FP001/FP002) is also each of its parts
    for t in _TOKEN.findall(s):
        found += [norm_number(p) for p in re.split(r"[/_.]", t) if p]
    out: list[str] = []
    for n in found:
        if len(n) >= 4 and n not in out:
            out.append(n)
    return out


# ---- the book ------------------------------------------------------------------------------
@dataclass
class Party:
    code: str
    name: str
    rep_id: str | None = None


@dataclass
class Item:
    """An invoice as matching sees it; ``open_amount`` is kept up to date by :meth:`Book.settle`."""
    invoice_no: str
    customer: str
    open_amount: Decimal
    due_date: date
    currency: str = "CNY"
    contract_no: str = ""
    issue_date: date | None = None
    id: int = 0


@dataclass
class Book:
    parties: dict[str, Party] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)             # normalised invoice number → item (paid ones too)
    name_aliases: dict[str, str] = field(default_factory=dict)      # normalised name → customer code
    account_aliases: dict[str, str] = field(default_factory=dict)   # account number → customer code

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        self.by_core: dict[str, set[str]] = {}
        for p in self.parties.values():
            self.by_core.setdefault(core_name(p.name), set()).add(p.code)
        self.cores = list(self.by_core)
        self.open_by: dict[str, list[Item]] = {}
        self.contracts: dict[str, list[Item]] = {}
        for it in self.items.values():
            if it.contract_no:
                self.contracts.setdefault(norm_number(it.contract_no), []).append(it)
            if it.open_amount > ZERO:
                self.open_by.setdefault(it.customer, []).append(it)
        for items in self.open_by.values():
            items.sort(key=_age)
        self._short: dict[str, set[str]] = {}

    def add_items(self, items: list[Item]) -> None:
        for it in items:
            self.items[norm_number(it.invoice_no)] = it
        self._index()

    def open_items(self, code: str, currency: str) -> list[Item]:
        return [i for i in self.open_by.get(code, []) if i.open_amount > ZERO and i.currency == currency]

    def open_balance(self, code: str, currency: str) -> Decimal:
        return sum((i.open_amount for i in self.open_items(code, currency)), ZERO)

    def settle(self, allocations: list[tuple[str, Decimal]]) -> None:
        """Take booked allocations off the open amounts, so the next line sees them paid."""
        for invoice_no, amount in allocations:
            it = self.items.get(norm_number(invoice_no))
            if it is not None:
                it.open_amount -= amount

    def learn(self, *, code: str, name: str = "", account: str = "") -> None:
        if name:
            self.name_aliases[normalise_name(name)] = code
        if account:
            self.account_aliases[account] = code

    def shortened(self, core: str) -> set[str]:
        """Customers whose core name starts with ``core`` (a shortening of theirs keeps the brand:
        恒达精密 for 恒达精密机械; 精密机械 is a trade, not a name)."""
        got = self._short.get(core)
        if got is None:
            got = set()
            for c in self.cores:
                if c.startswith(core):
                    got |= self.by_core[c]
            self._short[core] = got
        return got


def _age(it: Item):
    return (it.due_date, it.issue_date or it.due_date, it.id)


# ---- the answer ----------------------------------------------------------------------------
@dataclass
class Suggestion:
    customer: str
    name: str
    score: float                       # 0–1
    reason: str                        # a reason code (see Match.reasons)
    invoices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"customer": self.customer, "name": self.name, "score": round(self.score, 2), "reason": self.reason,
                "invoices": self.invoices}


@dataclass
class Match:
    """``status``: apply (customer certain) | unclaimed | ignored (a debit, bank interest).
    ``reasons``: codes, in the order they weighed — account_alias, name_alias, same_name,
    short_name, memo_invoice, memo_contract, memo_amount, exact_invoice, exact_subset, oldest_first,
    named_invoices, debit, bank_interest, person_payer, no_match, ambiguous_name, conflict,
    amount_differs, currency. ``anomalies``: duplicate_payment, over_balance, nothing_open."""
    status: str
    customer: str | None = None
    confidence: float = 0.0
    reasons: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)          # invoices to pay first, in this order
    planned: list[tuple[str, Decimal]] = field(default_factory=list)   # the allocation matching foresees
    suggestions: list[Suggestion] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)


@dataclass
class Receipt:
    amount: Decimal
    payer: str
    account: str
    memo: str
    direction: str = "credit"
    currency: str = "CNY"


def match(r: Receipt, book: Book) -> Match:
    if r.direction != "credit":
        return Match("ignored", reasons=["debit"], confidence=1.0)
    if not r.payer.strip() and BANK_WORDS.search(r.memo) or BANK_WORDS.search(r.payer) and "银行" in r.payer:
        return Match("ignored", reasons=["bank_interest"], confidence=1.0)
    named, named_codes, memo_reason = _named(r, book)
    who, why, conf = _payer(r, book)
    if who is None and len(named_codes) == 1:
        code = next(iter(named_codes))
        open_named = [i for i in named if i.customer == code and i.open_amount > ZERO and i.currency == r.currency]
        if open_named and sum((i.open_amount for i in open_named), ZERO) == r.amount:
            # the memo names this customer's invoices and the money is exactly what they owe on them
            return _place(r, book, code, [memo_reason, "memo_amount"], 0.95, named)
        return Match("unclaimed", reasons=[memo_reason, "amount_differs"], confidence=0.6,
                     suggestions=[_suggest(book, code, 0.6, memo_reason, [i.invoice_no for i in named])],
                     anomalies=_duplicate_named(named, code))
    if who is not None and named_codes and who not in named_codes:
        others = sorted(named_codes)
        return Match("unclaimed", reasons=[why, "conflict"], confidence=0.4,
                     suggestions=[_suggest(book, who, conf * 0.5, why)]
                     + [_suggest(book, c, 0.4, memo_reason, [i.invoice_no for i in named if i.customer == c])
                        for c in others])
    if who is not None:
        reasons = [why] + ([memo_reason] if named_codes else [])
        return _place(r, book, who, reasons, conf, named)
    return Match("unclaimed", reasons=[why], confidence=0.0, suggestions=_fuzzy(r, book))


def named_items(r: Receipt, book: Book) -> list[Item]:
    """The invoices a receipt's memo names (by invoice or contract number): part of what a match
    relies on, so the caller can check them again before booking."""
    return _named(r, book)[0]


def _named(r: Receipt, book: Book) -> tuple[list[Item], set[str], str]:
    found: list[Item] = []
    reason = ""
    for n in numbers_in(r.memo):
        it = book.items.get(n)
        if it is not None and it not in found:
            found.append(it)
            reason = reason or "memo_invoice"
    if not found:
        for n in numbers_in(r.memo):
            for it in book.contracts.get(n, []):
                if it not in found:
                    found.append(it)
                    reason = reason or "memo_contract"
    found.sort(key=_age)
    return found, {i.customer for i in found}, reason


def _payer(r: Receipt, book: Book) -> tuple[str | None, str, float]:
    """(customer code, reason, confidence) when the payer's account or name makes it certain."""
    acct = r.account.replace(" ", "")
    if acct and acct in book.account_aliases:
        return book.account_aliases[acct], "account_alias", 1.0
    norm = normalise_name(r.payer)
    if not norm:
        return None, "no_payer", 0.0
    if norm in book.name_aliases:
        return book.name_aliases[norm], "name_alias", 1.0
    if is_person(r.payer):
        return None, "person_payer", 0.0
    core = core_name(r.payer)
    same = book.by_core.get(core, set())
    short = book.shortened(core) if not same and len(core) >= SHORT_MIN else set()
    for found, reason, conf in ((same, "same_name", 0.98), (short, "short_name", 0.9)):
        if not found:
            continue
        # a payer in another city is another company with the same brand, not this customer
        here = {c for c in found if not places_differ(r.payer, book.parties[c].name)}
        if len(here) == 1:
            return next(iter(here)), reason, conf
        return None, "ambiguous_name" if here else "place_differs", 0.0
    return None, "no_match", 0.0


def _place(r: Receipt, book: Book, code: str, reasons: list[str], conf: float, named: list[Item]) -> Match:
    m = Match("apply", customer=code, confidence=conf, reasons=list(reasons))
    items = book.open_items(code, r.currency)
    ours = [i for i in named if i.customer == code]
    if ours and all(i.open_amount <= ZERO for i in ours):
        # every invoice the payer named is paid already: most likely the same bill paid twice
        m.status, m.confidence = "unclaimed", min(conf, 0.5)
        m.anomalies.append("duplicate_payment")
        m.reasons.append("named_paid")
        m.suggestions = [_suggest(book, code, conf, reasons[0], [i.invoice_no for i in ours])]
        return m
    if not items:
        if any(i.open_amount > ZERO for i in book.open_by.get(code, [])):
            # it owes, but in another currency: converting is finance's decision, not a guess here
            m.status, m.confidence = "unclaimed", min(conf, 0.5)
            m.reasons.append("currency")
            m.suggestions = [_suggest(book, code, conf, reasons[0])]
            return m
        m.anomalies.append("nothing_open")        # booked on account (预收), finance told
        return m
    cents = _cents(r.amount)
    open_named = [i for i in ours if i.open_amount > ZERO and i.currency == r.currency]
    if open_named:
        m.order = [i.invoice_no for i in open_named]
        m.reasons.append("named_invoices")
    elif (one := next((i for i in items if _cents(i.open_amount) == cents), None)) is not None:
        m.order = [one.invoice_no]
        m.reasons.append("exact_invoice")
    elif (subset := exact_subset([(_cents(i.open_amount), i) for i in items[:SUBSET_ITEMS]], cents)) is not None:
        m.order = [i.invoice_no for i in subset]
        m.reasons.append("exact_subset")
    else:
        m.reasons.append("oldest_first")
    m.planned = plan(r.amount, items, m.order)
    if r.amount > sum((i.open_amount for i in items), ZERO):
        m.anomalies.append("over_balance")
    return m


def plan(amount: Decimal, items: list[Item], order: list[str]) -> list[tuple[str, Decimal]]:
    """The allocation the ledger will make: the ordered invoices first, then oldest first."""
    first = [i for no in order for i in items if i.invoice_no == no]
    rest = [i for i in items if i.invoice_no not in order]
    left, out = amount, []
    for i in first + rest:
        if left <= ZERO:
            break
        take = min(left, i.open_amount)
        if take > ZERO:
            out.append((i.invoice_no, take))
            left -= take
    return out


def exact_subset(items: list[tuple[int, Item]], target: int) -> list[Item] | None:
    """The combination of 2..SUBSET_SIZE invoices (oldest first preferred) adding up to ``target`` cents."""
    for size in range(2, min(SUBSET_SIZE, len(items)) + 1):
        for combo in combinations(items, size):
            if sum(c for c, _ in combo) == target:
                return [i for _, i in combo]
    return None


def _cents(d: Decimal) -> int:
    return int(d * 100)


def _duplicate_named(named: list[Item], code: str) -> list[str]:
    ours = [i for i in named if i.customer == code]
    return ["duplicate_payment"] if ours and all(i.open_amount <= ZERO for i in ours) else []


def _suggest(book: Book, code: str, score: float, reason: str, invoices: list[str] | None = None) -> Suggestion:
    p = book.parties.get(code)
    return Suggestion(code, p.name if p else code, score, reason, invoices or [])


def _fuzzy(r: Receipt, book: Book, limit: int = 3) -> list[Suggestion]:
    """The closest customer names, for a person to choose from (never applied on their own)."""
    core = core_name(r.payer)
    if len(core) < 2 or not book.cores:
        return []
    out: list[Suggestion] = []
    for name, score, _ in process.extract(core, book.cores, scorer=fuzz.WRatio, limit=limit, score_cutoff=60):
        for code in sorted(book.by_core[name]):
            out.append(_suggest(book, code, round(score / 100 * 0.8, 2), "similar_name"))
    # the amount may point at one of them: an open invoice of exactly that amount
    cents = _cents(r.amount)
    for s in out:
        hit = [i.invoice_no for i in book.open_items(s.customer, r.currency) if _cents(i.open_amount) == cents]
        if hit:
            s.invoices, s.score = hit[:1], min(0.85, s.score + 0.1)
    out.sort(key=lambda s: -s.score)
    return out[:limit]
