"""Values made once and shared by every process on the database (the ``settings`` table)."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from sqlalchemy.exc import IntegrityError

from storage.models import Setting


async def get_or_create(db, key: str, make: Callable[[], str], now: datetime) -> str:
    """The stored value of ``key``; the first caller stores ``make()``. Two processes starting
    together both try: the primary key lets one in and the other reads what it wrote."""
    async with db.session() as s:
        row = await s.get(Setting, key)
        if row is not None:
            return row.value
    try:
        async with db.session() as s, s.begin():
            s.add(Setting(key=key, value=make(), created_at=now))
    except IntegrityError:
        pass
    async with db.session() as s:
        return (await s.get(Setting, key)).value
