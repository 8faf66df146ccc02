"""Writing many rows at once in the caller's transaction: fetch by key in chunks, sum money
per id, INSERT with one driver executemany, rebuild a table's indexes around a large load.

Apart from the import planners (storage/import_plans.py) because the audit log writes its
entries with :func:`insert_rows` too, and the planners write audit entries: one module under
both keeps the imports pointing one way.
"""
from __future__ import annotations

import operator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Table, TypeDecorator, func, insert, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

CHUNK = 500   # stays under SQLite's bound-parameter limit in IN (...) queries


async def in_chunks(session: AsyncSession, model: Any, attr: Any, keys: Iterable) -> list:
    keys, out = list(set(keys)), []
    for i in range(0, len(keys), CHUNK):
        out += (await session.execute(select(model).where(attr.in_(keys[i:i + CHUNK])))).scalars().all()
    return out


async def money_sums(session: AsyncSession, amount: Any, by: Any, ids: Iterable[int], *where) -> dict[int, Decimal]:
    """Σ amount per id, summed over raw cents so the total stays exact."""
    ids, out = list(set(ids)), {}
    for i in range(0, len(ids), CHUNK):
        q = (select(by, func.sum(type_coerce(amount, BigInteger))).where(by.in_(ids[i:i + CHUNK]), *where)
             .group_by(by))
        for k, total in (await session.execute(q)).all():
            out[k] = (Decimal(int(total or 0)) / 100).quantize(Decimal("0.01"))
    return out


async def insert_rows(session: AsyncSession, table: Table, columns: Sequence[str],
                      rows: Sequence[Sequence[Any]]) -> None:
    """``INSERT`` rows of ``columns`` values in the caller's transaction: what
    ``session.execute(insert(table), [dict(zip(columns, r)) for r in rows])`` does.

    On SQLite the rows go through the driver's ``executemany`` in one call, each value converted
    by its column type's own bind processor (the one a Core insert calls: Money → cents, Date →
    text, UTCDateTime → naive UTC text, Boolean → 0/1, JSON → ``json.dumps``) but without the
    per-row parameter bookkeeping of a compiled statement, which cost more than the inserts
    themselves; a value object that repeats (a date parsed once per distinct text, the one
    timestamp) is converted once. ``columns`` must name every column but an autoincrement key,
    so that no column default is silently skipped; otherwise, and on other databases, it is
    the Core insert.
    """
    if not rows:
        return
    conn = await session.connection()
    dialect = conn.dialect
    expected = {c.name for c in table.c if not (c.primary_key and c.autoincrement in (True, "auto"))}
    if dialect.name != "sqlite" or set(columns) != expected or len(columns) != len(expected):
        await session.execute(insert(table), [dict(zip(columns, r)) for r in rows])
        return
    if set(map(len, rows)) != {len(columns)}:
        raise ValueError(f"every row must have {len(columns)} values")
    # column by column: one conversion pass per typed column instead of a Python loop per row
    values = list(zip(*rows))
    rows_of: dict[int, tuple] = {}           # column → its values before conversion
    done: list[tuple[int, tuple]] = []       # (column, its type's class and repr) already converted
    for i, name in enumerate(columns):
        typ = table.c[name].type
        proc = typ.dialect_impl(dialect).bind_processor(dialect)
        if proc is None:
            continue
        # a column holding the very objects of one converted before with the same type (a new
        # invoice's open amount is its amount) takes that result
        kind = (type(typ), repr(typ))
        same = next((j for j, k in done if k == kind and all(map(operator.is_, values[i], rows_of[j]))), None)
        if same is not None:
            values[i] = values[same]
            continue
        rows_of[i] = values[i]
        if isinstance(_base_type(typ), _REPEATING):
            values[i] = _convert_repeating(proc, values[i])
        else:
            values[i] = list(map(proc, values[i]))
        done.append((i, kind))
    prep = dialect.identifier_preparer
    sql = (f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(n) for n in columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    params = list(zip(*values))
    if dialect.driver == "aiosqlite":
        # the same connection and transaction, minus SQLAlchemy's per-row parameter pass (~1 µs a row)
        await (await conn.get_raw_connection()).driver_connection.executemany(sql, params)
    else:
        await conn.exec_driver_sql(sql, params)


KEY_CHUNK = 5_000    # keys per IN (...): SQLite (since 3.32) and PostgreSQL take 32,766 parameters


async def existing_keys(session: AsyncSession, column: Any, keys: Iterable) -> set:
    """The subset of ``keys`` stored in ``column`` (a unique column), one query per chunk."""
    keys, out = list(set(keys)), set()
    conn = await session.connection()
    for i in range(0, len(keys), KEY_CHUNK):
        chunk = keys[i:i + KEY_CHUNK]
        if conn.dialect.name == "sqlite":
            # plain placeholders: compiling an expanding IN of 5,000 names cost more than the lookup
            prep = conn.dialect.identifier_preparer
            sql = (f"SELECT {prep.quote(column.name)} FROM {prep.format_table(column.table)} "
                   f"WHERE {prep.quote(column.name)} IN ({', '.join('?' * len(chunk))})")
            out.update(r[0] for r in await conn.exec_driver_sql(sql, tuple(chunk)))
        else:
            out.update((await session.execute(select(column).where(column.in_(chunk)))).scalars())
    return out


# Rebuild a table's indexes rather than maintain them row by row when a load adds at least this
# many rows and at least this share of the rows already there: maintaining an index costs a
# random B-tree insert per row (most of a raw executemany's time on a large table), building it
# again is one sorted pass over all rows.
REBUILD_MIN_ROWS = 10_000
REBUILD_MIN_SHARE = 0.25


@asynccontextmanager
async def indexes_rebuilt(session: AsyncSession, table: Table, adding: int):
    """Around a bulk insert of ``adding`` rows: on SQLite, when the load is large next to the
    table, drop its secondary indexes first and create them again afterwards from their own
    stored DDL (``sqlite_master``: whatever indexes the migrations made, partial ones included),
    all inside the caller's transaction — SQLite DDL is transactional, so a failure or a rollback
    leaves the indexes as they were, and other connections never see the table without them.
    Implicit indexes (UNIQUE, primary key) have no DDL and stay; triggers are not touched.
    ``ANALYZE`` statistics of the dropped indexes are put back as they were."""
    conn = await session.connection()
    if conn.dialect.name != "sqlite" or adding < REBUILD_MIN_ROWS:
        yield
        return
    name, quote = table.name, conn.dialect.identifier_preparer.quote
    existing = (await conn.exec_driver_sql(f"SELECT coalesce(max(rowid), 0) FROM {quote(name)}")).scalar_one()
    if adding < existing * REBUILD_MIN_SHARE:
        yield
        return
    indexes = (await conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (name,))).all()
    has_stats = (await conn.exec_driver_sql(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")).scalar_one()
    stats = (await conn.exec_driver_sql("SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl = ?", (name,))).all() \
        if has_stats else []
    for index, _ in indexes:
        await conn.exec_driver_sql(f"DROP INDEX {quote(index)}")
    yield
    for _, ddl in indexes:
        await conn.exec_driver_sql(ddl)
    dropped = {index for index, _ in indexes}
    for row in stats:
        if row.idx in dropped:
            await conn.exec_driver_sql("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", tuple(row))


_REPEATING = (Date, DateTime, Boolean)


def _base_type(typ: Any) -> Any:
    return typ.impl_instance if isinstance(typ, TypeDecorator) else typ


def _convert_repeating(proc: Callable[[Any], Any], column: list) -> list:
    """``proc`` over a column whose values repeat as the same objects (dates parsed once per
    distinct text, one timestamp for all rows): each distinct *object* is converted once.
    Keyed by identity (the column keeps the objects alive), so equal-but-different values
    (1 and True, one instant in two time zones) never share a result."""
    distinct = {id(v): v for v in column}
    out = {k: proc(v) for k, v in distinct.items()}
    return [out[id(v)] for v in column]
