"""People before jobs on the one event loop (and SQLite's one writer) they share.

A job is plain Python between its awaits: deciding the ladder for a chunk of invoices, rendering
their messages. Chat handling is many short steps (a query, a template, the next query), and on
SQLite one event is handled at a time, inside one write transaction. With a job taking a turn of
the loop between every two steps of a message, a message took ten times as long; at 20 messages
a second the line grew for as long as the job ran (the midday-restart load: chat p50 8.5 s while
the morning's jobs caught up, 0.4 s after).

So the inbound side says when it is serving people (:meth:`PeopleFirst.serving`, from an event
stored until it is answered), and a job at each checkpoint asks :meth:`PeopleFirst.due`: while
people wait, a job works for at most :data:`SLICE` seconds, commits, and waits until they are
answered (at most :data:`GIVE_WAY` seconds, so a steady stream of messages cannot stop a job for
good: it then keeps about a tenth of the loop). With nobody waiting a job runs flat out.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager

SLICE = 0.02        # a job's work between two looks at whether people wait
GIVE_WAY = 0.2      # the longest a job waits for people to be answered before its next slice


class PeopleFirst:
    def __init__(self) -> None:
        self.waiting = 0                    # people's events stored and not yet answered
        self._answered: asyncio.Event | None = None
        self._slice_from = time.monotonic()

    @contextmanager
    def serving(self):
        """Around the handling of one person's event, from the moment it is stored."""
        self.waiting += 1
        if self._answered is not None:
            self._answered.clear()
        try:
            yield
        finally:
            self.waiting -= 1
            if self.waiting == 0 and self._answered is not None:
                self._answered.set()

    def due(self) -> bool:
        """Should the job stop here for the people waiting (it has had its slice)?"""
        return self.waiting > 0 and time.monotonic() - self._slice_from >= SLICE

    async def give_way(self) -> None:
        """Wait until nobody waits, or GIVE_WAY seconds; then the job's next slice begins."""
        if self.waiting > 0:
            if self._answered is None:
                self._answered = asyncio.Event()      # made in the running loop
            self._answered.clear()
            try:
                await asyncio.wait_for(self._answered.wait(), GIVE_WAY)
            except asyncio.TimeoutError:
                pass
        self._slice_from = time.monotonic()
