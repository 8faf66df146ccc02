"""Date understanding, always relative to an explicit today (2026-11-23 is a Monday)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, strategies as st

from domain.dates import DateError, find_date, find_dates, parse_date, read_dates

MON = date(2026, 11, 23)     # Monday
FRI = date(2026, 11, 27)     # Friday
SUN = date(2026, 11, 29)     # Sunday
D = date.fromisoformat


@pytest.mark.parametrize("text, expected", [
    ("2026-12-05", "2026-12-05"), ("2026/12/5", "2026-12-05"), ("2026.12.5", "2026-12-05"),
    ("2026年12月5日", "2026-12-05"), ("2026年12月5号", "2026-12-05"), ("12月5日", "2026-12-05"),
    ("12月5号", "2026-12-05"), ("12.5", "2026-12-05"), ("12/5", "2026-12-05"), ("12-05", "2026-12-05"),
    ("十二月五日", "2026-12-05"), ("二〇二六年十二月五日", "2026-12-05"), ("１２月５日", "2026-12-05"),
    (" 12月 5 日 ", "2026-12-05"), ("2027-01-05", "2027-01-05"),
    # year rollover: a month-day more than 60 days back means next year
    ("1月5日", "2027-01-05"), ("9/23", "2027-09-23"), ("9/24", "2026-09-24"), ("10月1日", "2026-10-01"),
    ("2月29日", "2028-02-29"),
])
def test_parse_date(text, expected):
    assert parse_date(text, MON) == D(expected)


def test_parse_date_rollover_back_to_last_year():
    # said on 2027-01-05, 12月28号 is eight days ago, not 357 days ahead
    assert parse_date("12月28号", date(2027, 1, 5)) == date(2026, 12, 28)


@pytest.mark.parametrize("text", ["", "明天", "下周五", "2026-02-30", "13/5", "12月32日", "hello", "12月", "5万"])
def test_parse_date_rejects(text):
    with pytest.raises(DateError) as info:
        parse_date(text, MON)
    assert str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("text, today, expected", [
    ("今天", MON, "2026-11-23"), ("明天", MON, "2026-11-24"), ("后天", MON, "2026-11-25"),
    ("大后天", MON, "2026-11-26"), ("昨天", MON, "2026-11-22"),
    ("下周一", MON, "2026-11-30"), ("下周五", MON, "2026-12-04"), ("下礼拜五", MON, "2026-12-04"),
    ("下星期五", MON, "2026-12-04"), ("下个星期五", MON, "2026-12-04"), ("下周日", MON, "2026-12-06"),
    ("下周天", MON, "2026-12-06"), ("下下周五", MON, "2026-12-11"),
    ("下周五", FRI, "2026-12-04"), ("下周五", SUN, "2026-12-04"),     # week starts on Monday
    ("本周五", MON, "2026-11-27"), ("这周五", MON, "2026-11-27"), ("周五", MON, "2026-11-27"),
    ("星期五", FRI, "2026-11-27"), ("周五", SUN, "2026-12-04"), ("礼拜三", FRI, "2026-12-02"),
    ("这周一", FRI, "2026-11-23"),
    ("下周", MON, "2026-12-04"), ("本周内", MON, "2026-11-27"), ("周末", MON, "2026-11-29"),
    ("月底", MON, "2026-11-30"), ("本月底", MON, "2026-11-30"), ("这个月底", MON, "2026-11-30"),
    ("月末", MON, "2026-11-30"), ("下月初", MON, "2026-12-01"), ("下个月初", MON, "2026-12-01"),
    ("下月底", MON, "2026-12-31"), ("月初", MON, "2026-12-01"), ("月中", MON, "2026-12-15"),
    ("下个月10号", MON, "2026-12-10"), ("下月10日", MON, "2026-12-10"), ("本月25号", MON, "2026-11-25"),
    ("10号", MON, "2026-12-10"), ("25号", MON, "2026-11-25"), ("23号", MON, "2026-11-23"),
    ("二十号", MON, "2026-12-20"), ("31号", MON, "2026-11-30"),
    ("3天后", MON, "2026-11-26"), ("5天内", MON, "2026-11-28"), ("三天内", MON, "2026-11-26"),
    ("两天后", MON, "2026-11-25"), ("一周内", MON, "2026-11-30"), ("一周后", MON, "2026-11-30"),
    ("两周内", MON, "2026-12-07"), ("一个月内", MON, "2026-12-23"), ("半个月内", MON, "2026-12-08"),
    ("3个工作日内", FRI, "2026-12-02"),
    ("年底", MON, "2026-12-31"), ("今年年底", MON, "2026-12-31"), ("12月底", MON, "2026-12-31"),
    ("12月份", MON, "2026-12-31"), ("12月中", MON, "2026-12-15"), ("1月底", MON, "2027-01-29"),   # 31st a Sunday
    ("十二月五日", MON, "2026-12-05"), ("12月5号", MON, "2026-12-05"), ("12.5", MON, "2026-12-05"),
    ("下月底", date(2026, 12, 15), "2027-01-29"), ("下周五", date(2026, 12, 28), "2027-01-08"),
    ("10号", date(2026, 12, 15), "2027-01-10"), ("下月初", date(2026, 12, 28), "2027-01-01"),
    ("31号", date(2027, 1, 31), "2027-01-31"), ("30号", date(2027, 2, 10), "2027-02-28"),
])
def test_find_date_forms(text, today, expected):
    found = find_date(text, today)
    assert found is not None, text
    assert found[0] == D(expected)
    assert found[1] == (0, len(text.strip()))


@pytest.mark.parametrize("text, expected, span", [
    ("已电话联系王总，答应下周五前付一半", "2026-12-04", (10, 13)),
    ("已付5万，剩下的12月20号", "2026-12-20", (8, 14)),
    ("客户说１２月２０日前付５万", "2026-12-20", (3, 9)),
    ("大后天到账", "2026-11-26", (0, 3)),
    ("明天对完账后天付", "2026-11-24", (0, 2)),
    ("客户说2026-12-18付10万", "2026-12-18", (3, 13)),
])
def test_find_date_in_text(text, expected, span):
    assert find_date(text, MON) == (D(expected), span)


@pytest.mark.parametrize("text", [
    "过几天再说", "三年前的账", "节后再说", "已付12.5万", "电话13812345678", "联系不上", "付了50%", "5万", "", "3点回电话",
    "10:30开会", "已付1,234.56元",
])
def test_find_date_none(text):
    assert find_date(text, MON) is None


@pytest.mark.parametrize("text, today, expected", [
    # 2026-05-31 is a Sunday: 月底 is Friday the 29th, the last day finance pays on
    ("月底", date(2026, 5, 4), "2026-05-29"), ("5月底", date(2026, 5, 4), "2026-05-29"),
    # said on that Saturday, the last working day has passed: the month's last day
    ("月底", date(2026, 5, 30), "2026-05-31"),
    # 2026-10-31 is a Saturday; 2026-09-30 a Wednesday before the National Day holiday
    ("10月底", date(2026, 10, 1), "2026-10-30"), ("9月底", date(2026, 9, 1), "2026-09-30"),
    # the Spring Festival of 2026 is 02-17 (除夕 02-16; 02-14 is a make-up Saturday, 02-15 off)
    ("年前", date(2026, 1, 10), "2026-02-14"), ("春节前", date(2026, 1, 10), "2026-02-14"),
    ("过年前", date(2026, 1, 10), "2026-02-14"), ("年后", date(2026, 1, 10), "2026-02-24"),
    # 2027's Spring Festival is 02-06 (除夕 02-05, a Friday); its holidays are not published yet
    ("年前", MON, "2027-02-04"), ("春节后", MON, "2027-02-15"),
    ("元旦前", MON, "2026-12-31"), ("元旦后", MON, "2027-01-04"), ("元旦之前", MON, "2026-12-31"),
    ("next friday", MON, "2026-12-04"), ("Next Friday", MON, "2026-12-04"), ("tomorrow", MON, "2026-11-24"),
    ("end of the month", MON, "2026-11-30"), ("Dec 20", MON, "2026-12-20"), ("20th December", MON, "2026-12-20"),
    ("within 3 days", MON, "2026-11-26"), ("next week", MON, "2026-12-04"),
    ("before Chinese New Year", MON, "2027-02-04"),
])
def test_period_and_festival_dates(text, today, expected):
    assert find_date(text, today)[0] == D(expected)


@pytest.mark.parametrize("text, approximate", [
    ("月底", True), ("下周", True), ("年前", True), ("元旦前", True), ("年底", True), ("12月份", True),
    ("end of the month", True), ("12月20日", False), ("下周五", False), ("明天", False), ("3天内", False),
    ("next friday", False),
])
def test_approximate_dates_are_marked(text, approximate):
    [found] = read_dates(text, MON)
    assert found.approximate is approximate


def test_find_dates_all_in_order():
    got = find_dates("下周五付一半，剩下的月底前，最迟12月10号", MON)
    assert [d for d, _ in got] == [D("2026-12-04"), D("2026-11-30"), D("2026-12-10")]


def test_never_reads_the_clock(monkeypatch):
    import domain.dates as dates_mod

    class Boom(date):
        @classmethod
        def today(cls):
            raise AssertionError("dates must not read the clock")
    monkeypatch.setattr(dates_mod, "date", Boom)
    assert find_date("明天", MON)[0] == date(2026, 11, 24)


days = st.dates(min_value=date(2000, 3, 1), max_value=date(2090, 12, 31))


@given(days, st.dates(min_value=date(2000, 3, 1), max_value=date(2090, 12, 31)))
def test_month_day_rollover_window(today, target):
    """A month-day without year lands no more than 60 days back and under a year ahead."""
    if (target.month, target.day) == (2, 29):
        return
    got = parse_date(f"{target.month}月{target.day}日", today)
    assert (got.month, got.day) == (target.month, target.day)
    assert today - timedelta(days=60) <= got < today - timedelta(days=60) + timedelta(days=366)


@given(days)
def test_iso_round_trip(d):
    assert parse_date(d.isoformat(), date(2026, 11, 23)) == d
    assert parse_date(f"{d.year}年{d.month}月{d.day}日", date(2026, 11, 23)) == d


@given(days, st.integers(min_value=0, max_value=6))
def test_next_week_is_next_calendar_week(today, wd):
    got = find_date("下周" + "一二三四五六日"[wd], today)[0]
    assert got.weekday() == wd
    assert got.isocalendar()[:2] == (today + timedelta(days=7)).isocalendar()[:2]


@given(days)
def test_relative_forms_are_not_in_the_past(today):
    for text in ("月底", "下月初", "10号", "周五", "一周内", "下个月10号", "年底"):
        assert find_date(text, today)[0] >= today, text


@given(st.text(max_size=30), days)
def test_find_date_never_crashes(text, today):
    found = find_dates(text, today)
    for value, (a, b) in found:
        assert isinstance(value, date) and 0 <= a < b <= len(text)
