"""Every channel's health for /healthz, kept in one place for all platforms.

The intake counts what arrives (accepted, duplicates, refused), the outbox's sender reports what
leaves (the last permanent send failure, e.g. "caller IP not trusted"), and a channel with a
background connection (a stream socket) lets its live status be watched. A channel is

  "enabled"   switched on, nothing has happened yet
  "ok"        the last request passed verification, or the last send went out
  "degraded"  the last send failed for good, or a watched connection is down

A refused request does not degrade a channel: anyone on the internet can send a forged one. It
is counted, and the last refusal is shown, so a misconfigured token still shows at a glance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.core.intake import Rejected


@dataclass
class _State:
    details: dict[str, Any] = field(default_factory=dict)
    watched: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "enabled"
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    last_rejection: str | None = None
    last_send_error: str | None = None

    def report(self) -> dict[str, Any]:
        status = self.status
        if any(w.get("connected") is False for w in self.watched.values()):
            status = "degraded"
        return {"status": status, **self.details, "accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected, "last_rejection": self.last_rejection,
                "last_send_error": self.last_send_error, **{k: dict(v) for k, v in self.watched.items()}}


class ChannelHealth:
    def __init__(self) -> None:
        self._by_platform: dict[str, _State] = {}

    def add(self, platform: str, **details: Any) -> None:
        """A channel switched on; ``details`` are shown as they are (e.g. a connection mode)."""
        self._by_platform.setdefault(platform, _State()).details.update(details)

    def watch(self, platform: str, name: str, live: dict[str, Any]) -> None:
        """Show a live status dict under ``name``; its ``connected`` False degrades the channel."""
        self._of(platform).watched[name] = live

    def _of(self, platform: str) -> _State:
        return self._by_platform.setdefault(platform, _State())

    def verified(self, platform: str) -> None:
        self._of(platform).status = "ok"

    def stored(self, platform: str, *, duplicate: bool) -> None:
        s = self._of(platform)
        if duplicate:
            s.duplicates += 1
        else:
            s.accepted += 1

    def refused(self, platform: str, rejection: Rejected) -> None:
        s = self._of(platform)
        s.rejected += 1
        s.last_rejection = f"{rejection.status} {rejection.error}: {rejection.reason}"

    def sent(self, platform: str) -> None:
        s = self._of(platform)
        s.status, s.last_send_error = "ok", None

    def send_failed(self, platform: str, reason: str) -> None:
        s = self._of(platform)
        s.status, s.last_send_error = "degraded", reason

    def __contains__(self, platform: str) -> bool:
        return platform in self._by_platform

    def report(self) -> dict[str, dict[str, Any]]:
        return {name: s.report() for name, s in self._by_platform.items()}
