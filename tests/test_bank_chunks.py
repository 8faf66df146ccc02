"""A long bank statement is booked in short chunks under an import run (storage/bank.py,
storage/import_runs.py): chat writes land between the chunks, each chunk re-checks its own lines
against the ledger as it is then, and a statement stopped midway — an error, Ctrl-C or SIGTERM,
a process killed — is taken back whole, so importing it again works. Chunks of two lines on
tests/bank_fixture.py's ledger and the four-line ccb.xlsx (see its docstring for the lines)."""
from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from domain.bank_statement import read_statement
from storage import claims, import_runs, ledger
from storage.bank import import_bank_statement
from storage.followups import log_followup
from storage.models import (Allocation, AuditEntry, BankLine, BankStatement, Customer, FollowUp, ImportRun,
                            ImportRunChunk, Payment, PaymentClaim, Receivable)
from tests import bank_fixture as fx

BANK = Path(__file__).parent / "data" / "bank"
D = Decimal
FIXTURE_OPEN = {no: D(amount) for no, _, _, amount in fx.INVOICES}


async def _open(db) -> dict[str, Decimal]:
    async with db.reader() as r:
        return {no: amt for no, amt in (await r.execute(select(Receivable.invoice_no, Receivable.open_amount))).all()}


async def _count(db, model, *where) -> int:
    async with db.reader() as r:
        return (await r.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def _until(paused: asyncio.Event, task: asyncio.Task) -> None:
    """Wait until the import pauses after a chunk (it must: a statement that ends without one
    was not booked in chunks)."""
    waiting = asyncio.create_task(paused.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    assert paused.is_set(), "the statement was not booked in chunks"


async def _invoice(s, no: str) -> Receivable:
    return (await s.execute(select(Receivable).where(Receivable.invoice_no == no))).scalar_one()


async def _pay_by_cheque(s):
    """Finance books a cheque for DS-0002 in chat."""
    ds = (await s.execute(select(Customer).where(Customer.code == "DS"))).scalar_one()
    await ledger.record_payment(s, customer=ds, amount=D("3000.00"), paid_on=date(2026, 12, 2), reference="CHQ-77",
                                invoice_no="DS-0002", actor="fin1", channel="test", now=fx.NOW)


async def _nothing_of_the_statement_left(db) -> None:
    assert await _count(db, BankLine) == 0 and await _count(db, BankStatement) == 0
    assert await _count(db, Payment, Payment.reference != "CHQ-77") == 0
    assert await _count(db, AuditEntry, AuditEntry.action.in_(("bank.import", "payment.record")),
                        AuditEntry.actor == "fin2") == 0
    assert await _count(db, ImportRunChunk) == 0
    async with db.reader() as r:
        assert (await r.execute(select(ImportRun.status))).scalars().all() == ["undone"]


async def test_a_chat_write_lands_between_two_chunks_and_the_next_chunk_sees_it(db):
    """The import stops after its first chunk (line 1 booked, committed: readers see it); a
    cheque for DS-0002 is booked in chat meanwhile, through the same write gate, without waiting
    for the statement. The second chunk re-checks line 3 (8,000 = DS-0001 + DS-0002 when read)
    and pays what is open now."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)
    paused, release = asyncio.Event(), asyncio.Event()

    async def after_chunk(n):
        if n == 1:
            paused.set()
            await release.wait()

    task = asyncio.create_task(import_bank_statement(db, st, file_name="ccb.xlsx", account="", actor="fin2",
                                                     now=fx.NOW, chunk_lines=2, after_chunk=after_chunk))
    await _until(paused, task)
    try:
        assert (await _open(db))["FP2026-0001"] == D("0.00")          # the first chunk is committed
        # a guard against a hang, not a timing: blocked by the import, this would wait for ever
        await asyncio.wait_for(db.write(_pay_by_cheque), timeout=30)
        fu = await asyncio.wait_for(db.write(lambda s: _followup(s)), timeout=30)
    finally:
        release.set()
    result = await task
    assert [r.status for r in result.lines] == ["applied", "ignored", "applied", "unclaimed"]
    ds = result.lines[2]
    assert ds.allocations == [("DS-0001", D("5000.00")), ("DS-0003", D("3000.00"))] and "ledger_changed" in ds.reasons
    assert await _open(db) == {**FIXTURE_OPEN, "FP2026-0001": D("0.00"), "DS-0001": D("0.00"),
                               "DS-0002": D("0.00"), "DS-0003": D("4000.00")}
    async with db.reader() as r:
        assert (await r.get(FollowUp, fu.id)).text == "客户说周五付"
        assert (await r.execute(select(ImportRun.status))).scalars().all() == ["done"]
        [stmt] = (await r.execute(select(BankStatement))).scalars().all()
        assert stmt.lines == 4 and stmt.summary["applied"] == 2
        [entry] = (await r.execute(select(AuditEntry).where(AuditEntry.action == "bank.import"))).scalars().all()
        assert entry.entity_id == str(stmt.id) and entry.detail["applied"] == 2
    assert await _count(db, ImportRunChunk) == 0


async def _followup(s):
    return await log_followup(s, receivable=await _invoice(s, "HE-0001"), person_id="rep2", at=fx.NOW,
                              channel="test", outcome="promise", text="客户说周五付")


async def test_a_statement_stopped_midway_leaves_nothing_and_imports_again(any_db):
    """SIGTERM (the CLI cancels the import) after the first chunk: the receipt booked for line 1,
    its bank lines, the statement and their audit entries are taken back, and the claim rep1
    had made on FP2026-0001 (closed by that receipt) is open again. Importing the file again
    books it as if the first attempt had never been."""
    db = any_db           # (on SQLite and on PostgreSQL)
    async with db.session() as s, s.begin():
        await fx.build(s)
        await claims.record_claim(s, receivable=await _invoice(s, "FP2026-0001"), amount=None, person_id="rep1",
                                  at=fx.NOW, channel="test")
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)
    paused = asyncio.Event()

    async def after_chunk(n):
        paused.set()
        await asyncio.Event().wait()        # held here until cancelled

    task = asyncio.create_task(import_bank_statement(db, st, file_name="ccb.xlsx", account="", actor="fin2",
                                                     now=fx.NOW, chunk_lines=2, after_chunk=after_chunk))
    await _until(paused, task)
    assert await _count(db, BankLine) == 2 and await _count(db, PaymentClaim, PaymentClaim.status == "closed") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _nothing_of_the_statement_left(db)
    assert await _open(db) == FIXTURE_OPEN
    assert await _count(db, Allocation) == 0
    async with db.reader() as r:
        claim = (await r.execute(select(PaymentClaim))).scalar_one()
        assert (claim.status, claim.payment_id, claim.closed_by) == ("open", None, None)

    again = await import_bank_statement(db, st, file_name="ccb.xlsx", account="", actor="fin1", now=fx.NOW,
                                        chunk_lines=2)
    assert [r.status for r in again.lines] == ["applied", "ignored", "applied", "unclaimed"]
    assert await _count(db, BankLine) == 4 and await _count(db, Payment) == 2


async def test_a_failed_chunk_takes_back_the_statement_but_not_a_payment_booked_in_chat_meanwhile(any_db):
    """A cheque is booked in chat between the chunks, then the import fails before its commit
    point: the statement's receipts are undone, the open balances computed again, and the
    cheque's effect on DS-0002 stays."""
    db = any_db           # (on SQLite and on PostgreSQL)
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)

    async def after_chunk(n):
        if n == 1:
            await db.write(_pay_by_cheque)
        else:
            raise OSError("disk full")

    with pytest.raises(OSError):
        await import_bank_statement(db, st, file_name="ccb.xlsx", account="", actor="fin2", now=fx.NOW,
                                    chunk_lines=2, after_chunk=after_chunk)
    await _nothing_of_the_statement_left(db)
    assert await _open(db) == {**FIXTURE_OPEN, "DS-0002": D("0.00")}
    async with db.reader() as r:
        statuses = dict((await r.execute(select(Receivable.invoice_no, Receivable.status))).all())
    assert statuses["FP2026-0001"] == "open" and statuses["DS-0001"] == "open" and statuses["DS-0002"] == "paid"


async def test_a_killed_import_is_undone_by_the_next_start(db):
    """The process dies after a chunk (SIGKILL: no undo of its own); the next process that starts
    (recover_imports) finds the run's owner gone and takes the chunk back."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)

    async def after_chunk(n):
        # as if this process were gone: the run's owner is a pid no process has
        await db.write(lambda s: s.execute(update(ImportRun).values(owner=f"{import_runs.owner().split('|')[0]}|0|")))
        raise import_runs.RunTakenOver("killed")

    with pytest.raises(import_runs.RunTakenOver):
        await import_bank_statement(db, st, file_name="ccb.xlsx", account="", actor="fin2", now=fx.NOW,
                                    chunk_lines=2, after_chunk=after_chunk)
    assert await _count(db, BankLine) == 2                 # left behind by the dead process
    assert len(await import_runs.recover_imports(db)) == 1
    await _nothing_of_the_statement_left(db)
    assert await _open(db) == FIXTURE_OPEN
