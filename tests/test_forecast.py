"""The cash-in forecast and the payment profile as finance, a manager and a rep see them: the
CLI's JSON/CSV and its backtest, /forecast scoped like /aging, the habit in words on /customer;
and the backtest on a ledger whose customers keep known habits beats "paid on the due date"."""
from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from decimal import Decimal

from bench import habits
from domain import cash_forecast as cf
from storage import ledger
from storage.models import Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal


def test_backtest_on_known_habits_beats_paid_on_due_date_widely():
    today = date(2026, 11, 23)
    history, grades, _ = habits.ledger(120, 2_000, today, seed=5)
    origins = cf.origins_for(min(h.issue for h in history), today, 12, count=6)
    bt = cf.backtest(history, grades, origins, 12)
    assert len(bt.origins) == 6 and bt.actual > 0
    assert bt.wape < 0.5 * bt.naive_wape, (bt.wape, bt.naive_wape)


async def _bot_with_history(aiohttp_client, db):
    """The fixture company, and 顺发 (C3, rep2) with a year of invoices due on the 10th and paid on the 28th."""
    async with db.session() as s, s.begin():
        customers = await ledger_fixture.build(s, at("2026-11-20 10:00"))
        c3 = customers["C3"]
        for m in range(1, 11):
            due = date(2026, m, 10)
            s.add(Receivable(invoice_no=f"INV-H{m:02d}", customer_id=c3.id, rep_id="rep2", issue_date=due - timedelta(days=30),
                             due_date=due, amount=D("1000.00"), open_amount=D("1000.00"), currency="CNY"))
        await s.flush()
        for m in range(1, 11):
            await ledger.record_payment(s, customer=c3, amount=D("1000.00"), paid_on=date(2026, m, 28),
                                        reference=f"H-{m}", invoice_no=f"INV-H{m:02d}", actor="fin1", channel="test",
                                        now=at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX})


async def test_customer_card_says_the_habit_in_words(aiohttp_client, db):
    bot = await _bot_with_history(aiohttp_client, db)
    [card] = await bot.say("rep2", "/customer 顺发")
    assert "付款习惯：通常逾期18天付款，按期付款占0%，习惯月底付" in card
    [card] = await bot.say("rep1", "/customer 恒信")        # no paid invoice yet: borrows everyone's
    assert "付款习惯：新客户，参照全部客户：通常逾期18天付款" in card


async def test_forecast_in_chat_is_scoped_like_aging(aiohttp_client, db):
    bot = await _bot_with_history(aiohttp_client, db)

    def total(reply: str) -> Decimal:
        line = next(x for x in reply.splitlines() if x.startswith("预计回款 ¥"))
        return D(line.split("¥")[1].split("，")[0].replace(",", ""))

    [gm] = await bot.say("gm", "/forecast")
    [rep1] = await bot.say("rep1", "/回款预测")
    [rep2] = await bot.say("rep2", "/forecast")
    assert "**回款预测（11月23日起12周）**" in gm and gm.count("起：¥") == 12
    assert abs(total(rep1) + total(rep2) - total(gm)) <= D("0.05")
    # rep1's open, not disputed: 10,000 + 15,000 + 30,000 + 12,345.67; not all of it expected in 12 weeks
    assert 0 < total(rep1) <= D("67345.67")
    # C3's open INV-C1 (5,000, due 10-24, 30 days late) is later than C3 ever paid: little of it expected
    [help_] = await bot.say("rep1", "/help")
    assert "`/forecast` 未来12周回款预测" in help_ and "`/commission` 本月回款提成" in help_
    [huanan] = await bot.say("gm", "/forecast 华南")
    assert "回款预测 · 华南" in huanan and total(huanan) == total(rep2)


def test_cli_forecast_json_csv_and_backtest(tmp_path, monkeypatch, capsys):
    """``arbot report forecast`` (the CLI's own main, in this process: a process start costs more
    than the report)."""
    from bot.cli import main
    from storage.db import Database

    async def build(url):
        db = Database(url)
        await db.migrate()
        async with db.session() as s, s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
        await db.close()

    url = f"sqlite:///{tmp_path}/a.db"
    asyncio.run(build(url))
    monkeypatch.setenv("ARBOT_DATABASE_URL", url)
    monkeypatch.delenv("ARBOT_CONFIG", raising=False)

    def arbot(*args: str) -> tuple[int, str, str]:
        code = main(["report", "forecast", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = arbot("--as-of", "2026-11-23", "--weeks", "12", "--format", "json")
    assert code == 0, (code, out, _)
    data = json.loads(out)
    assert code == 0 and data["as_of"] == "2026-11-23" and len(data["weeks"]) == 12
    starts = [date.fromisoformat(w["start"]) for w in data["weeks"]]
    assert starts[0] == date(2026, 11, 23) and all((b - a).days == 7 for a, b in zip(starts, starts[1:]))
    assert all(D(w["low"]) <= D(w["amount"]) <= D(w["high"]) for w in data["weeks"])
    # rep1's and rep2's open, not disputed, in yuan; the US$ invoice has no rate here
    assert 0 < sum(D(w["amount"]) for w in data["weeks"]) <= D("72345.67")
    assert data["unconverted"] == {"USD": "1000.00"}
    code, out, _ = arbot("--as-of", "2026-11-23", "--weeks", "4", "--format", "csv")
    rows = out.strip().splitlines()
    assert rows[0].lstrip("\ufeff") == "start,amount,low,high" and len(rows) == 5
    code, out, _ = arbot("--as-of", "2026-11-23", "--backtest")
    assert code == 0 and "预测 WAPE" in out and "朴素 WAPE" in out
    # a history too short to replay: a clear sentence, no traceback
    code, _, err = arbot("--as-of", "2026-06-01", "--backtest")
    assert code == 1 and "历史太短" in err
    code, _, err = arbot("--weeks", "0")
    assert code == 2 and "--weeks" in err


async def test_dashboard_shows_the_twelve_weeks_and_a_promise_lands_in_its_week(aiohttp_client, db, tmp_path):
    from tests.test_dashboard import _bot as dashboard_bot
    from tests.test_dashboard import _link, _login
    bot = await dashboard_bot(aiohttp_client, db, tmp_path)       # INV-A3 (30,000) promised for 12月4日
    assert await _login(bot, await _link(bot, "gm")) == 303
    html = await (await bot.client.get("/dashboard")).text()
    section = html.split('id="forecast"')[1].split("</section>")[0]
    rows = section.split("<tr>")[1:]
    assert len(rows) == 12 and "2026-11-23起" in rows[0] and "2026-12-07起" in rows[2]
    # the week of 4 December holds the promise's 70 % (a customer with no kept or broken promise yet)
    week2 = D(rows[1].split('class="num">¥')[1].split("<")[0].replace(",", ""))
    assert week2 >= D("21000.00")
