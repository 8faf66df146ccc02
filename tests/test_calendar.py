"""Next year's calendar: the State Council's notice read (the 2023 to 2026 notices as published,
tests/data/calendar/, from gmw.cn, xinhuanet and zh.wikisource), stored by the CLI or by finance in chat, and the
one calendar that the date parser, the jobs and /healthz all count on.

notice-2027-made-up.txt is NOT the real 2027 notice: two items written for these tests, with
true weekdays, so that a year the calendar package does not know can be imported."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from chinese_calendar.constants import holidays as PACKAGE_HOLIDAYS
from chinese_calendar.constants import workdays as PACKAGE_WORKDAYS
from sqlalchemy import select

from domain.dates import read_dates
from domain.holiday_notice import NoticeError, read_notice
from domain.workdays import WorkCalendar
from storage.models import AuditEntry, HolidaySchedule, Promise
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot, root_logging_kept

NOTICES = Path(__file__).parent / "data" / "calendar"
MADE_UP_2027 = (NOTICES / "notice-2027-made-up.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_published_notice_gives_the_package_schedule_day_by_day(year):
    schedule = read_notice((NOTICES / f"notice-{year}.txt").read_text(encoding="utf-8"))
    assert schedule.year == year
    assert schedule.holidays == sorted(d for d in PACKAGE_HOLIDAYS if d.year == year)
    assert schedule.workdays == sorted(d for d in PACKAGE_WORKDAYS if d.year == year)
    imported = WorkCalendar(schedules=[schedule])
    day, differ = date(year, 1, 1), []
    while day.year == year:
        if imported.is_workday(day) != chinese_calendar.is_workday(day):
            differ.append(day)
        day += timedelta(days=1)
    assert differ == []


@pytest.mark.parametrize("year", [2023, 2024])
def test_older_notices_agree_with_the_package_on_every_working_day(year):
    # 2023's 元旦 starts in 2022 (2022年12月31日至2023年1月2日); 2024's has one-day holidays
    # "与周末连休" and a remark date (除夕（2月9日）) that is not a holiday. The package also lists
    # weekend days next to those one-day holidays as holidays, so here the test is the working day
    schedule = read_notice((NOTICES / f"notice-{year}.txt").read_text(encoding="utf-8"))
    imported = WorkCalendar(schedules=[schedule])
    day, differ = date(year - 1, 12, 1), []
    while day.year <= year:
        if imported.is_workday(day) != chinese_calendar.is_workday(day):
            differ.append(day)
        day += timedelta(days=1)
    assert differ == []
    assert schedule.workdays == sorted(d for d in PACKAGE_WORKDAYS if d.year == year)
    assert set(schedule.holidays) <= set(PACKAGE_HOLIDAYS)


def test_a_notice_pasted_on_one_line_with_ascii_punctuation_reads_the_same():
    text = (NOTICES / "notice-2026.txt").read_text(encoding="utf-8")
    squashed = (text.replace("\n", "").replace("：", ":").replace("（", "(").replace("）", ")")
                .replace("，", ",").replace("　", ""))
    assert read_notice(squashed) == read_notice(text)


def test_the_year_comes_from_the_title_or_is_asked_for():
    with pytest.raises(NoticeError) as e:
        read_notice(MADE_UP_2027)
    assert e.value.code == "no_year"
    s = read_notice(MADE_UP_2027, 2027)
    assert s.holidays[:3] == [date(2027, 1, 1), date(2027, 1, 2), date(2027, 1, 3)]
    assert s.workdays == [date(2027, 2, 14)]
    titled = "国务院办公厅关于2026年部分节假日安排的通知\n" + (NOTICES / "notice-2026.txt").read_text(encoding="utf-8")
    with pytest.raises(NoticeError) as e:
        read_notice(titled, 2027)
    assert e.value.code == "year_mismatch"


@pytest.mark.parametrize("change, code", [
    (("至3日（周六）", "至3日（周日）"), "weekday_mismatch"),      # mistyped weekday
    (("放假调休，共3天", "放假调休，共4天"), "count_mismatch"),      # range and count disagree
    (("1月4日（周日）上班", "1月3日（周六）上班"), "workday_is_holiday"),
    (("一、元旦：", "一、元旦 "), None),                              # that item is no longer read
])
def test_a_notice_that_does_not_add_up_is_refused(change, code):
    text = (NOTICES / "notice-2026.txt").read_text(encoding="utf-8").replace(*change)
    if code is None:
        assert [f.name for f in read_notice(text).festivals][0] == "春节"
        return
    with pytest.raises(NoticeError) as e:
        read_notice(text)
    assert e.value.code == code


def test_the_preamble_dates_are_not_holidays():
    # 2025's preamble says "自2025年1月1日起，全体公民放假的假日增加2天"
    s = read_notice((NOTICES / "notice-2025.txt").read_text(encoding="utf-8"))
    assert [f.name for f in s.festivals] == ["元旦", "春节", "清明节", "劳动节", "端午节", "国庆节、中秋节"]
    with pytest.raises(NoticeError) as e:
        read_notice("国务院办公厅关于2027年部分节假日安排的通知\n经国务院批准，自2027年1月1日起放假。")
    assert e.value.code == "no_items"


def test_configured_and_imported_days_move_n_working_days():
    today = date(2026, 12, 29)                                   # a Tuesday
    plain = WorkCalendar()                                       # 2027 unknown: Mon–Fri
    configured = WorkCalendar(extra_holidays=[date(2026, 12, 31)])
    imported = WorkCalendar(schedules=[read_notice(MADE_UP_2027, 2027)])

    def three_days(cal):
        [found] = read_dates("3个工作日内", today, cal)
        return found.date
    assert three_days(plain) == date(2027, 1, 1)
    assert three_days(configured) == date(2027, 1, 4)
    assert three_days(imported) == date(2027, 1, 4)
    assert not imported.is_workday(date(2027, 2, 8)) and imported.is_workday(date(2027, 2, 14))
    assert imported.knows_year(2027) and not plain.knows_year(2027)


async def _promised(db) -> date:
    async with db.session() as s:
        return (await s.execute(select(Promise.promised_date).order_by(Promise.id.desc()).limit(1))).scalar_one()


async def test_finance_pastes_the_notice_confirms_and_the_date_parser_uses_it(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-12-29 10:00"))
    health = await (await bot.client.get("/healthz")).json()
    assert health["status"] == "degraded" and health["calendar"]["missing_year"] == 2027
    assert "2027" in health["calendar"]["warning"]

    [status] = await bot.say("fin1", "/calendar")
    assert "2026 年（内置）" in status and "2027 年的放假安排还没有" in status
    [refused] = await bot.say("rep1", "/calendar 2027 " + MADE_UP_2027)
    assert "没有使用 /calendar 的权限" in refused
    [no_year] = await bot.say("fin1", "/calendar " + MADE_UP_2027)
    assert "找不到年份" in no_year and "/calendar 2027 一、元旦" in no_year
    [bad] = await bot.say("fin1", "/calendar 2027 " + MADE_UP_2027.replace("（周日）上班", "（周一）上班"))
    assert "2月14日 写的是“周一”，但那天是周日" in bad
    await bot.say("rep1", "/promise INV-A1 3个工作日内")
    assert await _promised(db) == date(2027, 1, 1)               # 元旦 not known yet

    [shown] = await bot.say("fin1", "/calendar 2027 " + MADE_UP_2027)
    assert "2027年节假日安排，共 2 项" in shown
    assert "元旦：1月1日（周五）至1月3日（周日）放假，共 3 天" in shown
    assert "2月14日（周日）上班" in shown and "回复 `确认`" in shown
    async with db.session() as s:                                # nothing stored before 确认
        assert (await s.execute(select(HolidaySchedule))).first() is None
    [stored] = await bot.say("fin1", "确认")
    assert "已保存 2027 年节假日安排（放假 11 天，调休上班 1 天）" in stored

    await bot.say("rep1", "/promise INV-A1 3个工作日内")
    assert await _promised(db) == date(2027, 1, 4)               # 12-30, 12-31, then Monday 1-4
    health = await (await bot.client.get("/healthz")).json()
    assert health["calendar"] == {"imported_years": [2027], "missing_year": None}
    async with db.session() as s:
        row = await s.get(HolidaySchedule, 2027)
        assert row.imported_by == "fin1" and "春节" in row.notice
        [entry] = (await s.execute(select(AuditEntry).where(AuditEntry.action == "calendar_import"))).scalars()
        assert entry.actor == "fin1" and entry.entity_id == "2027"
    [status] = await bot.say("fin1", "/calendar")
    assert "2027 年（已导入）" in status and "还没有" not in status
    [again] = await bot.say("fin1", "确认")
    assert "没有待确认" in again


async def test_a_configured_holiday_reaches_the_reply_parser(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-12-29 10:00"), calendar={"extra_holidays": ("2026-12-31",)})
    await bot.say("rep1", "/promise INV-A1 3个工作日内")
    assert await _promised(db) == date(2027, 1, 4)               # 12-30, (12-31 off), 1-1, 1-4
    await bot.say("rep1", "/followup INV-A1 客户答应3个工作日内付清")     # the reply parser, same calendar
    async with db.session() as s:
        dates = (await s.execute(select(Promise.promised_date).order_by(Promise.id))).scalars().all()
    assert dates[-2:] == [date(2027, 1, 4), date(2027, 1, 4)]


async def test_from_december_1_finance_is_told_once(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-30 09:00"))
    assert "known" in await bot.run("calendar_watch")
    assert await bot.inbox("fin1") == []
    assert "told 1" in await bot.run("calendar_watch", at("2026-12-01 09:00"))
    assert "told 0" in await bot.run("calendar_watch", at("2026-12-02 09:00"))
    [warning] = await bot.inbox("fin1")
    assert "2027 年节假日安排尚未导入" in warning and "/calendar" in warning
    assert await bot.inbox("rep1") == []
    # imported meanwhile by the CLI of another process: the job sees it
    async with db.session() as s, s.begin():
        from storage.holiday_schedules import store
        await store(s, read_notice(MADE_UP_2027, 2027), notice=MADE_UP_2027, actor="cli", channel="cli",
                    now=at("2026-12-02 10:00"))
    assert "known" in await bot.run("calendar_watch", at("2026-12-03 09:00"))


def test_cli_shows_the_notice_and_stores_it_only_when_told(tmp_path, capsys, monkeypatch):
    from bot.cli import main
    monkeypatch.setenv("ARBOT_DATABASE_URL", f"sqlite:///{tmp_path}/a.db")
    monkeypatch.delenv("ARBOT_CONFIG", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)

    def arbot(*args: str) -> tuple[int, str, str]:
        with root_logging_kept():
            rc = main(list(args))
        out = capsys.readouterr()
        return rc, out.out, out.err
    rc, out, err = arbot("calendar", "import", str(NOTICES / "notice-2026.txt"))
    assert rc == 1 and "加 --yes" in err                                 # no terminal to ask on
    assert "国庆节：10月1日（周四）至10月7日（周三）放假，共 7 天；9月20日（周日）、10月10日（周六）上班" in out
    assert "与内置日历逐日一致" in out
    made_up = tmp_path / "2027.txt"
    made_up.write_text(MADE_UP_2027.replace("共8天", "共9天"), encoding="utf-8")
    rc, out, err = arbot("calendar", "import", str(made_up), "--year", "2027", "--yes")
    assert rc == 1 and "写的是共 9 天，但日期范围是 8 天" in err and "Traceback" not in err
    made_up.write_text(MADE_UP_2027, encoding="utf-8")
    rc, out, err = arbot("calendar", "import", str(made_up), "--year", "2027", "--yes")
    assert rc == 0 and "已保存 2027 年节假日安排" in out
    import sqlite3
    with sqlite3.connect(tmp_path / "a.db") as con:
        # who ran the command: the OS user (no --operator on `calendar import`), as for every import
        import getpass
        assert con.execute("SELECT year, imported_by FROM holiday_schedules").fetchall() == [(2027, getpass.getuser())]
