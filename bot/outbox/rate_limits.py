"""Per-minute rate limits per destination, counted where the sends happen."""
from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Callable

from bot.core.messages import OutgoingMessage


class RateLimiter:
    """Sliding one-minute windows per destination that counts against a limit: which ones, and
    which limit ("robot": 20/min, "member": 30/min from ``[outbox]``), each channel declares
    (``Capabilities.rate_limits``).

    Measured on the monotonic clock: rate limits are physical time, not business time. A slot is
    reserved when a send starts (so concurrent sends cannot overshoot) and moved to the moment
    the platform answered, because the platform counts a message when it *arrives*: counting
    from the start let a slow request land inside the next minute's budget, and a platform silently
    drops the excess. Stamped at the answer, a slot is already later than the arrival the
    platform counted, and the next message arrives after its send started, so the window holds
    without slack; ``margin`` is a little more for the platform's own time keeping (it was
    1 s: 1.7 % of every window, which the outbox benchmark showed as lost throughput at the limit).
    """

    def __init__(self, robot_per_minute: int, member_per_minute: int, monotonic=time.monotonic,
                 window: float = 60.0, margin: float = 0.25,
                 limit_of: Callable[[OutgoingMessage], str | None] = lambda out: None):
        self.limits = {"robot": robot_per_minute, "member": member_per_minute}
        self.sent: dict[tuple, deque] = defaultdict(deque)
        self.monotonic = monotonic
        self.window = window + margin
        self.limit_of = limit_of          # the limit a message's destination counts against, if any

    def key(self, out: OutgoingMessage) -> tuple | None:
        limit = self.limit_of(out)
        return None if limit is None else (limit, out.platform, out.target_kind, out.target)

    def wait_time(self, out: OutgoingMessage) -> float:
        """Seconds until this destination may take another message (0: now)."""
        k = self.key(out)
        return 0.0 if k is None else self._wait(k)

    def _wait(self, k: tuple) -> float:
        q, now = self.sent[k], self.monotonic()
        while q and now - q[0][0] >= self.window:
            q.popleft()
        if len(q) < self.limits[k[0]]:
            if not q:
                del self.sent[k]          # keep the map to destinations with recent sends
            return 0.0
        return max(0.0, self.window - (now - min(slot[0] for slot in q)))

    def free_in(self, out: OutgoingMessage, ahead: int = 0) -> float:
        """Seconds until the destination has room for one more message with ``ahead`` others
        waiting before it: the (ahead+1)-th oldest slot leaves the window (for a queue longer
        than the limit, a later window: an estimate, since those slots are not taken yet)."""
        k = self.key(out)
        if k is None:
            return 0.0
        wait = self._wait(k)
        if not wait and not ahead:
            return 0.0
        times = sorted(slot[0] for slot in self.sent[k])
        limit, now = self.limits[k[0]], self.monotonic()
        room = limit - len(times)
        if ahead < room:
            return 0.0
        i = ahead - room
        rounds, i = divmod(i, limit)
        return max(0.0, times[i % len(times)] + self.window * (rounds + 1) - now) if times else 0.0

    def blocked(self) -> tuple[dict[tuple[str, str], list[str]], float | None]:
        """Destinations that are full now, as {(platform, target_kind): [targets]}, and the seconds
        until the first of them frees (None: none is full). The sender does not claim their rows:
        claiming only to put them back cost a write per row per pass, most of its time at the limit."""
        full: dict[tuple[str, str], list[str]] = defaultdict(list)
        first = None
        for k in list(self.sent):
            w = self._wait(k)
            if w > 0:
                _, platform, target_kind, target = k
                full[(platform, target_kind)].append(target)
                first = w if first is None else min(first, w)
        return full, first

    def take(self, out: OutgoingMessage) -> list | None:
        """Reserve a slot; pass it to ``done`` when the platform has answered."""
        k = self.key(out)
        if k is None:
            return None
        slot = [self.monotonic()]
        self.sent[k].append(slot)
        return slot

    def done(self, slot: list | None) -> None:
        if slot is not None:
            slot[0] = self.monotonic()
