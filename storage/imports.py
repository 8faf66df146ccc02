"""Bulk import of people, customers, receivables and payments: upsert by natural key, all or nothing.

Receivables files stream through storage/import_stream.py (two passes over the file, written in
short transactions under an import run that is undone if anything fails: see its docstring).
The other kinds, and :func:`import_rows` for any kind, run in two phases inside one transaction:

1. **plan** — every row is resolved against the ledger (customer by code or exact name, rep by
   id or exact name, ...) and compared with what is stored: create, update or unchanged. Nothing
   is written, so a file with any bad row leaves the database exactly as it was.
2. **apply** — only when the plan has no error: the writes, each with an audit entry.

Re-importing the same file is therefore a no-op (``unchanged == rows``, no audit entries).
A column that is *absent* from the file leaves the stored value alone; a column that is present
with a blank cell sets the default (blank rep on a receivable = the customer's rep).

RowError codes added here (see ``domain/import_files.py`` for the file-level ones):
``unknown_customer``, ``unknown_rep``, ``unknown_supervisor``, ``ambiguous_name`` (params: ``count``),
``supervisor_cycle``, ``duplicate_userid`` (params: ``other``), ``amount_below_settled`` (params:
``settled``), ``has_payments`` (params: ``field``), ``unknown_invoice``, ``invoice_other_customer``,
``reference_conflict`` (params: ``fields``), ``ledger_refused`` (params: ``detail``),
``customer_changed`` (params: ``stored``, ``new``: a re-import moving an invoice to another
customer, refused unless the caller allows it); from the
streamed import: ``changed_during_import`` (the ledger changed under a row between the check and
the write), ``import_running`` (another import is under way; params: ``run``).
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import AsyncIterator, Callable, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.import_files import ImportFileError, Record, RowError, open_table, validate
from storage import audit
from storage.db import Database
from storage.import_money import PaymentsPlanner, ReceivablesPlanner
from storage.import_plans import Ctx, CustomersPlanner, PeoplePlanner, Plan, PlanRefused
from storage.import_runs import recover_imports

PLANNERS = {"people": PeoplePlanner, "customers": CustomersPlanner,
            "receivables": ReceivablesPlanner, "payments": PaymentsPlanner}

__all__ = ["ImportReport", "ImportAborted", "import_rows", "import_file", "table_counts", "recover_imports"]

ProgressFn = Callable[[str, int, int], None]


@dataclass
class ImportReport:
    kind: str
    path: str | None = None
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    more_errors: int = 0             # errors beyond the ones listed (a report lists at most 1,000)
    title_lines: list[int] = field(default_factory=list)   # title rows above the header, skipped
    total_lines: list[int] = field(default_factory=list)   # 合计/小计 rows and signature lines, skipped
    merged_lines: int = 0            # further lines of multi-line invoices, added into their invoice
    credit_notes: int = 0            # credit notes (红字发票) booked against their invoices
    invoices_kept: bool = False      # the invoices were written, then the ledger refused a credit note
    chunks: int = 0                  # write transactions of a streamed import
    max_write_s: float = 0.0         # the longest of them (what a chat message could wait behind)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.more_errors

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "rows": self.rows, "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "credit_notes": self.credit_notes,
                "ok": self.ok, "invoices_kept": self.invoices_kept,
                "errors": [e.to_dict() for e in self.errors], "more_errors": self.more_errors,
                "ignored_columns": list(self.ignored_columns), "title_lines": list(self.title_lines),
                "total_lines": list(self.total_lines), "merged_lines": self.merged_lines}


class ImportAborted(Exception):
    """Raised when a write failed half-way (the session is dirty): the caller must roll back."""

    def __init__(self, report: ImportReport):
        super().__init__(f"import of {report.kind} aborted with {len(report.errors)} error(s)")
        self.report = report


def _count(report: ImportReport, plans: Sequence[Plan]) -> None:
    for p in plans:
        if p.action == "create":
            report.created += 1
        elif p.action == "update":
            report.updated += 1
        else:
            report.unchanged += 1


async def import_rows(session: AsyncSession, kind: str, rows: Sequence[Record], *, actor: str, channel: str,
                      now: datetime, today: date, check_only: bool = False,
                      path: str | None = None, allow_customer_change: bool = False) -> ImportReport:
    """Upsert validated rows (from :func:`domain.import_files.validate`) in the caller's transaction.

    If any row has an error the report lists them all and **nothing is written**; with
    ``check_only`` the counts say what would happen. A failure during the writes themselves
    raises :class:`ImportAborted`, and the caller must roll back.
    """
    if kind not in PLANNERS:
        raise ValueError(f"unknown import kind {kind!r}")
    planner = PLANNERS[kind](session, Ctx(actor=actor, channel=channel, now=now, today=today,
                                          allow_customer_change=allow_customer_change))
    report = ImportReport(kind=kind, path=path, rows=len(rows))
    plans, errors = await planner.plan(list(rows))
    report.errors = sorted(errors, key=lambda e: e.line)
    _count(report, plans)
    if errors or check_only:
        return report
    try:
        await planner.apply(plans)
        await session.flush()
    except PlanRefused as exc:   # planning is meant to catch these first; never commit half a file
        report.errors.append(exc.error)
        raise ImportAborted(report) from exc
    return report


class _Rollback(Exception):
    """Internal: leave the transaction block without committing."""


async def import_file(db: Database, kind: str, path: str | Path, *, actor: str = "import",
                      now: datetime, today: date, channel: str = "import",
                      dry_run: bool = False, progress: ProgressFn | None = None, date_order: str = "ymd",
                      allow_customer_change: bool = False) -> ImportReport:
    """Read, validate and import a file, all or nothing: any bad row and nothing is written.

    Receivables (the kind that reaches a million rows) stream: checked in a first pass, written
    in short transactions under an import run that is undone if anything fails
    (storage/import_stream.py). The other kinds — a company's people, its customers, a bank
    statement — are read whole and written in ONE transaction. ``dry_run`` runs every check
    and counts what would change, writing nothing. ``progress(phase, done, total)`` is told how
    far a streamed import has got ("check": bytes read; "write": rows written).

    ERP exports are read as they come: title rows above the header and 合计/小计 rows are skipped
    (the report lists them), the lines of a multi-line invoice are added up, dates in figures
    are read in ``date_order`` ([import] date_order). A row that moves a stored invoice to
    another customer is refused unless ``allow_customer_change``.
    """
    report = ImportReport(kind=kind, path=str(path))
    # Only receivables stream. People and customers are a company's thousands, a payments file a
    # bank statement's few thousand lines: small by nature, read whole and written in one
    # transaction (held in memory, and the write lock for a moment).
    if kind == "receivables":
        from storage.import_stream import import_receivables
        return await import_receivables(db, path, report, actor=actor, channel=channel, now=now, today=today,
                                        dry_run=dry_run, progress=progress, date_order=date_order,
                                        allow_customer_change=allow_customer_change)
    try:
        with open_table(path, kind) as opened:
            headers, table, header_line = opened.headers, list(opened.rows), opened.header_line
            report.title_lines, report.total_lines = opened.title_lines, opened.total_lines
    except ImportFileError as exc:
        report.errors.append(exc.error)
        return report
    parsed = validate(kind, headers, table, today=today, header_line=header_line, date_order=date_order)
    report.rows, report.ignored_columns, report.merged_lines = parsed.rows, parsed.ignored, parsed.merged_lines
    report.errors = list(parsed.errors)
    if any(e.code in ("missing_column", "duplicate_column") for e in parsed.errors):
        return report            # nothing to look up: every row would repeat the complaint
    try:
        async with _transaction(db) as session:
            planned = await import_rows(session, kind, parsed.records, actor=actor, channel=channel,
                                        now=now, today=today, path=str(path),
                                        check_only=dry_run or bool(parsed.errors),
                                        allow_customer_change=allow_customer_change)
            _merge(report, planned)
            if not report.ok or dry_run:
                raise _Rollback
            if report.created or report.updated:
                # who loaded which file: lands only when the import changed something
                audit.record(session, at=now, actor=actor, channel=channel, action="import.file",
                             entity="import", entity_id=Path(path).name[:64], kind=kind,
                             rows=report.rows, created=report.created, updated=report.updated,
                             unchanged=report.unchanged)
    except _Rollback:
        pass
    except ImportAborted as exc:
        _merge(report, exc.report)
    if not report.ok:
        report.created = report.updated = report.unchanged = 0   # nothing was written
        report.errors = parsed.with_headers(report.errors)
    return report


@asynccontextmanager
async def _transaction(db: Database) -> AsyncIterator[AsyncSession]:
    """One session in one transaction: committed on a normal exit, rolled back on an exception."""
    async with db.session() as session, session.begin():
        yield session


def _merge(report: ImportReport, planned: ImportReport) -> None:
    report.created, report.updated, report.unchanged = planned.created, planned.updated, planned.unchanged
    # rows that failed parsing never reach the planner, so counts cover the valid rows only
    report.errors = sorted(report.errors + planned.errors, key=lambda e: e.line)


async def table_counts(session: AsyncSession) -> dict[str, int]:
    """Rows per ledger table: lets tests (and `arbot check`) prove a failed import wrote nothing."""
    from storage.models import (Allocation, AuditEntry, Contact, Customer, Payment, Person,
                                Receivable, WriteOff)
    out = {}
    for model in (Person, Customer, Contact, Receivable, Payment, Allocation, WriteOff, AuditEntry):
        out[model.__tablename__] = (await session.execute(select(func.count()).select_from(model))).scalar_one()
    return out

