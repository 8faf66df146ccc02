"""Receivables imports of any size: streamed in bounded memory, written in short transactions,
still all or nothing.

A receivables file can hold a million invoices. Read whole and written in one transaction it
took 2.7 GB and held SQLite's only write lock for a minute and more, so chat stalled. Here the
file is read twice as a stream and the ledger is written in chunks of a fraction of a second:

**Pass 1 — check (reads only, nothing is written).** Every row is parsed and checked as it
is read (``domain.import_files.RowChecker``); a row that repeats an invoice number is found through
one small dict entry per key (the number → its first line and a 64-bit fingerprint of its
values). Rows go to the ledger in batches of :data:`KEY_BATCH`: which invoice numbers exist is
one indexed ``IN`` query a batch, and only existing invoices are loaded to compare, each batch
in its own short read transaction. Customers and people are resolved from in-memory indexes
(20,000 customers are a few MB). Every error is collected with its line number (the report
keeps the first :data:`MAX_ERRORS`, and counts the rest). What each good row will do — create,
update or nothing — is decided here and the rows to write are spilled, as plain values, to a
temporary file, so pass 2 neither parses again nor holds anything but one chunk.

If any row has an error, or this is a dry run, the import ends here: nothing was written.

**Pass 2 — write.** An ``import_runs`` row is started (one active run at a time), then the
spilled rows are written in chunks, each its own short write transaction (``BEGIN IMMEDIATE``
on SQLite): the chunk's invoice numbers are checked again, updates are re-judged against the
ledger as it is now (a payment may have arrived since pass 1), new invoices go in with one
``executemany`` of ids allocated in that transaction, the audit entries with them, and a
journal row records what the chunk changed (storage/import_runs.py). The chunk size adapts so
that a transaction lasts about :data:`CHUNK_SECONDS`; between chunks the import gives way — the
event loop gets a turn, so a chat write queued at this process's write gate goes first, and a
short pause lets another process's writer (the bot, when the CLI imports) take the lock.

**All or nothing.** The last step marks the run done in one transaction. Until then, any
failure — a row the ledger now refuses, a database error, Ctrl-C, SIGTERM, a crash — ends with
the run undone from its journal: by this process at once, or, when the process died, by the
next process that starts (``recover_imports``: the bot at start-up and every minute, every CLI
command). What readers see while a run is under way is the chunks committed so far: an import
is visible as it lands, and a failed one disappears again. See storage/import_runs.py for what
the undo does with rows that someone touched in between.

On SQLite, each chunk's transaction drops the ``aging_totals_ins`` trigger, inserts, adds the
chunk's per-(due date, currency) sums to ``aging_totals`` itself and creates the trigger again
from its stored SQL: DDL is transactional in SQLite, so no other connection ever sees the table
without it, and a row trigger's upsert per invoice was a third of an insert's cost. This is
done only when the trigger is exactly the one migration 0004 made (its semantics are known);
otherwise, and on PostgreSQL, the trigger does the work.

Memory: the invoice-number dict (about 150 bytes a row: 150 MB at a million rows), one chunk,
SQLite's page cache (:data:`CACHE_KIB`) and the interpreter.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import pickle
import sqlite3
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from sqlalchemy import Date, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from domain.import_files import (ImportFileError, RowChecker, RowError, invoice_fingerprint, open_table,
                                 row_fingerprint, total_error)
from storage import audit
from storage.db import Database
from storage.bulk_writes import existing_keys, in_chunks, money_sums
from storage.import_plans import ZERO, Index, diff
from storage.import_runs import ImportBusy, RunTakenOver, finish_run, id_ranges, record_chunk, start_run, undo_run
from storage.ledger import refresh_status
from storage.models import Allocation, AuditEntry, Customer, Payment, Person, Receivable, WriteOff

log = logging.getLogger(__name__)

KEY_BATCH = 5_000          # rows per existence check in pass 1 (SQLite and PostgreSQL take 32,766 parameters)
SPILL_BLOCK = 2_000        # rows per pickled block of the spill file
CHUNK_SECONDS = 0.25       # what one write transaction aims at
FIRST_CHUNK = 2_000        # rows in the first chunk, before anything is measured
MIN_CHUNK, MAX_CHUNK = 100, 20_000
PAUSE_SHARE = 0.1          # pause after a chunk, as a share of its duration: another process's turn
# ... and at least this long: a writer of another process (the bot, while the CLI imports) waits in
# SQLite's busy handler, which sleeps up to 100 ms between looks at the lock; a shorter pause was
# mostly missed, and chat answered in 4.6 s (p50) beside a 200k import (bench/load.py --with-import)
MIN_PAUSE = 0.1
MAX_ERRORS = 1_000         # errors listed in a report; the rest are counted
CACHE_KIB = 65_536         # SQLite page cache of the writing connection while it imports (default: 2 MB)
CHECKPOINT_SECONDS = 1.0   # SQLite: write this long between two WAL checkpoints of the import's own
_M64 = (1 << 64) - 1
_KEEP = object()           # an update that leaves the invoice's rep alone (no rep column in the file)

ProgressFn = Callable[[str, int, int], None]

# tests: called after each committed chunk with its number (a failure injected here must undo all)
after_chunk: Callable[[int], Awaitable[None] | None] | None = None
# tests: False sends SQLite through the Core insert (what the fast path must store identically)
FAST_SQLITE = True

_CREATED_COLUMNS = ("invoice_no", "customer_id", "rep_id", "issue_date", "due_date", "amount", "currency",
                    "contract_no", "terms")


class _Refused(Exception):
    """A chunk the ledger, as it is now, refuses: the run is undone and the row reported."""

    def __init__(self, error: RowError):
        super().__init__(error.code)
        self.error = error


@dataclass
class _Counts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    credit_notes: int = 0        # credit notes (红字发票) to book after the invoices


class _Spill:
    """The rows pass 2 will write, in file order, on disk: ``("c", create tuple)`` or
    ``("u", update tuple)`` records in pickled blocks."""

    def __init__(self):
        self.file = tempfile.TemporaryFile(prefix="arbot-import-")
        self.block: list[tuple] = []
        self.count = 0

    def add(self, record: tuple) -> None:
        self.block.append(record)
        self.count += 1
        if len(self.block) >= SPILL_BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self.block:
            pickle.dump(self.block, self.file, protocol=pickle.HIGHEST_PROTOCOL)
            self.block = []

    def records(self) -> Iterator[tuple]:
        self._flush()
        self.file.seek(0)
        while True:
            try:
                block = pickle.load(self.file)
            except EOFError:
                return
            yield from block

    def close(self) -> None:
        self.file.close()


def _cents_text(c: int) -> str:
    """Cents as the text ``str(Decimal)`` gives for the quantized amount (amounts are positive)."""
    return f"{c // 100}.{c % 100:02d}"


class ReceivablesImport:
    def __init__(self, db: Database, path: str | Path, report: Any, *, actor: str, channel: str, now: datetime,
                 today: date, progress: ProgressFn | None = None, date_order: str = "ymd",
                 allow_customer_change: bool = False):
        self.db, self.path, self.report = db, Path(path), report
        self.date_order, self.allow_customer_change = date_order, allow_customer_change
        # multi-line invoices: invoice number → cents of its lines after the first. Complete after
        # pass 1; when a later line came after its invoice's first line had been judged (the file
        # is not sorted by invoice), pass 1 runs again with the totals known (``second_look``)
        self.extra: dict[str, int] = {}
        self.second_look = False
        self.needs_second_look = False
        self.merged = 0
        self.actor, self.channel, self.now, self.today = actor, channel, now, today
        self.progress = progress or (lambda phase, done, total: None)
        self._heap: list[tuple[int, int, RowError]] = []
        self._seq = 0
        self.more_errors = 0
        self.counts = _Counts()
        self.spill = _Spill()
        self._iso: dict[date, str] = {}     # a file has a few hundred distinct dates: each turned to text once
        self.credit_rows: list[tuple] = []  # (record, customer) of the file's credit notes, as read
        self.credits: list[tuple] = []      # checked: (line, number, original, amount, issued_on, customer id)

    # ---- reporting ----------------------------------------------------------------------------
    def error(self, err: RowError) -> None:
        """Keep the :data:`MAX_ERRORS` errors of the smallest line numbers (a max-heap on the line:
        pass 1 meets a batch's ledger errors after later rows' cell errors); count the rest."""
        self._seq += 1
        item = (-err.line, -self._seq, err)
        if len(self._heap) < MAX_ERRORS:
            heapq.heappush(self._heap, item)
            return
        self.more_errors += 1
        if item > self._heap[0]:                  # an earlier line than the latest one kept
            heapq.heapreplace(self._heap, item)

    @property
    def errors(self) -> list[RowError]:
        """The errors kept, in the order of their lines (and of finding, within a line)."""
        return [e for _, _, e in sorted(self._heap, reverse=True)]

    def _error(self, rec, column: str, code: str, **params: Any) -> None:
        self.error(RowError(rec.line, column, rec.raw.get(column, ""), code, params))

    def _resolve(self, rec, column: str, index: Index, text_: str, unknown: str) -> Any:
        item, code, params = index.find(text_)
        if code:
            self._error(rec, column, unknown if code == "unknown" else code, **params)
        return item

    def again(self) -> "ReceivablesImport":
        """A fresh pass 1 that knows every multi-line invoice's total from the start."""
        self.spill.close()
        job = ReceivablesImport(self.db, self.path, self.report, actor=self.actor, channel=self.channel,
                                now=self.now, today=self.today, progress=self.progress, date_order=self.date_order,
                                allow_customer_change=self.allow_customer_change)
        job.extra, job.second_look = self.extra, True
        return job

    # ---- pass 1 ---------------------------------------------------------------------------------
    async def check(self) -> RowChecker | None:
        """Pass 1. Returns the row checker (None when the file could not be read at all)."""
        try:
            table = open_table(self.path, "receivables")
        except ImportFileError as exc:
            self.error(exc.error)
            return None
        with table:
            checker = RowChecker("receivables", table.headers, today=self.today, header_line=table.header_line,
                                 date_order=self.date_order)
            self.report.ignored_columns = checker.ignored
            self.report.title_lines, self.report.total_lines = table.title_lines, table.total_lines
            if not checker.usable:
                for e in checker.errors:
                    self.error(e)
                return checker
            self.columns = set(checker.mapping)
            async with self.db.reader() as s:
                customers = Index((await s.execute(select(Customer.id, Customer.code, Customer.name,
                                                          Customer.rep_id))).all(), lambda c: c.code, lambda c: c.name)
                people = Index((await s.execute(select(Person.id, Person.name))).all(), lambda p: p.id,
                               lambda p: p.name)
            by_code = customers.by_key
            self._customers_by_id = {c.id: c for c in by_code.values()}
            # invoice number → first line << 128 | fingerprint of the whole row << 64 | fingerprint of
            # what an invoice's lines share (everything but the amount): 64-bit hashes stand for them,
            # two different rows under one number collide with odds of 2⁻⁶⁴
            seen: dict[str, int] = {}
            later_lines: dict[str, set[int]] = {}     # multi-line invoices: fingerprints of their later lines
            pending: list[tuple] = []
            counts, extra, second_look = self.counts, self.extra, self.second_look
            judged_upto = 0                     # the last line of the batches already planned
            try:
                for line, cells in table.rows:
                    counts.rows += 1
                    rec, errs = checker.check(line, cells)
                    if rec is None:
                        for e in errs:
                            self.error(e)
                        continue
                    v = rec.values
                    key = v["invoice_no"]
                    row_fp = row_fingerprint(cells)
                    inv_fp = invoice_fingerprint(v)
                    first = seen.get(key)
                    dup = first is not None
                    if dup:
                        if (first >> 64) & _M64 == row_fp:
                            pass                                 # the same row again: nothing to do
                        elif first & _M64 == inv_fp:             # another line of the same invoice
                            lines = later_lines.setdefault(key, set())
                            if row_fp in lines:                  # ... seen before (a file pasted twice)
                                counts.unchanged += 1
                                continue
                            lines.add(row_fp)
                            self.merged += 1
                            if not second_look:
                                extra[key] = extra.get(key, 0) + int(v["amount"].scaleb(2))
                                if first >> 128 <= judged_upto:
                                    self.needs_second_look = True
                            continue
                        else:
                            self.error(RowError(line, "invoice_no", rec.raw["invoice_no"], "duplicate_key",
                                                {"first_line": first >> 128}))
                            continue
                    else:
                        seen[key] = (line << 128) | (row_fp << 64) | inv_fp
                    cust = by_code.get(v["customer"]) or self._resolve(rec, "customer", customers, v["customer"],
                                                                         "unknown_customer")
                    if cust is None:
                        continue
                    if v["amount"] < 0:
                        # a credit note (红字发票): booked against its original after the invoices
                        if not dup:
                            self.credit_rows.append((rec, cust))
                        else:
                            counts.unchanged += 1
                        continue
                    pending.append((rec, cust, dup))
                    if len(pending) >= KEY_BATCH:
                        # the last invoice's next lines usually follow at once: it waits for the next batch
                        cut = len(pending) - 1
                        while cut > 0 and pending[cut - 1][0].values["invoice_no"] == key:
                            cut -= 1
                        cut = cut or len(pending)
                        await self._plan(pending[:cut], people)
                        judged_upto = pending[cut - 1][0].line
                        pending = pending[cut:]
                        self.progress("check", table.bytes_read, table.size)
                if pending:
                    await self._plan(pending, people)
                await self._plan_credits(seen)
            except ImportFileError as exc:       # the file broke half-way
                self.error(exc.error)
            self.progress("check", table.size or table.bytes_read, table.size)
        return checker

    async def _plan(self, pending: list[tuple], people: Index) -> None:
        """Decide create / update / unchanged for a batch of good rows, against the ledger."""
        by_id = people.by_key
        async with self.db.reader() as s:
            found = await existing_keys(s, Receivable.invoice_no,
                                        (rec.values["invoice_no"] for rec, _, dup in pending if not dup))
            stored: dict[str, Any] = {}
            allocated = written = {}
            if found:
                t = Receivable.__table__
                keys = list(found)
                for i in range(0, len(keys), KEY_BATCH):
                    rows = (await s.execute(select(t).where(t.c.invoice_no.in_(keys[i:i + KEY_BATCH])))).all()
                    stored.update((r.invoice_no, r) for r in rows)
                ids = [r.id for r in stored.values()]
                allocated = await money_sums(s, Allocation.amount, Allocation.receivable_id, ids)
                written = await money_sums(s, WriteOff.amount, WriteOff.receivable_id, ids,
                                           WriteOff.status == "approved")
        counts, columns, spill, iso = self.counts, self.columns, self.spill, self._iso
        has_rep, has_contract, has_terms, has_currency = ("rep" in columns, "contract_no" in columns,
                                                          "terms" in columns, "currency" in columns)
        extra = self.extra
        for rec, cust, dup in pending:
            v = rec.values
            if extra and not dup and (more := extra.get(v["invoice_no"])):
                v["amount"] += Decimal(more).scaleb(-2)          # the invoice's other lines
                rec.merged = 1
                if err := total_error(rec):
                    self.error(err)
                    continue
            existing = stored.get(v["invoice_no"]) if stored else None
            if existing is not None and existing.customer_id != cust.id and not self.allow_customer_change:
                # an invoice does not change hands by a re-import: a typo, or another company's file
                before = self._customers_by_id.get(existing.customer_id)
                self._error(rec, "customer", "customer_changed", stored=_label(before), new=_label(cust))
                continue
            if v.get("rep"):
                rep = by_id.get(v["rep"]) or self._resolve(rec, "rep", people, v["rep"], "unknown_rep")
                if rep is None:
                    continue
                rep_id = rep.id
            elif has_rep or existing is None:
                rep_id = cust.rep_id                     # the customer's rep owns the invoice
                if rep_id is not None and rep_id not in by_id:
                    self._error(rec, "rep", "unknown_rep")   # a ledger written without foreign keys
                    continue
            else:
                rep_id = _KEEP
            if dup:
                counts.unchanged += 1                    # the same row again: nothing to do
                continue
            if existing is None:
                # a new invoice, as plain values: the file's, the defaults for the columns it leaves out
                counts.created += 1
                issue, due = v["issue_date"], v["due_date"]
                spill.add(("c", (rec.line, v["invoice_no"], cust.id, rep_id,
                                 iso.get(issue) or iso.setdefault(issue, issue.isoformat()),
                                 iso.get(due) or iso.setdefault(due, due.isoformat()),
                                 int(v["amount"].scaleb(2)), (v["currency"] or "CNY") if has_currency else "CNY",
                                 (v["contract_no"] or "") if has_contract else "",
                                 (v["terms"] or "") if has_terms else "")))
                continue
            desired = {"customer_id": cust.id, "issue_date": v["issue_date"], "due_date": v["due_date"],
                       "amount": v["amount"]}
            for f in ("contract_no", "terms"):
                if f in columns:
                    desired[f] = v[f] if v[f] is not None else ""
            if has_currency:
                desired["currency"] = v["currency"] or "CNY"
            if rep_id is not _KEEP:
                desired["rep_id"] = rep_id
            changes = diff(existing, desired)
            if not changes:
                counts.unchanged += 1
                continue
            err = _update_refused(changes, desired, allocated.get(existing.id, ZERO), written.get(existing.id, ZERO))
            if err:
                self._error(rec, *err[:2], **err[2])
                continue
            counts.updated += 1
            self.spill.add(("u", (rec.line, v["invoice_no"], desired,
                                  {k: rec.raw.get(k, "") for k in ("customer", "currency", "amount")})))

    async def _plan_credits(self, seen: dict[str, int]) -> None:
        """Check the file's credit notes against the ledger: the original invoice exists (in the
        ledger or in this file), is the same customer's and not written off; the notes on it stay
        within its amount; the note's number is new (the same note again is unchanged)."""
        if not self.credit_rows:
            return
        numbers = [rec.values["invoice_no"] for rec, _ in self.credit_rows]
        originals = sorted({rec.values["original_invoice"] for rec, _ in self.credit_rows})
        async with self.db.reader() as s:
            stored = {r.invoice_no: r for r in (await s.execute(select(Receivable).where(
                Receivable.invoice_no.in_(originals + numbers)))).scalars()}
            booked = {p.reference: p for p in (await s.execute(select(Payment).where(
                Payment.reference.in_(numbers)))).scalars()}
            credited: dict[str, Decimal] = {}
            for no, amount in (await s.execute(select(Payment.invoice_no, Payment.amount).where(
                    Payment.kind == "credit_note", Payment.reversed_at.is_(None),
                    Payment.invoice_no.in_(originals)))).all():
                credited[no] = credited.get(no, ZERO) + amount
        room: dict[str, Decimal] = {}
        for rec, cust in self.credit_rows:
            v = rec.values
            number, original = v["invoice_no"], v["original_invoice"]
            # a note on several lines: their sum (every line is read by now)
            amount = -(v["amount"] + Decimal(self.extra.get(number, 0)) / 100)
            if amount <= ZERO:
                self._error(rec, "amount", "zero_amount")
                continue
            if number in stored:
                self._error(rec, "invoice_no", "credit_note_conflict", what="发票")
                continue
            p = booked.get(number)
            if p is not None:
                if p.kind == "credit_note" and p.invoice_no == original and p.amount == amount:
                    self.counts.unchanged += 1          # the same note imported again
                else:
                    self._error(rec, "invoice_no", "credit_note_conflict",
                                what="回款流水号" if p.kind == "receipt" else "另一张红字发票")
                continue
            r = stored.get(original)
            if r is None:
                if original not in seen:
                    self._error(rec, "original_invoice", "unknown_original")
                    continue
                # an invoice of this same file: the ledger checks the rest when the note is booked
            elif r.customer_id != cust.id:
                self._error(rec, "original_invoice", "original_other_customer")
                continue
            elif r.status == "written_off":
                self._error(rec, "original_invoice", "original_written_off")
                continue
            else:
                left = room.get(original, r.amount - credited.get(original, ZERO))
                if amount > left:
                    self._error(rec, "amount", "credit_above_invoice", room=str(left))
                    continue
                room[original] = left - amount
            self.credits.append((rec.line, number, original, amount, v["issue_date"], cust.id))
            self.counts.credit_notes += 1

    async def book_credits(self) -> list[RowError]:
        """Book the checked credit notes in one transaction, after the invoices: all or none (the
        errors of the notes the ledger refused; the invoices stay)."""
        if not self.credits:
            return []
        from storage import ledger

        class _Undo(Exception):
            pass
        errors: list[RowError] = []

        async def work(s: AsyncSession) -> None:
            errors.clear()
            for line, number, original, amount, issued_on, customer_id in self.credits:
                r = (await s.execute(select(Receivable).where(Receivable.invoice_no == original))).scalar_one_or_none()
                if r is None or r.customer_id != customer_id:
                    errors.append(RowError(line, "original_invoice", original,
                                           "unknown_original" if r is None else "original_other_customer"))
                    continue
                try:
                    await ledger.record_credit_note(s, original=r, number=number, amount=amount, issued_on=issued_on,
                                                    actor=self.actor, channel=self.channel, now=self.now)
                except ledger.LedgerError as e:
                    errors.append(RowError(line, "amount", str(-amount), "ledger_refused", {"detail": str(e)}))
            if errors:
                raise _Undo
        try:
            await self.db.write(work)
        except _Undo:
            return errors
        return []

    # ---- pass 2 ---------------------------------------------------------------------------------
    async def write(self) -> None:
        """Pass 2: the spilled rows in short transactions under a run; undone on any failure."""
        c = self.counts
        run_id = await start_run(self.db, kind="receivables", file_name=self.path.name, actor=self.actor,
                                 channel=self.channel, rows=c.rows, created=c.created, updated=c.updated)
        self.run_id = run_id
        try:
            await self._write_chunks(run_id)
            entry = audit.entry(at=self.now, actor=self.actor, channel=self.channel, action="import.file",
                                entity="import", entity_id=self.path.name[:64], kind="receivables", rows=c.rows,
                                created=c.created, updated=c.updated, unchanged=c.unchanged)
            await finish_run(self.db, run_id, entry)
        except RunTakenOver:
            raise            # another process declared us dead and is undoing the run: leave it be
        except BaseException as exc:
            # Ctrl-C or a cancelled task lands here too: take the run back before going
            reason = exc.error.code if isinstance(exc, _Refused) else f"{type(exc).__name__}: {exc}"
            try:
                await asyncio.shield(undo_run(self.db, run_id, reason))
            except BaseException:
                log.exception("import run %d could not be undone now; the next start undoes it", run_id)
            raise

    async def _write_chunks(self, run_id: int) -> None:
        total = self.spill.count
        self.max_write_s, self.chunks = 0.0, 0
        self.progress("write", 0, total)
        records = self.spill.records()
        self._prepare_sqlite()
        restore = await self._sqlite_settings() if self.db.is_sqlite else None
        try:
            await self._chunks(run_id, records, total)
        finally:
            if restore:      # the writing connection goes back to its usual cache and checkpoints
                try:
                    await self.db.write(lambda s: _pragmas(s, restore))
                except Exception:
                    log.debug("could not reset the writing connection's settings", exc_info=True)
                await self._checkpoint()

    async def _sqlite_settings(self) -> dict[str, int]:
        """The writing connection's page cache and WAL auto-checkpoint, to be put back afterwards."""
        async def read(s: AsyncSession) -> dict[str, int]:
            conn = await s.connection()
            return {k: (await conn.exec_driver_sql(f"PRAGMA {k}")).scalar_one()
                    for k in ("cache_size", "wal_autocheckpoint")}
        return await self.db.write(read)

    async def _checkpoint(self) -> float:
        """A PASSIVE WAL checkpoint on a reader connection, outside any write transaction (it takes
        no write lock: the bot and other writers carry on). The import's writing connection does
        not checkpoint on commit while it imports (``wal_autocheckpoint=0``): after every chunk
        that was an fsync and a copy of the same index pages again, a third of the write time.
        Returns the seconds it took."""
        if not self.db.is_sqlite:
            return 0.0
        t = time.perf_counter()
        try:
            await self.db.checkpoint_wal()
        except Exception:
            log.debug("WAL checkpoint failed; SQLite checkpoints at a later commit", exc_info=True)
        return time.perf_counter() - t

    async def _chunks(self, run_id: int, records: Iterator[tuple], total: int) -> None:
        done, seq, size = 0, 0, FIRST_CHUNK
        since_checkpoint = 0.0
        batch_audit = self.counts.created >= audit.BATCH_MIN
        while True:
            chunk = [r for _, r in zip(range(size), records)]
            if not chunk:
                break
            seq += 1
            started: list[float] = []

            async def work(s: AsyncSession) -> None:
                started.append(time.perf_counter())
                self._now_unchanged = 0          # (set again if a transient error runs this twice)
                await self._write_chunk(s, chunk, batch_audit)
                await record_chunk(s, run_id, seq, self._journal)
            try:
                await self.db.write(work)
            except (IntegrityError, sqlite3.IntegrityError) as exc:     # (the fast path's driver raises the latter)
                refused = await self._refusal(chunk)
                if refused is None:
                    raise
                raise refused from exc
            self.counts.updated -= self._now_unchanged
            self.counts.unchanged += self._now_unchanged
            took = time.perf_counter() - started[-1]
            self.max_write_s = max(self.max_write_s, took)
            done += len(chunk)
            self.progress("write", done, total)
            if after_chunk is not None:
                got = after_chunk(seq)
                if asyncio.iscoroutine(got):
                    await got
            # aim the next chunk at CHUNK_SECONDS (at most doubling: one fast chunk proves little)
            size = max(MIN_CHUNK, min(MAX_CHUNK, 2 * size, int(len(chunk) * CHUNK_SECONDS / max(took, 1e-3))))
            # a turn for whoever waits: this process's gate (the event loop), another process's lock;
            # a checkpoint, when due, is that turn (it holds no lock)
            since_checkpoint += took
            spent = 0.0
            if since_checkpoint >= CHECKPOINT_SECONDS:
                spent, since_checkpoint = await self._checkpoint(), 0.0
            await asyncio.sleep(max(0.0, max(MIN_PAUSE, took * PAUSE_SHARE) - spent))
        self.chunks = seq

    async def _refusal(self, chunk: list[tuple]) -> "_Refused | None":
        """Why the ledger refused a chunk, as the first row concerned: an invoice number that
        exists by now, or a customer or rep that no longer does (``changed_during_import``)."""
        creates = [r for tag, r in chunk if tag == "c"]
        async with self.db.reader() as s:
            clash = await existing_keys(s, Receivable.invoice_no, (r[1] for r in creates))
            customers = set((await s.execute(select(Customer.id))).scalars())
            people = set((await s.execute(select(Person.id))).scalars())
        for tag, r in chunk:
            line, key = r[0], r[1]
            if tag == "c":
                column = "invoice_no" if key in clash else "customer" if r[2] not in customers else \
                    "rep" if r[3] is not None and r[3] not in people else None
            else:
                desired = r[2]
                column = "customer" if desired["customer_id"] not in customers else \
                    "rep" if desired.get("rep_id") is not None and desired["rep_id"] not in people else None
            if column:
                return _Refused(RowError(line, "invoice_no", key, "changed_during_import", {"column": column}))
        return None

    def _prepare_sqlite(self) -> None:
        self._trigger_sql: str | None = None
        self._fast = False
        if not self.db.is_sqlite:
            return
        dialect = self.db.engine.dialect
        t = Receivable.__table__
        procs = {c: t.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in ("issue_date", "created_at")}
        # the fast path writes dates as ISO text and cents as integers: only while that is what the
        # column types write (checked, not assumed)
        probe = date(2026, 1, 2)
        self._fast = FAST_SQLITE and isinstance(t.c.issue_date.type, Date) and \
            procs["issue_date"] is not None and procs["issue_date"](probe) == "2026-01-02"
        self._created_at = procs["created_at"](self.now) if procs["created_at"] else self.now

    async def _write_chunk(self, s: AsyncSession, chunk: list[tuple], batch_audit: bool) -> None:
        conn = await s.connection()
        journal: dict[str, Any] = {}
        entries: list[dict] = []
        creates = [r for tag, r in chunk if tag == "c"]
        updates = [r for tag, r in chunk if tag == "u"]
        if self.db.is_sqlite:
            await conn.exec_driver_sql(f"PRAGMA cache_size=-{CACHE_KIB}")
            await conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        if updates:
            journal["updated"] = await self._updates(s, updates, entries)
        if creates:
            # an invoice created meanwhile under one of these numbers, a customer or rep deleted:
            # the constraints refuse the chunk, and _refusal says which row (no look-up first)
            ids = await _allocate_ids(conn, "receivables", len(creates))
            await self._insert(conn, ids, creates)
            journal["receivables"] = id_ranges(ids)
            rows = [(r[1], r[2], r[3], r[4], r[5], _cents_text(r[6]), r[7], r[8], r[9]) for r in creates]
            if batch_audit:
                entries += audit.batch_entries(at=self.now, actor=self.actor, channel=self.channel,
                                               entity="receivable", columns=_CREATED_COLUMNS, rows=rows)
            else:
                entries += [self._create_entry(r) for r in rows]
        if entries:
            aids = await _allocate_ids(conn, "audit_log", len(entries))
            await conn.execute(insert(AuditEntry.__table__), [{"id": i, **e} for i, e in zip(aids, entries)])
            journal["audit_log"] = id_ranges(aids)
        self._journal = journal

    def _create_entry(self, row: tuple) -> dict:
        """A ``receivable.create`` entry as the one-by-one import wrote it: the values the file decided."""
        inv, cust, rep, issue, due, amount, cur, contract, terms = row
        detail: dict[str, Any] = {"customer_id": cust, "issue_date": issue, "due_date": due, "amount": amount}
        if "contract_no" in self.columns:
            detail["contract_no"] = contract
        if "terms" in self.columns:
            detail["terms"] = terms
        if "currency" in self.columns:
            detail["currency"] = cur
        detail["rep_id"] = rep
        return audit.entry(at=self.now, actor=self.actor, channel=self.channel, action="receivable.create",
                           entity="receivable", entity_id=inv, **detail)

    async def _insert(self, conn: AsyncConnection, ids: list[int], creates: list[tuple]) -> None:
        t = Receivable.__table__
        if not self._fast:
            await conn.execute(insert(t), [
                {"id": i, "invoice_no": r[1], "customer_id": r[2], "rep_id": r[3],
                 "issue_date": date.fromisoformat(r[4]), "due_date": date.fromisoformat(r[5]),
                 "amount": Decimal(r[6]).scaleb(-2), "open_amount": Decimal(r[6]).scaleb(-2), "currency": r[7],
                 "contract_no": r[8], "terms": r[9], "status": "open", "disputed": False, "created_at": self.now}
                for i, r in zip(ids, creates)])
            return
        raw = (await conn.get_raw_connection()).driver_connection
        trigger = await _known_trigger(conn)
        if trigger:
            await conn.exec_driver_sql("DROP TRIGGER aging_totals_ins")
        await raw.executemany(
            "INSERT INTO receivables (id, invoice_no, customer_id, rep_id, issue_date, due_date, amount, open_amount,"
            " currency, contract_no, terms, status, disputed, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'open',0,?)",
            [(i, r[1], r[2], r[3], r[4], r[5], r[6], r[6], r[7], r[8], r[9], self._created_at)
             for i, r in zip(ids, creates)])
        if trigger:
            # what the trigger would have added, one upsert per (due date, currency) instead of per row
            sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
            for r in creates:
                got = sums[(r[5], r[7])]
                got[0] += r[6]
                got[1] += 1
            await raw.executemany(_AGING_UPSERT, [(d, cur, c, n) for (d, cur), (c, n) in sums.items()])
            await conn.exec_driver_sql(trigger)

    async def _updates(self, s: AsyncSession, updates: list[tuple], entries: list[dict]) -> list:
        """Re-judge and apply the chunk's updates (the ORM: they need the balance rules); the journal."""
        stored = {r.invoice_no: r for r in await in_chunks(s, Receivable, Receivable.invoice_no,
                                                           [u[1] for u in updates])}
        ids = [r.id for r in stored.values()]
        allocated = await money_sums(s, Allocation.amount, Allocation.receivable_id, ids)
        written = await money_sums(s, WriteOff.amount, WriteOff.receivable_id, ids, WriteOff.status == "approved")
        journal = []
        for line, key, desired, raw in updates:
            r = stored.get(key)
            if r is None:
                raise _Refused(RowError(line, "invoice_no", key, "changed_during_import"))
            changes = diff(r, desired)
            if not changes:
                self._now_unchanged += 1          # someone made it so in between
                continue
            err = _update_refused(changes, desired, allocated.get(r.id, ZERO), written.get(r.id, ZERO))
            if err:
                raise _Refused(RowError(line, err[0], raw.get(err[0], ""), err[1], err[2]))
            for k, (_, new) in changes.items():
                setattr(r, k, new)
            extra = {}
            if "amount" in changes:
                r.open_amount = r.amount - (allocated.get(r.id, ZERO) + written.get(r.id, ZERO))
                refresh_status(r)
                extra = {"open_amount": r.open_amount}
            entries.append(audit.entry(at=self.now, actor=self.actor, channel=self.channel,
                                       action="receivable.update", entity="receivable", entity_id=key,
                                       **{k: list(v) for k, v in changes.items()}, **extra))
            journal.append([r.id, audit._jsonable({k: list(v) for k, v in changes.items()})])
        await s.flush()
        return journal


def _label(customer: Any) -> str:
    """How a report names a customer: code and name."""
    return f"{customer.code} {customer.name}" if customer is not None else "?"


def _update_refused(changes: dict, desired: dict, allocated: Decimal, written: Decimal) -> tuple | None:
    """(column, code, params) when an update must not happen: moving paid money to another
    customer or currency, or an amount below what is already settled."""
    for f in ("customer_id", "currency"):
        if f in changes and allocated > ZERO:
            return ("customer" if f == "customer_id" else f, "has_payments", {"field": f})
    if "amount" in changes and desired["amount"] < allocated + written:
        return ("amount", "amount_below_settled", {"settled": str(allocated + written)})
    return None


# ---- SQLite and PostgreSQL details ---------------------------------------------------------------
async def _pragmas(s: AsyncSession, values: dict[str, int]) -> None:
    conn = await s.connection()
    for k, v in values.items():
        await conn.exec_driver_sql(f"PRAGMA {k}={int(v)}")


async def _allocate_ids(conn: AsyncConnection, table: str, n: int) -> list[int]:
    """``n`` new ids for ``table``, known before the insert so the journal can name them. SQLite:
    the next ones after the largest (this transaction holds the only write lock, and a rowid
    table gives max + 1 anyway); PostgreSQL: from the column's sequence."""
    if conn.dialect.name == "sqlite":
        top = (await conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one()
        return list(range(top + 1, top + n + 1))
    got = await conn.execute(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                                  "FROM generate_series(1, :n)"), {"n": n})
    return [r[0] for r in got]


_AGING_UPSERT = ("INSERT INTO aging_totals (due_date, currency, open_cents, open_count) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (due_date, currency) DO UPDATE SET open_cents = open_cents + excluded.open_cents,"
                 " open_count = open_count + excluded.open_count")

# migration 0004's insert trigger, whitespace-normalised: bypassed only when it is exactly this
_KNOWN_TRIGGER = " ".join("""CREATE TRIGGER aging_totals_ins AFTER INSERT ON receivables WHEN NEW.open_amount > 0 BEGIN
    INSERT INTO aging_totals (due_date, currency, open_cents, open_count)
    SELECT NEW.due_date, NEW.currency, NEW.open_amount, 1 WHERE NEW.open_amount > 0
    ON CONFLICT (due_date, currency) DO UPDATE
        SET open_cents = open_cents + excluded.open_cents, open_count = open_count + excluded.open_count;
END""".split())


async def _known_trigger(conn: AsyncConnection) -> str | None:
    """The stored SQL of the aging insert trigger when it is the one we know, else None."""
    sql = (await conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'aging_totals_ins'")).scalar_one_or_none()
    return sql if sql and " ".join(sql.split()) == _KNOWN_TRIGGER else None


async def import_receivables(db: Database, path: str | Path, report: Any, *, actor: str, channel: str,
                             now: datetime, today: date, dry_run: bool = False,
                             progress: ProgressFn | None = None, date_order: str = "ymd",
                             allow_customer_change: bool = False) -> Any:
    """Pass 1, then (when every row is good and this is no dry run) pass 2; fills ``report``."""
    job = ReceivablesImport(db, path, report, actor=actor, channel=channel, now=now, today=today, progress=progress,
                            date_order=date_order, allow_customer_change=allow_customer_change)
    try:
        checker = await job.check()
        if job.needs_second_look:
            job = job.again()
            checker = await job.check()
        c = job.counts
        report.rows, report.merged_lines = c.rows, job.merged
        if job.errors or job.more_errors:
            report.errors = job.errors
            report.more_errors = job.more_errors
            if checker is not None:
                report.errors = [e if e.header else _with_header(e, checker) for e in report.errors]
            return report
        report.created, report.updated, report.unchanged = c.created, c.updated, c.unchanged
        report.credit_notes = c.credit_notes
        if dry_run or not (c.created or c.updated or c.credit_notes):
            return report            # a re-import of the same file: nothing to write, no audit entry
        if not (c.created or c.updated):
            report.errors = [_with_header(e, checker) for e in await job.book_credits()]
            if report.errors:
                report.credit_notes = 0
            return report
        try:
            await job.write()
        except _Refused as exc:
            report.errors = [_with_header(exc.error, checker)]
            report.created = report.updated = report.unchanged = 0
            return report
        except ImportBusy as exc:
            report.errors = [RowError(0, "", exc.file_name, "import_running", {"run": exc.run_id})]
            report.created = report.updated = report.unchanged = 0
            return report
        report.created, report.updated, report.unchanged = c.created, c.updated, c.unchanged
        report.chunks, report.max_write_s = job.chunks, job.max_write_s
        report.errors = [_with_header(e, checker) for e in await job.book_credits()]
        if report.errors:
            report.credit_notes, report.invoices_kept = 0, True
        return report
    finally:
        job.spill.close()


def _with_header(e: RowError, checker: RowChecker | None) -> RowError:
    from dataclasses import replace
    if checker is None:
        return e
    return replace(e, header=checker.header_names.get(e.column, e.header))
