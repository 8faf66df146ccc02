"""From December 1, finance is told (once a year each) when next year's holiday schedule is not
known yet: without it the bot counts next year's Spring Festival as working days."""
from __future__ import annotations

from bot import notify
from bot.jobs.context import JobContext
from bot.render import render
from storage import people


async def calendar_watch(ctx: JobContext) -> str:
    # another instance (or the CLI) may have imported the notice since this one started
    await ctx.services.load_calendar()
    year = ctx.services.calendar.missing_year(ctx.today)
    if year is None:
        return "the holiday schedules are known"
    text = render("calendar/missing.md.j2", next_year=year)
    told = 0
    for person in await people.by_role(ctx.session, "finance"):
        # the key makes it once a year per person, however often the job runs
        if await notify.to_person(ctx.session, person, text, key=f"calendar_missing:{year}", now=ctx.at,
                                  platforms=ctx.services.platforms):
            told += 1
    return f"{year}'s holiday schedule unknown; told {told} finance person(s)"
