"""A customer's name comes from an ERP export or a finance clerk's typing and is shown to reps,
supervisors and managers in markdown: whatever it holds must be shown, never obeyed — no bold, no
link that looks like ours, no @all."""
from __future__ import annotations

from sqlalchemy import update

from storage.models import Customer
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

NAME = "恒信**[点此登记回款](http://evil.example)**<@all>#"
INERT = "恒信＊＊［点此登记回款］(http://evil.example)＊＊＜@all＞＃"


async def test_a_customer_name_with_markdown_is_shown_inert_everywhere(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        await s.execute(update(Customer).where(Customer.code == "C1").values(name=NAME))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX})
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    shown = {
        "push": (await bot.inbox("rep1"))[0],
        "overdue": (await bot.say("rep1", "/overdue"))[0],
        "customer": (await bot.say("rep1", "/customer C1"))[0],
        "aging": (await bot.say("gm", "/aging"))[0],
        "paid": (await bot.say("fin1", "/paid INV-A3 1000"))[0],
    }
    bot.clock.set(at("2026-11-24 09:30"))
    await bot.run("reply_window_close", at("2026-11-24 09:30"))
    shown["escalation"] = (await bot.inbox("sup1"))[-1]
    for where, text in shown.items():
        assert INERT in text, where
        assert "**[" not in text and "](http" not in text and "<@all>" not in text, where
