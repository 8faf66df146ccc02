"""Understanding a sales rep's free-text reply to the daily overdue push.

The push lists the rep's overdue items with numbers; the rep answers in their own words,
usually naming the items first: ``1 已电话联系王总，答应下周五前付一半``.  This module
turns such a segment into a :class:`ParsedReply` (which items, what happened, what was
promised).  It never decides anything about the ledger: :func:`resolve_amount` only
turns a share or a "the rest" into yuan for a given open balance.

Decisions (see also bot/dates.py for how dates are read):

* **Outcome priority**: dispute > paid_claimed > promised > unreachable > contacted >
  other.  A reply that both reports a payment and promises the rest for a date today or
  later (``已付5万，剩下的12月20号``) is **promised**, with ``paid_amount`` recorded —
  the open promise is what the ladder must watch; the claimed payment is for finance.
* A reply is split into clauses at punctuation, spaces between Chinese words and before
  "the rest" words; each clause is *paid* (a non-negated paid word and no further payment
  verb with a date after today), *promise* (a promise word, or a date ≥ today with a
  payment verb / amount / "the rest"), or neutral.  Amounts in paid clauses are
  ``paid_amount``.  The promise takes the date ≥ today and the amount/share of its
  clauses, completed from neutral clauses (答应了，下周五); a second promise clause that
  repeats a field is ignored — the first promise counts (下周五付一半，剩余月底).
  A neutral date next to another activity (明天去拜访) is not a payment date.
  Promise fields stay empty when nothing was promised.
* **The rest** (剩下的/剩余/余款/尾款): ``remainder`` is True.  If a paid share is known
  (已付一半) the promised share is 1 − that; if a paid amount is known the share stays
  None and :func:`resolve_amount` computes balance − paid; otherwise the rest is the
  whole open balance (share 1).  The caller passes the balance *as of the push*, before
  finance records the claimed payment, or the payment is counted twice.
* Negations (没/未/不/无 just before a word, 付不了) cancel paid/promise words.
* Leading item numbers are only taken when they cannot be an amount or date (``5万``,
  ``12月``, ``12.20``, ``3天`` are not items); with ``item_count`` known, a number
  glued to the text and larger than the count is not an item either.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import cn2an

from bot.dates import find_dates, half_width
from bot.money import AmountError, parse_amount

__all__ = ["ParsedReply", "parse_reply", "split_reply", "resolve_amount"]


@dataclass
class ParsedReply:
    items: list[int] | Literal["all"] | None
    outcome: str
    promised_date: date | None = None
    promised_amount: Decimal | None = None
    promised_share: Decimal | None = None
    paid_amount: Decimal | None = None
    remainder: bool = False
    correction: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: dates ISO, money "50000.00", shares as plain decimals ("0.5")."""
        def money(d: Decimal | None) -> str | None:
            return None if d is None else f"{d:.2f}"
        return {"items": self.items if self.items in (None, "all") else list(self.items),
                "outcome": self.outcome,
                "promised_date": self.promised_date.isoformat() if self.promised_date else None,
                "promised_amount": money(self.promised_amount),
                "promised_share": None if self.promised_share is None else format(self.promised_share.normalize(), "f"),
                "paid_amount": money(self.paid_amount), "remainder": self.remainder,
                "correction": self.correction, "note": self.note}


# ---- vocabularies (matched against cleaned text: half-width, lower-case, typos fixed) ----
def _rx(*parts: str) -> re.Pattern:
    return re.compile("|".join(parts))


# Same-length typo fixes, so that spans in the cleaned text still index the original.
_TYPOS = [(r"[以己](?=经|付|联|打|转|汇|到|对|结|回|支|收|催|电)", "已"), ("月低", "月底"), ("帐", "账"),
          ("歀", "款"), ("付青", "付清"), ("结青", "结清"), ("聯繫", "联系"), ("联係", "联系"),
          ("電話", "电话"), ("週", "周"), ("禮拜", "礼拜"), ("関机", "关机")]
_NEG_BEFORE, _NEG_AFTER = re.compile(r"[没未不无]"), re.compile(r"不了|不出|不起")
_DISPUTE = _rx(r"异议|争议|纠纷|投诉|扯皮|拒付|拒绝付|(?<!没)(?<!没有)有问题|有点问题|质量.{0,2}问题",
               r"抬头.{0,3}(?:错|不对)|发票.{0,4}(?:错|有误|不对)|开错|重开|重新开|补开|红冲",
               r"(?:没|未)收到发票|发票没(?:收到|开)|(?:金额|数量|价格|单价|数目).{0,2}(?:不对|有误|错)",
               r"退货|退换|不认(?!识)|对不上|少发|漏发|发错|错发|送错|破损|货不对|dispute")
_PAID = _rx(r"已(?:经|于[^，,。；]{0,12}?)?(?:付|支付|打款|打钱|转账|转款|转(?![告达交])|汇款?|回款|结清|到账|收款)",
            r"(?:付清|付|转|汇|打款|打钱|支付|回款|结清|到账)过?了|(?:打|转|汇)过来了",
            r"(?:款|钱)(?:已经?)?(?:到|收)(?!期)了?|收到(?:款|钱|货款)|已入账|\bpaid\b",
            r"打了(?=\s*[\d.,一二两三四五六七八九十]+\s*[万wk千元块])")     # 打了5万, not 打了三次电话
_PROMISE = _rx(r"答应|承诺|保证|同意付|最迟|最晚|付清|结清|还清|一次性付|先(?:付|打|转|还)",
               r"会(?:付|打|转|汇|结|还|安排)|安排(?:付|打|转|汇|结|支付|回款|款)|\bpromised?\b")
# payment verbs: with a date they make a promise.  A bare 打/转 counts only before an
# amount or at the clause end (明天打), never after 再/又 (明天再打 is calling again).
_VERB = _rx(r"付|支付|打款|打钱|转账|转款|汇|结款|结账|结算|还款|还钱|回款|到账|安排|能付|\bpay",
            r"[打转]过来|(?<![再又])[打转](?=\s*[\d一二两三四五六七八九十半]|\s*$)|(?<![催要追讨])款",
            r"延期|推迟|宽限|延到|推到")
_UNREACHABLE = _rx(r"联[系络](?:不上|不到)|[没未]联[系络]上|找不到|关机|停机|空号|占线|失联|拉黑|跑路|人不在|倒闭|破产|注销|停业",
                   r"不接(?!受)|[没无]人接|[没未]接(?!受)|打不通|没打通|未接通|不理|no answer|unreachable",
                   r"不回(?!款)|[没未]回复|[没未]回(?![款来])")
_CONTACTED = _rx(r"联系|联络|电话|打过|通话|沟通|拜访|上门|见面|面谈|微信|短信|邮件|对账|催|说|反馈",
                 r"回复|答复|确认|通知|转告|留言|要求|反映|律师函|[催对]账函|发函|答应|承诺|同意|接受|表示|声称",
                 r"\b(?:call(?:ed)?|wechat|contacted|visit(?:ed)?)\b")
_ACTIVITY = re.compile(r"拜访|上门|见面|面谈|联系|联络|电话|沟通|对账|开会|回来|出差|出国|上班|放假|休假|发货|开票|"
                       r"签字|盖章|审批|商量|考虑|研究|决定|回复|答复|确认|到期|再|去|问|找|催|等")
_REMAINDER = re.compile(r"剩下的?|剩余的?|剩的|余款|尾款|余下的?|其余的?|余额")
_SHARES = [(r"一半|半数|半款", lambda m: Decimal("0.5")),
           (r"(?<![\d.])(\d+(?:\.\d+)?)\s*%", lambda m: Decimal(m[1]) / 100),
           (r"百分之([零一二两三四五六七八九十百]{1,4})", lambda m: Decimal(_int(m[1])) / 100),
           (r"(\d|[一二两三四五六七八九])成", lambda m: Decimal(_int(m[1])) / 10),
           (r"(?<![\d一二两三四五六七八九十])([\d一二两三四五六七八九十]+)分之([\d一二两三四五六七八九十]+)",
            lambda m: (Decimal(_int(m[2])) / Decimal(_int(m[1]))).quantize(Decimal("0.0001"))),
           (r"全部|全款|全额|全数|所有(?:款|欠款|货款)?|付清|结清|还清|一次性|付完|结完", lambda m: Decimal(1))]
_AMOUNT = _rx(r"(?:[¥￥]\s*|rmb\s*)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
              r"(?:\s*(?P<unit>[万wk千亿])(?:\d+[千百])?(?:\d(?![\d.]))?)?(?:\s*(?P<yuan>元|块钱?|rmb))?",
              r"[一二两三四五六七八九十][零一二两三四五六七八九十百千万亿]*(?:元|块钱?)?")
_NOT_MONEY_AFTER = re.compile(r"\s*(?:[个次条天号日月年周点:%项笔单楼]|成|分之|小时|分钟)")
_CORRECTION = re.compile(r"(?:更正|修改|修正|纠正|改为|改成|更改)[\s:：,，]*")
# items: 全部/所有/都 → all; 1 · 1. · 1、 · 1,3 · 1-3 · 1 2 3 · 第1条 · #1 · ①
_ALL = _rx(r"(?:全部|所有|全都|以上|上述|这几[笔条个]|all\b)的?(?:客户|都|均|条|项|笔)?",
           r"都(?=[已没未联说答付在不])")
_SEP = re.compile(r"\s*[,，、和及跟&+]\s*|\s+|(?=[①-⑳#第])")
_NUM_GUARD = r"(?!\s*(?:[万wk千百亿元块%日月天周点个次年前成/]|[:：]\s*\d|号(?!码)|\.\d|-\d{2}|分之|小时))"
_ITEM = re.compile(rf"第\s*(?P<di>[\d一二三四五六七八九十]+)\s*[条项笔个单]?|#\s*(?P<hash>\d{{1,3}})|"
                   rf"(?P<circ>[①-⑳])|(?P<a>\d{{1,3}})(?:\s*[-~～到至]\s*(?P<b>\d{{1,3}}))?(?!\d){_NUM_GUARD}")
_RANGE_IS_DATE = re.compile(r"\s*(?:前|之前|以前|号|日|付|结|还|打|转|汇|到|回)")
_ITEM_END = re.compile(r"[\s.、:：,，)）\]】>\-]*")


def _int(s: str) -> int:
    return int(s) if s.isdigit() else int(cn2an.cn2an(s, "normal"))


def _clean(text: str) -> str:
    """Half-width, lower-case, typo-fixed; always the same length as ``text``."""
    s = half_width(text).lower()
    for pattern, repl in _TYPOS:
        s = re.sub(pattern, repl, s)
    return s


def _match_items(s: str, item_count: int | None) -> tuple[list[int] | str, int] | None:
    """Item reference at the start of cleaned text → (items, end of reference)."""
    lead = len(s) - len(s.lstrip())
    m = _ALL.match(s, lead)
    if m:
        # 全部付清 is "pay in full" when only one item was pushed
        if item_count == 1 and re.match(r"(?:全部|所有)(?:付|结|还|打|转|款)", s[lead:]):
            return None
        return "all", _ITEM_END.match(s, m.end()).end()
    items: list[int] = []
    pos, glued_big = lead, False
    while m := _ITEM.match(s, pos):
        if m["di"]:
            try:
                nums = [_int(m["di"])]
            except ValueError:
                break
        elif m["hash"] or m["circ"]:
            nums = [int(m["hash"]) if m["hash"] else ord(m["circ"]) - 0x245F]
        else:
            a, b = int(m["a"]), int(m["b"] or m["a"])
            if m["b"] and (not (a < b <= (item_count or 50) and b - a < 30) or (
                    item_count is None and _RANGE_IS_DATE.match(s, m.end()))):
                break                                    # 12-20付 is a date, not items 12..20
            nums = list(range(a, b + 1))
            glued = _ITEM_END.match(s, m.end()).end() == m.end()
            glued_big |= glued and item_count is not None and b > item_count   # 500已付
        items.extend(n for n in nums if n not in items)
        pos = m.end()
        sep = _SEP.match(s, pos)
        if not sep or not _ITEM.match(s, sep.end()):
            break
        pos = sep.end()
    if not items or glued_big or 0 in items:
        return None
    return items, _ITEM_END.match(s, pos).end()


def _hits(pattern: re.Pattern, s: str) -> list[re.Match]:
    """Matches not negated by 没/未/不/无 just before them or 不了/不出 just after."""
    return [m for m in pattern.finditer(s)
            if not _NEG_BEFORE.search(s[max(0, m.start() - 2):m.start()]) and not _NEG_AFTER.match(s, m.end())]


def _mask(s: str, spans) -> str:
    for a, b in spans:
        s = s[:a] + "\x00" * (b - a) + s[b:]
    return s


def _money(s: str) -> tuple[Decimal | None, Decimal | None, bool]:
    """First absolute amount, first share, and whether "the rest" is named, in a clause."""
    share = None
    for pattern, value in _SHARES:
        for m in re.finditer(pattern, s):
            if share is None:
                try:
                    share = value(m)
                except (ValueError, ArithmeticError):
                    pass
        s = _mask(s, [x.span() for x in re.finditer(pattern, s)])   # 50% is not 50 yuan
    amount = None
    for m in _AMOUNT.finditer(s):
        text = m.group()
        chinese = text[0] in "一二两三四五六七八九十"
        marked = m["unit"] or m["yuan"] or text[0] in "¥￥r" or (chinese and re.search("[百千万亿元块]", text))
        bare = re.fullmatch(r"\d{3,9}(?:\.\d{1,2})?", text) and not _NOT_MONEY_AFTER.match(s, m.end())
        if marked or bare:
            try:
                amount = parse_amount(text)
                break
            except AmountError:
                continue
    return amount, share, bool(_REMAINDER.search(s))


def _clauses(s: str) -> list[tuple[int, int]]:
    """Clause spans: split at punctuation (not 12,345), spaces between Chinese words, and
    before "the rest" words (已付5万剩下的月底)."""
    cuts = {0, len(s)}
    for m in re.finditer(r"[，。；;!！?？\n~～]|,(?!\d{3})|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])", s):
        cuts.update((m.start(), m.end()))
    for m in re.finditer(_REMAINDER.pattern + r"|还有|另外|其他的?", s):
        cuts.add(m.start())
    points = sorted(cuts)
    return [(a, b) for a, b in zip(points, points[1:]) if s[a:b].strip(" ，,。；;!！?？\n")]


def _head(s: str, item_count: int | None) -> tuple[list[int] | str | None, int, bool]:
    """Correction word and item reference at the start → (items, body start, correction)."""
    correction, pos = False, 0
    m = _CORRECTION.match(s, len(s) - len(s.lstrip()))
    if m:
        correction, pos = True, m.end()
    ref = _match_items(s[pos:], item_count)
    if not ref:
        return ([1] if item_count == 1 else None), pos, correction
    pos += ref[1]
    m = _CORRECTION.match(s, pos)                        # 1 更正：...
    return ref[0], (m.end() if m else pos), correction or bool(m)


def _fill(promise: dict, date_: date | None, amount, share, rest) -> None:
    promise["date"] = promise["date"] or date_
    if promise["amount"] is None and promise["share"] is None:
        promise["amount"], promise["share"] = amount, share
        promise["rest"] |= rest


def parse_reply(text: str, today: date, item_count: int | None = None) -> ParsedReply:
    """Parse one reply segment (use :func:`split_reply` first for multi-item messages)."""
    s = _clean(text or "")
    items, pos, correction = _head(s, item_count)
    body = s[pos:]
    dates = find_dates(body, today)
    masked = _mask(body, [span for _, span in dates])
    message_paid = bool(_hits(_PAID, masked))
    paid_amount = paid_share = None
    promise: dict[str, Any] = {"date": None, "amount": None, "share": None, "rest": False}
    neutral: list[tuple] = []
    any_promise = any_paid = False
    for a, b in _clauses(body):
        mclause = masked[a:b]
        clause_dates = [d for d, (x, _) in dates if a <= x < b]
        future = [d for d in clause_dates if d >= today]
        amount, share, rest = _money(mclause)
        paid = _hits(_PAID, mclause)
        unpaid = _mask(mclause, [p.span() for p in paid])
        promised_words = _hits(_PROMISE, unpaid)
        # once a payment is reported, 到账 only says when it lands (已打款了，明天能到账)
        verbs = [v for v in _hits(_VERB, unpaid) if not (message_paid and v.group().startswith("到"))
                 and "到期" not in mclause]                # 货款下周到期 is a due date, not a promise
        if len(future) > 1 and verbs:                    # 明天对完账后天付: the date nearest the verb
            before = [d for d, (x, _) in dates if a <= x < a + verbs[0].start() and d >= today]
            future = before[-1:] + future
        if paid and not promised_words and not (verbs and any(d > today for d in clause_dates)):
            any_paid = True
            paid_amount = amount if paid_amount is None else paid_amount
            paid_share = share if paid_share is None else paid_share
        elif promised_words or (future and (verbs or rest or amount is not None or share is not None)):
            # clauses that complete each other merge (答应3万5，大后天到账); one that repeats a
            # field is a second promise and only the first counts (下周五付一半，剩余月底)
            has_money = promise["amount"] is not None or promise["share"] is not None
            new_money = amount is not None or share is not None or rest
            if not ((promise["date"] and future) or (has_money and new_money)):
                _fill(promise, future[0] if future else None, amount, share, rest)
            any_promise = True
        else:
            # a date beside another activity (明天去拜访) is that activity's, not the payment's
            when = future[0] if future and not _ACTIVITY.search(mclause) else None
            neutral.append((when, amount, share, rest, bool(verbs)))
    # a promise spread over clauses (下周五，付一半), or a bare date in answer to the push
    # (客户说15号左右) — unless the rep is waiting on something or cannot reach anyone
    if not any_promise and not any_paid and any(n[0] for n in neutral) and (
            any(n[3] or n[4] for n in neutral) or not re.search(r"等|" + _UNREACHABLE.pattern, masked)):
        any_promise = True
    if any_promise:
        for n in neutral:                                # 答应了，下周五 / 剩下的，月底
            _fill(promise, *n[:4])
    elif any_paid and paid_amount is None:               # 已付12月25号，2万
        paid_amount = next((n[1] for n in neutral if n[1] is not None), None)
    if promise["rest"]:
        if paid_share is not None and promise["share"] in (None, 1):
            promise["share"] = max(Decimal(0), 1 - paid_share)
        elif paid_amount is not None and promise["share"] == 1:
            promise["share"] = None                      # balance − paid, see resolve_amount
        elif paid_amount is None and promise["amount"] is None and promise["share"] is None:
            promise["share"] = Decimal(1)

    outcome = ("dispute" if _hits(_DISPUTE, masked) else
               ("promised" if any_promise and promise["date"] else "paid_claimed") if any_paid else
               "promised" if any_promise else
               "unreachable" if _hits(_UNREACHABLE, masked) else
               "contacted" if _CONTACTED.search(masked) else "other")
    return ParsedReply(items=items, outcome=outcome, promised_date=promise["date"],
                       promised_amount=promise["amount"], promised_share=promise["share"],
                       paid_amount=paid_amount, remainder=promise["rest"], correction=correction,
                       note=(text or "")[pos:].strip())


def split_reply(text: str) -> list[str]:
    """Split a message into per-item segments.

    New segments start at a line (or ；/。) that begins with an item reference, and inside a
    line at a comma or space followed by an item reference with a higher number than the
    previous one (``1已联系，2联系不上``).  Lines without a reference continue the segment
    before them, so a note spread over several lines stays together.
    """
    s = _clean(text or "")
    segments: list[list[int]] = []          # [start, end] spans into text
    last_max = 0
    for m in re.finditer(r"[^\n；;。]+", s):
        start = m.start()
        items, rel, _ = _head(s[start:m.end()], None)
        if items or not segments:
            segments.append([start, m.end()])
            last_max = max(items) if items and items != "all" else last_max
        else:
            segments[-1][1] = m.end()
        body = start + rel
        for cut in re.finditer(r"(?<=[^\d\s,，])(?:[，,]\s*|\s+|(?=[①-⑳]))(?=\S)", s[body:m.end()]):
            items, _, _ = _head(s[body + cut.end():m.end()], None)
            if items and items != "all" and min(items) > last_max:
                segments[-1][1] = body + cut.start()
                segments.append([body + cut.end(), m.end()])
                last_max = max(items)
    out = [text[a:b].strip(" \t\n，,；;。") for a, b in segments]
    return [seg for seg in out if seg]


def resolve_amount(parsed: ParsedReply, open_balance: Decimal) -> Decimal | None:
    """The promised amount in yuan for a given open balance, or None if none was promised.

    Absolute amount first; then "the rest" after a claimed payment (balance − paid);
    then share × balance.  Quantized half-up to 0.01 and kept within [0, open_balance].
    """
    balance = Decimal(open_balance)
    if parsed.promised_amount is not None:
        value = parsed.promised_amount
    elif parsed.remainder and parsed.paid_amount is not None and parsed.promised_share is None:
        value = balance - parsed.paid_amount
    elif parsed.promised_share is not None:
        value = parsed.promised_share * balance
    elif parsed.remainder:
        value = balance
    else:
        return None
    value = min(max(value, Decimal(0)), max(balance, Decimal(0)))
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
