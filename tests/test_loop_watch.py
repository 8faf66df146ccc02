"""The loop watch says where the event loop was held, so a slow chat answer can be traced to the
code that kept it waiting (``[log] stall_ms``)."""
import asyncio
import gc
import logging
import time

from bot.loop_watch import LoopWatch


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)
    gc.collect()


async def test_a_held_loop_is_reported_once_with_the_code_that_held_it():
    got = []
    watch = LoopWatch(0.1, report=lambda *a: got.append(a))
    watch.start()
    try:
        await asyncio.sleep(0.3)            # a free loop: nothing to say
        assert got == []
        _hold_the_loop(0.4)
        await asyncio.sleep(0.2)
    finally:
        watch.stop()
    assert len(got) == 1
    held, top, _under, n, total, collected = got[0]
    assert 0.35 <= held < 1.0
    assert "_hold_the_loop" in top and n >= 2 and n <= total
    assert 0 < collected < held


async def test_the_default_report_is_one_log_line(caplog):
    caplog.set_level(logging.WARNING, logger="arbot.loop")
    watch = LoopWatch(0.1)
    watch.start()
    try:
        _hold_the_loop(0.3)
        await asyncio.sleep(0.2)
    finally:
        watch.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "arbot.loop"]
    assert len(lines) == 1 and lines[0].startswith("event loop held ") and "_hold_the_loop" in lines[0]
