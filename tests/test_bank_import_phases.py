"""A bank statement is matched on a read session and booked in one short write (issue #12 on
issue #16's import): chat writes go on while it is matched, and what changed in the ledger
between the two phases is never booked on what was read before."""
from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from domain.bank_statement import read_statement
from storage import ledger
from storage.bank import import_bank_statement, prepare_statement, store_statement
from storage.followups import log_followup
from storage.models import BankLine, Customer, FollowUp, Payment, Receivable, WriteOff
from tests import bank_fixture as fx

BANK = Path(__file__).parent / "data" / "bank"
D = Decimal


async def _open(db) -> dict[str, Decimal]:
    async with db.reader() as r:
        return {no: amt for no, amt in (await r.execute(select(Receivable.invoice_no, Receivable.open_amount))).all()}


async def _customer(s, code: str) -> Customer:
    return (await s.execute(select(Customer).where(Customer.code == code))).scalar_one()


async def _invoice(s, no: str) -> Receivable:
    return (await s.execute(select(Receivable).where(Receivable.invoice_no == no))).scalar_one()


async def test_what_changed_while_the_statement_was_matched_is_not_booked_on_stale_data(db):
    """Line 1 (恒达, 11,300 naming FP2026-0001) and line 3 (东升, 8,000 = DS-0001 + DS-0002) are
    certain when matched; before the write, FP2026-0001 is written off and DS-0002 is paid by
    cheque. Line 1 is left for a person (booked as read, its 11,300 would have gone onto
    FP2026-0002/0003); line 3 is matched again and pays what is open now."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)

    async def meanwhile(s):
        fp1 = await _invoice(s, "FP2026-0001")
        wo = WriteOff(receivable_id=fp1.id, amount=fp1.open_amount, reason="破产清算", requested_by="fin1",
                      requested_at=fx.NOW)
        s.add(wo)
        await s.flush()
        await ledger.apply_write_off(s, wo, on=fx.TODAY, actor="fin1", channel="test", now=fx.NOW)
        await ledger.record_payment(s, customer=await _customer(s, "DS"), amount=D("3000.00"),
                                    paid_on=date(2026, 12, 2), reference="CHQ-77", invoice_no="DS-0002",
                                    actor="fin1", channel="test", now=fx.NOW)

    async def after_line(n):
        if n == len(st.lines) - 1:              # every line matched, the write not begun
            await db.write(meanwhile)

    result = await import_bank_statement(db, st, file_name="ccb.xlsx", account="基本户", actor="fin1", now=fx.NOW,
                                         after_line=after_line)
    hd, _, ds, _ = result.lines
    assert hd.status == "unclaimed" and hd.customer is None
    assert "ledger_changed" in hd.reasons and "duplicate_payment" in hd.anomalies
    assert hd.suggestions[0]["customer"] == "HD"
    assert ds.status == "applied" and "ledger_changed" in ds.reasons
    assert ds.allocations == [("DS-0001", D("5000.00")), ("DS-0003", D("3000.00"))]
    assert await _open(db) == {"FP2026-0001": D("0.00"), "FP2026-0002": D("3000.00"), "FP2026-0003": D("6000.00"),
                               "HE-0001": D("9999.00"), "DS-0001": D("0.00"), "DS-0002": D("0.00"),
                               "DS-0003": D("4000.00")}
    async with db.reader() as r:
        hd_id = (await _customer(r, "HD")).id
        assert (await r.execute(select(func.count()).select_from(Payment)
                                .where(Payment.customer_id == hd_id))).scalar_one() == 0
        stored = (await r.execute(select(BankLine).where(BankLine.id == hd.id))).scalar_one()
        assert stored.status == "unclaimed" and "ledger_changed" in stored.reasons


async def test_nothing_changed_books_what_was_matched(db):
    """The re-check reads the ledger again; when nothing changed it books exactly the read
    phase's answer and says nothing about it."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)
    async with db.reader() as r:
        prepared = await prepare_statement(r, st)
    planned = [p.match.planned for p in prepared.lines]
    result = await db.write(lambda s: store_statement(s, st, prepared, file_name="ccb.xlsx", account="", actor="fin1",
                                                      now=fx.NOW))
    assert [r.status for r in result.lines] == ["applied", "ignored", "applied", "unclaimed"]
    assert [r.allocations for r in result.lines if r.status == "applied"] == [planned[0], planned[2]]
    assert not any("ledger_changed" in r.reasons for r in result.lines)


async def test_a_chat_write_goes_through_while_a_statement_is_matched(db):
    """The import is held in its matching phase; a rep's follow-up is written and committed
    meanwhile (with the matching inside the write lock, it would wait for the whole import)."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)
    matching, release = asyncio.Event(), asyncio.Event()

    async def slow(n):
        matching.set()
        await release.wait()

    task = asyncio.create_task(import_bank_statement(db, st, file_name="ccb.xlsx", account="", actor="fin1",
                                                     now=fx.NOW, after_line=slow))
    await matching.wait()

    async def followup(s):
        return await log_followup(s, receivable=await _invoice(s, "HE-0001"), person_id="rep2", at=fx.NOW,
                                  channel="test", outcome="promise", text="客户说周五付")
    try:
        # a guard against a hang, not a timing: blocked by the import, this waits for ever
        fu = await asyncio.wait_for(db.write(followup), timeout=30)
    finally:
        release.set()
    result = await task
    async with db.reader() as r:
        assert (await r.get(FollowUp, fu.id)).text == "客户说周五付"
    assert [r.status for r in result.lines] == ["applied", "ignored", "applied", "unclaimed"]


async def test_two_imports_of_one_file_matched_together_store_each_line_once(db):
    """Two people import the same statement at once: both match it before either writes. The
    second write finds the lines stored by the first and books nothing again."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)
    async with db.reader() as r:
        first = await prepare_statement(r, st)
        second = await prepare_statement(r, st)
    a = await db.write(lambda s: store_statement(s, st, first, file_name="ccb.xlsx", account="", actor="fin1",
                                                 now=fx.NOW))
    b = await db.write(lambda s: store_statement(s, st, second, file_name="ccb.xlsx", account="", actor="fin2",
                                                 now=fx.NOW))
    assert [r.status for r in a.lines] == ["applied", "ignored", "applied", "unclaimed"]
    assert [r.status for r in b.lines] == ["duplicate"] * 4
    async with db.reader() as r:
        assert (await r.execute(select(func.count()).select_from(BankLine))).scalar_one() == 4
        assert (await r.execute(select(func.count()).select_from(Payment))).scalar_one() == 2


async def test_an_invoice_moved_to_another_customer_meanwhile_leaves_the_line_for_a_person(db):
    """FP2026-0001 is moved to 东莞恒达 between matching and booking: the payer (深圳恒达) and the
    memo now point at two customers, so the line is not booked to either."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)
    async with db.reader() as r:
        prepared = await prepare_statement(r, st)
    assert prepared.lines[0].match.status == "apply"

    async def move(s):
        (await _invoice(s, "FP2026-0001")).customer_id = (await _customer(s, "HE")).id
    await db.write(move)
    result = await db.write(lambda s: store_statement(s, st, prepared, file_name="ccb.xlsx", account="", actor="fin1",
                                                      now=fx.NOW))
    line = result.lines[0]
    assert line.status == "unclaimed" and "ledger_changed" in line.reasons
    assert (await _open(db))["FP2026-0001"] == D("11300.00")
    assert (await _open(db))["FP2026-0002"] == D("3000.00")


async def _store_after(db, st, change):
    """Match ``st`` on a read session, commit ``change`` (a chat write), then book."""
    async with db.reader() as r:
        prepared = await prepare_statement(r, st)
    assert prepared.lines[2].match.status == "apply" and prepared.lines[2].match.customer == "DS"
    await db.write(change)
    return await db.write(lambda s: store_statement(s, st, prepared, file_name="ccb.xlsx", account="", actor="fin1",
                                                    now=fx.NOW))


async def test_a_customer_added_meanwhile_under_the_payers_name_stops_the_booking(db):
    """Line 3 is 8,000 from "上海东升贸易" (no legal form), matched to 上海东升贸易有限责任公司 (DS).
    Before the write, finance adds 上海东升贸易有限公司: the payer's name now fits two customers,
    so the line is left for a person instead of paying DS's invoices."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)

    async def add(s):
        s.add(Customer(code="DS2", name="上海东升贸易有限公司", grade="B", credit_limit=D("0"), rep_id="rep1",
                       region="华东"))
    result = await _store_after(db, st, add)
    line = result.lines[2]
    assert line.status == "unclaimed" and line.customer is None and "ledger_changed" in line.reasons
    assert result.lines[0].status == "applied"                 # 恒达's line relied on nothing that changed
    opened = await _open(db)
    assert (opened["DS-0001"], opened["DS-0002"]) == (D("5000.00"), D("3000.00"))


async def test_a_customer_renamed_meanwhile_to_the_payers_name_stops_the_booking(db):
    """The same line, and this time another customer (HE) is renamed 上海东升贸易有限公司 before the
    write: the line is not booked to DS on the names as they were read."""
    async with db.session() as s, s.begin():
        await fx.build(s)
    st = read_statement(BANK / "ccb.xlsx", fx.TODAY)

    async def rename(s):
        (await _customer(s, "HE")).name = "上海东升贸易有限公司"
    result = await _store_after(db, st, rename)
    line = result.lines[2]
    assert line.status == "unclaimed" and "ledger_changed" in line.reasons
    assert {s["customer"] for s in line.suggestions} >= {"DS"}
    async with db.reader() as r:
        assert (await r.execute(select(func.count()).select_from(Payment)
                                .where(Payment.customer_id == (await _customer(r, "DS")).id))).scalar_one() == 0
