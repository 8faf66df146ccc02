"""Reading the State Council's annual holiday notice (国务院办公厅关于XXXX年部分节假日安排的通知).

The notice comes out in November for the next year, long before any calendar package knows that
year, so finance pastes it as published and this module turns it into holidays and make-up
working days (调休上班). Only the numbered items are read — ``一、元旦：1月1日（周四）至3日（周六）
放假调休，共3天。1月4日（周日）上班。`` — because the preamble also has dates next to the word 放假
(``自2025年1月1日起，全体公民放假的假日增加2天``) that are not holidays.

Within an item, a sentence with 放假 names the holiday: one day, or a range whose end may leave out
the month and year (``4月4日至6日``); a sentence with 上班 lists make-up working days. Words in
brackets are remarks (``（农历除夕、周二）``) and are not dates, except that a weekday written
there must match the date: a notice mistyped or mis-pasted is refused, not half-believed. So is
an item whose ``共N天``/``放假N天`` disagrees with its range.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["Festival", "HolidaySchedule", "NoticeError", "read_notice"]


class NoticeError(ValueError):
    """The text is not a notice this module can read; ``code`` and ``data`` say why, for the reply."""

    def __init__(self, code: str, **data):
        super().__init__(f"{code}: {data}")
        self.code = code
        self.data = data


@dataclass(frozen=True)
class Festival:
    name: str
    first: date
    last: date
    workdays: tuple[date, ...] = ()

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


@dataclass(frozen=True)
class HolidaySchedule:
    year: int
    festivals: tuple[Festival, ...]

    @property
    def holidays(self) -> list[date]:
        return sorted({d for f in self.festivals for d in f.days})

    @property
    def workdays(self) -> list[date]:
        return sorted({d for f in self.festivals for d in f.workdays})

    def to_json(self) -> dict:
        return {"year": self.year,
                "festivals": [{"name": f.name, "first": f.first.isoformat(), "last": f.last.isoformat(),
                               "workdays": [d.isoformat() for d in f.workdays]} for f in self.festivals]}

    @classmethod
    def from_json(cls, data: dict) -> "HolidaySchedule":
        return cls(year=int(data["year"]), festivals=tuple(
            Festival(name=f["name"], first=date.fromisoformat(f["first"]), last=date.fromisoformat(f["last"]),
                     workdays=tuple(date.fromisoformat(d) for d in f["workdays"])) for f in data["festivals"]))


_CN_DIGITS = "〇一二三四五六七八九"
_TITLE_YEAR = re.compile(r"关于\s*(\d{4}|[〇零一二三四五六七八九]{4})\s*年\s*部分节假日安排")
_ITEM = re.compile(r"^\s*([一二三四五六七八九十]{1,3})\s*、\s*([^:]{1,20}?)\s*:\s*(.+)$")
_DATE = re.compile(r"(?:(\d{4})\s*年\s*)?(?:(\d{1,2})\s*月\s*)?(\d{1,2})\s*日")
_REMARK = re.compile(r"\(([^()]*)\)")
_WEEKDAY = re.compile(r"(?:周|星期)([一二三四五六日天])")
_WEEKDAYS = {c: i for i, c in enumerate("一二三四五六")} | {"日": 6, "天": 6}
_COUNT = re.compile(r"(?:共|放假)\s*(\d{1,2})\s*天")


def _normalise(text: str) -> str:
    """Full-width digits and punctuation → ASCII (pages and PDFs mix both), one item per line."""
    text = "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)
    text = text.replace("\u3000", " ").replace("\r", "\n")
    # a pasted chat message may run the items together on one line
    return re.sub(r"(?<=。)\s*(?=[一二三四五六七八九十]{1,3}、)", "\n", text)


def _year_of(text: str, year: int | None) -> int:
    m = _TITLE_YEAR.search(text)
    if m:
        y = m.group(1)
        found = int(y) if y.isdigit() else int("".join(str(_CN_DIGITS.index(c.replace("零", "〇"))) for c in y))
        if year is not None and year != found:
            raise NoticeError("year_mismatch", given=year, title=found)
        return found
    if year is None:
        raise NoticeError("no_year")
    return year


def _dates(sentence: str, year: int, item: str) -> list[tuple[date, bool]]:
    """Dates in ``sentence``, each with whether it followed 至 (a range's end: month and year
    may be those of the date before). A weekday in the bracket after a date is checked."""
    out: list[tuple[date, bool]] = []
    remarks = [r.span() for r in _REMARK.finditer(sentence)]
    for m in _DATE.finditer(sentence):
        if any(a < m.start() < b for a, b in remarks):     # 除夕（2月9日）: a remark, not a holiday
            continue
        y, mon, d = m.group(1), m.group(2), int(m.group(3))
        is_end = sentence[:m.start()].rstrip().endswith(("至", "到", "-", "~"))
        prev = out[-1][0] if out else None
        if mon is None:
            if not (is_end and prev):
                raise NoticeError("no_month", item=item, text=m.group(0))
            mon_i, y_i = prev.month, prev.year
        else:
            mon_i = int(mon)
            y_i = int(y) if y else (prev.year if is_end and prev else year)
        try:
            day = date(y_i, mon_i, d)
        except ValueError:
            raise NoticeError("bad_date", item=item, text=m.group(0)) from None
        if is_end and prev and day < prev and not y:
            day = day.replace(year=day.year + 1)           # 12月31日至1月2日
        remark = _REMARK.match(sentence, m.end())
        wd = _WEEKDAY.search(remark.group(1)) if remark else None
        if wd and _WEEKDAYS[wd.group(1)] != day.weekday():
            raise NoticeError("weekday_mismatch", item=item, day=day, written=wd.group(0))
        out.append((day, is_end))
    return out


def read_notice(text: str, year: int | None = None) -> HolidaySchedule:
    """The schedule in a notice as published. ``year`` is needed only when the title is not part
    of the text (and must agree with it when it is). Raises NoticeError."""
    text = _normalise(text)
    year = _year_of(text, year)
    festivals: list[Festival] = []
    for line in text.splitlines():
        m = _ITEM.match(line)
        if not m:
            continue
        name, body = m.group(2).strip(), m.group(3)
        n = f"{m.group(1)}、{name}"                     # how the reply names the item
        first = last = None
        workdays: list[date] = []
        count = None
        for sentence in body.split("。"):
            if "放假" in sentence and first is None:
                found = _dates(sentence, year, n)
                if not found:
                    raise NoticeError("no_holiday", item=n, name=name)
                first, last = found[0][0], found[-1][0]
                if len(found) > 2 or (len(found) == 2 and not found[1][1]):
                    raise NoticeError("not_a_range", item=n, name=name)
                c = _COUNT.search(_REMARK.sub("", sentence))
                count = int(c.group(1)) if c else None
            elif "上班" in sentence:
                workdays += [d for d, _ in _dates(sentence, year, n)]
        if first is None:
            raise NoticeError("no_holiday", item=n, name=name)
        if last < first:
            raise NoticeError("not_a_range", item=n, name=name)
        span = (last - first).days + 1
        if count is not None and count != span:
            raise NoticeError("count_mismatch", item=n, name=name, written=count, counted=span)
        festivals.append(Festival(name=name, first=first, last=last, workdays=tuple(workdays)))
    if not festivals:
        raise NoticeError("no_items")
    _check_overlaps(festivals)
    return HolidaySchedule(year=year, festivals=tuple(festivals))


def _check_overlaps(festivals: list[Festival]) -> None:
    holidays = {d: f.name for f in festivals for d in f.days}
    for f in festivals:
        for d in f.workdays:
            if d in holidays:
                raise NoticeError("workday_is_holiday", day=d, name=f.name, holiday=holidays[d])
