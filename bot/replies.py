"""Understanding a sales rep's free-text reply to the daily overdue push.

The push lists the rep's overdue items with numbers; the rep answers in their own words,
usually naming the items first: ``1 已电话联系王总，答应下周五前付一半``.  This module
turns such a segment into a :class:`ParsedReply` (which items, what happened, what was
promised).  It never decides anything about the ledger: :func:`resolve_amount` only
turns a share or a "the rest" into yuan for a given open balance.

Decisions (see also domain/dates.py for how dates are read):

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
  glued to the text and larger than the count is not an item either.  Reps type the item
  number, a space, then the answer, so after a space a period word keeps the number an
  item (``2 月底``, ``26 元旦前付清``, ``6 年前``) while a glued one is a date (``2月底``).
  Item lists only go up: in ``19 12-20付款`` the ``12-20`` after 19 is the date, and a
  range glued to a payment word (``12-20付``) is a date too.  A line ``2月底付`` right
  after item 1 is asked back (``month_or_item``) rather than guessed.
* **Conditional** (等甲方回款后再付, 看情况, if/once they...): the clause is neither a payment
  nor a promise; the reply is kept as a note with ``conditional``.
* **Denials** (是3万不是3000, 不是异议) are masked before reading; in a correction, a denied
  dispute sets ``lifts_dispute``.  A dispute word beside 不影响付款 (damage the customer
  will pay regardless of) is not a dispute, unless it is an explicit 异议/拒付/不承认.
* **First instalment**: 先付5000，剩下的月底 → ``first_amount`` 5000 (no date of its own) and
  the rest promised at month end (``remainder``); the handler records one promise for the
  whole open balance at that date, because the promise is kept only if all of it came.
* **Back-references** (11也是, 同上, same): :func:`parse_message` copies the previous
  segment's reading to the new items.
* **Asking back** (``ask``): no item named while the push had several (``no_item``); a
  promise with no date (答应尽快付, ``no_date``); ``month_or_item`` above.  The handler adds
  its own reasons (an amount above the item's open balance, an item that does not exist).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import cn2an

from domain.dates import half_width, read_dates
from domain.workdays import WorkCalendar
from domain.money import AmountError, parse_amount

__all__ = ["ASK", "ParsedReply", "parse_message", "parse_reply", "split_reply", "resolve_amount"]


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
    approximate: bool = False          # the date came from a period word (月底, 年前, 下周)
    conditional: bool = False          # 等甲方回款后再付: neither a payment nor a promise
    paid_share: Decimal | None = None  # 付了一半
    first_amount: Decimal | None = None   # 先付5000(, 剩下的月底): paid first, before the promised date
    lifts_dispute: bool = False        # 更正 3 不是异议
    same_as_previous: bool = False     # 11也是: the previous item's reading, copied by parse_message
    ask: str | None = None             # why the bot must ask back instead of recording (see ASK)
    text: str = ""                     # the segment as written

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: dates ISO, money "50000.00", shares as plain decimals ("0.5")."""
        def money(d: Decimal | None) -> str | None:
            return None if d is None else f"{d:.2f}"

        def share(d: Decimal | None) -> str | None:
            return None if d is None else format(d.normalize(), "f")
        return {"items": self.items if self.items in (None, "all") else list(self.items),
                "outcome": self.outcome,
                "promised_date": self.promised_date.isoformat() if self.promised_date else None,
                "promised_amount": money(self.promised_amount), "promised_share": share(self.promised_share),
                "paid_amount": money(self.paid_amount), "remainder": self.remainder,
                "correction": self.correction, "note": self.note, "approximate": self.approximate,
                "conditional": self.conditional, "paid_share": share(self.paid_share),
                "first_amount": money(self.first_amount), "lifts_dispute": self.lifts_dispute,
                "same_as_previous": self.same_as_previous, "ask": self.ask, "text": self.text}


# Why the parser asks back (one short question each, in bot/templates/followup/ack.md.j2):
ASK = {
    "no_item": "a reply that names no item while the push had several",
    "month_or_item": "`2月底付` on a line between items 1 and 3: item 2 at month end, or February?",
    "no_date": "a promise without a date (答应尽快付): when?",
}


# ---- vocabularies (matched against cleaned text: half-width, lower-case, typos fixed) ----
def _rx(*parts: str) -> re.Pattern:
    return re.compile("|".join(parts))


# Same-length typo fixes, so that spans in the cleaned text still index the original.
_TYPOS = [(r"[以己](?=经|付|联|打|转|汇|到|对|结|回|支|收|催|电)", "已"), ("月低", "月底"), ("帐", "账"),
          ("歀", "款"), ("付青", "付清"), ("结青", "结清"), ("聯繫", "联系"), ("联係", "联系"),
          ("電話", "电话"), ("週", "周"), ("禮拜", "礼拜"), ("関机", "关机"), ("人姐", "人接"), ("问提", "问题"),
          ("联西", "联系"), ("发标", "发票")] + [(a, b) for a, b in zip("壹贰叁肆伍陆柒捌玖拾佰仟", "一二三四五六七八九十百千")]
_NEG_BEFORE, _NEG_AFTER = re.compile(r"[没未不无]"), re.compile(r"不了|不出|不起")
_DISPUTE = _rx(r"异议|争议|纠纷|投诉|扯皮|拒付|拒绝付|不承认|否认|不认账|不认可|(?<!没)(?<!没有)有问题|有点问题|质量.{0,2}问题",
               r"抬头.{0,3}(?:错|不对)|发票.{0,4}(?:错|有误|不对)|开错|重开|重新开|补开|红冲",
               r"(?:没|未)收到[^，,。；]{0,6}发票|(?:没|未)收到(?:发票|货)|瑕疵|扣款|发票(?:还)?(?:没|未)(?:收到|开|到)|货(?:物)?(?:还)?(?:没|未)(?:收到|到)|(?:金额|数量|价格|单价|数目).{0,2}(?:不对|有误|错)",
               r"退货|退换|不认(?!识)|对不上|不一致|不符(?!合)|专票|普票|少发|漏发|发错|错发|送错|破损|货不对|\bdisput|wrong invoice|complain",
               r"\b(?:amount|invoice|price|quantity|total) (?:is|was|are|were) (?:wrong|incorrect)|corrected invoice|new invoice|re-?issue",
               r"quality (?:issue|problem)|damaged|refuses? to pay|doesn'?t (?:accept|agree with) the (?:bill|invoice|amount)")
# a damaged delivery that 不影响付款 is no dispute: only these words still count then
_DISPUTE_FIRM = re.compile(r"异议|争议|纠纷|拒付|拒绝付|不承认|否认|不认账|\bdisput")
_NO_EFFECT = re.compile(r"不影响(?:付款|回款|结算|付|支付|打款|结账)|不耽误(?:付款|回款|结算)|"
                        r"(?:doesn'?t|does not|won'?t|will not) affect (?:the )?payment")
_PAID = _rx(r"已(?:经|于[^，,。；]{0,12}?)?(?:付|支付|打款|打钱|转账|转款|转(?![告达交])|汇款?|回款|结清|到账|收款)",
            r"已经?打[了过](?![^，,。；]{0,5}(?:电话|次|遍|通))",
            r"收到(?:客户|对方)?的?(?:付款|汇款|转账)|(?:钱|款|货款)[^，,。；]{0,4}(?:打|转|汇|付)(?:过去|过来)?了|(?:打|转|汇)过去了|付过了|(?<!电话)(?<!话)打过了",
            r"\b(?:was|were|has been|have been|got) (?:sent|paid|transferred|wired)\b",
            r"\b(?:has|have|had|already) (?:paid|transferred|wired|sent)|\b(?:paid|transferred|wired)\b(?! by| on| next| before)",
            r"(?:付清|付|转|汇|打款|打钱|支付|回款|结清|到账)过?了|(?:打|转|汇)过来了",
            r"(?:款|钱)(?:已经?)?(?:到|收)(?!期)了?|收到(?:款|钱|货款)|已入账|\bpaid\b",
            r"打了(?=\s*[\d.,一二两三四五六七八九十]+\s*[万wk千元块])")     # 打了5万, not 打了三次电话
_PROMISE = _rx(r"答应|承诺|保证|同意付|最迟|最晚|付清|结清|还清|一次性付|先(?:付|打|转|还)",
               r"会(?:付|打|转|汇|结|还|安排)|安排(?:付|打|转|汇|结|支付|回款|款)|\bpromised?\b",
               r"\b(?:will|'ll|going to|agreed? to|plan(?:s|ning)? to|can) (?:pay|transfer|settle|wire|clear)",
               r"\bpay(?:ing)? (?:by|on|before|next|in|within|the rest|the balance|half|all|in full)",
               r"\b(?:scheduled|arranged)\b|\bpayment (?:on|by|before|next)\b|\bwill be (?:made|paid|transferred|sent|settled|wired)\b",
               # a promise without a date: asked back (尽快付, 这两天安排)
               r"(?:尽快|尽早|马上|这两天|过两天|过几天|近期|节后|抓紧|soon)\s*(?:安排)?(?:付|支付|打|转|汇|结|还|安排|pay)")
# payment verbs: with a date they make a promise.  A bare 打/转 counts only before an
# amount or at the clause end (明天打), never after 再/又 (明天再打 is calling again).
_VERB = _rx(r"付|支付|打款|打钱|转账|转款|汇|结款|结账|结算|还款|还钱|回款|到账|安排|能付|能结|会结|结掉|\bpay(?:s|ing)?\b",
            r"[打转]过来|(?<![再又])[打转](?=\s*[\d一二两三四五六七八九十半]|\s*$)|(?<![催要追讨])款",
            r"延期|推迟|宽限|延到|推到")
_NO_REPLY = r"不回(?!款)|[没未]回复|[没未]回(?![款来])|no (?:reply|response)"
_UNREACHABLE = _rx(r"联[系络](?:不上|不到)|[没未]联[系络]上|找不到|关机|离职|(?:老板|经理|负责人|财务|对接人)不在|停机|空号|占线|失联|拉黑|跑路|人不在|倒闭|破产|注销|停业",
                   r"不接(?!受)|[没无]人接|[没未]接(?!受)|打不通|没打通|未接通|不理|no answer|unreachable",
                   r"(?:couldn'?t|could not|can'?t|cannot|unable to) (?:reach|contact|get (?:hold of|through))",
                   r"not answering|didn'?t (?:answer|pick up)|phone (?:is )?(?:off|switched off)|不通",
                   r"(?:nobody|no one|no-one) (?:picked up|answered|answers|picks up)",
                   _NO_REPLY)
# "no reply yet" after the rep sent something is waiting on the customer, not unreachable
_NO_REPLY_RX = re.compile(_NO_REPLY)
_SENT = re.compile(r"发了|发过|已发|发送|寄了|寄过|已寄|留言|留了言|发给|sent|emailed|messaged")
# the customer waits for something before paying: neither a payment nor a promise
_CONDITIONAL = re.compile(r"等(?!等)(?P<what>[^，,。；]{1,12}?)(?:后|以后|之后|了|再|才|就|到位|下来)|要等|得等|需要等|"
                          r"看.{0,6}情况|如果|假如|若是|除非|前提是|(?:回款|到账)(?:后|以后|之后)再|收到[^，,。；\x00]{0,6}(?:后|以后|之后)|"
                          r"(?:后|以后|之后)才(?:能|会|可以)?(?:付|支付|打款|结)|到位(?:后|以后)|批下来|"
                          r"[^，,。；\x00]{1,6}完[^，,。；\x00]{0,3}(?:再|才)(?:能)?(?:付|打|转|结)|"
                          r"\b(?:once|after|when|if|unless) (?:they|the|their|we)\b|\bbefore (?:paying|they (?:can )?pay)\b|"
                          r"\bwaiting (?:for|on) (?:their|the|a) (?:own )?(?:client|customer|payment|funds|money|approval|boss)")


def _conditional(clause: str) -> bool:
    """等甲方回款后再付 waits on an event; 等下个月初再付 only names a date (masked to \\x00)."""
    for m in _CONDITIONAL.finditer(clause):
        if m["what"] is None or m["what"].strip("\x00 到") :
            return True
    return False
_NOT_X = re.compile(r"不是\s*[^，,。；;是\s]*")              # 是3万不是3000: the amount said is 3万
_FILLER = re.compile(r"[\s\x00,，。.!！~～:：]|左右|之前|以前|前后|[前吧的了啊呢哈]|说|讲|表示|回复|客户|对方|他们?|她们?|"
                     r"老板|财务|[\u4e00-\u9fff]总|大概|大约|应该|估计|可能|争取|尽量|差不多|已联系|联系了|联系上了|"
                     r"首期|首付|尾款|第?[一二三四]期|"
                     r"\b(?:by|on|about|around|maybe|probably|customer|they|said|says)\b")
_DITTO = re.compile(r"\s*(?:也是|也一样|一样|同上|同样|同前|也是这样|也是同样)(?:的|情况)?\s*[。.!！]*\s*$|"
                    r"\s*(?:same|same as above|ditto|also)\s*[.!]*\s*$")
_CONTACTED = _rx(r"联系|联络|电话|打过|通话|沟通|拜访|上门|见面|面谈|微信|短信|邮件|对账|催|说|反馈",
                 r"回复|答复|确认|通知|转告|留言|要求|反映|律师函|[催对]账函|发函|答应|承诺|同意|接受|表示|声称|发了|寄了",
                 r"资金|紧张|困难|没钱|周转|\b(?:sent|email|reminder)\b",
                 r"\b(?:call(?:ed)?|wechat|contacted|visit(?:ed)?|spoke|talked|emailed|e-mailed|messaged|met|told|said|says|reached)\b")
_ACTIVITY = re.compile(r"拜访|上门|见面|面谈|联系|联络|电话|沟通|对账|开会|回来|出差|出国|上班|放假|休假|发货|开票|"
                       r"签字|盖章|审批|商量|考虑|研究|决定|回复|答复|确认|到期|再|去|问|找|催|等")
_REMAINDER = re.compile(r"另(?:外)?一半|\brest\b|剩下的?|剩余的?|剩的|余款|尾款|余下的?|其余的?|余额|\bthe (?:rest|balance|remainder)\b|\bremaining (?:amount|balance)\b")
_SHARES = [(r"一半|半数|半款|\bhalf\b", lambda m: Decimal("0.5")),
           (r"(?<![\d.])(\d+(?:\.\d+)?)\s*%", lambda m: Decimal(m[1]) / 100),
           (r"百分之([零一二两三四五六七八九十百]{1,4})", lambda m: Decimal(_int(m[1])) / 100),
           (r"(\d|[一二两三四五六七八九])成", lambda m: Decimal(_int(m[1])) / 10),
           (r"(?<![\d一二两三四五六七八九十])([\d一二两三四五六七八九十]+)分之([\d一二两三四五六七八九十]+)",
            lambda m: (Decimal(_int(m[2])) / Decimal(_int(m[1]))).quantize(Decimal("0.0001"))),
           (r"全部|全款|全额|全数|所有(?:款|欠款|货款)?|付清|结清|还清|一次性|付完|结完|\bin full\b|"
            r"\b(?:the )?(?:full|whole|entire) (?:amount|balance|invoice)\b|\ball of it\b|\bsettle\b", lambda m: Decimal(1))]
_AMOUNT = _rx(r"(?:[¥￥]\s*|rmb\s*)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
              r"(?:\s*(?P<unit>[万千亿]|[wk](?![a-z]))(?:\d+[千百])?(?:\d(?![\d.]))?)?(?:\s*(?P<yuan>元|块钱?|rmb))?",
              r"[一二两三四五六七八九十][零一二两三四五六七八九十百千万亿]*(?:元|块钱?)?")
_NOT_MONEY_AFTER = re.compile(r"\s*(?:[个次条天号日月年周点:%项笔单楼]|成|分之|小时|分钟)")
_CORRECTION = re.compile(r"(?:更正|修改|修正|纠正|改为|改成|更改)[\s:：,，]*")
# items: 全部/所有/都 → all; 1 · 1. · 1、 · 1,3 · 1-3 · 1 2 3 · 第1条 · #1 · ①
_ALL = _rx(r"(?:全部|所有|全都|以上|上述|这几[笔条个]|all\b)的?(?:客户|都|均|条|项|笔)?",
           r"都(?=[已没未联说答付在不])")
_SEP = re.compile(r"\s*[,，、和及跟&+]\s*|\s+|(?=[①-⑳#第])")
# A number glued to 月/元/年 is a date or an amount (2月底, 26元, 6年); after a space it is
# still an item when what follows is a period word (2 月底, 26 元旦前, 6 年前付清): reps
# type the item number, a space, then the answer.
_NUM_GUARD = (r"(?![万千百亿元块%日月天周点个次年前成/]|[wk](?![a-z])|[:：]\s*\d|号(?!码)|\.\d|[-/]\d|分之|小时|"
              r"(?:st|nd|rd|th)\b)"
              r"(?!\s+(?:[万千百亿块%天周点个次成]|[wk](?![a-z])|元(?!旦)|月(?![底初中末])|年(?![前底末后])|日(?!期)|号(?!码)|"
              r"[:：]\s*\d|分之|小时|\.\d))")
_ITEM = re.compile(rf"第\s*(?P<di>[\d一二三四五六七八九十]+)\s*[条项笔个单]?|(?:#|item\s*|no\.\s*)(?P<hash>\d{{1,3}})|"
                   rf"(?P<circ>[①-⑳])|(?P<a>\d{{1,3}})(?:\s*[-~～到至]\s*(?P<b>\d{{1,3}}))?(?!\d){_NUM_GUARD}")
_RANGE_IS_DATE = re.compile(r"\s*(?:前|之前|以前|号|日|付|结|还|打|转|汇|到|回)")
_GLUED_DATE = re.compile(r"(?:前|之前|以前|号|日|付|结|还|打|转|汇|到|回|\s*$)")
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
            if items and a <= max(items):
                break                                    # 19 12-20付款: item lists only go up
            if m["b"] and (not (a < b <= (item_count or 50) and b - a < 30) or (
                    item_count is None and _RANGE_IS_DATE.match(s, m.end())) or (
                    a <= 12 and b <= 31 and _GLUED_DATE.match(s, m.end()))):
                break                                    # 12-20付 is a date, not items 12..20
            nums = list(range(a, b + 1))
            glued = _ITEM_END.match(s, m.end()).end() == m.end()
            if glued and item_count is not None and b > item_count:   # 500已付
                glued_big |= not items
                break
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
        bare = re.fullmatch(r"(?:\d{1,3}(?:,\d{3})+|\d{3,9})(?:\.\d{1,2})?", text) and not _NOT_MONEY_AFTER.match(s, m.end())
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


def parse_reply(text: str, today: date, item_count: int | None = None,
                calendar: WorkCalendar | None = None) -> ParsedReply:
    """Parse one reply segment (use :func:`parse_message` for a whole message). ``calendar``: the
    company's (``Services.calendar``), on which ``3个工作日内`` and ``月底`` are counted."""
    s = _clean(text or "")
    items, pos, correction = _head(s, item_count)
    body = s[pos:]
    note = (text or "")[pos:].strip()
    if _DITTO.match(body):
        return ParsedReply(items=items, outcome="other", correction=correction, note=note, same_as_previous=True,
                           text=(text or "").strip())
    # 是3万不是3000 / 不是异议: what is denied is not read (a correction's "不是异议" lifts it)
    denied = [m for m in _NOT_X.finditer(body)]
    lifts = correction and any(re.search(r"异议|争议|纠纷|disput", m.group()) for m in denied)
    body = _mask(body, [m.span() for m in denied])
    found = [f for f in read_dates(body, today, calendar) if "\x00" not in body[f.span[0]:f.span[1]]]
    dates = [(f.date, f.span) for f in found]
    approx = {f.date: f.approximate for f in found}
    masked = _mask(body, [span for _, span in dates])
    conditional = False
    message_paid = bool(_hits(_PAID, masked))
    paid_amount = paid_share = first_amount = first_share = None
    promise: dict[str, Any] = {"date": None, "amount": None, "share": None, "rest": False}
    neutral: list[tuple] = []
    any_promise = any_paid = False
    for a, b in _clauses(body):
        mclause = masked[a:b]
        clause_dates = [d for d, (x, y) in dates if a <= x < b or a < y <= b]
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
        first = re.search(r"先(?:付|打|转|还|汇|给)|\bfirst\b", unpaid)
        if _conditional(mclause):                        # 收到货款就付 inside it is no payment
            conditional = True                           # 剩下的要等回款: not promised
            continue
        future_paid = paid and any(d > today for d in future) and all(re.search(r"[\u4e00-\u9fff]", p.group()) and not p.group().startswith("已") for p in paid)
        if future_paid:                                  # 元旦以后才能付了: 付了 is about the future
            verbs = verbs or _hits(_VERB, mclause)
        if paid and not promised_words and not future_paid and not (verbs and any(d > today for d in clause_dates)):
            any_paid = True
            paid_amount = amount if paid_amount is None else paid_amount
            paid_share = share if paid_share is None else paid_share
        elif promised_words or (future and (verbs or rest or amount is not None or share is not None)):
            has_money = promise["amount"] is not None or promise["share"] is not None
            new_money = amount is not None or share is not None or rest
            if first and not future and amount is not None and not has_money and first_amount is None:
                first_amount = amount                    # 先付5000: the first instalment, no date of its own
            elif first and not future and share is not None and not has_money and first_share is None:
                first_share = share                      # 先付一半，另一半月底
            elif (first_amount is not None or first_share is not None) and (rest or future) and not has_money \
                    and not promise["date"]:
                _fill(promise, future[0] if future else None, None, None, True)   # 剩下的月底
            # clauses that complete each other merge (答应3万5，大后天到账); one that repeats a
            # field is a second promise and only the first counts (下周五付一半，剩余月底)
            elif not ((promise["date"] and future) or (has_money and new_money)):
                _fill(promise, future[0] if future else None, amount, share, rest)
            elif not promise["date"] and future:         # will settle | the balance by end of the month
                promise["date"] = future[0]
            any_promise = True
        else:
            # a date beside another activity (明天去拜访) is that activity's, not the payment's
            when = future[0] if future and not _ACTIVITY.search(mclause) else None
            # 客户说15号左右 answers the push; 今天下雨 only says when it rained
            bare = not _FILLER.sub("", mclause) or amount is not None or share is not None or rest or bool(verbs)
            neutral.append((when, amount, share, rest, bool(verbs), bare))
    # a promise spread over clauses (下周五，付一半), or a bare date in answer to the push
    # (客户说15号左右) — unless the rep is waiting on something or cannot reach anyone
    if not any_promise and not any_paid and any(n[0] and n[5] for n in neutral) and not conditional and (
            any(n[3] or n[4] for n in neutral) or not re.search(r"等|" + _UNREACHABLE.pattern, masked)):
        any_promise = True
    if any_promise:
        for n in neutral:                                # 答应了，下周五 / 剩下的，月底
            if first_amount is not None and n[0] and not promise["date"]:
                _fill(promise, n[0], None, None, True)
            else:
                _fill(promise, *n[:4])
    elif any_paid and paid_amount is None:               # 已付12月25号，2万
        paid_amount = next((n[1] for n in neutral if n[1] is not None), None)
    elif correction and not any_paid:                    # 更正 16 是3万 / 更正 2 是下周五: the promise's
        amounts = [n[1] for n in neutral if n[1] is not None]
        whens = [n[0] for n in neutral if n[0] is not None]
        if amounts or whens:
            promise["amount"] = amounts[0] if amounts else None
            promise["date"], any_promise = (whens[0] if whens else None), True
    if promise["rest"]:
        if paid_share is not None and promise["share"] in (None, 1):
            promise["share"] = max(Decimal(0), 1 - paid_share)
        elif paid_amount is not None and promise["share"] == 1:
            promise["share"] = None                      # balance − paid, see resolve_amount
        elif not any_paid and promise["amount"] is None and promise["share"] is None and first_amount is None:
            promise["share"] = Decimal(1)
    if first_amount is not None and not promise["rest"]:  # 先付1万 and nothing after: the promise
        promise["amount"], first_amount = first_amount, None
    if first_share is not None:                          # 先付一半 (，另一半月底: the other half then)
        promise["share"] = 1 - first_share if promise["rest"] and promise["date"] else first_share
        promise["rest"] = promise["rest"] and promise["date"] is not None

    disputes = _hits(_DISPUTE, masked)
    if _NO_EFFECT.search(masked):                        # 有点破损，但不影响付款
        disputes = [d for d in disputes if _DISPUTE_FIRM.match(d.group())]
    unreachable = _hits(_UNREACHABLE, masked)
    if unreachable and _SENT.search(masked) and all(_NO_REPLY_RX.fullmatch(u.group()) for u in unreachable):
        unreachable = []                                 # 发了对账单，还没回复: waiting, not unreachable
    outcome = ("dispute" if disputes and not lifts else
               ("promised" if any_promise and (promise["date"] or first_amount) else "paid_claimed") if any_paid else
               "promised" if any_promise else
               "unreachable" if unreachable else
               "contacted" if _CONTACTED.search(masked) else "other")
    ask = None
    if items is None and item_count != 1:
        ask = "no_item"
    elif outcome == "promised" and promise["date"] is None and not correction:
        ask = "no_date"
    return ParsedReply(items=items, outcome=outcome, promised_date=promise["date"],
                       promised_amount=promise["amount"], promised_share=promise["share"],
                       paid_amount=paid_amount, remainder=promise["rest"], correction=correction,
                       note=note, approximate=bool(promise["date"] and approx.get(promise["date"])),
                       conditional=conditional, paid_share=paid_share, first_amount=first_amount,
                       lifts_dispute=lifts, ask=ask, text=(text or "").strip())


def parse_message(text: str, today: date, item_count: int | None = None,
                  calendar: WorkCalendar | None = None) -> list[ParsedReply]:
    """A whole reply message: its segments (:func:`split_reply`), each parsed, with back-
    references resolved (``10 明天付；11也是`` gives 11 the same promise) and a line that
    may be an item or a month (``2月底付`` between items 1 and 3) marked to ask back."""
    out: list[ParsedReply] = []
    for segment in split_reply(text):
        p = parse_reply(segment, today, item_count, calendar)
        if p.same_as_previous and out and out[-1].items is not None:
            prev = out[-1]
            p = dataclasses.replace(prev, items=p.items, correction=p.correction, note=p.note, text=p.text,
                                    same_as_previous=True, ask=None if p.items is not None else "no_item")
        elif p.items is None and out:
            m = re.match(r"\s*(\d{1,2})月", _clean(segment))
            prev = out[-1].items
            if m and isinstance(prev, list) and int(m[1]) == max(prev) + 1 and (item_count or 99) > max(prev):
                p.ask = "month_or_item"
        out.append(p)
    return out


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
        month = re.match(r"\s*(\d{1,2})月", s[start:m.end()])
        if items or not segments or (month and last_max and int(month[1]) == last_max + 1):
            # a line 2月底付 after item 1 may be item 2: its own segment, to ask back
            segments.append([start, m.end()])
            last_max = max(items) if items and items != "all" else last_max
        else:
            segments[-1][1] = m.end()
        body = start + rel
        for cut in re.finditer(r"(?<=[^\d\s,，])(?:[，,]\s*|\s+|(?=[①-⑳]))(?=\S)", s[body:m.end()]):
            if not cut.group().strip() and re.search(r"[a-z]\s*$", s[body:body + cut.start() + 1]):
                continue                                 # dec 20, the 10th: English splits at commas only
            items, _, _ = _head(s[body + cut.end():m.end()], None)
            month = re.match(r"(\d{1,2})月", s[body + cut.end():m.end()])
            if not items and month and last_max and int(month[1]) == last_max + 1:
                # 4关机，5月底付: item 5 at month end, or May? its own segment, asked back
                segments[-1][1] = body + cut.start()
                segments.append([body + cut.end(), m.end()])
                continue
            if items and items != "all" and min(items) > last_max:
                segments[-1][1] = body + cut.start()
                segments.append([body + cut.end(), m.end()])
                last_max = max(items)
    out = [text[a:b].strip(" \t\n，,；;。") for a, b in segments]
    return [seg for seg in out if seg]


def resolve_amount(parsed: ParsedReply, open_balance: Decimal) -> Decimal | None:
    """The promised amount in yuan for a given open balance, or None if none was promised.

    Absolute amount first; then "the rest" after a claimed payment (balance − paid);
    then share × balance.  Quantized half-up to 0.01, never below 0.  An amount above the
    open balance is returned as said, never cut down: the caller asks the rep which is meant.
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
    value = max(value, Decimal(0))
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
