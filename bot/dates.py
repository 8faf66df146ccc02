"""Understanding the dates reps and customers write, always relative to an explicit ``today``.

Nothing here reads the clock: the caller passes ``today`` (the business date of the
message), which keeps replies reproducible in tests and correct when a reply is
re-processed later.

Rules worth knowing (they are decisions, not accidents):

* **Month-day without a year** (``12月5日``, ``12/5``) means this year, unless that date
  lies more than 60 days before ``today`` — then next year (said in November, ``1月5日``
  is next January).  Symmetrically a date more than 300 days ahead means last year
  (said on 2027-01-05, ``12月28号`` is eight days ago, not next December).
* **Bare day of month** (``10号``) is this month's, or next month's if it has passed;
  a day the month lacks is clamped to its last day (``31号`` in November → Nov 30).
* **Weeks start on Monday** (Chinese convention).  ``下周五`` is Friday of next calendar
  week; ``本周五``/``这周五`` is Friday of this calendar week (even if it has passed:
  ``这周一已经付了``); a bare ``周五``/``星期五`` is the coming one, today included.
* **Vague periods resolve to their last day**, because a promised date is a deadline
  after which the promise counts as broken: ``月底`` → last day of the month,
  ``下周``/``下周内`` → Friday of next week, ``本周内`` → Friday of this week,
  ``周末`` → Sunday, ``12月份`` → Dec 31, ``年底`` → Dec 31.  The exceptions follow the
  words: ``下月初``/``月初`` → the 1st of next month, ``月中`` → the 15th.
* ``N天内``/``N天后`` → today + N; ``一周内`` → +7; ``N个月内`` → same day N months on
  (clamped); ``N个工作日内`` counts working days on the Chinese calendar (make-up days
  included), falling back to Mon–Fri for years the calendar package does not cover.
* Unsupported (returns nothing): festivals (``春节前``), ``过几天``, ``近期``.
"""
from __future__ import annotations

import calendar
import re
from datetime import date, timedelta
from typing import Callable

import cn2an

from bot.workdays import WorkCalendar

_CALENDAR = WorkCalendar()

__all__ = ["DateError", "parse_date", "find_date", "find_dates", "half_width"]


class DateError(ValueError):
    """The text is not a recognisable date."""


def half_width(text: str) -> str:
    """Full-width ASCII → ASCII, one character for one, so match spans stay valid."""
    return "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else
                   (" " if c == "\u3000" else c) for c in text)


# ---- building blocks -------------------------------------------------------------
_CN = "零〇一二两三四五六七八九十"
NUM = rf"(?:\d{{1,2}}|[{_CN}]{{1,3}})"           # a day/month/count, arabic or Chinese
YEAR = r"(?:\d{4}|[零〇一二三四五六七八九]{4})"
_WEEKDAY = {c: i for i, c in enumerate("一二三四五六")} | {"日": 6, "天": 6, "七": 6} | {
    str(i + 1): i for i in range(7)}


def _num(s: str) -> int:
    """Arabic or Chinese numeral → int (cn2an for 十二, 二十五; digit-wise for 二〇二六)."""
    if s.isdigit():
        return int(s)
    if len(s) == 4 and "十" not in s:                    # a year read digit by digit
        return int("".join(str("零一二三四五六七八九".index(c)) for c in s.replace("〇", "零")))
    value = cn2an.cn2an(s, "normal")
    if not isinstance(value, int):
        raise DateError(f"not a whole number: {s}")
    return value


def _last_day(y: int, m: int) -> int:
    return calendar.monthrange(y, m)[1]


def _add_months(d: date, n: int, day: int | None = None) -> date:
    """Same (or given) day n months on, clamped to the month's length."""
    y, m = divmod(d.month - 1 + n, 12)
    y, m = d.year + y, m + 1
    return date(y, m, min(day or d.day, _last_day(y, m)))


def _month_day(m: int, d: int, today: date) -> date:
    """Year rollover for a month-day without a year: the first occurrence that is no
    more than 60 days in the past (so at most ~10 months ahead; see module docstring)."""
    earliest = today - timedelta(days=60)
    for y in range(today.year - 1, today.year + 5):       # 5 years so that Feb 29 is found
        try:
            candidate = date(y, m, d)
        except ValueError:
            if (m, d) != (2, 29):
                raise
            continue
        if candidate >= earliest:
            return candidate
    raise DateError(f"impossible month-day {m}-{d}")      # pragma: no cover


def _week_day(today: date, weeks_ahead: int, weekday: int) -> date:
    monday = today - timedelta(days=today.weekday())
    return monday + timedelta(days=7 * weeks_ahead + weekday)


def _add_workdays(today: date, n: int) -> date:
    # the company calendar's rules (调休 included); config overrides don't reach a parser, which
    # only needs "about N working days" to read a promise
    return _CALENDAR.add_workdays(today, n)


def _which(prefix: str | None) -> int:
    """下 → +1, 下下 → +2, 上 → −1, 本/这/今/none → 0 (weeks or months ahead)."""
    p = (prefix or "").replace("个", "")
    return {"下": 1, "下下": 2, "上": -1}.get(p, 0)


# ---- handlers: (match, today) -> date; may raise ValueError for impossible dates ----
def _h_ymd(m, today):
    return date(_num(m["y"]), _num(m["m"]), _num(m["d"]))


def _h_md(m, today):
    if m.groupdict().get("y"):
        return date(_num(m["y"]), _num(m["m"]), _num(m["d"]))
    return _month_day(_num(m["m"]), _num(m["d"]), today)


def _h_month_part(m, today, part=None):
    mon, part = _num(m["m"] or m["m2"]), part or m["p"]
    if m["y"]:
        return _part_of_month(_num(m["y"]), mon, part)
    earliest = today - timedelta(days=60)                  # the same rollover as _month_day
    return next(d for y in range(today.year - 1, today.year + 2)
                if (d := _part_of_month(y, mon, part)) >= earliest)


def _part_of_month(y: int, mon: int, part: str) -> date:
    if part == "初":
        return date(y, mon, 1)
    if part == "中":
        return date(y, mon, 15)
    return date(y, mon, _last_day(y, mon))               # 底 / 末 / 份 / 内


def _h_rel_month_part(m, today):
    part = m["p"]
    if m["w"] is None and part == "初":                   # bare 月初: the 1st still ahead
        return today if today.day == 1 else _add_months(today, 1, 1)
    if m["w"] is None and part == "中" and today.day > 15:
        base = _add_months(today, 1, 1)
    else:
        base = _add_months(today, _which(m["w"]), 1)
    return _part_of_month(base.year, base.month, part)


def _h_rel_month_day(m, today):
    base = _add_months(today, _which(m["w"]), 1)
    return date(base.year, base.month, _num(m["d"]))


def _h_bare_day(m, today):
    d = _num(m["d"])
    if not 1 <= d <= 31:
        raise ValueError("day out of range")
    base = today if d >= today.day else _add_months(today, 1, 1)
    return date(base.year, base.month, min(d, _last_day(base.year, base.month)))


_REL_DAYS = {"今天": 0, "今日": 0, "今儿": 0, "当天": 0, "明天": 1, "明日": 1, "明儿": 1,
             "后天": 2, "大后天": 3, "昨天": -1, "昨日": -1, "前天": -2, "大前天": -3}


def _h_rel_day(m, today):
    return today + timedelta(days=_REL_DAYS[m[0]])


def _h_weekday(m, today):
    wd = _WEEKDAY[m["d"]]
    if m["w"] is None:                                    # bare 周五: the coming one
        return today + timedelta(days=(wd - today.weekday()) % 7)
    return _week_day(today, _which(m["w"]), wd)


def _h_week(m, today):
    if m["p"] == "末":                                    # 周末 → Sunday
        return _week_day(today, _which(m["w"]), 6)
    friday = _week_day(today, _which(m["w"]), 4)
    if friday < today:                                    # 本周内 said on the weekend
        return _week_day(today, _which(m["w"]), 6)
    return friday


def _h_span(m, today):
    n = 0.5 if m["n"] == "半" else _num(m["n"])
    sign = -1 if m["k"] in ("前", "之前", "以前") else 1
    unit = m["u"]
    if unit == "工作日":
        return _add_workdays(today, int(n)) if sign > 0 else None
    if unit in ("天", "日"):
        return today + timedelta(days=sign * int(n))
    if unit in ("周", "星期", "礼拜"):
        return today + timedelta(days=sign * int(7 * n))
    if n == 0.5:                                          # 半个月
        return today + timedelta(days=sign * 15)
    return _add_months(today, sign * int(n))


def _h_month_part_any(m, today):
    return _h_month_part(m, today, "份" if m["p2"] else None)   # 12月份 → the month's last day


def _h_week_any(m, today):
    if m["p2"]:                                           # bare 周末 → this week's Sunday
        return _week_day(today, 0, 6)
    return _h_week(m, today)


def _h_year_end(m, today):
    return date(_num(m["y"]) if m["y"] else today.year, 12, 31)


_SUFFIX_GUARD = r"(?![\d%万千百亿元块wWkK])"       # 12.5万 is money, not a date
_PATTERNS: list[tuple[re.Pattern, Callable]] = [(re.compile(p), h) for p, h in [
    # absolute forms first: parse_date uses exactly these three
    (rf"(?<!\d)(?P<y>{YEAR})\s*[年/.\-]\s*(?P<m>{NUM})\s*[月/.\-]\s*(?P<d>{NUM})(?:\s*[日号]|(?!\d))", _h_ymd),
    (rf"(?:(?P<y>{YEAR})\s*年\s*)?(?<!\d)(?P<m>{NUM})\s*月份?\s*(?P<d>{NUM})(?:\s*[日号]|{_SUFFIX_GUARD})", _h_md),
    (rf"(?<![\d.,¥/\-:])(?P<m>\d{{1,2}})\s*[./\-]\s*(?P<d>\d{{1,2}})(?:\s*[日号]|{_SUFFIX_GUARD}(?![.,/\-:]\d))", _h_md),
    # relative forms
    (rf"(?:(?P<y>{YEAR})\s*年\s*)?(?<!\d)(?P<m>{NUM})\s*月份?\s*(?P<p>底|末|初|中)|(?<!\d)(?P<m2>{NUM})月(?P<p2>份)",
     _h_month_part_any),
    (r"(?P<w>下下个?|下个?|本|这个?|上个?)?\s*月份?\s*(?P<p>底|末|初|中)", _h_rel_month_part),
    (rf"(?P<w>下下个?|下个?|本|这个?|上个?)月\s*(?P<d>{NUM})\s*[日号]", _h_rel_month_day),
    (rf"(?<![\d月第#.\-/])(?P<d>{NUM})\s*[日号](?![码楼线])", _h_bare_day),
    ("|".join(sorted(_REL_DAYS, key=len, reverse=True)), _h_rel_day),
    (r"(?:(?P<w>下下个?|下个?|上个?|本|这个?|今)\s*)?(?:周|星期|礼拜)(?P<d>[一二三四五六日天七1-7])", _h_weekday),
    (r"(?P<w>下下个?|下个?|本|这个?)\s*(?:周|星期|礼拜)(?P<p>末|内|之内)?(?![一二三四五六日天七1-7])|周(?P<p2>末)",
     _h_week_any),
    (rf"(?P<n>{NUM}|半)\s*个?\s*(?P<u>工作日|天|日|周|星期|礼拜|月)\s*(?P<k>之后|以后|后|之内|以内|内|里|之前|以前|前)",
     _h_span),
    (rf"(?:(?:(?P<y>{YEAR})\s*年|今年|本年)年?|年)[底末终]", _h_year_end),
]]
_ABSOLUTE = _PATTERNS[:3]


def find_dates(text: str, today: date) -> list[tuple[date, tuple[int, int]]]:
    """All non-overlapping date expressions, left to right (leftmost, then longest, wins)."""
    s = half_width(text)
    found: list[tuple[int, int, date]] = []
    for pattern, handler in _PATTERNS:
        for m in pattern.finditer(s):
            try:
                value = handler(m, today)
            except (ValueError, KeyError, IndexError, OverflowError):   # 2月30日, 十十号, ...
                continue
            if value is not None:
                found.append((m.start(), m.end(), value))
    found.sort(key=lambda f: (f[0], -f[1]))
    result, end = [], -1
    for start, stop, value in found:
        if start >= end:
            result.append((value, (start, stop)))
            end = stop
    return result


def find_date(text: str, today: date) -> tuple[date, tuple[int, int]] | None:
    """The first date expression in free text with its (start, end) span, or None."""
    dates = find_dates(text, today)
    return dates[0] if dates else None


def parse_date(text: str, today: date) -> date:
    """Parse a text that is exactly one absolute date (relative words are refused)."""
    s = half_width(text or "").strip()
    if not s:
        raise DateError("empty date")
    for pattern, handler in _ABSOLUTE:
        m = pattern.fullmatch(s)
        if m:
            try:
                return handler(m, today)
            except (ValueError, KeyError) as exc:
                raise DateError(f"impossible date {text!r}: {exc}") from exc
    raise DateError(f"not a date: {text!r}")
