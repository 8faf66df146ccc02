"""Working days by the Chinese calendar, make-up working days (调休) included.

``chinese-calendar`` carries the State Council's schedule for the years it knows; each year's
schedule is announced late (usually November), so finance imports the notice
(domain/holiday_notice.py, ``arbot calendar import`` or ``/calendar``) and configuration can add
single days. A day is decided by, in this order: the configured ``[calendar]`` days, an imported
schedule (for its year, the notice is the authority, so a correction needs no new release),
the package, and for a year none of them knows, Monday–Friday, said in the log once.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Iterable

import chinese_calendar

from domain.holiday_notice import HolidaySchedule

log = logging.getLogger(__name__)
_PACKAGED: dict[date, bool] = {}       # chinese_calendar's answers, by day


class WorkCalendar:
    def __init__(self, extra_holidays: list[date] | None = None, extra_workdays: list[date] | None = None,
                 schedules: Iterable[HolidaySchedule] = ()):
        self.extra_holidays = set(extra_holidays or [])
        self.extra_workdays = set(extra_workdays or [])
        self._warned_years: set[int] = set()
        self.use_schedules(schedules)

    def use_schedules(self, schedules: Iterable[HolidaySchedule]) -> None:
        """Replace the imported schedules (in place: every holder of this calendar sees them)."""
        days: dict[date, bool] = {}
        years: set[int] = set()
        for sc in schedules:
            years.add(sc.year)
            days.update({d: False for d in sc.holidays})
            days.update({d: True for d in sc.workdays})
        self._imported, self._imported_years = days, years

    @property
    def imported_years(self) -> frozenset[int]:
        return frozenset(self._imported_years)

    def knows_year(self, year: int) -> bool:
        """Whether ``year``'s official schedule is known (imported or in the package); the
        configured extra days alone do not make a year known."""
        if year in self._imported_years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 1, 1))
        except NotImplementedError:
            return False
        return True

    def missing_year(self, today: date) -> int | None:
        """The year whose schedule should be known by ``today`` and is not: next year from
        December 1 (the notice is out by then), this year always; None when nothing is missing."""
        if not self.knows_year(today.year):
            return today.year
        if today.month == 12 and not self.knows_year(today.year + 1):
            return today.year + 1
        return None

    def is_workday(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        if day in self._imported:
            return self._imported[day]
        if day.year in self._imported_years:
            return day.weekday() < 5
        return self._packaged(day)

    def _packaged(self, day: date) -> bool:
        # the package's answer never changes in a process: kept, since the jobs ask it for every
        # invoice and its own checks made it 4 % of the bot's CPU in a 200k catch-up (py-spy)
        known = _PACKAGED.get(day)
        if known is not None:
            return known
        try:
            known = chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year not in self._warned_years:
                self._warned_years.add(day.year)
                log.warning("calendar: no official holiday schedule for %s; using Mon-Fri plus "
                            "[calendar] extra_holidays/extra_workdays until the State Council's notice "
                            "is imported (arbot calendar import)", day.year)
            return day.weekday() < 5       # not kept: the warning is per calendar
        _PACKAGED[day] = known
        return known

    def next_workday(self, day: date, *, include_today: bool = True) -> date:
        d = day if include_today else day + timedelta(days=1)
        while not self.is_workday(d):
            d += timedelta(days=1)
        return d

    def add_workdays(self, day: date, n: int) -> date:
        """The n-th working day after ``day`` (n may be negative: before)."""
        step = 1 if n >= 0 else -1
        d, left = day, abs(n)
        while left:
            d += timedelta(days=step)
            if self.is_workday(d):
                left -= 1
        return d

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """``start`` plus ``hours`` counted on working days only: weekends and holidays do not
        count, a working day counts all its 24 hours. A Friday 09:00 push with a 24-hour window
        closes Monday 09:00 (after 国庆, the first working day after it). The result always lies
        on a working day: a count that ends exactly at midnight before a day off runs on to the
        start of the next working day. ``start`` is in the company's timezone (its dates are
        the calendar's)."""
        left = timedelta(hours=hours)
        t = start
        while True:
            day_end = datetime.combine(t.date() + timedelta(days=1), time(0), tzinfo=t.tzinfo)
            if self.is_workday(t.date()):
                if left < day_end - t or (left == day_end - t and self.is_workday(day_end.date())):
                    return t + left
                left -= day_end - t
            t = day_end


def package_disagreements(schedule: HolidaySchedule) -> list[date] | None:
    """The days of ``schedule``'s year on which it and the calendar package disagree about
    working or not; None when the package does not know that year."""
    plain, imported = WorkCalendar(), WorkCalendar(schedules=[schedule])
    if not plain.knows_year(schedule.year):
        return None
    day, out = date(schedule.year, 1, 1), []
    while day.year == schedule.year:
        if plain.is_workday(day) != imported.is_workday(day):
            out.append(day)
        day += timedelta(days=1)
    return out
