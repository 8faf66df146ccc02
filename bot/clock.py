"""The one source of time. Code asks the injected clock, never ``datetime.now()``,
so a test (or ``arbot jobs run --at``) can run "next Tuesday 09:00" deterministically."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo


class Clock:
    """Wall-clock time in the configured business timezone."""

    def __init__(self, tz: str | ZoneInfo = "Asia/Shanghai"):
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz

    def now(self) -> datetime:
        return datetime.now(timezone.utc).astimezone(self.tz)

    def today(self) -> date:
        return self.now().date()


class ShiftedClock(Clock):
    """Wall-clock time moved by a fixed amount: it reads ``at`` when created and runs on from there
    (``arbot serve --at``: a rehearsal of a restart at 14:30 on a given working day)."""

    def __init__(self, at: datetime, tz: str | ZoneInfo = "Asia/Shanghai"):
        super().__init__(tz)
        at = at if at.tzinfo else at.replace(tzinfo=self.tz)
        self.offset = at - datetime.now(timezone.utc)

    def now(self) -> datetime:
        return (datetime.now(timezone.utc) + self.offset).astimezone(self.tz)


class FixedClock(Clock):
    """A clock that reads what it is told; tests and ``--at`` move it by hand."""

    def __init__(self, at: datetime, tz: str | ZoneInfo = "Asia/Shanghai"):
        super().__init__(tz)
        self._at = at if at.tzinfo else at.replace(tzinfo=self.tz)

    def now(self) -> datetime:
        return self._at.astimezone(self.tz)

    def set(self, at: datetime) -> None:
        self._at = at if at.tzinfo else at.replace(tzinfo=self.tz)

    def advance(self, **delta: float) -> None:
        self._at += timedelta(**delta)
