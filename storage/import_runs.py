"""Import runs: the journal that keeps a chunked import all-or-nothing (design: storage/import_stream.py).

A run (``import_runs``) is started only after the whole file has been checked. Every chunk it
commits writes, in the same transaction, one ``import_run_chunks`` row saying what that chunk
changed — the ids it inserted (as ranges), the audit entries it wrote, each updated row's
columns as ``[old, new]`` — and moves the run's heartbeat. The run's last step (status ``done``,
the ``import.file`` audit entry, the journal deleted) is one short transaction too: before it the
run can be taken back, after it the import is simply part of the ledger.

Taking a run back (:func:`undo_run`) replays its chunks in reverse, one short transaction per
chunk, each deleting its journal row as it goes, so an undo that is itself interrupted carries
on where it stopped. It is careful with what happened meanwhile: an updated column is put back
only if it still holds the import's value (a later change by someone else stands), an open
balance is computed again from the amount and what has been paid and written off, and an
inserted invoice that something else refers to by now (a follow-up logged on it, a payment
allocated to it) is kept rather than deleted with that work — the run then ends ``undone`` with
the kept invoices listed in its ``detail`` and an ``import.partly_undone`` audit entry. The
run's audit entries are deleted with its rows: they recorded changes that no longer exist.

A chunk that writes through the ledger's own functions (a bank statement's receipts: payments,
allocations, the claims they close, the bills they collect) does not list its rows itself: a
:class:`ChangeLog` listens to the chunk's flushes and journals every row inserted (``inserted``,
id ranges per table) and every column changed on a row that existed (``changed``). Its undo puts
each changed column back where it still holds the chunk's value, deletes the inserted rows (those
pointing at others first; one something else refers to by now is kept and listed), and computes
the open balances of the invoices concerned again from what is still allocated.

Who undoes what: the process that runs an import undoes it itself when the import fails or is
stopped (an exception, Ctrl-C, SIGTERM in the CLI). A process that died (SIGKILL, power) cannot,
so :func:`recover_imports` — called when the bot starts, every minute while it runs, and before
every CLI command — undoes the active runs whose owner is gone: on the same host, when its pid
no longer exists or belongs to a process started at another time; on another host, when its
heartbeat is older than :data:`STALE_AFTER`. Claiming a run for the undo is a compare-and-set
on its owner, so two processes never undo the same run twice.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import JSON, Date, DateTime, Integer, and_, delete, event, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage import audit
from storage.bulk_writes import money_sums
from storage.db import Database
from storage.ledger import refresh_status
from storage.models import Allocation, AuditEntry, Base, ImportRun, ImportRunChunk, Receivable, WriteOff
from storage.types import Money, UTCDateTime

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=10)    # another host's run without a heartbeat this long is dead


class ImportBusy(Exception):
    """Another import is under way (one at a time: they would judge the ledger each without the other)."""

    def __init__(self, run_id: int, file_name: str):
        super().__init__(f"import run {run_id} ({file_name}) is under way")
        self.run_id, self.file_name = run_id, file_name


class RunTakenOver(Exception):
    """Our run was declared dead and claimed for undoing by another process: stop writing."""


# ---- who runs it ---------------------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields follow the last ')'
    return stat.rsplit(")", 1)[1].split()[19]


def owner() -> str:
    """This process as a run's owner: host, pid and start time (a reused pid is not us)."""
    return f"{socket.gethostname()}|{os.getpid()}|{_start_time(os.getpid()) or ''}"


def _owner_alive(run_owner: str, heartbeat_at: datetime, now: datetime) -> bool:
    host, _, rest = run_owner.partition("|")
    pid_text, _, started = rest.partition("|")
    if host != socket.gethostname():
        return now - heartbeat_at < STALE_AFTER
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if os.path.isdir("/proc"):
        return _start_time(pid) is not None and (not started or _start_time(pid) == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wall() -> datetime:
    # heartbeats are real time, whatever business clock the import was given
    return datetime.now(timezone.utc)


# ---- the run's life --------------------------------------------------------------------------
async def start_run(db: Database, *, kind: str, file_name: str, actor: str, channel: str, rows: int,
                    created: int, updated: int) -> int:
    """A new active run, or :class:`ImportBusy`. A dead run in the way is undone first."""
    for attempt in range(2):
        async def work(s: AsyncSession) -> int:
            now = _wall()
            run = ImportRun(kind=kind, file_name=file_name[:255], actor=actor, channel=channel, status="running",
                            active=True, owner=owner(), started_at=now, heartbeat_at=now, rows=rows,
                            created=created, updated=updated, chunks=0, error="", detail={})
            s.add(run)
            await s.flush()
            return run.id
        try:
            return await db.write(work)
        except IntegrityError:
            if attempt == 0 and await recover_imports(db):
                continue
            async with db.reader() as s:
                other = (await s.execute(select(ImportRun).where(ImportRun.active.is_(True)))).scalar_one_or_none()
            if other is None and attempt == 0:
                continue            # it finished in between
            raise ImportBusy(other.id if other else 0, other.file_name if other else "") from None
    raise AssertionError("unreachable")


async def record_chunk(session: AsyncSession, run_id: int, seq: int, changes: dict) -> None:
    """In the chunk's own transaction: its journal row and the run's heartbeat."""
    moved = await session.execute(update(ImportRun).where(ImportRun.id == run_id, ImportRun.status == "running",
                                                          ImportRun.owner == owner())
                                  .values(heartbeat_at=_wall(), chunks=seq))
    if moved.rowcount != 1:
        raise RunTakenOver(f"import run {run_id} is no longer ours")
    await session.execute(insert(ImportRunChunk).values(run_id=run_id, seq=seq, changes=changes))


async def finish_run(db: Database, run_id: int, file_entry: dict | None) -> None:
    """The commit point: the run is done, its journal goes, ``import.file`` is logged."""
    async def work(s: AsyncSession) -> None:
        done = await s.execute(update(ImportRun).where(ImportRun.id == run_id, ImportRun.status == "running",
                                                       ImportRun.owner == owner())
                               .values(status="done", active=None, finished_at=_wall(), heartbeat_at=_wall()))
        if done.rowcount != 1:
            raise RunTakenOver(f"import run {run_id} is no longer ours")
        await s.execute(delete(ImportRunChunk).where(ImportRunChunk.run_id == run_id))
        if file_entry:
            await audit.record_many(s, [file_entry])
    await db.write(work)


async def undo_run(db: Database, run_id: int, reason: str) -> dict:
    """Take back every committed chunk of ``run_id`` (newest first), then mark it undone.
    Returns the run's ``detail`` (``kept``: invoices kept because something refers to them)."""
    async def claim(s: AsyncSession) -> bool:
        got = await s.execute(update(ImportRun).where(ImportRun.id == run_id, ImportRun.active.is_(True))
                              .values(status="undoing", owner=owner(), heartbeat_at=_wall(), error=reason[:2000]))
        return got.rowcount == 1
    if not await db.write(claim):
        # no longer active: it was finished (a stop that came just after the commit point) or
        # undone already; either way there is nothing to take back
        log.info("import run %d is not active; nothing to undo", run_id)
        return {}
    kept: list[str] = []
    while True:
        async def step(s: AsyncSession) -> bool:
            chunk = (await s.execute(select(ImportRunChunk).where(ImportRunChunk.run_id == run_id)
                                     .order_by(ImportRunChunk.seq.desc()).limit(1))).scalar_one_or_none()
            if chunk is None:
                return False
            got = await _undo_chunk(s, chunk.changes)
            await s.execute(delete(ImportRunChunk).where(ImportRunChunk.run_id == run_id,
                                                         ImportRunChunk.seq == chunk.seq))
            await s.execute(update(ImportRun).where(ImportRun.id == run_id).values(heartbeat_at=_wall()))
            kept.extend(got)
            return True
        if not await db.write(step):
            break

    async def close(s: AsyncSession) -> dict:
        run = await s.get(ImportRun, run_id)
        detail = dict(run.detail or {})
        if kept:
            detail["kept"] = sorted(set(detail.get("kept", [])) | set(kept))
            audit.record(s, at=_wall(), actor=run.actor, channel=run.channel, action="import.partly_undone",
                         entity="import", entity_id=run.file_name[:64], run=run_id, kept=detail["kept"])
            log.warning("import run %d undone except %d invoice(s) something refers to by now: %s",
                        run_id, len(detail["kept"]), ", ".join(detail["kept"][:20]))
        run.status, run.active, run.finished_at, run.detail = "undone", None, _wall(), detail
        return detail
    return await db.write(close)


async def recover_imports(db: Database) -> list[int]:
    """Undo the active runs whose process is gone; the ids undone. Safe to call from several
    processes at once, and cheap when there is nothing to do (one indexed query)."""
    async with db.reader() as s:          # (no write lock for the common answer: nothing to do)
        runs = (await s.execute(select(ImportRun.id, ImportRun.owner, ImportRun.heartbeat_at)
                                .where(ImportRun.active.is_(True)))).all()
    undone = []
    me = owner()
    for run_id, run_owner, heartbeat_at in runs:
        if run_owner == me or _owner_alive(run_owner, heartbeat_at, _wall()):
            continue

        async def claim(s: AsyncSession) -> bool:
            got = await s.execute(update(ImportRun).where(ImportRun.id == run_id, ImportRun.owner == run_owner,
                                                          ImportRun.active.is_(True))
                                  .values(owner=me, status="undoing", heartbeat_at=_wall()))
            return got.rowcount == 1
        if not await db.write(claim):
            continue            # another process claimed it first
        log.warning("import run %d was left unfinished by %s; undoing it", run_id, run_owner)
        await undo_run(db, run_id, f"left unfinished by {run_owner}")
        undone.append(run_id)
    return undone


# ---- the journal -----------------------------------------------------------------------------
def id_ranges(ids: Iterable[int]) -> list[list[int]]:
    """[[lo, hi], ...] (inclusive) covering sorted ``ids``: a chunk's 5,000 ids are one range."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _plain(value: Any) -> Any:
    """A column's value as the journal (JSON) keeps it; :func:`_typed` reads it back."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


class ChangeLog:
    """What a chunk's ORM writes did, for its journal row, when the chunk books through the
    ledger's own functions (a bank statement's receipts: payments, allocations, claims closed,
    bills collected) rather than writing rows itself. Listens to the session's flushes while in
    its ``with``: the rows inserted (by table, as id ranges) and, for rows that existed before,
    each changed column's ``[old, new]``. :func:`undo_run` takes both back (``inserted``,
    ``changed``). Writes made with Core statements are not seen: such a caller journals them itself."""

    SKIP = {"import_runs", "import_run_chunks"}

    def __init__(self, session: AsyncSession):
        self.sync = session.sync_session
        self.inserted: dict[str, set[int]] = {}
        self.changed: dict[tuple[str, int], dict[str, list]] = {}

    def __enter__(self) -> "ChangeLog":
        event.listen(self.sync, "after_flush", self._flushed)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.sync, "after_flush", self._flushed)

    def _flushed(self, session, _context) -> None:
        # after_flush: the rows are written (new ones have their ids) and each instance's
        # attribute history still says what changed
        for obj in session.new:
            table = obj.__table__.name
            if table not in self.SKIP:
                self.inserted.setdefault(table, set()).add(obj.id)
        for obj in session.dirty:
            table = obj.__table__.name
            if table in self.SKIP or obj.id in self.inserted.get(table, ()):
                continue
            state = inspect(obj)
            for attr in state.mapper.column_attrs:
                hist = state.attrs[attr.key].history
                if not hist.added:
                    continue
                column = attr.columns[0].name
                new = _plain(hist.added[0])
                cols = self.changed.setdefault((table, obj.id), {})
                if column in cols:
                    cols[column][1] = new          # changed twice in the chunk: the first old value stands
                elif hist.deleted:
                    cols[column] = [_plain(hist.deleted[0]), new]

    def journal(self) -> dict:
        return {"inserted": {t: id_ranges(ids) for t, ids in self.inserted.items()},
                "changed": [[t, rid, cols] for (t, rid), cols in self.changed.items() if cols]}


def _referrers(table_name: str) -> list[tuple[Any, Any]]:
    """(table, column) pairs with a foreign key to ``table_name``.id, from the models."""
    out = []
    for t in Base.metadata.sorted_tables:
        for fk in t.foreign_keys:
            if fk.column.table.name == table_name and fk.column.name == "id" and t.name != table_name:
                out.append((t, fk.parent))
    return out


def _typed(column: Any, value: Any) -> Any:
    """A journal value (JSON) back as the column's Python value."""
    if value is None:
        return None
    if isinstance(column.type, Money):
        return Decimal(str(value))
    if isinstance(column.type, (DateTime, UTCDateTime)):
        return datetime.fromisoformat(value)
    if isinstance(column.type, Date):
        return date.fromisoformat(value)
    if isinstance(column.type, Integer):
        return int(value)
    return value


async def _undo_chunk(s: AsyncSession, changes: dict) -> list[str]:
    """One chunk taken back in the caller's transaction; the invoice numbers kept."""
    conn: AsyncConnection = await s.connection()
    kept_rows: list[str] = []
    if "inserted" in changes or "changed" in changes:
        kept_rows = await _undo_logged(s, conn, changes)
    for lo, hi in changes.get("audit_log", []):
        await s.execute(delete(AuditEntry).where(AuditEntry.id.between(lo, hi)))
    table = Receivable.__table__
    for rid, cols in changes.get("updated", []):
        r = await s.get(Receivable, rid)
        if r is None:
            continue
        amount_back = False
        for name, (old, new) in cols.items():
            if name in ("open_amount", "status"):
                continue        # follow from the amount below
            old, new = _typed(table.c[name], old), _typed(table.c[name], new)
            if getattr(r, name) == new:         # still the import's value: put the old one back
                setattr(r, name, old)
                amount_back |= name == "amount"
        if amount_back:
            await _recount(s, r)
    await s.flush()
    kept: list[str] = []
    for lo, hi in changes.get("receivables", []):
        used: set[int] = set()
        for t, col in _referrers("receivables"):
            used.update((await conn.execute(select(col).where(col.between(lo, hi)).distinct())).scalars())
        if used:
            kept += list((await conn.execute(select(table.c.invoice_no).where(table.c.id.in_(sorted(used))))).scalars())
        cond = and_(table.c.id.between(lo, hi), table.c.id.not_in(sorted(used))) if used else table.c.id.between(lo, hi)
        await conn.execute(delete(table).where(cond))
    return kept + kept_rows


async def _undo_logged(s: AsyncSession, conn: AsyncConnection, changes: dict) -> list[str]:
    """A :class:`ChangeLog` journal taken back: each changed column put back where it still holds
    the chunk's value (a later change by someone else stands), then the inserted rows deleted,
    those that point at others first; a row something else refers to by now is kept (listed as
    ``table#id``). Open balances are not put back but computed again from what is still
    allocated and written off, so a payment booked meanwhile keeps its effect."""
    recount: set[int] = set()
    for table_name, rid, cols in changes.get("changed", []):
        t = Base.metadata.tables[table_name]
        for name, (old, new) in cols.items():
            if table_name == "receivables" and name in ("open_amount", "status"):
                recount.add(rid)
                continue
            c = t.c[name]
            cond = [t.c.id == rid]
            if not isinstance(c.type, JSON):           # (JSON does not compare in SQL everywhere)
                cond.append(c.is_(None) if new is None else c == _typed(c, new))
            await conn.execute(update(t).where(*cond).values({name: _typed(c, old)}))
    inserted = changes.get("inserted", {})
    kept: list[str] = []
    for t in reversed(Base.metadata.sorted_tables):    # referring tables before those they refer to
        for lo, hi in inserted.get(t.name, []):
            used: set[int] = set()
            for other, col in _referrers(t.name):
                used.update(v for v in (await conn.execute(select(col).where(col.between(lo, hi)).distinct()))
                            .scalars() if v is not None)
            kept += [f"{t.name}#{i}" for i in sorted(used)]
            cond = and_(t.c.id.between(lo, hi), t.c.id.not_in(sorted(used))) if used else t.c.id.between(lo, hi)
            await conn.execute(delete(t).where(cond))
    for rid in sorted(recount):
        r = await s.get(Receivable, rid, populate_existing=True)
        if r is not None:
            await _recount(s, r)
    await s.flush()
    return kept


async def _recount(s: AsyncSession, r: Receivable) -> None:
    """An invoice's open balance from what is still allocated to it and written off (approved)."""
    settled = (await money_sums(s, Allocation.amount, Allocation.receivable_id, [r.id])).get(r.id, Decimal("0.00")) \
        + (await money_sums(s, WriteOff.amount, WriteOff.receivable_id, [r.id],
                            WriteOff.status == "approved")).get(r.id, Decimal("0.00"))
    r.open_amount = r.amount - settled
    refresh_status(r)

