"""Statute of limitations (诉讼时效) dates.

The period runs from the day after the due date (民法典 第一百八十八条, 第二百零一条: the first day
is not counted) for ``years`` years (3; 4 for cross-border contracts); its last day is the date
corresponding to the anchor in the final year (the month's last day when there is none, e.g.
29 February). A last day on a statutory rest day moves to the next working day (第二百零三条).
A written notice the customer received, a partial payment or a signed confirmation interrupts
the period, which then runs afresh from that day (第一百九十五条).
"""
from __future__ import annotations

import calendar
from datetime import date


def add_years(d: date, years: int) -> date:
    y = d.year + years
    return date(y, d.month, min(d.day, calendar.monthrange(y, d.month)[1]))


def last_day(anchor: date, years: int, work_calendar=None) -> date:
    """The last day a claim anchored on ``anchor`` (the due date, or the day of an interruption)
    can still be brought. ``work_calendar`` (a WorkCalendar) moves a rest day to the next working day."""
    end = add_years(anchor, years)
    if work_calendar is not None:
        end = work_calendar.next_workday(end)
    return end


def anchor(due_date: date, interruptions: list[date]) -> date:
    """The day the current period is counted from: the latest interruption on or after the due date."""
    later = [d for d in interruptions if d and d >= due_date]
    return max(later, default=due_date)
