"""Issue #15, "digests instead of floods" and "a question is answered first", end to end: a real
SQLite file, the real bot app with WeCom enabled, real HTTP on loopback to the fake WeCom API,
which enforces WeCom's 30 messages per member per minute (and silently drops the excess). Time:
the bot's fixed clock for business time, one hand-moved ticker for both the fake's clock and the
sender's rate limiter — assertions read the fake's arrival order and timestamps, never wall time."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select, update

from bot import outbox
from bot.core.messages import OutgoingMessage
from bot.jobs import ledger_pass
from bot.jobs.scheduler import run_job
from storage import collection
from storage.models import Contact, Customer, DigestItem, LadderStep, OutboxMessage, Person, Receivable
from tests.conftest import at
from tests.fakes.wecom_server import FakeWeCom, build_callback
from tests.harness import Bot
from tests.ledger_fixture import accounts
from tests.test_wecom_channel import AGENT, SECRET, crypto, post_callback, text_xml, wecom_config

# the digests are the point here, not the letters' pages (read back in test_letters.py)
pytestmark = pytest.mark.usefixtures("placeholder_pdfs")
TODAY = date(2026, 12, 1)                       # a Tuesday
MORNING = [("promise_watch", "08:30"), ("overdue_push", "09:00"), ("customer_reminders", "09:10"), ("escalations", "09:30"),
           ("credit_watch", "09:40"), ("statute_watch", "09:50")]
PEOPLE = [("sup1", "王主管", "supervisor", None), ("rep1", "张伟", "rep", "sup1"), ("fin1", "钱会计", "finance", None),
          ("legal1", "孙律师", "legal", None)]
AGES = (8, 16, 31, 61, 91)                      # each invoice's current step: d7, d15, d30, d60, d90
N_CUSTOMERS = 8                                 # × 5 invoices = 40 overdue invoices, all rep1's


class Ticker:
    """Seconds, moved by hand: the fake's clock and the limiter's monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _ledger(db) -> None:
    async with db.session() as s, s.begin():
        for pid, name, role, sup in PEOPLE:
            s.add(Person(id=pid, name=name, role=role, supervisor_id=sup, accounts=accounts(wecom=f"wx_{pid}")))
            await s.flush()
        for ci in range(1, N_CUSTOMERS + 1):
            # the customer name is user-written: a markdown-looking one must reach people inert
            name = f"客户{ci}**机电**" if ci == 1 else f"客户{ci}"
            c = Customer(code=f"K{ci}", name=name, grade="B", credit_limit=D("0"), rep_id="rep1",
                         late_fee_rate="standard")      # the contracts have the standard late-fee clause
            s.add(c)
            await s.flush()
            s.add(Contact(customer_id=c.id, name=f"联系人{ci}", email=f"ap{ci}@example.com", channel="email"))
            cur = "USD" if ci > 6 else "CNY"      # never added to yuan
            for days in AGES:
                due = TODAY - timedelta(days=days)
                s.add(Receivable(invoice_no=f"INV-{ci}-{days:03d}", contract_no=f"HT-{ci}-{days}", customer_id=c.id,
                                 rep_id="rep1", issue_date=due - timedelta(days=30), due_date=due,
                                 amount=D("1000.50") * ci, open_amount=D("1000.50") * ci, currency=cur,
                                 created_at=at("2026-06-01 10:00")))
        await s.flush()
        # one promise that ran out last week: broken this morning (rep and supervisor hear of it)
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-1-008"))).scalar_one()
        await collection.make_promise(s, receivable=r, promised_date=date(2026, 11, 24), amount=None,
                                      person_id="rep1", at=at("2026-11-20 10:00"), channel="test")


async def _bot(aiohttp_client, db, fake, **sections) -> Bot:
    await _ledger(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-12-01 08:00"), wecom=wecom_config(fake), **sections)
    return bot


async def _morning(bot: Bot, claim: bool = True) -> list[str]:
    out = []
    for job, hhmm in MORNING:
        out.append(await bot.run(job, at(f"2026-12-01 {hhmm}"), claim=claim))
    await bot.state.sender.drain()
    return out


def _per_person(fake) -> Counter:
    return Counter(u for r in fake.received if r.kind == "app" for u in r.touser)


async def _items_per_person(db) -> Counter:
    async with db.session() as s:
        return Counter((await s.execute(select(DigestItem.person_id))).scalars())


async def _digest_keys(db) -> dict[str, set[str]]:
    """person → the digests (keys without the part) queued for them."""
    async with db.session() as s:
        keys = (await s.execute(select(OutboxMessage.idem_key).where(OutboxMessage.idem_key.like("digest:%")))).scalars()
    out: dict[str, set[str]] = {}
    for k in keys:
        out.setdefault(k.split(":")[3], set()).add(k.rsplit(":", 1)[0])
    return out


async def test_a_morning_with_40_overdue_invoices_gives_each_person_one_digest(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        bot = await _bot(aiohttp_client, db, fake)
        summaries = await _morning(bot)
        assert summaries[3].startswith("40 ladder step(s) fired")
        items = await _items_per_person(db)
        # what the old jobs queued: a message per invoice, step and person (plus a letter draft each):
        # the ladder's steps, the broken promise, and the credit watch's key accounts (5 invoices
        # overdue in a row make each customer one, for the rep and finance)
        assert items == {"rep1": 8 + 1 + 8, "sup1": 8 + 8 + 1, "fin1": 8 + 8, "legal1": 8 + 8}
        got = _per_person(fake)
        drafts = {"fin1": N_CUSTOMERS, "legal1": N_CUSTOMERS}     # a draft per customer, not per invoice
        async with db.session() as s:
            push = len((await s.execute(select(OutboxMessage.id).where(OutboxMessage.idem_key.like("push:%")))).all())
        # each person: one digest per job that had something for them — the ladder's, the broken
        # promise's (rep, supervisor), the credit watch's (rep, finance) — and none dropped by WeCom
        digests = await _digest_keys(db)
        assert {p: len(d) for p, d in digests.items()} == {"rep1": 3, "sup1": 2, "fin1": 2, "legal1": 1}
        assert not fake.dropped
        # a digest is sized for WeCom (2,048 bytes of markdown) and split between customers: the
        # supervisor's and legal's ladder digests (16 lines) are two parts each; the rep also has
        # the morning push: its 20 items of highest priority ([collection] push_max_items) in one
        # message, where the old push listed all 40 in two parts
        assert push == 1
        assert got == {"wx_rep1": push + 3, "wx_sup1": 2 + 1, "wx_fin1": 2 + 8, "wx_legal1": 2 + 8}
        for r in fake.received:
            assert len(r.payload["markdown"]["content"].encode()) <= 2048
        # what the old jobs sent: a message per item, and a letter draft per invoice
        before = {p: n + (8 if p in drafts else 0) + (2 if p == "rep1" else 0) for p, n in items.items()}
        assert before == {"rep1": 19, "sup1": 17, "fin1": 24, "legal1": 24}
        print("messages per person, before → after:", {p: (before[p], got[f"wx_{p}"]) for p in items})

        sup = "\n".join(r.payload["markdown"]["content"] for r in fake.messages_to("wx_sup1"))
        # grouped by customer and step, totals per currency (US$ never added to yuan)
        assert "**逾期升级汇总（12月1日" in sup
        assert "共16条，涉及未付¥42,021.00 + US$30,015.00\n> 逾期第7天（业务员、销售主管）：8条\n> 逾期第30天" in sup
        assert "**客户7**（2条，US$14,007.00）" in sup            # (7 × 1,000.50) × 2 invoices, in dollars
        assert "- 逾期第7天 INV-7-008（合同HT-7-8）US$7,003.50，逾期8天" in sup
        assert "**客户1＊＊机电＊＊**" in sup and "**客户1**机电" not in sup     # escaped, inert
        assert "**还款承诺汇总（12月1日）**" in sup and "INV-1-008：承诺11月24日付款，至今未到账" in sup
        # the audit trail and the ladder's records stay per invoice
        async with db.session() as s:
            assert len((await s.execute(select(LadderStep).where(LadderStep.status == "fired"))).all()) == 40

        # the same fire again (a re-run by hand, a second instance): nothing is sent twice
        n = len(fake.received)
        await _morning(bot, claim=False)
        assert len(fake.received) == n and await _items_per_person(db) == items


async def test_a_fire_stopped_half_way_sends_one_digest_when_resumed(aiohttp_client, db, monkeypatch):
    """The ladder commits in steps. Stopped (a shutdown) after its first write step, the fire is
    run again: the steps written before the stop are not decided again, their items are still
    unsent, and the resumed run sends one digest per person with every item — none lost, none twice."""
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        bot = await _bot(aiohttp_client, db, fake)
        monkeypatch.setattr(ledger_pass, "WRITE_ROWS", 12)       # several write steps for 40 invoices
        stop = asyncio.Event()
        real_write = ledger_pass.LedgerPass.write

        async def write_then_stop(self):
            await real_write(self)          # commits, then the checkpoint sees the stop
            stop.set()

        monkeypatch.setattr(ledger_pass.LedgerPass, "write", write_then_stop)
        bot.clock.set(at("2026-12-01 09:30"))
        try:
            await run_job(bot.services, "escalations", bot.clock.now(), stopping=stop)
        except Exception as e:              # JobInterrupted: the fire is left "stopped"
            assert type(e).__name__ == "JobInterrupted"
        else:
            raise AssertionError("the job should have stopped at its first write step")
        async with db.session() as s:
            first = (await s.execute(select(DigestItem))).scalars().all()
        assert first and all(i.digest_key is None for i in first) and len(first) < 40
        monkeypatch.setattr(ledger_pass.LedgerPass, "write", real_write)
        summary = await bot.run("escalations", at("2026-12-01 09:30"))     # takes the stopped fire over
        assert summary.endswith("4 digest(s)")                              # rep1, sup1, fin1, legal1
        digests = await _digest_keys(db)
        assert {p: len(d) for p, d in digests.items()} == {"rep1": 1, "sup1": 1, "fin1": 1, "legal1": 1}
        async with db.session() as s:
            items = (await s.execute(select(DigestItem))).scalars().all()
            steps = (await s.execute(select(LadderStep))).scalars().all()
        assert len(steps) == len({(x.receivable_id, x.step) for x in steps})
        assert Counter(i.person_id for i in items) == {"rep1": 8, "sup1": 16, "fin1": 8, "legal1": 16}
        assert {i.digest_key.split(":")[3] for i in items} == {"rep1", "sup1", "fin1", "legal1"}
        assert all(i.digest_key in {k for ks in digests.values() for k in ks} for i in items)
        # everything the digests list reached its person, once
        await bot.state.sender.drain()
        for i in items:
            text = "\n".join(r.payload["markdown"]["content"] for r in fake.messages_to(f"wx_{i.person_id}"))
            assert text.count(i.line) == 1, i.item_key
        # and a third run of the fire sends nothing
        n = len(fake.received)
        await bot.run("escalations", at("2026-12-01 11:00"), claim=False)
        assert len(fake.received) == n


async def test_the_cap_per_person_per_morning_counts_the_rest_in_one_line(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        bot = await _bot(aiohttp_client, db, fake, collection={"digest_max_items": 10})
        await _morning(bot)
        sup = "\n".join(r.payload["markdown"]["content"] for r in fake.messages_to("wx_sup1"))
        # the broken promise's digest (08:30) lists its line; the ladder's (09:30) 9 of the
        # supervisor's 16, as the cap is per morning, and counts the rest in one line
        assert "另有7条未列出（今天的提醒已达上限），发送 /通知 查看全部。" in sup
        async with db.session() as s:
            listed = Counter((await s.execute(select(DigestItem.person_id).where(DigestItem.listed))).scalars())
        assert listed == {"sup1": 10, "legal1": 10, "fin1": 10, "rep1": 10}
        # /通知 lists the rest: the supervisor's 7 lines the digests did not show (the last customers)
        [rest] = await bot.say("sup1", "/通知")
        assert rest.startswith("**12月1日的其余提醒（7条）**")
        assert rest.count("\n- ") == 7 and "INV-8-031" in rest and "INV-1-031" not in rest


async def test_a_shutdown_during_the_letters_stops_at_the_next_letter(aiohttp_client, db, monkeypatch):
    """SIGTERM while the ladder renders its letters (each PDF is about a second of font work): the
    job stops before the next letter, not after all of them — Docker kills at 10 s — and writes
    nothing of that step; the next start decides it again and every letter goes once."""
    from bot import documents
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        bot = await _bot(aiohttp_client, db, fake)
        stop = asyncio.Event()
        made = []
        placeholder = documents.pdf

        def pdf_then_sigterm(config, letter):
            made.append((letter.data["customer"].code, letter.kind))
            stop.set()                       # the signal arrives while the first letter is made
            return placeholder(config, letter)

        monkeypatch.setattr(documents, "pdf", pdf_then_sigterm)
        bot.clock.set(at("2026-12-01 09:30"))
        with pytest.raises(Exception) as stopped:
            await run_job(bot.services, "escalations", bot.clock.now(), stopping=stop)
        assert type(stopped.value).__name__ == "JobInterrupted"
        assert len(made) == 1                # not one letter per customer before stopping
        async with db.session() as s:
            assert (await s.execute(select(LadderStep))).first() is None          # the step was not written
            assert (await s.execute(select(OutboxMessage).where(OutboxMessage.platform == "email"))).first() is None
        made.clear()
        await bot.run("escalations", at("2026-12-01 09:30"))                       # the next start
        async with db.session() as s:
            letters = (await s.execute(select(OutboxMessage.idem_key).where(OutboxMessage.platform == "email"))).all()
        # each customer's letter once, and no PDF made for the staff's drafts (账款确认函, 律师函底稿):
        # they are made when their links are opened
        assert len(letters) == len(set(letters)) == N_CUSTOMERS
        assert {kind for _, kind in made} == {"reminder"}       # the letters that go to customers only


async def test_a_question_is_answered_first_while_75_notifications_are_queued(aiohttp_client, db):
    """The flood of the issue: 75 notifications queued for one finance user, then the user asks a
    question. The answer is the first message to arrive, and a second question asked once the
    notifications have used their share of the minute is still answered at once: the limiter keeps
    room for answers (notifications get 25 of the 30 a minute). Nothing is dropped by WeCom.

    The question is /overdue: finance's covers every customer, several KB, over WeCom's 2,048-byte
    markdown limit, so it goes in parts — and the parts of an answer are answers too (they keep the
    row's priority)."""
    ticker = Ticker()
    async with FakeWeCom(apps={AGENT: SECRET}, clock=ticker) as fake:
        bot = await _bot(aiohttp_client, db, fake)
        sender = bot.state.sender
        sender.limiter.monotonic = ticker
        async with db.session() as s, s.begin():
            # full company names: finance's /overdue is then longer than one WeCom message
            await s.execute(update(Customer).where(Customer.code != "K1")
                            .values(name=Customer.name + "精密机械制造有限公司"))
            for i in range(75):
                await outbox.enqueue(s, OutgoingMessage(platform="wecom", target_kind="user", target="wx_fin1",
                                                        text=f"通知 {i:02d}", format="markdown"),
                                     f"flood:{i}", bot.clock.now())
        # the question arrives before the sender has worked the backlog off
        asked_at = ticker.t
        query, body = build_callback(crypto(fake), text_xml(fake, "wx_fin1", "/overdue", 990001), int(time.time()), "q1")
        assert await post_callback(bot, query, body) == (200, "")
        await bot.state.inbound.wait_idle()
        for _ in range(4):                        # the split, then its parts one after another
            await sender.drain()
        to_fin = fake.messages_to("wx_fin1")
        # the answer, first and whole (its parts in a row)
        first = to_fin[0].payload["markdown"]["content"]
        n = int(to_fin[1].payload["markdown"]["content"].split("第 2/", 1)[1].split(" ", 1)[0])
        heads = [m.payload["markdown"]["content"] for m in to_fin[1:n]]
        assert "**逾期账款（12月1日）：40笔" in first and n >= 2 and [h[:len(f"**（续）** 第 {i}/{n}")] for i, h in enumerate(heads, start=2)] == \
            [f"**（续）** 第 {i}/{n}" for i in range(2, n + 1)]
        assert to_fin[n - 1].at - asked_at <= 5
        # then notifications, until the minute holds 25 sends (the answer counts: WeCom counts it)
        assert len(to_fin) == 25

        # 20 s later (the fake's clock) the user asks again: the minute has 25 sends, the 5 kept
        # for answers are free, and the answer goes at once — ahead of the 51 still queued
        ticker.t += 20
        bot.clock.advance(seconds=20)
        asked_at = ticker.t
        query, body = build_callback(crypto(fake), text_xml(fake, "wx_fin1", "/kpi", 990002), int(time.time()), "q2")
        assert await post_callback(bot, query, body) == (200, "")
        await bot.state.inbound.wait_idle()
        await sender.drain()
        to_fin = fake.messages_to("wx_fin1")
        # (another question: WeCom's duplicate check would swallow the same answer twice)
        assert len(to_fin) == 26 and "回款考核" in to_fin[-1].payload["markdown"]["content"]
        assert to_fin[-1].at - asked_at <= 5

        # the notifications follow, 25 a minute, none dropped by WeCom's 30 a minute
        for _ in range(6):
            ticker.t += 61
            bot.clock.advance(seconds=61)
            await sender.drain()
        notes = [r for r in fake.messages_to("wx_fin1") if r.payload["markdown"]["content"].startswith("通知")]
        assert len(notes) == 75 and not fake.dropped
        assert [r.payload["markdown"]["content"] for r in notes] == [f"通知 {i:02d}" for i in range(75)]
        times = [r.at for r in fake.messages_to("wx_fin1")]
        for i, t in enumerate(times):           # never more than 30 in any 60 s (the fake's clock)
            assert sum(1 for u in times[i:] if u - t < 60) <= 30
