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
* **Vague periods resolve to their last working day**, because a promised date is a
  deadline after which the promise counts as broken, and companies pay (对公转账) and
  look at their bank statements on working days: a "due today" reminder for a Sunday
  would land on the weekend, and a customer who means "by month end" pays on the last
  day finance is in.  So ``月底``/``月末``/``12月份`` → the month's last working day
  (Chinese calendar, 调休 included), ``年底`` → the year's last working day,
  ``下周``/``下周内`` → Friday of next week, ``本周内`` → Friday of this week (each the
  last working day on or before that Friday), ``周末`` → Sunday.  If the last working
  day has already passed (月底 said on a Saturday the 30th) the period's last day is
  taken instead.  The exceptions follow the words: ``下月初``/``月初`` → the 1st of next
  month, ``月中`` → the 15th.
* **Festivals** (the Spring Festival date comes from the lunar calendar, ``lunardate``;
  holidays and 调休 from ``chinese-calendar``): ``元旦前`` → the last working day before
  1 January; ``元旦后`` → the first working day after it; ``年前``/``春节前``/``过年前`` →
  the last working day before Spring Festival eve (除夕), the usual "before the holiday";
  ``年后``/``春节后``/``过完年`` → the first working day from the 8th day of the first
  lunar month (初八, when the statutory holiday is over).  The next such festival that
  is still ahead is meant.
* **Approximate**: dates read from a period or festival word (all of the above, and
  ``下周``, ``月初``, ``月中``, ``end of the month``) are marked approximate by
  :func:`read_dates`; a named day (``12月20日``, ``下周五``, ``明天``, ``3天内``) is not.
* **English**: ``tomorrow``, ``today``, ``(next|this) friday``, ``next week``,
  ``end of (the) month``/``month end``, ``end of (the) year``, ``in/within N days``,
  ``Dec 20``/``20th December``, ``before (chinese new year|cny|spring festival)``.
* ``N天内``/``N天后`` → today + N; ``一周内`` → +7; ``N个月内`` → same day N months on
  (clamped); ``N个工作日内`` counts working days on the company calendar the caller passes
  (domain/workdays.py: the Chinese calendar, make-up days included, with the configured and
  imported days), falling back to Mon–Fri for years nothing covers.
* Unsupported (returns nothing): ``过几天``, ``近期``, ``节后`` (which festival?).
"""
from __future__ import annotations

import calendar
import re
from datetime import date, timedelta
from typing import Callable, NamedTuple

import cn2an
from lunardate import LunarDate

from domain.workdays import WorkCalendar

# for callers with no company calendar at hand (tests, the offline ``arbot parse-reply``): the
# Chinese calendar package's schedule only; the bot passes its configured calendar (bot/services.py)
_PACKAGE_CALENDAR = WorkCalendar()

__all__ = ["DateError", "FoundDate", "parse_date", "find_date", "find_dates", "read_dates", "half_width"]


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


def _add_workdays(today: date, n: int, cal: WorkCalendar) -> date:
    return cal.add_workdays(today, n)


def _which(prefix: str | None) -> int:
    """下 → +1, 下下 → +2, 上 → −1, 本/这/今/none → 0 (weeks or months ahead)."""
    p = (prefix or "").replace("个", "")
    return {"下": 1, "下下": 2, "上": -1}.get(p, 0)


# ---- handlers: (match, today) -> date; may raise ValueError for impossible dates ----
def _h_ymd(m, today, cal):
    return date(_num(m["y"]), _num(m["m"]), _num(m["d"]))


def _h_md(m, today, cal):
    if m.groupdict().get("y"):
        return date(_num(m["y"]), _num(m["m"]), _num(m["d"]))
    return _month_day(_num(m["m"]), _num(m["d"]), today)


def _h_month_part(m, today, cal, part=None):
    mon, part = _num(m["m"] or m["m2"]), part or m["p"]
    if m["y"]:
        return _part_of_month(_num(m["y"]), mon, part, cal)
    earliest = today - timedelta(days=60)                  # the same rollover as _month_day
    return next(d for y in range(today.year - 1, today.year + 2)
                if (d := _part_of_month(y, mon, part, cal, today)) >= earliest)


def _part_of_month(y: int, mon: int, part: str, cal: WorkCalendar, today: date | None = None) -> date:
    if part == "初":
        return date(y, mon, 1)
    if part == "中":
        return date(y, mon, 15)
    return _last_workday(date(y, mon, _last_day(y, mon)), today, cal)   # 底 / 末 / 份 / 内


def _last_workday(last: date, today: date | None, cal: WorkCalendar, floor: date | None = None) -> date:
    """The last working day on or before ``last`` (not before ``floor``); ``last`` itself
    when that day has passed already (see the module docstring)."""
    d = last
    while not cal.is_workday(d) and d > (floor or last - timedelta(days=14)):
        d -= timedelta(days=1)
    if not cal.is_workday(d) or (today is not None and d < today):
        return last
    return d


def _spring_festival_eve(after: date) -> date:
    """除夕 of the first Spring Festival whose eve is on or after ``after``."""
    for y in (after.year, after.year + 1):
        eve = LunarDate(y, 1, 1).to_solar_date() - timedelta(days=1)
        if eve >= after:
            return eve
    raise DateError("no Spring Festival ahead")          # pragma: no cover


def _h_festival(m, today, cal):
    word = m[0].lower()
    if "元旦" in word or "new year's" in word:
        jan1 = date(today.year + 1, 1, 1)
        if "前" in word or "before" in word:
            return _last_workday(jan1 - timedelta(days=1), today, cal, floor=today)
        return cal.next_workday(jan1, include_today=False)
    eve = _spring_festival_eve(today)
    if any(w in word for w in ("前", "before")):
        return _last_workday(eve - timedelta(days=1), today, cal, floor=today)
    return cal.next_workday(eve + timedelta(days=8))   # 初八


def _h_rel_month_part(m, today, cal):
    part = m["p"]
    if m["w"] is None and part == "初":                   # bare 月初: the 1st still ahead
        return today if today.day == 1 else _add_months(today, 1, 1)
    if m["w"] is None and part == "中" and today.day > 15:
        base = _add_months(today, 1, 1)
    else:
        base = _add_months(today, _which(m["w"]), 1)
    return _part_of_month(base.year, base.month, part, cal, today)


def _h_rel_month_day(m, today, cal):
    base = _add_months(today, _which(m["w"]), 1)
    return date(base.year, base.month, _num(m["d"]))


def _h_bare_day(m, today, cal):
    d = _num(m["d"])
    if not 1 <= d <= 31:
        raise ValueError("day out of range")
    base = today if d >= today.day else _add_months(today, 1, 1)
    return date(base.year, base.month, min(d, _last_day(base.year, base.month)))


_REL_DAYS = {"今天": 0, "今日": 0, "今儿": 0, "当天": 0, "明天": 1, "明日": 1, "明儿": 1,
             "后天": 2, "大后天": 3, "昨天": -1, "昨日": -1, "前天": -2, "大前天": -3}


def _h_rel_day(m, today, cal):
    return today + timedelta(days=_REL_DAYS[m[0]])


def _h_weekday(m, today, cal):
    wd = _WEEKDAY[m["d"]]
    if m["w"] is None:                                    # bare 周五: the coming one
        return today + timedelta(days=(wd - today.weekday()) % 7)
    return _week_day(today, _which(m["w"]), wd)


def _h_week(m, today, cal):
    if m["p"] == "末":                                    # 周末 → Sunday
        return _week_day(today, _which(m["w"]), 6)
    friday = _week_day(today, _which(m["w"]), 4)
    if friday < today:                                    # 本周内 said on the weekend
        return _week_day(today, _which(m["w"]), 6)
    return _last_workday(friday, today, cal, floor=friday - timedelta(days=4))


def _h_span(m, today, cal):
    n = 0.5 if m["n"] == "半" else _num(m["n"])
    sign = -1 if m["k"] in ("前", "之前", "以前") else 1
    unit = m["u"]
    if unit == "工作日":
        return _add_workdays(today, int(n), cal) if sign > 0 else None
    if unit in ("天", "日"):
        return today + timedelta(days=sign * int(n))
    if unit in ("周", "星期", "礼拜"):
        return today + timedelta(days=sign * int(7 * n))
    if n == 0.5:                                          # 半个月
        return today + timedelta(days=sign * 15)
    return _add_months(today, sign * int(n))


def _h_month_part_any(m, today, cal):
    return _h_month_part(m, today, cal, "份" if m["p2"] else None)   # 12月份 → the month's last day


def _h_week_any(m, today, cal):
    if m["p2"]:                                           # bare 周末 → this week's Sunday
        return _week_day(today, 0, 6)
    return _h_week(m, today, cal)


def _h_next_month(m, today, cal):
    base = _add_months(today, 1, 1)
    return _part_of_month(base.year, base.month, "底", cal, today)


def _h_year_end(m, today, cal):
    return _last_workday(date(_num(m["y"]) if m["y"] else today.year, 12, 31), today, cal)


_EN_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_EN_DAYS = {d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}


def _h_en_weekday(m, today, cal):
    wd = _EN_DAYS[m["d"][:3].lower()]
    w = (m["w"] or "").strip().lower()
    if not w:
        return today + timedelta(days=(wd - today.weekday()) % 7)
    return _week_day(today, {"next": 1, "last": -1}.get(w, 0), wd)


def _h_en_rel(m, today, cal):
    word = re.sub(r"\s+", " ", m[0].lower())
    if "week" in word:
        friday = _week_day(today, 1 if "next" in word else 0, 4)
        return _last_workday(friday, today, cal, floor=friday - timedelta(days=4)) if friday >= today else \
            _week_day(today, 0, 6)
    if "year" in word:
        return _last_workday(date(today.year, 12, 31), today, cal)
    base = _add_months(today, 1 if "next" in word else 0, 1)
    return _part_of_month(base.year, base.month, "底", cal, today)


def _h_en_day(m, today, cal):
    word = m[0].lower()
    return today + timedelta(days=2 if "after" in word else 1 if "tomorrow" in word else 0)


def _h_en_in_days(m, today, cal):
    n = int(m["n"])
    return today + timedelta(days=7 * n if m["u"].startswith("week") else n)


def _h_en_date(m, today, cal):
    mon = _EN_MONTHS[(m["m"] or m["m2"])[:3].lower()]
    return _month_day(mon, int(m["d"] or m["d2"]), today)


_SUFFIX_GUARD = r"(?![\d%万千百亿元块wWkK])"       # 12.5万 is money, not a date
_PATTERNS: list[tuple[re.Pattern, Callable]] = [(re.compile(p), h) for p, h in [
    # absolute forms first: parse_date uses exactly these three
    (rf"(?<!\d)(?P<y>{YEAR})\s*[年/.\-]\s*(?P<m>{NUM})\s*[月/.\-]\s*(?P<d>{NUM})(?:\s*[日号]|(?!\d))", _h_ymd),
    (rf"(?:(?P<y>{YEAR})\s*年\s*)?(?<!\d)(?P<m>{NUM})\s*月份?\s*(?P<d>{NUM})(?:\s*[日号]|{_SUFFIX_GUARD})", _h_md),
    (rf"(?<![\d.,¥/\-:])(?P<m>\d{{1,2}})\s*[./\-]\s*(?P<d>\d{{1,2}})(?:\s*[日号]|{_SUFFIX_GUARD}(?![.,/\-:]\d))", _h_md),
    # relative forms
    (rf"(?:(?P<y>{YEAR})\s*年\s*)?(?<!\d)(?P<m>{NUM})\s*月份?\s*(?P<p>底|末|初|中)|(?<!\d)(?P<m2>{NUM})月(?P<p2>份)",
     _h_month_part_any),
    # 剩下月底 is "the rest at month end", not 下月底
    (r"(?P<w>(?<![剩余])下下个?|(?<![剩余])下个?|本|这个?|上个?)?\s*月份?\s*(?P<p>底|末|初|中)", _h_rel_month_part),
    (rf"(?P<w>下下个?|下个?|本|这个?|上个?)月\s*(?P<d>{NUM})\s*[日号]", _h_rel_month_day),
    (rf"(?<![\d月第#.\-/])(?P<d>{NUM})\s*[日号](?![码楼线])", _h_bare_day),
    ("|".join(sorted(_REL_DAYS, key=len, reverse=True)), _h_rel_day),
    # 下周一定 is "next week for sure", not Monday
    (r"(?:(?P<w>下下个?|下个?|上个?|本|这个?|今)\s*)?(?:周|星期|礼拜)(?P<d>一(?!定)|[二三四五六日天七1-7])", _h_weekday),
    (r"(?P<w>下下个?|下个?|本|这个?)\s*(?:周|星期|礼拜)(?P<p>末|内|之内)?(?![二三四五六日天七1-7]|一(?!定))|周(?P<p2>末)",
     _h_week_any),
    # 下个月 alone: some time next month, so by its end
    (r"(?P<w>下个?)月(?:份|内|里)?(?![底末初中份\d一二三四五六七八九十号])", _h_next_month),
    (rf"(?P<n>{NUM}|半)\s*个?\s*(?P<u>工作日|天|日|周|星期|礼拜|月)\s*(?P<k>之后|以后|后|之内|以内|内|里|之前|以前|前)",
     _h_span),
    (rf"(?:(?:(?P<y>{YEAR})\s*年|今年|本年)年?|年)[底末终]", _h_year_end),
    # festivals: 年前 is not 3年前 (three years ago) nor 去年前
    (r"元旦(?:之|以)?[前后]|元旦过后|过完元旦|(?:春节|过年)(?:之|以)?[前后]|"
     r"(?<![\d一二两三四五六七八九十几多去今明前后新当])年(?:之|以)?[前后](?!天)|过完年|"
     r"(?i:(?:before|after) (?:the )?(?:chinese new year|cny|spring festival|new year's day))", _h_festival),
    # English, lower-cased by the caller or not
    (r"(?i)\b(?P<w>next |this |coming |last )?(?P<d>mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?\b",
     _h_en_weekday),
    (r"(?i)\b(?:(?:the )?day after tomorrow|tomorrow|today|tonight)\b", _h_en_day),
    (r"(?i)\b(?:(?:next|this) week|(?:the )?end of (?:the |this |next )?(?:month|year)|(?:month|year)[- ]end|eom)\b", _h_en_rel),
    (r"(?i)\b(?:in|within) (?P<n>\d{1,2}) (?P<u>days?|weeks?)\b", _h_en_in_days),
    (r"(?i)\bthe (?P<d>\d{1,2})(?:st|nd|rd|th)\b", _h_bare_day),
    (r"(?i)\b(?:(?P<m>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? ?(?P<d>\d{1,2})(?:st|nd|rd|th)?\b|"
     r"(?P<d2>\d{1,2})(?:st|nd|rd|th)? (?:of )?(?P<m2>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b)",
     _h_en_date),
]]
# read from a period or festival word rather than a named day: see the module docstring
_APPROXIMATE = {_h_month_part_any, _h_rel_month_part, _h_week_any, _h_year_end, _h_festival, _h_en_rel, _h_next_month}
_ABSOLUTE = _PATTERNS[:3]


class FoundDate(NamedTuple):
    date: date
    span: tuple[int, int]
    approximate: bool


def read_dates(text: str, today: date, calendar: WorkCalendar | None = None) -> list[FoundDate]:
    """All non-overlapping date expressions, left to right (leftmost, then longest, wins),
    each marked approximate or not. Working days (``3个工作日内``, ``月底``) are counted on
    ``calendar``: the company's, with its configured and imported days."""
    cal = calendar or _PACKAGE_CALENDAR
    s = half_width(text)
    found: list[tuple[int, int, date, bool]] = []
    for pattern, handler in _PATTERNS:
        for m in pattern.finditer(s):
            try:
                value = handler(m, today, cal)
            except (ValueError, KeyError, IndexError, OverflowError):   # 2月30日, 十十号, ...
                continue
            if value is not None:
                text_ = m[0]                              # spans never start or end with a space
                start = m.start() + len(text_) - len(text_.lstrip())
                stop = m.end() - (len(text_) - len(text_.rstrip()))
                found.append((start, stop, value, handler in _APPROXIMATE))
    found.sort(key=lambda f: (f[0], -f[1]))
    result, end = [], -1
    for start, stop, value, approximate in found:
        if start >= end:
            result.append(FoundDate(value, (start, stop), approximate))
            end = stop
    return result


def find_dates(text: str, today: date, calendar: WorkCalendar | None = None) -> list[tuple[date, tuple[int, int]]]:
    """All non-overlapping date expressions, left to right (leftmost, then longest, wins)."""
    return [(f.date, f.span) for f in read_dates(text, today, calendar)]


def find_date(text: str, today: date, calendar: WorkCalendar | None = None) -> tuple[date, tuple[int, int]] | None:
    """The first date expression in free text with its (start, end) span, or None."""
    dates = find_dates(text, today, calendar)
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
                return handler(m, today, _PACKAGE_CALENDAR)
            except (ValueError, KeyError) as exc:
                raise DateError(f"impossible date {text!r}: {exc}") from exc
    raise DateError(f"not a date: {text!r}")
