"""Engine, sessions and migrations. SQLite (aiosqlite) by default, PostgreSQL (asyncpg) by URL.

The caller owns the transaction: ``async with db.session() as s, s.begin(): ...``; query
functions in storage/ take the session first and never commit.

The write discipline (docs/operations.md, "How the bot writes"):

* On SQLite there is one writer. A transaction that reads first and writes later fails at once
  with "database is locked" when another connection committed in between, whatever
  ``busy_timeout`` says. So every transaction of ``db.session()`` starts with
  ``BEGIN IMMEDIATE`` (the write lock first, then the reads), and the sessions of one process
  share ONE connection: its pool is the write gate, whose waiters are served in order
  (:class:`_TakeTurns`: a job that commits and writes again queues behind the chat message
  that was waiting, instead of taking the connection straight back). Another
  process (a CLI import) is waited for by SQLite's busy handler.
* Readers never wait for the gate: ``db.reader()`` is a read-only session on its own
  connections (WAL lets them read while a writer writes). Long scans (the morning push, reports,
  the dashboard, /healthz) read there, so a job holds the gate only for its short write steps.
* Transient errors (SQLite busy/locked, PostgreSQL serialization failures and deadlocks, a
  connection lost) are recognised in one place, :func:`is_transient`, and retried by
  :meth:`Database.write` with backoff; callers that manage their own transaction use
  :func:`backoff` and the same test.
* A database that cannot be written (read-only file, full disk) is a storage fault, not a bug:
  :class:`StorageHealth` notes it once in the log, /healthz reports it, the platform endpoints
  answer 503 so the platforms deliver again later. Only a real write clears it —
  :meth:`Database.probe_write`, which the app runs every few seconds while a fault is noted and
  /healthz runs too — not any commit: a transaction that only read commits fine on a read-only file.
  After a fault the writer connection is reopened (one opened on a read-only file never writes).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import sqlite3
import time
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import memoized_property
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

try:                                   # SQLAlchemy 2.1
    from sqlalchemy.util.concurrency import await_
except ImportError:                    # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util.concurrency import await_only as await_

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")

# A write waits in line for the gate this long before it counts as a transient failure (and is
# retried by the caller's policy). Long on purpose: a wait is normal, the line moves.
GATE_TIMEOUT = 120
READERS = 4


def normalize_url(url: str) -> str:
    """Accept the plain forms people paste (postgresql://, sqlite:///x.db) and pick the async driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # the driver must not open transactions on its own: BEGIN is ours (see _begin_immediate)
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # waits for another *process* (a CLI import); this process's writers queue at the gate
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _reader_pragmas(dbapi_conn, record) -> None:
    _sqlite_pragmas(dbapi_conn, record)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")          # a reader that tries to write fails loudly
    cur.close()


def _begin_immediate(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(conn) -> None:
    conn.exec_driver_sql("BEGIN")


# -- what kind of error is it --------------------------------------------------------------

_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")
_SQLITE_FAULT = ("readonly database", "disk is full", "disk i/o error", "unable to open database file",
                 "database or disk is full", "read-only")
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57P01", "08000", "08003", "08006"}
_PG_FAULT = {"53100", "53200", "25006", "58030"}


def _sqlstate(e: BaseException) -> str | None:
    for err in (getattr(e, "orig", None), e.__cause__, e):
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if code:
            return str(code)
    return None


def _messages(e: BaseException) -> str:
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts.append(str(e).lower())
        e = getattr(e, "orig", None) or e.__cause__
    return " | ".join(parts)


def is_storage_fault(e: BaseException) -> bool:
    """The database cannot be written (read-only, disk full, the file gone): not the request's
    fault and not cured by retrying at once; cured by an operator, or by space coming back."""
    if isinstance(e, StorageUnavailable):
        return True
    if _sqlstate(e) in _PG_FAULT:
        return True
    if isinstance(e, (exc.OperationalError, sqlite3.OperationalError, OSError)) or \
            isinstance(getattr(e, "orig", None), sqlite3.Error):
        msg = _messages(e)
        return any(m in msg for m in _SQLITE_FAULT)
    return False


def is_transient(e: BaseException) -> bool:
    """Worth trying again in a moment: a lock, a serialization conflict, a lost connection."""
    if isinstance(e, exc.TimeoutError):              # waited at the gate / for a pool connection
        return True
    if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
        return True
    if _sqlstate(e) in _PG_TRANSIENT:
        return True
    if isinstance(e, (exc.OperationalError, sqlite3.OperationalError)):
        msg = _messages(e)
        return any(m in msg for m in _SQLITE_TRANSIENT)
    return False


def backoff(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Seconds before try ``attempt`` + 1: exponential with jitter (two retriers never collide twice)."""
    return min(cap, base * 2 ** attempt) * (0.5 + random.random())


class _TakeTurns(AsyncAdaptedQueue):
    """The write gate's queue, first come first served. SQLAlchemy's own queue hands a free
    connection to whoever asks first in the same turn of the event loop, so a job that commits
    and writes again took the connection straight back, and a person's write queued behind it
    waited for the whole job (360 s behind the escalations at 20k invoices). Here every taker
    lines up on a fair lock (asyncio.Lock serves its waiters in order) before it waits for the
    connection."""

    waiting = 0                         # takers in line now (Database.writers_waiting)

    def get(self, block: bool = True, timeout: float | None = None):
        if not block:
            return self.get_nowait()
        try:
            return await_(asyncio.wait_for(self._in_turn(), timeout))
        except (asyncio.QueueEmpty, asyncio.TimeoutError) as err:
            raise Empty() from err

    async def _in_turn(self):
        self.waiting += 1
        try:
            async with self._line:
                return await self._queue.get()
        finally:
            self.waiting -= 1

    @memoized_property
    def _line(self) -> asyncio.Lock:
        return asyncio.Lock()           # made on first use, in the running loop, like the queue


# who is writing, for the log line of a long hold of the write gate: a job's name, "chat",
# "outbox" (set where the work starts; tasks inherit it)
WRITER: contextvars.ContextVar[str] = contextvars.ContextVar("arbot_writer", default="other")


class _WriteGatePool(AsyncAdaptedQueuePool):
    _queue_class = _TakeTurns


class StorageUnavailable(Exception):
    """The database cannot be written right now (see :class:`StorageHealth`)."""


class StorageHealth:
    """Whether the database can be written: noted by a write that failed for a storage fault,
    cleared by a probe that wrote (:meth:`Database.probe_write`). Logged on change only: a full
    disk is one error and one recovery line, not a traceback per request."""

    def __init__(self) -> None:
        self.fault: str | None = None
        self.since: float | None = None

    @property
    def writable(self) -> bool:
        return self.fault is None

    def failed(self, e: BaseException) -> None:
        if self.fault is None:
            log.error("database cannot be written (%s); platform events are refused with 503 until it can",
                      _messages(e).split(" | ")[-1][:200])
            self.since = time.monotonic()
        self.fault = type(e).__name__ + ": " + _messages(e).split(" | ")[-1][:200]

    def succeeded(self) -> None:
        if self.fault is not None:
            log.warning("database writable again after %.0f s", time.monotonic() - (self.since or time.monotonic()))
            self.fault = self.since = None


class Database:
    def __init__(self, url: str, echo: bool = False):
        self.url = normalize_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self.health = StorageHealth()
        kwargs: dict = {"echo": echo}
        if self.dialect == "postgresql":
            self.engine: AsyncEngine = create_async_engine(self.url, pool_size=10, max_overflow=10,
                                                           pool_pre_ping=True, **kwargs)
            self.read_engine = self.engine
        else:
            # one connection: the write gate (see the module's docstring)
            self.engine = create_async_engine(self.url, poolclass=_WriteGatePool, pool_size=1,
                                              max_overflow=0, pool_timeout=GATE_TIMEOUT, **kwargs)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _begin_immediate)
            self.read_engine = create_async_engine(self.url, poolclass=AsyncAdaptedQueuePool, pool_size=READERS,
                                                   max_overflow=READERS, **kwargs)
            event.listen(self.read_engine.sync_engine, "connect", _reader_pragmas)
            event.listen(self.read_engine.sync_engine, "begin", _begin_deferred)
        event.listen(self.engine.sync_engine, "handle_error", self._on_error)
        # after a storage fault the next write opens a fresh connection: one opened while the file
        # was read-only stays read-only for good, whatever happens to the file (see _on_checkout)
        self._reopen = False
        event.listen(self.engine.sync_engine.pool, "checkout", self._on_checkout)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        self.reader = async_sessionmaker(self.read_engine, expire_on_commit=False, class_=AsyncSession)
        self._background_checkpoints = False
        self.hold_warning: float | None = None     # seconds: a longer hold of the write gate is logged
        self._held_from: tuple[float, str] | None = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", self._writer_checkpoints)
            event.listen(self.engine.sync_engine.pool, "checkout", self._gate_taken)
            event.listen(self.engine.sync_engine.pool, "checkin", self._gate_left)

    def _gate_taken(self, *_args) -> None:
        self._held_from = (time.monotonic(), WRITER.get())

    def _gate_left(self, *_args) -> None:
        """SQLite: everyone else's writes wait while one holds the gate; a long hold is what a
        slow chat answer waited for when the event loop itself was free (bot/loop_watch.py)."""
        if self._held_from is None:
            return
        start, who = self._held_from
        self._held_from = None
        held = time.monotonic() - start
        if self.hold_warning is not None and held > self.hold_warning:
            log.warning("write gate held %d ms by %s", held * 1000, who)

    async def checkpoint_in_background(self) -> None:
        """SQLite: from now on the WAL is copied into the database by :meth:`checkpoint_wal` (the
        server runs it every second), not by the writer at the commit that fills it. That copy
        took up to 1.5 s at 200k invoices, inside whichever commit crossed the line — often the
        outbox sender's, while a rep's follow-up waited behind it at the write gate."""
        if not self.is_sqlite or self._background_checkpoints:
            return
        async with self.engine.connect() as conn:        # the writer connection open now
            await conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        self._background_checkpoints = True

    def _writer_checkpoints(self, dbapi_conn, _record) -> None:
        if self._background_checkpoints:                 # a writer reopened after a fault
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

    async def checkpoint_wal(self) -> None:
        """A PASSIVE checkpoint on a reader connection: it takes no write lock, so writers carry
        on meanwhile; it copies what no reader still needs (the rest at the next one)."""
        if not self.is_sqlite:
            return
        async with self.read_engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await (await raw.execute("PRAGMA wal_checkpoint(PASSIVE)")).fetchall()

    def writers_waiting(self) -> int:
        """How many writers wait in line at the SQLite write gate now (0 on PostgreSQL): a long
        job can let them in at its next step instead of after its step's time is up."""
        queue = getattr(self.engine.sync_engine.pool, "_pool", None)
        return queue.waiting if isinstance(queue, _TakeTurns) else 0

    def _on_error(self, ctx) -> None:
        if is_storage_fault(ctx.original_exception):
            self.health.failed(ctx.original_exception)
            self._reopen = True

    def _on_checkout(self, _dbapi_conn, _record, _proxy) -> None:
        """SQLite opens a file it may not write read-only, and that connection never writes again,
        even when the file becomes writable; a full disk can leave a connection in an odd state too.
        So the first checkout after a storage fault discards the writer connection and the pool opens
        a new one (DisconnectionError at checkout: the pool's own way to replace a connection)."""
        if self._reopen:
            self._reopen = False
            raise exc.DisconnectionError("reopened after a storage fault")

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 8) -> T:
        """Run ``work(session)`` in one write transaction, committed at the end; a transient error
        rolls it back and runs it again (``work`` must not have effects outside the database)."""
        for attempt in range(attempts):
            try:
                async with self.session() as s, s.begin():
                    return await work(s)
            except Exception as e:
                if not is_transient(e) or attempt == attempts - 1:
                    raise
                log.info("transient database error (%s); try %d of %d", type(e).__name__, attempt + 2, attempts)
                await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (creates it on an empty database).

        On SQLite the migrations run with foreign keys off: Alembic changes a SQLite table by
        rebuilding it (batch mode), and a table that others reference (people, contacts) cannot be
        dropped and renamed back with them on (its DROP deletes its rows first, and the referring
        rows count as violations at commit). The pragma is ignored inside a transaction, so it is
        set before the transaction begins; the keys are checked before the commit instead."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.run_sync(_sqlite_foreign_keys, False)
            try:
                async with conn.begin():
                    await conn.run_sync(_upgrade)
            finally:
                if self.is_sqlite:
                    await conn.run_sync(_sqlite_foreign_keys, True)

    async def probe_write(self) -> bool:
        """Try a real write: clears or confirms a storage fault (the only thing that clears one).
        Run while a fault is noted by the app every few seconds and by /healthz, so recovery is
        seen even when no event arrives."""
        try:
            async with self.engine.connect() as conn:
                async with conn.begin() as tx:
                    if self.is_sqlite:
                        # rewriting the header's user_version with its own value writes a page
                        # (and, at commit, the WAL): what a full disk or a read-only file refuses
                        v = (await conn.exec_driver_sql("PRAGMA user_version")).scalar()
                        await conn.exec_driver_sql(f"PRAGMA user_version = {int(v)}")
                        await tx.commit()
                    else:
                        await conn.execute(text("SELECT txid_current()"))   # needs a writable primary
                        await tx.rollback()
        except Exception as e:
            if is_storage_fault(e):
                self.health.failed(e)
                self._reopen = True
                return False
            raise
        self.health.succeeded()
        return True

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def alembic_config(connection=None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(sync_conn) -> None:
    command.upgrade(alembic_config(sync_conn), "head")
    if sync_conn.dialect.name == "sqlite":
        broken = sync_conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:       # raised inside the transaction: nothing of the migration is kept
            raise RuntimeError(f"migration left {len(broken)} row(s) whose foreign key has no target, "
                               f"e.g. {broken[0]}")


def _sqlite_foreign_keys(sync_conn, on: bool) -> None:
    """PRAGMA foreign_keys on the raw connection, outside any transaction (the Connection's
    ``begin`` hook would open one first, and inside one the pragma does nothing)."""
    cur = sync_conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cur.close()


# Registers the before_flush hook that cancels queued customer messages when an invoice is
# disputed, paid, written off or promised (storage/reminders.py): every process that opens the
# database must have it, not only those that happen to import the reminder jobs.
import storage.reminders  # noqa: E402,F401
