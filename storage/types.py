"""Column types: money is stored as integer cents so SQLite and PostgreSQL are both exact
(SQLite has no decimal type; SUM over integers stays exact and fast)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.types import TypeDecorator

CENT = Decimal("0.01")


class Money(TypeDecorator):
    """Decimal yuan in Python, BIGINT cents in the database."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money must be Decimal, not float")
        d = Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
        return int(d * 100)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return (Decimal(int(value)) / 100).quantize(CENT)


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes stored as UTC (SQLite drops tzinfo; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime from the clock")
        v = value.astimezone(timezone.utc)
        return v.replace(tzinfo=None) if dialect.name == "sqlite" else v

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def cents(value: Decimal) -> int:
    return int(Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP) * 100)


def from_cents(value: int | None) -> Decimal:
    return (Decimal(int(value or 0)) / 100).quantize(CENT)
