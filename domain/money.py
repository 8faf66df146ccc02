"""Exact money helpers: parsing what people type, cents conversion, display.

Money in the ledger is exact decimal yuan with two places (see DOMAIN.md), so nothing
here ever touches ``float``: every number is built from its string form with
``Decimal``.  Chinese integer numerals (两万, 三万五千) are delegated to ``cn2an``;
cn2an returns floats for decimals, so the fractional part of a Chinese numeral
(一点五万) is assembled here digit by digit instead.

Accepted by :func:`parse_amount` (after trimming a currency mark and 元/块):

* arabic with or without thousands grouping: ``12,345.60``, ``12345.6``, ``-300``
* arabic with a magnitude unit: ``1.2万``, ``5w``, ``5千``, ``5k``, ``1.5亿``, ``2万3千``
* the spoken shorthand ``3万5`` = 35,000: a single trailing digit after a unit counts
  in the next lower unit (3万5 → 3万5千, 1千2 → 1千2百); a longer trailing number
  is taken literally (3万500 → 30,500)
* Chinese numerals: ``两万``, ``三万五千``, ``三万五``, ``十万``, ``一点五万``
* full-width digits and punctuation (``１２３``, ``￥``) and a leading minus (``-``/``负``)
* the accountant's negative in parentheses: ``(500.00)``, ``（2,000.00）``, ``¥(500)`` = −500.00

A negative result is only a reading: whether a negative amount is allowed is the caller's rule
(a credit note may be negative, a payment never).
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import cn2an

__all__ = ["AmountError", "parse_amount", "parse_money", "to_cents", "from_cents", "format_yuan", "format_wan",
           "format_money", "SYMBOLS"]

CENT = Decimal("0.01")

# magnitude units, arabic-side spelling included (w = 万, k = 千 in chat shorthand)
_UNITS = {"亿": Decimal(10) ** 8, "万": Decimal(10) ** 4, "w": Decimal(10) ** 4,
          "千": Decimal(1000), "k": Decimal(1000), "百": Decimal(100)}
_CN_DIGITS = "零〇一二两三四五六七八九"
_CN_DIGIT_VALUE = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_CN_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")

_PREFIXES = ("人民币", "rmb", "cny", "¥", "￥")
_SUFFIXES = ("块钱", "人民币", "元整", "元", "块", "圆", "rmb", "cny")

_PLAIN = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+")
_UNIT_TOKEN = re.compile(r"(\d+(?:\.\d+)?)([亿万w千k百])")


class AmountError(ValueError):
    """The text is not one recognisable amount of money."""


def _half_width(text: str) -> str:
    """Map full-width ASCII (U+FF01..FF5E) and the ideographic space to ASCII.

    Done per character (not NFKC) so that nothing else in the text changes.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            ch = chr(code - 0xFEE0)
        elif code == 0x3000:
            ch = " "
        out.append(ch)
    return "".join(out)


def _strip_affixes(s: str) -> str:
    """Drop currency marks and 元/块 so only the number and its units remain."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if s.startswith(p):
                s, changed = s[len(p):].strip(), True
        for suf in _SUFFIXES:
            if s.endswith(suf) and len(s) > len(suf):
                s, changed = s[: -len(suf)].strip(), True
    return s


def _arabic_with_units(s: str) -> Decimal | None:
    """``1.2万``, ``2万3千``, ``3万5``: tokens of number+unit with strictly falling units."""
    pos, total, last_unit = 0, Decimal(0), None
    for m in _UNIT_TOKEN.finditer(s):
        if m.start() != pos:
            return None
        unit = _UNITS[m.group(2)]
        if last_unit is not None and unit >= last_unit:
            return None          # 5万3万 is two numbers, not one
        total += Decimal(m.group(1)) * unit
        last_unit, pos = unit, m.end()
    if last_unit is None:
        return None
    rest = s[pos:]
    if not rest:
        return total
    if not rest.isdigit():
        return None
    # the spoken shorthand: one digit after a unit is in the next lower unit (3万5 = 35000)
    if len(rest) == 1 and last_unit >= 1000:
        return total + Decimal(rest) * last_unit / 10
    return total + Decimal(rest)


def _chinese(s: str) -> Decimal | None:
    """Chinese numerals via cn2an; 一点五万 style decimals are assembled here."""
    if "点" in s:
        m = re.fullmatch(r"([零〇一二两三四五六七八九十百千]+)点([%s]+)([亿万千]?)" % _CN_DIGITS, s)
        if not m:
            return None
        whole = _cn_int(m.group(1))
        if whole is None:
            return None
        frac = "".join(str(_CN_DIGIT_VALUE[c]) for c in m.group(2))
        value = Decimal(f"{whole}.{frac}")
        return value * _UNITS[m.group(3)] if m.group(3) else value
    if not _CN_NUMERAL.fullmatch(s):
        return None
    n = _cn_int(s)
    return None if n is None else Decimal(n)


def _cn_int(s: str) -> int | None:
    try:
        value = cn2an.cn2an(s, "normal")
    except (ValueError, KeyError, IndexError):
        return None
    # cn2an answers int for integer numerals; anything else is not an integer numeral
    return value if isinstance(value, int) else None


def parse_amount(text: str) -> Decimal:
    """Parse one amount of money; the result is a Decimal quantized to 0.01 (half up)."""
    if not isinstance(text, str):
        raise AmountError(f"amount must be text, got {type(text).__name__}")
    s = _half_width(text).strip().lower()
    if not s:
        raise AmountError("empty amount")
    if re.search(r"[\d零〇一二两三四五六七八九十]\s+[\d零〇一二两三四五六七八九十]", s):
        raise AmountError(f"more than one number: {text!r}")
    s = s.replace(" ", "")
    negative = False
    s = _strip_affixes(s) if s.startswith(_PREFIXES) else s
    if not s:                            # a currency mark alone: ¥
        raise AmountError(f"not an amount of money: {text!r}")
    if len(s) > 2 and s[0] == "(" and s[-1] == ")":          # accounting notation: (500.00)
        negative, s = True, s[1:-1]
        if s.startswith(("-", "−", "负", "(")):
            raise AmountError(f"two minus signs: {text!r}")
    elif s[0] in "-−负":
        negative, s = True, s[1:]
    elif s[0] == "+":
        s = s[1:]
    s = _strip_affixes(s)
    if s.startswith(("-", "负")):        # ¥-5 is also a negative amount
        if negative:
            raise AmountError(f"two minus signs: {text!r}")
        negative, s = True, s[1:]
    value: Decimal | None = None
    if _PLAIN.fullmatch(s):
        value = Decimal(s.replace(",", ""))
    elif s and s[0].isdigit():
        value = _arabic_with_units(s.replace(",", "")) if _grouping_ok(s) else None
    elif s:
        value = _chinese(s)
    if value is None:
        raise AmountError(f"not an amount of money: {text!r}")
    if negative:
        value = -value
    try:
        return value.quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:      # absurdly large figures
        raise AmountError(f"amount out of range: {text!r}") from exc


def _grouping_ok(s: str) -> bool:
    """Commas inside a unit form must still be proper thousands grouping (1,200万)."""
    head = re.match(r"[\d,]+", s)
    return head is None or "," not in head.group() or bool(
        re.fullmatch(r"\d{1,3}(?:,\d{3})+", head.group()))


def to_cents(d: Decimal | int) -> int:
    """Exact yuan → integer cents. Sub-cent values are refused rather than rounded,
    because silently rounding a ledger figure hides an upstream error."""
    if isinstance(d, bool) or not isinstance(d, (Decimal, int)):
        raise AmountError(f"to_cents needs a Decimal, got {type(d).__name__}")
    cents = Decimal(d) * 100
    if cents != cents.to_integral_value():
        raise AmountError(f"amount has fractions of a cent: {d}")
    return int(cents)


def from_cents(c: int) -> Decimal:
    """Integer cents → Decimal yuan with exactly two places."""
    if isinstance(c, bool) or not isinstance(c, int):
        raise AmountError(f"from_cents needs an int, got {type(c).__name__}")
    return (Decimal(c) / 100).quantize(CENT)


def format_yuan(d: Decimal) -> str:
    """``Decimal('12345.6')`` → ``'12,345.60'`` (half-up to the cent, minus sign kept)."""
    return f"{Decimal(d).quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"


def format_wan(d: Decimal) -> str:
    """Short form for big figures in chat summaries.

    ≥ 1亿 → ``'1.23亿'``; ≥ 1万 → ``'1.23万'``; smaller amounts are shown in full
    with :func:`format_yuan`.  The scaled figure is rounded half-up to two decimals and
    trailing zeros are dropped (50000 → ``'5万'``, 15000 → ``'1.5万'``).  Because of the
    rounding this form is for display only, never for arithmetic.
    """
    d = Decimal(d)
    wan = (d / 10**4).quantize(CENT, rounding=ROUND_HALF_UP)
    if abs(wan) >= 10**4:           # judged after rounding: 99,999,999 → '1亿', not '10000万'
        unit, scaled = "亿", (d / 10**8).quantize(CENT, rounding=ROUND_HALF_UP)
    elif abs(d) >= 10**4:
        unit, scaled = "万", wan
    else:
        return format_yuan(d)
    return f"{scaled:f}".rstrip("0").rstrip(".") + unit


# how an amount in each currency is written: its own symbol, so a US$ figure never reads as yuan
SYMBOLS = {"CNY": "¥", "USD": "US$", "EUR": "€", "HKD": "HK$", "GBP": "£", "JPY": "JP¥", "SGD": "S$",
           "AUD": "A$", "CAD": "C$", "TWD": "NT$", "MOP": "MOP$", "KRW": "₩"}


def format_money(d: Decimal | None, currency: str | None = "CNY") -> str:
    """``(Decimal('1000'), 'USD')`` → ``'US$1,000.00'``; a currency without a symbol is written
    with its code (``'THB 1,000.00'``). The one way every template writes an amount."""
    if d is None:
        return "-"
    cur = (currency or "CNY").upper()
    sym = SYMBOLS.get(cur)
    body = format_yuan(d)
    sign = ""
    if body.startswith("-"):
        sign, body = "-", body[1:]
    return f"{sign}{sym}{body}" if sym else f"{sign}{cur} {body}"


# currency words people write next to an amount (checked longest first)
_CURRENCY_WORDS = {"us$": "USD", "usd": "USD", "美元": "USD", "美金": "USD", "$": "USD",
                   "hk$": "HKD", "hkd": "HKD", "港币": "HKD", "港元": "HKD",
                   "eur": "EUR", "€": "EUR", "欧元": "EUR", "gbp": "GBP", "£": "GBP", "英镑": "GBP",
                   "jpy": "JPY", "日元": "JPY", "sgd": "SGD", "s$": "SGD",
                   "cny": "CNY", "rmb": "CNY", "人民币": "CNY", "¥": "CNY", "￥": "CNY"}
_CODE = re.compile(r"[a-z]{3}")


def currency_word(text: str) -> str | None:
    """``'USD'``, ``'美元'``, ``'US$'`` → ``'USD'``; None when the word names no currency."""
    w = _half_width(text).strip().lower()
    return _CURRENCY_WORDS.get(w)


def parse_money(text: str) -> tuple[Decimal, str | None]:
    """An amount with an optional currency glued to it: ``US$2000`` / ``2000USD`` / ``2万美元`` →
    (2000, 'USD'); ``5万`` → (50000, None) (no currency written: the caller decides)."""
    s = _half_width(text).strip().lower()
    currency = None
    for word in sorted(_CURRENCY_WORDS, key=len, reverse=True):
        if s.startswith(word) and len(s) > len(word):
            currency, s = _CURRENCY_WORDS[word], s[len(word):]
            break
        if s.endswith(word) and len(s) > len(word):
            currency, s = _CURRENCY_WORDS[word], s[: -len(word)]
            break
    return parse_amount(s), currency
