"""The nightly housekeeping forgets what the bot no longer needs — delivered messages, handled
events, digest lines already sent — and nothing it still needs: work still to do, a message a
customer letter still waits on, the company's record. A year of operation must not fill the disk."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from storage.models import AuditEntry, CustomerMessage, DigestItem, FollowUp, InboundEvent, OutboxMessage
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot


async def _count(db, model, *where) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def _outbox(db, key: str, status: str, when, **extra) -> None:
    async with db.session() as s, s.begin():
        s.add(OutboxMessage(idem_key=key, platform="local", target_kind="user", target="rep1", text="…",
                            status=status, next_attempt_at=when, created_at=when,
                            sent_at=when if status == "sent" else None, **extra))


async def test_a_night_months_later_forgets_the_delivered_and_keeps_the_rest(aiohttp_client, db):
    async with db.session() as s, s.begin():
        customers = await ledger_fixture.build(s, at("2026-07-31 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-08-03 08:00"), company={"fx_rates": ledger_fixture.FX},
                          retention={"outbox_days": 90, "events_days": 30})

    # August: a working morning — a push, questions answered, a promise, and a week later
    # the digest that says it was broken
    await bot.run("overdue_push", at("2026-08-03 09:00"))
    await bot.say("rep1", "1 已电话联系，8月5日付")
    await bot.say("rep1", "/customer C2")
    await bot.say("fin1", "/aging")
    await bot.run("promise_watch", at("2026-08-12 08:30"))
    old_messages = await _count(db, OutboxMessage)
    old_events = await _count(db, InboundEvent)
    old_lines = await _count(db, DigestItem, DigestItem.digest_key.is_not(None))
    assert old_messages and old_events and old_lines
    followups, audit = await _count(db, FollowUp), await _count(db, AuditEntry)
    assert audit

    # what is still to do, however old: a message not yet sent, an event not yet handled,
    # a digest line not yet carried, and a customer letter queued behind a split message
    may = at("2026-08-13 10:00")
    await _outbox(db, "old-pending", "pending", may)
    await _outbox(db, "letter:C1", "split", may)
    await _outbox(db, "letter:C1:1", "sent", may)
    async with db.session() as s, s.begin():
        s.add(InboundEvent(platform="local", event_key="old-unhandled", received_at=may, status="retry",
                           next_attempt_at=may))
        s.add(DigestItem(item_key="old-unsent", job="escalations", fire="2026-08-13", person_id="rep1", kind="d30",
                         line="…", created_at=may, not_before=may, day=may.date()))
        s.add(CustomerMessage(customer_id=customers["C1"].id, step="statement", kind="letter", channel="email",
                              outbox_key="letter:C1", status="queued", queued_at=may, send_at=may))

    # November: yesterday's traffic, which must stay
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    await bot.say("rep1", "/overdue", msg_id="nov-1")
    recent = await _count(db, OutboxMessage, OutboxMessage.created_at >= at("2026-11-01 00:00"))
    assert recent

    summary = await bot.run("housekeeping", at("2026-11-24 03:30"))
    assert f"forgot {old_messages} message(s)" in summary and f"{old_lines} digest line(s)" in summary

    assert await _count(db, OutboxMessage) == 3 + recent       # the pending one, the split letter and its part
    assert await _count(db, OutboxMessage, OutboxMessage.idem_key.in_(
        ["old-pending", "letter:C1", "letter:C1:1"])) == 3
    assert await _count(db, InboundEvent, InboundEvent.event_key == "old-unhandled") == 1
    assert await _count(db, InboundEvent, InboundEvent.received_at < at("2026-08-20 00:00")) == 1
    assert await _count(db, DigestItem) == 1
    # the company's record is untouched
    assert (await _count(db, FollowUp), await _count(db, AuditEntry)) == (followups, audit)
    # the bot still answers and still deduplicates what the platforms can still retry
    assert await bot.say("rep1", "/overdue", msg_id="nov-1") == []
    assert (await bot.say("rep1", "/overdue"))[0]

    # a second night finds nothing more to forget
    assert "forgot 0 message(s)" in await bot.run("housekeeping", at("2026-11-25 03:30"))


async def test_a_retention_shorter_than_the_keys_need_is_refused():
    import pytest

    from bot.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=r"\[retention\] outbox_days"):
        load_config(None, env={"ARBOT_RETENTION_OUTBOX_DAYS": "3"})
