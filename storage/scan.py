"""Reading many rows without holding the event loop or the heap.

A job that reads every open invoice with ``(await session.execute(stmt)).all()`` turns hundreds of
thousands of rows into Row objects in one turn of the loop (a second at 1M receivables, with chat
waiting), and keeps them all alive while the cyclic collector walks them again and again. Here the
rows come a few thousand at a time, as plain tuples, the loop getting a turn between two parts.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

PART = 5_000


async def in_parts(session: AsyncSession, stmt, size: int = PART) -> AsyncIterator[list[tuple]]:
    """``stmt``'s rows as tuples (values converted as ``execute`` converts them), ``size`` at a time."""
    result = await session.stream(stmt)
    try:
        async for part in result.partitions(size):
            yield [tuple(row) for row in part]
            await asyncio.sleep(0)
    finally:
        await result.close()
