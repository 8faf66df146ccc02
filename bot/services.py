"""What handlers and jobs share: configuration, the clock, the work calendar, the database,
who goes first on the event loop, and which platforms are switched on. Built once by the app factory or the CLI."""
from __future__ import annotations

from dataclasses import dataclass, field

from bot.clock import Clock
from bot.config import Config
from bot.people_first import PeopleFirst
from bot.workdays import WorkCalendar
from storage.db import Database


@dataclass
class Services:
    config: Config
    clock: Clock
    db: Database
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    people_first: PeopleFirst = field(default_factory=PeopleFirst)

    @classmethod
    def build(cls, config: Config, clock: Clock | None = None, db: Database | None = None) -> "Services":
        holidays, workdays = config.holiday_dates()
        return cls(config=config, clock=clock or Clock(config.company.timezone),
                   db=db or Database(config.database.url, config.database.echo),
                   calendar=WorkCalendar(holidays, workdays))

    @property
    def platforms(self) -> tuple[str, ...]:
        """Platforms people are reached on, in order of preference."""
        out = []
        if self.config.wecom.enabled:
            out.append("wecom")
        if self.config.dingtalk.enabled:
            out.append("dingtalk")
        if self.config.local.enabled:
            out.append("local")
        return tuple(out)
