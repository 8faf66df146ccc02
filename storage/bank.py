"""Bank statements into the ledger (cash application, 回款认领): store each line once, book the
receipts whose customer is certain through the ledger's own payment path, keep the rest for
people to claim, and learn from what they confirm. Session first, never commits: the caller
owns the transaction (a statement is one: all of it or none of it).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain import cash_matching as cm
from domain.bank_statement import Statement
from storage import audit, bills, import_runs, ledger
from storage.models import AcceptanceBill, BankAlias, BankLine, BankStatement, Customer, Receivable
from storage.scope import Scope

ZERO = Decimal("0.00")
# A long statement is booked in chunks, each its own write transaction: 10,000 receipts in one
# kept chat waiting for minutes. A chunk holds at most CHUNK_LINES lines; its size adapts so that
# a write lasts about CHUNK_SECONDS (a receipt is a few statements through the ledger, from a few
# ms on a quiet machine to 50 ms on a loaded one), starting at FIRST_CHUNK_LINES.
CHUNK_LINES = 200
FIRST_CHUNK_LINES = 50
MIN_CHUNK_LINES = 10
CHUNK_SECONDS = 1.0
MIN_PAUSE = 0.1         # seconds between two chunks at least: another process's writer gets the lock
log = logging.getLogger(__name__)


class ClaimError(ValueError):
    """A claim that cannot be made as asked; ``code`` names why (errors/error.md.j2)."""

    def __init__(self, code: str, **data):
        super().__init__(code)
        self.code, self.data = code, data


# ---- the book matching reads ----------------------------------------------------------------
async def load_book(session: AsyncSession) -> tuple[cm.Book, dict[str, Customer]]:
    """Customers, every invoice (paid ones too: a memo naming a paid invoice is a duplicate's
    sign) and the aliases learned so far, as the pure matcher wants them."""
    customers = {c.code: c for c in (await session.execute(select(Customer))).scalars()}
    by_id = {c.id: c.code for c in customers.values()}
    rows = (await session.execute(select(
        Receivable.id, Receivable.invoice_no, Receivable.contract_no, Receivable.customer_id, Receivable.open_amount,
        Receivable.due_date, Receivable.issue_date, Receivable.currency, Receivable.status))).all()
    items = {}
    for rid, no, contract, cid, open_amount, due, issued, cur, status in rows:
        items[cm.norm_number(no)] = cm.Item(invoice_no=no, customer=by_id[cid],
                                            open_amount=ZERO if status == "written_off" else open_amount,
                                            due_date=due, currency=cur, contract_no=contract or "",
                                            issue_date=issued, id=rid)
    book = cm.Book(parties={c.code: cm.Party(c.code, c.name, c.rep_id) for c in customers.values()}, items=items)
    for kind, value, cid in (await session.execute(select(BankAlias.kind, BankAlias.value, BankAlias.customer_id))).all():
        if cid in by_id:
            (book.name_aliases if kind == "name" else book.account_aliases)[value] = by_id[cid]
    return book, customers


# ---- importing a statement --------------------------------------------------------------------
@dataclass
class LineResult:
    line: int
    ref: str
    date: str
    payer: str
    amount: Decimal
    direction: str
    status: str                       # applied | unclaimed | ignored | duplicate
    customer: str | None
    confidence: float
    reasons: list[str]
    allocations: list[tuple[str, Decimal]] = field(default_factory=list)
    suggestions: list[dict] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    id: int | None = None             # the stored line's number (认领 <id>)
    memo: str = ""
    unallocated: Decimal = ZERO       # left on account by the payment


@dataclass
class ImportResult:
    statement_id: int | None
    lines: list[LineResult]

    def summary(self) -> dict:
        s = {"lines": len(self.lines), "credits": 0, "debits": 0, "applied": 0, "unclaimed": 0, "ignored": 0,
             "duplicate": 0, "applied_amount": ZERO, "unclaimed_amount": ZERO, "anomalies": 0,
             "statement": self.statement_id}
        for r in self.lines:
            s["credits" if r.direction == "credit" else "debits"] += 1
            s[r.status] += 1
            s["anomalies"] += bool(r.anomalies)
            if r.status == "applied":
                s["applied_amount"] += r.amount
            elif r.status == "unclaimed":
                s["unclaimed_amount"] += r.amount
        return s


@dataclass
class _Planned:
    """One line as the read phase left it: what matching decided, and what it relied on."""
    ln: object                                  # domain.bank_statement.BankLine
    match: cm.Match | None                      # None: stored before (a duplicate)
    bill_id: int | None = None                  # the held bill it collects
    customer_id: int | None = None              # the customer it is booked to (apply)
    named_ids: list[int] = field(default_factory=list)   # the invoices its memo names


@dataclass
class Prepared:
    """A statement matched on a read session, waiting for its short writes (:func:`store_statement`)."""
    lines: list[_Planned]
    # every customer as the read saw it, id → (code, name): a customer added or renamed since
    # may be the payer's true match, so the write matches certain lines again with it in view
    customers: dict[int, tuple[str, str]] = field(default_factory=dict)


async def prepare_statement(session: AsyncSession, st: Statement,
                            after_line: Callable[[int], Awaitable[None]] | None = None) -> Prepared:
    """The read phase: which lines are new, the whole book, every line matched (the CPU work).
    Run on ``db.reader()``: it takes no lock and writes nothing. Each certain line's planned
    allocation is taken off the book, so the next line sees those invoices paid, as the write
    will. ``after_line(n)`` is awaited after each line (progress; tests pause here)."""
    if st.errors:
        raise ValueError("a statement with errors is not imported")
    known = await _known(session, [ln.identity for ln in st.lines])
    book, customers = await load_book(session)
    # acceptance bills we hold: their collection (托收) comes in as a credit naming the bill, and
    # is not a customer's payment — the bill already paid the invoices when it was received
    held = {cm.norm_number(b.bill_no): b for b in (await session.execute(
        select(AcceptanceBill).where(AcceptanceBill.status == "held"))).scalars()}
    out: list[_Planned] = []
    for n, ln in enumerate(st.lines):
        if ln.identity in known:
            out.append(_Planned(ln, None))
        else:
            known.add(ln.identity)
            bill = _bill_collected(ln, held)
            if bill is not None:
                del held[cm.norm_number(bill.bill_no)]
                out.append(_Planned(ln, cm.Match("ignored", confidence=1.0, reasons=["bill_collected"]),
                                    bill_id=bill.id))
            else:
                r = _receipt(ln)
                m = cm.match(r, book)
                p = _Planned(ln, m, named_ids=[i.id for i in cm.named_items(r, book)])
                if m.status == "apply":
                    p.customer_id = customers[m.customer].id
                    book.settle(m.planned)
                out.append(p)
        if after_line is not None:
            await after_line(n)
    return Prepared(out, {c.id: (c.code, c.name) for c in customers.values()})


async def store_statement(session: AsyncSession, st: Statement, prepared: Prepared, *, file_name: str,
                          account: str, actor: str, now: datetime, channel: str = "cli") -> ImportResult:
    """The write phase in one transaction: the statement, its new lines, the certain ones booked
    (:func:`_store_lines`), the summary and the ``bank.import`` audit entry. A statement too long
    for one short write goes through :func:`import_bank_statement`, which books it in chunks."""
    stmt = _new_statement(session, st, file_name=file_name, account=account, actor=actor, now=now)
    await session.flush()
    results = await _store_lines(session, stmt, prepared, prepared.lines, account=account, actor=actor, now=now)
    out = _close_statement(stmt, results)
    audit.record(session, at=now, actor=actor, channel=channel, action="bank.import", entity="bank_statement",
                 entity_id=stmt.id, file=file_name, account=account, **stmt.summary)
    return out


def _new_statement(session: AsyncSession, st: Statement, *, file_name: str, account: str, actor: str,
                   now: datetime) -> BankStatement:
    stmt = BankStatement(account=account, file_name=file_name, layout=st.layout, imported_by=actor, imported_at=now,
                         lines=0, summary={})
    session.add(stmt)
    return stmt


def _close_statement(stmt: BankStatement, results: list[LineResult]) -> ImportResult:
    """The statement's count of stored lines and its summary, from every line's result."""
    out = ImportResult(stmt.id, results)
    stmt.lines = sum(r.status != "duplicate" for r in results)
    stmt.summary = {k: str(v) if isinstance(v, Decimal) else v for k, v in out.summary().items()}
    return out


def _import_entry(stmt_id: int, summary: dict, *, file_name: str, account: str, actor: str, now: datetime,
                  channel: str) -> dict:
    """The ``bank.import`` entry (as store_statement writes it), for the run's commit point."""
    return audit.entry(at=now, actor=actor, channel=channel, action="bank.import", entity="bank_statement",
                       entity_id=stmt_id, file=file_name, account=account, **summary)


async def _store_lines(session: AsyncSession, stmt: BankStatement, prepared: Prepared, plans: list[_Planned], *,
                       account: str, actor: str, now: datetime) -> list[LineResult]:
    """Store ``plans`` (some or all of the statement's lines) and book the certain ones — each
    only after what its match relied on is read again from the ledger as it is now (the
    invoices it names, the customer's open invoices, the payer's aliases, the customers added
    or renamed since the read) and matched again on that small book: a line whose answer
    changed is booked as the fresh match says when it names the same customer on the same
    evidence, else left unclaimed; either way it says ``ledger_changed``. Lines stored since
    the read (another import of the same file) are duplicates here too."""
    now_known = await _known(session, [p.ln.identity for p in plans if p.match is not None])
    evidence = await _Evidence.load(session, [p for p in plans if p.match is not None
                                              and p.match.status == "apply" and p.ln.identity not in now_known],
                                    prepared.customers)
    results: list[LineResult] = []
    # the lines are added after the loop, in one batched insert: a flush per line (for its id)
    # would also flush before every query the booking makes
    stored: list[tuple[BankLine, LineResult]] = []
    for p in plans:
        ln, m = p.ln, p.match
        base = dict(line=ln.line, ref=ln.ref or ln.identity, date=ln.booked_on.isoformat(), payer=ln.payer,
                    amount=ln.amount, direction=ln.direction, memo=ln.memo)
        if m is None or ln.identity in now_known:
            results.append(LineResult(**base, status="duplicate", customer=None, confidence=1.0, reasons=["seen"]))
            continue
        customer = None
        if p.bill_id is not None:
            bill = await session.get(AcceptanceBill, p.bill_id)
            if bill is not None and bill.status == "held":
                await bills.dispose(session, bill, how="collected", on=ln.booked_on, actor=actor, channel="bank",
                                    now=now)
            else:       # disposed of since the read: a person looks
                m = cm.Match("unclaimed", confidence=0.5, reasons=["bill_collected", "ledger_changed"])
        elif m.status == "apply":
            m, customer = _recheck(evidence, p)
        row = BankLine(identity=ln.identity, statement_id=stmt.id, line_no=ln.line, account=account,
                       booked_on=ln.booked_on, direction=ln.direction, amount=ln.amount, currency=ln.currency,
                       payer=ln.payer, payer_account=ln.account, memo=ln.memo, bank_ref=ln.ref,
                       status="ignored" if m.status == "ignored" else "unclaimed", confidence=f"{m.confidence:.2f}",
                       reasons=list(m.reasons), suggestions=[s.to_dict() for s in m.suggestions],
                       anomalies=list(m.anomalies), claim_invoices=[])
        res = LineResult(**base, status=row.status, customer=None, confidence=m.confidence, reasons=list(m.reasons),
                         suggestions=row.suggestions, anomalies=list(m.anomalies))
        if m.status == "apply":
            await _book(session, row, res, customer, m.order, None, actor=actor, now=now, channel="bank")
        results.append(res)
        stored.append((row, res))
    session.add_all([row for row, _ in stored])
    await session.flush()
    for row, res in stored:
        res.id = row.id
    return results


async def import_statement(session: AsyncSession, st: Statement, *, file_name: str, account: str, actor: str,
                           now: datetime, channel: str = "cli") -> ImportResult:
    """Both phases on one session the caller already holds a transaction on (all of it or none
    of it). Lines stored before (the same identity) are reported as ``duplicate`` and left as
    they are. ``arbot import bank`` uses :func:`import_bank_statement`, which keeps the
    matching out of the write lock and the writes short."""
    prepared = await prepare_statement(session, st)
    return await store_statement(session, st, prepared, file_name=file_name, account=account, actor=actor,
                                 now=now, channel=channel)


async def import_bank_statement(db, st: Statement, *, file_name: str, account: str, actor: str, now: datetime,
                                channel: str = "cli",
                                after_line: Callable[[int], Awaitable[None]] | None = None,
                                chunk_lines: int = CHUNK_LINES,
                                after_chunk: Callable[[int], Awaitable[None]] | None = None) -> ImportResult:
    """A statement the way the write discipline wants it (storage/db.py): the book read and
    every line matched on a read session, which blocks no one, then short write transactions
    that re-check and book. A statement whose new lines fit in one chunk (``chunk_lines``) is
    one write (:func:`store_statement`); a longer one is booked in chunks under an import run
    (:func:`_store_in_chunks`), so that chat is never kept waiting behind thousands of
    receipts and the file still lands whole or not at all. A concurrent import of the same
    file that stored lines first makes a write fail on the identity's unique constraint
    (PostgreSQL) — it is run once more, and its re-check reports them as duplicates.
    ``after_chunk(n)`` is awaited after chunk n is committed (tests interleave here)."""
    async with db.reader() as r:
        prepared = await prepare_statement(r, st, after_line)
    if sum(p.match is not None for p in prepared.lines) > chunk_lines:
        return await _store_in_chunks(db, st, prepared, file_name=file_name, account=account, actor=actor, now=now,
                                      channel=channel, chunk_lines=chunk_lines, after_chunk=after_chunk)

    async def write(s):
        return await store_statement(s, st, prepared, file_name=file_name, account=account, actor=actor, now=now,
                                     channel=channel)
    try:
        return await db.write(write)
    except IntegrityError:
        return await db.write(write)


async def _store_in_chunks(db, st: Statement, prepared: Prepared, *, file_name: str, account: str, actor: str,
                           now: datetime, channel: str, chunk_lines: int,
                           after_chunk: Callable[[int], Awaitable[None]] | None) -> ImportResult:
    """Book a long statement in chunks of at most ``chunk_lines`` lines, each its own write
    sized to last about :data:`CHUNK_SECONDS`, under an import run
    (storage/import_runs.py): each chunk re-checks its own lines' evidence against the ledger
    as it is then (chat writes land between chunks, and the chunks before are part of that
    ledger), and journals what it changed (:class:`import_runs.ChangeLog`). The run's last step
    logs ``bank.import``; until then any failure — a database error, Ctrl-C, SIGTERM — takes
    back the chunks written (a process that died is undone by the next start), so the
    statement is stored whole or not at all and can simply be imported again."""
    new = [p for p in prepared.lines if p.match is not None]
    run_id = await import_runs.start_run(db, kind="bank", file_name=file_name, actor=actor, channel=channel,
                                         rows=len(prepared.lines), created=len(new), updated=0)
    lines = prepared.lines
    results: list[LineResult] = []
    stmt_id: int | None = None
    summary: dict = {}
    at, seq, size = 0, 0, min(FIRST_CHUNK_LINES, chunk_lines)
    try:
        while at < len(lines):
            piece, last, seq = lines[at:at + size], at + size >= len(lines), seq + 1
            started: list[float] = []

            async def work(s: AsyncSession) -> tuple[int, dict, list[LineResult]]:
                started.append(time.perf_counter())
                with import_runs.ChangeLog(s) as changes:
                    if stmt_id is None:
                        stmt = _new_statement(s, st, file_name=file_name, account=account, actor=actor, now=now)
                        await s.flush()
                    else:
                        stmt = await s.get(BankStatement, stmt_id)
                    done = await _store_lines(s, stmt, prepared, piece, account=account, actor=actor, now=now)
                    if last:
                        _close_statement(stmt, results + done)
                    await s.flush()
                await import_runs.record_chunk(s, run_id, seq, changes.journal())
                return stmt.id, dict(stmt.summary), done
            try:
                stmt_id, summary, done = await db.write(work)
            except IntegrityError:          # the same lines stored meanwhile by another import: duplicates now
                stmt_id, summary, done = await db.write(work)
            took = time.perf_counter() - started[-1]
            results += done
            at += len(piece)
            if after_chunk is not None:
                await after_chunk(seq)
            # the next chunk aimed at CHUNK_SECONDS (at most doubling: one fast chunk proves little)
            size = min(chunk_lines, max(MIN_CHUNK_LINES, min(2 * size, int(len(piece) * CHUNK_SECONDS
                                                                              / max(took, 1e-3)))))
            await asyncio.sleep(max(MIN_PAUSE, took / 10))     # a turn for whoever waits for the write lock
        await import_runs.finish_run(db, run_id, _import_entry(stmt_id, summary, file_name=file_name,
                                                               account=account, actor=actor, now=now, channel=channel))
    except import_runs.RunTakenOver:
        raise            # declared dead and being undone by another process: leave it be
    except BaseException as exc:
        try:
            await asyncio.shield(import_runs.undo_run(db, run_id, f"{type(exc).__name__}: {exc}"))
        except BaseException:
            log.exception("bank import run %d could not be undone now; the next start undoes it", run_id)
        raise
    return ImportResult(stmt_id, results)


async def _known(session: AsyncSession, identities: list[str]) -> set[str]:
    known: set[str] = set()
    for chunk in _chunks(identities):
        known |= set((await session.execute(select(BankLine.identity).where(BankLine.identity.in_(chunk)))).scalars())
    return known


def _receipt(ln) -> cm.Receipt:
    return cm.Receipt(amount=ln.amount, payer=ln.payer, account=ln.account, memo=ln.memo, direction=ln.direction,
                      currency=ln.currency)


@dataclass
class _Evidence:
    """What the certain lines' matches relied on, read once at the start of the write (a few
    batched queries, not a few per line): their customers and those the named invoices and the
    payers' aliases belong to, those customers' open invoices, the named invoices, the aliases.
    The invoices are the session's own objects, so the lines booked earlier in this write are
    seen paid, as the read phase saw them. And the customers added or renamed since the read
    (``changed``): one of them may now be the payer's match, or make its name ambiguous."""
    customers: dict[int, Customer]
    invoices: dict[int, list[Receivable]]       # customer id → its open invoices (at the start)
    named: dict[int, Receivable]
    aliases: dict[tuple[str, str], int]
    changed: set[int] = field(default_factory=set)

    @classmethod
    async def load(cls, session: AsyncSession, plans: list[_Planned],
                   seen: dict[int, tuple[str, str]]) -> "_Evidence":
        ev = cls({}, {}, {}, {})
        if not plans:
            return ev
        # (id, code, name) of every customer is a small read next to the book the read phase took
        ev.changed = {cid for cid, code, name in (await session.execute(select(Customer.id, Customer.code,
                                                                                Customer.name))).all()
                      if seen.get(cid) != (code, name)}
        wanted = {("account", (p.ln.account or "").replace(" ", "")) for p in plans} \
            | {("name", cm.normalise_name(p.ln.payer)) for p in plans}
        for chunk in _chunks(sorted(v for _, v in wanted)):
            for kind, value, cid in (await session.execute(select(BankAlias.kind, BankAlias.value,
                                                                  BankAlias.customer_id)
                                                           .where(BankAlias.value.in_(chunk)))).all():
                if (kind, value) in wanted:
                    ev.aliases[(kind, value)] = cid
        for chunk in _chunks(sorted({i for p in plans for i in p.named_ids})):
            ev.named.update({r.id: r for r in (await session.execute(
                select(Receivable).where(Receivable.id.in_(chunk)))).scalars()})
        ids = {p.customer_id for p in plans} | {r.customer_id for r in ev.named.values()} | set(ev.aliases.values()) \
            | ev.changed
        for chunk in _chunks(sorted(ids)):
            ev.customers.update({c.id: c for c in (await session.execute(
                select(Customer).where(Customer.id.in_(chunk)))).scalars()})
        for chunk in _chunks(sorted(ids)):
            for r in (await session.execute(select(Receivable).where(Receivable.customer_id.in_(chunk),
                                                                     Receivable.open_amount > 0))).scalars():
                ev.invoices.setdefault(r.customer_id, []).append(r)
        return ev


def _chunks(values: list, size: int = 500):
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _recheck(ev: _Evidence, p: _Planned) -> tuple[cm.Match, Customer | None]:
    """Match a certain line again on the ledger as it is now, on a small book of only what the
    match relied on: the customer, its open invoices, the invoices the memo names, the payer's
    aliases. Unchanged: the read phase's match stands. Changed: the fresh match is booked when
    it names the same customer on the same evidence; otherwise the line is left unclaimed."""
    m, ln = p.match, p.ln
    acct, name = (ln.account or "").replace(" ", ""), cm.normalise_name(ln.payer)
    aliases = [(kind, value, ev.aliases[(kind, value)]) for kind, value in (("account", acct), ("name", name))
               if (kind, value) in ev.aliases]
    rows = {r.id: r for r in ev.invoices.get(p.customer_id, [])}
    rows.update({i: ev.named[i] for i in p.named_ids if i in ev.named})
    # the customers added or renamed since the read, with their open invoices: matched again with
    # them in view, a line whose payer now names one of them (or is ambiguous) is not booked
    for cid in ev.changed:
        rows.update({r.id: r for r in ev.invoices.get(cid, [])})
    ids = {p.customer_id} | {r.customer_id for r in rows.values()} | {cid for _, _, cid in aliases} | ev.changed
    customers = {i: ev.customers[i] for i in ids if i in ev.customers}
    customer = customers.get(p.customer_id)
    if customer is None or customer.code != m.customer or any(r.customer_id not in customers for r in rows.values()):
        return _changed(m, None, m.customer), None
    book = cm.Book(parties={c.code: cm.Party(c.code, c.name, c.rep_id) for c in customers.values()}, items={
        cm.norm_number(r.invoice_no): cm.Item(invoice_no=r.invoice_no, customer=customers[r.customer_id].code,
                                              open_amount=ZERO if r.status == "written_off" else r.open_amount,
                                              due_date=r.due_date, currency=r.currency,
                                              contract_no=r.contract_no or "", issue_date=r.issue_date, id=r.id)
        for r in rows.values()})
    for kind, value, cid in aliases:
        if cid in customers:
            (book.name_aliases if kind == "name" else book.account_aliases)[value] = customers[cid].code
    fresh = cm.match(_receipt(ln), book)
    if (fresh.status, fresh.customer, fresh.order, fresh.planned, fresh.anomalies) == \
            (m.status, m.customer, m.order, m.planned, m.anomalies):
        return m, customer
    if fresh.status == "apply" and fresh.customer == m.customer and fresh.reasons[:1] == m.reasons[:1]:
        fresh.reasons.append("ledger_changed")
        return fresh, customer
    return _changed(m, fresh, customer.name), None


def _changed(m: cm.Match, fresh: cm.Match | None, name: str) -> cm.Match:
    """A certain line whose evidence changed since the read: left for a person, never booked on
    what the ledger said before."""
    out = cm.Match("unclaimed", confidence=min(m.confidence, 0.5), reasons=list(m.reasons) + ["ledger_changed"],
                   suggestions=[cm.Suggestion(m.customer, name, m.confidence, m.reasons[0])],
                   anomalies=list(m.anomalies))
    if fresh is not None and fresh.status != "apply":
        out.anomalies = list(dict.fromkeys(out.anomalies + fresh.anomalies))
        out.suggestions = [s for s in fresh.suggestions if s.customer == m.customer][:1] or out.suggestions
        out.suggestions += [s for s in fresh.suggestions if s.customer != m.customer]
    return out


def _bill_collected(ln, held: dict) -> AcceptanceBill | None:
    """The held bill a credit line collects: its number in the memo, the amount the bill's, on
    or after its maturity."""
    if ln.direction != "credit" or not held:
        return None
    for n in cm.numbers_in(ln.memo):
        b = held.get(n)
        if b is not None and b.amount == ln.amount and ln.booked_on >= b.maturity:
            return b
    return None


async def _book(session: AsyncSession, row: BankLine, res: LineResult, customer: Customer, order: list[str],
                book: cm.Book | None, *, actor: str, now: datetime, channel: str) -> None:
    """Book a line as the customer's payment (the ledger's path: named invoices first, then
    oldest first, the rest on account); a likely duplicate of a payment already booked is not
    booked but left for finance with the anomaly."""
    reference = row.bank_ref or row.identity
    dup = await ledger.likely_duplicate(session, customer_id=customer.id, amount=row.amount, currency=row.currency,
                                        paid_on=row.booked_on, reference=row.bank_ref or None)
    if dup is not None and dup.reference != reference:
        _unclaimed(row, res, customer, "duplicate_payment", reason="ledger_duplicate")
        return
    try:
        paid = await ledger.record_payment(session, customer=customer, amount=row.amount, paid_on=row.booked_on,
                                           reference=reference, currency=row.currency, actor=actor, channel=channel,
                                           now=now, first=tuple(order))
    except ledger.LedgerError:
        # the same serial booked earlier with another amount or customer: a person looks
        _unclaimed(row, res, customer, None, reason="reference_conflict")
        return
    row.status, row.customer_id, row.payment_id = "applied", customer.id, paid.payment.id
    res.status, res.customer = "applied", customer.code
    res.allocations = [(r.invoice_no, a) for r, a in paid.allocations]
    res.unallocated = paid.payment.unallocated
    if paid.duplicate:
        res.reasons.append("already_booked")
    # what the ledger did decides the balance anomalies, not what matching foresaw
    anomalies = [a for a in res.anomalies if a not in ("over_balance", "nothing_open")]
    if not paid.duplicate and paid.payment.unallocated > ZERO:
        anomalies.append("over_balance" if paid.allocations else "nothing_open")
    res.anomalies = row.anomalies = anomalies
    row.reasons = res.reasons
    if book is not None:
        book.settle(res.allocations)


def _unclaimed(row: BankLine, res: LineResult, customer: Customer, anomaly: str | None, *, reason: str) -> None:
    row.status = res.status = "unclaimed"
    res.reasons = row.reasons = list(res.reasons) + [reason]
    if anomaly and anomaly not in res.anomalies:
        res.anomalies = row.anomalies = list(res.anomalies) + [anomaly]
    sugg = {"customer": customer.code, "name": customer.name, "score": 0.9, "reason": reason, "invoices": []}
    res.suggestions = row.suggestions = [sugg] + [s for s in res.suggestions if s.get("customer") != customer.code]


# ---- claims (回款认领) -----------------------------------------------------------------------
@dataclass
class ClaimResult:
    line: BankLine
    applied: bool                     # booked now (finance's claim, or a confirmation)
    allocations: list[tuple[str, Decimal]] = field(default_factory=list)
    unallocated: Decimal = ZERO
    learned: list[str] = field(default_factory=list)      # "name" / "account"


async def claim(session: AsyncSession, line: BankLine, *, customer: Customer, invoices: list[Receivable],
                actor: str, finance: bool, now: datetime, channel: str) -> ClaimResult:
    """Someone says whose money a line is. Finance's word books it at once (and teaches the
    alias); anyone else's waits for finance (``confirm``)."""
    if line.direction != "credit" or line.status in ("applied", "ignored"):
        raise ClaimError("bank_line_closed", id=line.id, status=line.status)
    for r in invoices:
        if r.customer_id != customer.id:
            raise ClaimError("claim_invoice_other_customer", invoice=r.invoice_no)
        if r.open_amount <= ZERO:
            raise ClaimError("claim_invoice_paid", invoice=r.invoice_no)
    line.claimed_by, line.claimed_at = actor, now
    line.claim_customer_id, line.claim_invoices = customer.id, [r.invoice_no for r in invoices]
    audit.record(session, at=now, actor=actor, channel=channel, action="bank.claim", entity="bank_line",
                 entity_id=line.id, customer=customer.code, invoices=line.claim_invoices, amount=line.amount)
    if not finance:
        line.status = "claimed"
        return ClaimResult(line, applied=False)
    return await _apply_claim(session, line, customer, actor=actor, now=now, channel=channel)


async def confirm(session: AsyncSession, line: BankLine, *, actor: str, now: datetime, channel: str) -> ClaimResult:
    """Finance confirms a rep's claim: booked, and the alias learned."""
    if line.status != "claimed" or line.claim_customer_id is None:
        raise ClaimError("bank_line_not_claimed", id=line.id)
    customer = await session.get(Customer, line.claim_customer_id)
    for no in line.claim_invoices:
        r = (await session.execute(select(Receivable).where(Receivable.invoice_no == no))).scalar_one_or_none()
        if r is None or r.open_amount <= ZERO:
            raise ClaimError("claim_invoice_paid", invoice=no)
    return await _apply_claim(session, line, customer, actor=actor, now=now, channel=channel)


async def reject(session: AsyncSession, line: BankLine, *, actor: str, note: str, now: datetime,
                 channel: str) -> BankLine:
    """Finance turns a rep's claim down: the line is unclaimed again."""
    if line.status != "claimed":
        raise ClaimError("bank_line_not_claimed", id=line.id)
    audit.record(session, at=now, actor=actor, channel=channel, action="bank.claim_rejected", entity="bank_line",
                 entity_id=line.id, claimed_by=line.claimed_by, note=note)
    line.status, line.claim_customer_id, line.claim_invoices = "unclaimed", None, []
    return line


async def _apply_claim(session: AsyncSession, line: BankLine, customer: Customer, *, actor: str, now: datetime,
                       channel: str) -> ClaimResult:
    reference = line.bank_ref or line.identity
    try:
        paid = await ledger.record_payment(session, customer=customer, amount=line.amount, paid_on=line.booked_on,
                                           reference=reference, currency=line.currency, actor=actor, channel=channel,
                                           now=now, first=tuple(line.claim_invoices or ()))
    except ledger.LedgerError as e:
        raise ClaimError("claim_not_booked", detail=str(e)) from e
    line.status, line.customer_id, line.payment_id = "applied", customer.id, paid.payment.id
    line.confirmed_by, line.confirmed_at = actor, now
    learned = await learn(session, line, customer, actor=actor, now=now, channel=channel)
    audit.record(session, at=now, actor=actor, channel=channel, action="bank.claim_applied", entity="bank_line",
                 entity_id=line.id, customer=customer.code, payment=paid.payment.id, claimed_by=line.claimed_by,
                 learned=learned)
    return ClaimResult(line, True, [(r.invoice_no, a) for r, a in paid.allocations], paid.payment.unallocated, learned)


async def learn(session: AsyncSession, line: BankLine, customer: Customer, *, actor: str, now: datetime,
                channel: str) -> list[str]:
    """Remember the payer's account number, and its name unless it is a person's (张伟 pays for
    many companies; an account number belongs to one payer). A payer who pays for others (a
    factoring or supply-chain company, a bank) teaches nothing; a name or account confirmed for
    two customers stops naming either (it is removed, and audited), since it cannot tell them apart."""
    if cm.is_intermediary(line.payer):
        return []
    learned = []
    wanted = []
    if line.payer_account:
        wanted.append(("account", line.payer_account))
    if line.payer and not cm.is_person(line.payer):
        wanted.append(("name", cm.normalise_name(line.payer)))
    for kind, value in wanted:
        alias = (await session.execute(select(BankAlias).where(BankAlias.kind == kind, BankAlias.value == value)))\
            .scalar_one_or_none()
        if alias is not None and alias.customer_id == customer.id:
            continue
        if alias is not None:
            await session.delete(alias)
            audit.record(session, at=now, actor=actor, channel=channel, action="bank.alias_dropped", entity="customer",
                         entity_id=customer.code, kind=kind, value=value, line=line.id, other=alias.customer_id)
            continue
        session.add(BankAlias(kind=kind, value=value, customer_id=customer.id, learned_from=line.id,
                              created_by=actor, created_at=now))
        learned.append(kind)
        audit.record(session, at=now, actor=actor, channel=channel, action="bank.alias", entity="customer",
                     entity_id=customer.code, kind=kind, value=value, line=line.id)
    return learned


# ---- reading -------------------------------------------------------------------------------
async def open_lines(session: AsyncSession, scope: Scope, *, limit: int = 200) -> list[BankLine]:
    """Lines waiting for people (unclaimed, or claimed and waiting for finance), oldest first.
    A caller confined to some reps sees the lines that look like their customers (a suggestion)
    and those they claimed themselves."""
    rows = list((await session.execute(select(BankLine).where(BankLine.status.in_(("unclaimed", "claimed")))
                                       .order_by(BankLine.booked_on, BankLine.id))).scalars())
    if scope.rep_ids is None and scope.customer_ids is None:
        return rows[:limit]
    mine = {c.code: c for c in (await session.execute(select(Customer))).scalars() if scope.allows_customer(c)}
    mine_ids = {c.id for c in mine.values()}
    out = [ln for ln in rows if ln.claim_customer_id in mine_ids
           or any(s.get("customer") in mine for s in ln.suggestions or [])]
    return out[:limit]

