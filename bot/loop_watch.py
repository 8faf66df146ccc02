"""Where the event loop was when chat had to wait.

Chat, jobs and the sender share one event loop: a piece of code that runs for a second between
two awaits holds every person's answer for that second, and a profile of the whole process does
not say *which* second. A watcher thread looks at the loop every few milliseconds; when the loop
has not come round for longer than ``[log] stall_ms`` it samples the loop thread's stack
until the loop is back, then logs one line: how long, the project code most samples were in
(and the library frame under it), and the cyclic collector's share of that time.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections import Counter, deque

log = logging.getLogger("arbot.loop")

BEAT = 0.02            # the loop's heartbeat; a stall is measured to about this
SAMPLE = 0.05          # how often a stalled loop's stack is sampled
COLLECTOR = "(the cyclic garbage collector)"
_OURS = (os.sep + "bot" + os.sep, os.sep + "storage" + os.sep, os.sep + "domain" + os.sep)


def _short(filename: str) -> str:
    for marker in (os.sep + "site-packages" + os.sep, os.sep + "lib" + os.sep + "python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    for mark in _OURS:
        if mark in filename:
            return mark.strip(os.sep) + os.sep + filename.rsplit(mark, 1)[1]
    return filename


def where(frame) -> tuple[str, str]:
    """(the innermost project frame, the innermost frame) of a stack, as ``file:line function``."""
    inner = ours = ""
    while frame is not None:
        code = frame.f_code
        if code is LoopWatch._on_gc.__code__:
            # sampled as the collector finished: the loop was held by the collector itself
            return COLLECTOR, COLLECTOR
        here = f"{_short(code.co_filename)}:{frame.f_lineno} {code.co_name}"
        inner = inner or here
        if not ours and any(m in code.co_filename for m in _OURS) and "loop_watch" not in code.co_filename:
            ours = here
            break
        frame = frame.f_back
    return ours or inner, inner


class LoopWatch:
    def __init__(self, threshold: float, report=None):
        self.threshold = threshold
        self.report = report or self._log
        self._beat = time.monotonic()
        self._gc_started: float | None = None
        self._gcs: deque = deque(maxlen=256)    # the collector's recent runs: (start, end), monotonic
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._handle = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._handle = self._loop.call_later(BEAT, self._tick)
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._thread is not None:
            self._thread.join(timeout=1)

    def _tick(self) -> None:
        self._beat = time.monotonic()
        if not self._stop.is_set():
            self._handle = self._loop.call_later(BEAT, self._tick)

    def _on_gc(self, phase: str, _info: dict) -> None:
        # in any thread: the collector holds the interpreter, so the loop waits for it too
        if phase == "start":
            self._gc_started = time.monotonic()
        elif self._gc_started is not None:
            self._gcs.append((self._gc_started, time.monotonic()))
            self._gc_started = None

    def _watch(self) -> None:
        samples: Counter = Counter()
        inner: dict[str, Counter] = {}
        stalled_from = None
        while not self._stop.wait(SAMPLE):
            beat = self._beat
            late = time.monotonic() - beat - BEAT
            if late > self.threshold:
                if stalled_from is None:
                    stalled_from = beat
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    ours, innermost = where(frame)
                    samples[ours] += 1
                    inner.setdefault(ours, Counter())[innermost] += 1
                del frame
            elif stalled_from is not None:
                held = beat - stalled_from
                top, n = samples.most_common(1)[0] if samples else ("?", 0)
                under = inner[top].most_common(1)[0][0] if top in inner else ""
                collected = sum(max(0.0, min(end, beat) - max(start, stalled_from)) for start, end in list(self._gcs))
                self.report(held, top, under, n, sum(samples.values()), collected)
                samples.clear()
                inner.clear()
                stalled_from = None

    @staticmethod
    def _log(held: float, top: str, under: str, n: int, total: int, gc_seconds: float) -> None:
        log.warning("event loop held %d ms at %s [%s] (%d of %d samples; gc %d ms)",
                    held * 1000, top, under, n, total, gc_seconds * 1000)
