"""What handlers and jobs share: configuration, the clock, the work calendar, the database,
who goes first on the event loop, and which platforms are switched on. Built once by the app factory or the CLI."""
from __future__ import annotations

from dataclasses import dataclass, field

from bot.clock import Clock
from bot.config import Config
from bot.core.channel import Capabilities, registry
from bot.people_first import PeopleFirst
from domain.workdays import WorkCalendar
from storage.db import Database


@dataclass
class Services:
    config: Config
    clock: Clock
    db: Database
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    people_first: PeopleFirst = field(default_factory=PeopleFirst)

    def __post_init__(self) -> None:
        _load_channels()       # before anything asks the registry what a platform can do

    @classmethod
    def build(cls, config: Config, clock: Clock | None = None, db: Database | None = None) -> "Services":
        holidays, workdays = config.holiday_dates()
        return cls(config=config, clock=clock or Clock(config.company.timezone),
                   db=db or Database(config.database.url, config.database.echo),
                   calendar=WorkCalendar(holidays, workdays))

    async def load_calendar(self) -> None:
        """Bring the imported holiday schedules (``arbot calendar import``, ``/calendar``) into
        the one calendar everything counts working days on; at start, after an import, and now
        and then (another instance may have imported)."""
        from storage.holiday_schedules import all_schedules
        async with self.db.reader() as s:
            self.calendar.use_schedules(await all_schedules(s))

    @property
    def platforms(self) -> tuple[str, ...]:
        """Platforms people are reached on, in order of preference (the registry's order)."""
        _load_channels()
        return tuple(p.name for p in registry.enabled(self.config))

    @property
    def account_platforms(self) -> tuple[str, ...]:
        """Every registered platform that knows people by a user id of their own, on or off."""
        return tuple(p.name for p in registry.with_accounts())

    def capabilities(self, platform: str) -> Capabilities:
        """What ``platform`` can do, as its channel declares it under this configuration."""
        _load_channels()
        return registry.capabilities(platform, self.config)


def _load_channels() -> None:
    """Importing the installer registers every platform (a job run from the CLI has no app)."""
    import bot.channels.adapters  # noqa: F401
