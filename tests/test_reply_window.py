"""The 24-hour reply window as people work: it counts working days only (a Friday push is
answered by Monday, the day before 国庆 by the first day after it), nothing lands on a day off,
an item counts as answered by a reply, a /promise, /followup or /dispute on its invoice, or an
open promise not yet due, and the promise grace counts working days.

The company of tests/ledger_fixture.py: rep1 (supervisor sup1) is pushed INV-A3, INV-A2, INV-B2
(INV-B1 is disputed, listed apart); rep2 (sup2) INV-D1 and INV-C1."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select

from domain.workdays import WorkCalendar
from storage import collection
from storage.models import OutboxMessage, Promise, Push, PushItem, Receivable
from storage.scope import Scope
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot


async def _bot(aiohttp_client, db, when: str) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-09-01 10:00"))
    return await Bot.start(aiohttp_client, db, at(when), company={"fx_rates": ledger_fixture.FX})


async def _push(db, rep: str) -> Push:
    async with db.session() as s:
        return (await s.execute(select(Push).where(Push.rep_id == rep).order_by(Push.id.desc()).limit(1))
                ).scalar_one()


async def _window_messages(db) -> list[tuple[str, datetime]]:
    """Nudges and supervisor escalations: (outbox key, when they may go, company time)."""
    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage.idem_key, OutboxMessage.next_attempt_at, OutboxMessage.sent_at)
                                .where(OutboxMessage.idem_key.like("nudge:%") | OutboxMessage.idem_key.like("window:%"))
                                )).all()
    tz = at("2026-01-01 00:00").tzinfo
    return [(key, (sent or nxt).astimezone(tz)) for key, nxt, sent in rows]


async def test_a_friday_push_is_answered_by_monday_and_nobody_hears_at_the_weekend(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-27 08:00")
    await bot.run("overdue_push", at("2026-11-27 09:00"))            # Friday
    [push] = await bot.inbox("rep1")
    assert "请在 11-30 09:00 前逐条回复跟进情况" in push                  # Monday, not Saturday
    assert (await _push(db, "rep1")).window_closes_at == at("2026-11-30 09:00")

    for when in ("2026-11-28 09:00", "2026-11-28 09:10", "2026-11-29 12:00"):     # the weekend
        assert "not a working day" in await bot.run("reply_window_close", at(when))
    assert "closed 0 window(s)" in await bot.run("reply_window_close", at("2026-11-30 08:50"))
    assert await bot.inbox("sup1") == [] and await _window_messages(db) == []

    # rep1 answers on Sunday (at home): it counts, the window was still open
    bot.clock.set(at("2026-11-29 20:00"))
    [ack] = await bot.say("rep1", "1 已联系王总，答应下周付\n2 联系不上\n3 对账中")
    assert "已过回复时限" not in ack
    summary = await bot.run("reply_window_close", at("2026-11-30 09:00"))
    assert summary == "closed 2 window(s), escalated 2 item(s) to 1 supervisor(s)"     # rep2's two
    assert await bot.inbox("sup1") == []
    [esc] = await bot.inbox("sup2")
    assert "**李娜**（11月27日清单，未回复2笔）" in esc
    assert {when.date() for _, when in await _window_messages(db)} == {date(2026, 11, 30)}


async def test_a_push_before_national_day_closes_after_it(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-09-30 08:00")
    await bot.run("overdue_push", at("2026-09-30 09:00"))            # Wednesday; 10/1-10/7 off
    [push] = await bot.inbox("rep1")
    assert "请在 10-08 09:00 前逐条回复跟进情况" in push
    for day in range(1, 8):
        assert "not a working day" in await bot.run("reply_window_close", at(f"2026-10-0{day} 09:00"))
    assert "closed 0 window(s)" in await bot.run("reply_window_close", at("2026-10-08 08:50"))
    assert "escalated 2 item(s) to 1 supervisor(s)" in await bot.run("reply_window_close", at("2026-10-08 09:00"))
    [esc] = await bot.inbox("sup1")
    assert "INV-A3" in esc and "INV-B2" in esc
    assert {when for _, when in await _window_messages(db)} == {at("2026-10-08 09:00")}

    # 10/10 is a Saturday worked in exchange (调休): its push closes on Monday 10/12
    await bot.run("overdue_push", at("2026-10-10 09:00"))
    assert (await _push(db, "rep1")).window_closes_at == at("2026-10-12 09:00")


async def test_a_window_that_closed_on_a_day_off_waits_for_a_working_morning(aiohttp_client, db):
    """A push whose window was set to close on Saturday (before the working-hours rule, or a
    push made by hand): it is closed on the next working day, and its messages go in working
    hours, not at midnight."""
    bot = await _bot(aiohttp_client, db, "2026-11-27 09:00")
    async with db.session() as s, s.begin():
        items = await collection.overdue_items(s, date(2026, 11, 27), Scope.everything())
        await collection.create_pushes(s, for_date=date(2026, 11, 27), now=at("2026-11-27 09:00"),
                                       closes_at=at("2026-11-28 09:00"),
                                       items={"rep1": [it for it in items if it.receivable.rep_id == "rep1"
                                                       and not it.disputed]})
    assert "not a working day" in await bot.run("reply_window_close", at("2026-11-28 09:00"))
    assert "escalated 3 item(s)" in await bot.run("reply_window_close", at("2026-11-30 00:00"))
    assert {when for _, when in await _window_messages(db)} == {at("2026-11-30 09:00")}


async def test_an_item_with_a_promise_not_yet_due_is_not_escalated(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-20 10:00")
    # last week rep1 recorded a promise for 12-31 on INV-A3 (item 1 of Monday's list)
    [ok] = await bot.say("rep1", "/promise INV-A3 12-31")
    assert "12月31日" in ok
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    [push] = await bot.inbox("rep1")
    assert "1. INV-A3 ¥30,000.00，逾期60天" in push
    bot.clock.set(at("2026-11-23 11:00"))
    await bot.say("rep1", "2 联系不上\n3 客户说下周对账")
    # item 1 needs no new answer: the promise (due 12-31) still holds
    assert "escalated 2 item(s) to 1 supervisor(s)" in await bot.run("reply_window_close", at("2026-11-24 09:00"))
    assert await bot.inbox("sup1") == []
    [esc] = await bot.inbox("sup2")
    assert "INV-A3" not in esc
    # nor does it count against rep1's reply timeliness: 2 answered of the 2 that needed one
    bot.clock.set(at("2026-11-24 10:00"))
    [kpi] = await bot.say("rep1", "/kpi")
    assert "- 回复及时率（近30天）：100.0%（2/2条按时回复）" in kpi.splitlines()


async def test_promise_followup_and_dispute_commands_answer_pushed_items(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-11-20 10:00")
    # a follow-up before the push does not answer the push
    await bot.say("rep2", "/followup INV-C1 已发对账单")
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 10:00"))
    for text in ("/promise INV-B2 12-15", "/promise INV-B2 12-20 5000", "/promise INV-B2 12-31"):  # item 3, thrice
        assert "INV-B2" in (await bot.say("rep1", text))[0]
    bot.clock.set(at("2026-11-23 10:30"))
    await bot.say("rep1", "/followup INV-A2 已电话联系财务，月底前安排")
    bot.clock.set(at("2026-11-23 11:00"))
    await bot.say("rep1", "/dispute INV-A3 客户称货物有质量问题")
    summary = await bot.run("reply_window_close", at("2026-11-24 09:00"))
    assert summary == "closed 2 window(s), escalated 2 item(s) to 1 supervisor(s)"
    assert await bot.inbox("sup1") == []                     # rep1 answered all three, by commands
    [esc] = await bot.inbox("sup2")
    assert "INV-C1" in esc and "INV-D1" in esc               # rep2's earlier /followup did not count

    # the answers count as replies in time (reply timeliness), at the first command's time
    async with db.session() as s:
        rows = dict((await s.execute(select(Receivable.invoice_no, PushItem.replied_at)
                                     .join(PushItem, PushItem.receivable_id == Receivable.id))).all())
    assert rows["INV-B2"] == at("2026-11-23 10:00")
    assert rows["INV-A2"] == at("2026-11-23 10:30")
    assert rows["INV-A3"] == at("2026-11-23 11:00")
    assert rows["INV-C1"] is None and rows["INV-D1"] is None


async def test_promise_grace_counts_working_days(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, "2026-09-28 10:00")
    # the day before 国庆: the grace day is the first working day after the holiday (10/8)
    await bot.say("rep1", "/promise INV-B2 09-30")
    for day in ("2026-10-01", "2026-10-05", "2026-10-08"):
        assert await bot.run("promise_watch", at(f"{day} 08:30")) == "0 promise(s) kept, 0 broken"
    assert await bot.run("promise_watch", at("2026-10-09 08:30")) == "0 promise(s) kept, 1 broken"

    bot.clock.set(at("2026-11-23 10:00"))
    await bot.say("rep1", "/promise INV-A3 12-04")          # Friday; 1 day of grace (the default)
    for day in ("2026-12-05", "2026-12-06", "2026-12-07"):   # Saturday, Sunday, Monday (the grace day)
        assert await bot.run("promise_watch", at(f"{day} 08:30")) == "0 promise(s) kept, 0 broken"
    assert await bot.run("promise_watch", at("2026-12-08 08:30")) == "0 promise(s) kept, 1 broken"
    assert any("INV-A3" in m for m in await bot.inbox("sup1"))
    async with db.session() as s:
        statuses = (await s.execute(select(Promise.promised_date, Promise.status).order_by(Promise.id))).all()
    assert statuses == [(date(2026, 9, 30), "broken"), (date(2026, 12, 4), "broken")]


def test_working_hours_count_only_working_days():
    cal = WorkCalendar()
    assert cal.add_working_hours(at("2026-11-27 09:00"), 24) == at("2026-11-30 09:00")    # Fri → Mon
    assert cal.add_working_hours(at("2026-11-27 17:00"), 8) == at("2026-11-30 01:00")     # 7 h Fri, 1 h Mon
    # ending exactly at Friday midnight would be Saturday 00:00: it runs on to Monday's start
    assert cal.add_working_hours(at("2026-11-27 00:00"), 24) == at("2026-11-30 00:00")
    assert cal.add_working_hours(at("2026-09-30 09:00"), 48) == at("2026-10-09 09:00")    # over 国庆
    assert cal.add_working_hours(at("2026-10-10 09:00"), 24) == at("2026-10-12 09:00")    # make-up Saturday
    assert cal.add_working_hours(at("2026-11-28 09:00"), 24) == at("2026-12-01 00:00")    # from a day off
