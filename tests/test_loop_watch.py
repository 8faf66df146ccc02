"""The loop watch says where the event loop was held, so a slow chat answer can be traced to the
code that kept it waiting (``[log] stall_ms``)."""
import asyncio
import gc
import logging
import time

from bot.loop_watch import LoopWatch


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)
    gc.collect(0)           # the youngest generation only: quick whatever the test process holds


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
    assert held >= 0.35
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


async def test_a_long_hold_of_the_write_gate_is_logged_with_who_held_it(db, caplog):
    """SQLite: everyone's writes wait while one transaction holds the gate; the log names it."""
    from sqlalchemy import text

    from storage.db import WRITER
    caplog.set_level(logging.WARNING, logger="storage.db")
    db.hold_warning = 0.1

    async def hold(who: str, seconds: float) -> None:
        WRITER.set(who)
        async with db.session() as s:
            await s.execute(text("SELECT 1"))
            await asyncio.sleep(seconds)
            await s.commit()
    await asyncio.gather(asyncio.create_task(hold("escalations", 0.3)), asyncio.create_task(hold("chat", 0.01)))
    lines = [r.getMessage() for r in caplog.records if "write gate held" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith("by escalations")
