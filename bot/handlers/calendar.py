"""/calendar (节假日): finance pastes the State Council's holiday notice for next year; the bot
shows what it read and stores it when finance answers 确认 (bot/handlers/confirm.py). ``/calendar``
alone says which years the calendar knows."""
from __future__ import annotations

import re

from bot.core.errors import UsageError
from bot.core.messages import Reply
from bot.core.permissions import CALENDAR_KEEPERS
from bot.core.router import Router
from bot.render import render
from domain.holiday_notice import HolidaySchedule, NoticeError, read_notice
from domain.workdays import package_disagreements
from storage import confirmations
from storage.holiday_schedules import all_schedules, store

router = Router("calendar")

# "/calendar 2027 一、元旦：…" names the year when the title was not pasted
_YEAR_FIRST = re.compile(r"\s*(\d{4})\s*年?\s+")


def read(text: str) -> HolidaySchedule:
    """The notice in ``text`` (a leading year allowed), or a UsageError saying what is wrong."""
    m = _YEAR_FIRST.match(text)
    try:
        return read_notice(text[m.end():] if m else text, int(m.group(1)) if m else None)
    except NoticeError as e:
        raise UsageError("calendar_notice", reason=render("calendar/notice_error.j2", reason=e.code,
                                                              data=e.data).strip()) from None


@router.command("calendar", aliases=("节假日",), roles=CALENDAR_KEEPERS, group_ok=False)
async def calendar_cmd(session, args, person, clock, config, services) -> Reply:
    """Import next year's holidays from the notice as published (asks to confirm), or list the years known."""
    text = args.strip()
    today = clock.today()
    if not text:
        cal = services.calendar
        years = [(y, y in cal.imported_years)
                 for y in range(today.year - 1, today.year + 2) if cal.knows_year(y)]
        return Reply("calendar/status.md.j2", {"years": years, "next_year": today.year + 1,
                                               "next_known": cal.knows_year(today.year + 1)})
    schedule = read(text)
    now = clock.now()
    c = await confirmations.ask(session, person_id=person.id, kind="calendar", payload={"notice": text},
                                reasons=[], now=now)
    return Reply("calendar/confirm.md.j2", {
        "c": c, "s": schedule, "disagreements": package_disagreements(schedule),
        "replaces": schedule.year in services.calendar.imported_years, "expires": c.expires_at.astimezone(config.tz)})


async def store_confirmed(session, payload: dict, person, clock, services, message) -> Reply:
    """The confirmed notice stored, and the calendar everything counts on switched to it now."""
    schedule = read(payload["notice"])
    replaced = await store(session, schedule, notice=payload["notice"], actor=person.id, channel=message.platform,
                           now=clock.now())
    await session.flush()
    services.calendar.use_schedules(await all_schedules(session))
    return Reply("calendar/stored.md.j2", {"s": schedule, "replaced": replaced})
