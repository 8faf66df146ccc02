"""Per-minute rate limits per destination, counted where the sends happen.

This process's count orders the sends and estimates when a destination frees; with several
instances the count in the database (storage/rate_slots.py, ``[outbox] shared_rate_limits``)
has the last word before each send, so that together they keep the platform's limit."""
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

    Answers first: of each "member" window, ``reply_reserve`` sends are kept for answers to the
    person's own messages (``reply=True``). Notifications count against ``limit - reserve``, answers
    against the whole limit, and both are counted in the same window (the platform counts them
    all): so behind a backlog of notifications the member's minute always has room for a question's
    answer, and the sender's claim (outbox priority) takes it first. Robot limits keep no reserve:
    nobody asks a group robot a question (a robot is send-only).
    """

    def __init__(self, robot_per_minute: int, member_per_minute: int, monotonic=time.monotonic,
                 window: float = 60.0, margin: float = 0.25,
                 limit_of: Callable[[OutgoingMessage], str | None] = lambda out: None, reply_reserve: int = 0):
        self.limits = {"robot": robot_per_minute, "member": member_per_minute}
        self.reserve = {"robot": 0, "member": max(0, min(reply_reserve, member_per_minute - 1))}
        self.sent: dict[tuple, deque] = defaultdict(deque)
        self.monotonic = monotonic
        self.window = window + margin
        self.limit_of = limit_of          # the limit a message's destination counts against, if any

    def key(self, out: OutgoingMessage) -> tuple | None:
        limit = self.limit_of(out)
        return None if limit is None else (limit, out.platform, out.target_kind, out.target)

    def cap(self, out: OutgoingMessage, reply: bool = False) -> int | None:
        """How many sends a minute this destination takes (for notifications, less the reserve)."""
        k = self.key(out)
        return None if k is None else self._cap(k, reply)

    def release(self, out: OutgoingMessage, slot: list | None) -> None:
        """Give back a slot taken for a send that will not start (the shared count said no)."""
        k = self.key(out)
        if slot is None or k is None or k not in self.sent:
            return
        q = self.sent[k]
        for i, s in enumerate(q):
            if s is slot:
                del q[i]
                break

    def _cap(self, k: tuple, reply: bool) -> int:
        return self.limits[k[0]] - (0 if reply else self.reserve[k[0]])

    def wait_time(self, out: OutgoingMessage, reply: bool = False) -> float:
        """Seconds until this destination may take another message (0: now); ``reply``: an answer
        to the person's own message, which may use the reserved room."""
        k = self.key(out)
        return 0.0 if k is None else self._wait(k, reply)

    def _wait(self, k: tuple, reply: bool = False) -> float:
        q, now = self.sent[k], self.monotonic()
        while q and now - q[0][0] >= self.window:
            q.popleft()
        cap = self._cap(k, reply)
        if len(q) < cap:
            if not q:
                del self.sent[k]          # keep the map to destinations with recent sends
            return 0.0
        # room comes when enough of the oldest slots have left the window to be under the cap
        times = sorted(slot[0] for slot in q)
        return max(0.0, self.window - (now - times[len(q) - cap]))

    def free_in(self, out: OutgoingMessage, ahead: int = 0, reply: bool = False) -> float:
        """Seconds until the destination has room for one more message with ``ahead`` others
        waiting before it: the (ahead+1)-th oldest slot leaves the window (for a queue longer
        than the limit, a later window: an estimate, since those slots are not taken yet)."""
        k = self.key(out)
        if k is None:
            return 0.0
        wait = self._wait(k, reply)
        if not wait and not ahead:
            return 0.0
        times = sorted(slot[0] for slot in self.sent[k])
        limit, now = self._cap(k, reply), self.monotonic()
        room = limit - len(times)
        if ahead < room:
            return 0.0
        i = ahead - room
        rounds, i = divmod(i, limit)
        return max(0.0, times[i % len(times)] + self.window * (rounds + 1) - now) if times else 0.0

    def blocked(self, reply: bool = False) -> tuple[dict[tuple[str, str], list[str]], float | None]:
        """Destinations that are full now (for notifications; ``reply``: full even for answers), as
        {(platform, target_kind): [targets]}, and the seconds until the first of them frees (None:
        none is full). The sender does not claim their rows: claiming only to put them back cost a
        write per row per pass, most of its time at the limit."""
        full: dict[tuple[str, str], list[str]] = defaultdict(list)
        first = None
        for k in list(self.sent):
            w = self._wait(k, reply)
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
