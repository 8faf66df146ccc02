"""Every message reaches its person (issue #15): what the bot sends is fitted to the platform.

WeCom refuses app markdown over 2,048 bytes and robot markdown over 4,096 (40058) and cuts app
text past 2,048 bytes; DingTalk refuses a body over 20,000 bytes (460101). The fakes enforce
those limits, so a message that does not fit is seen here exactly as a person would see it: not
at all. The bot splits a long answer at line boundaries into parts marked （续）, each its own
outbox row (``key:1`` …) so a retry sends only the part that failed.
"""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from sqlalchemy import select

from bot import outbox
from bot.core.channel import SizeLimit
from bot.core.messages import OutgoingMessage
from bot.outbox.sizes import MAX_PARTS, split_text
from storage.demo import load_demo
from storage.models import Customer, OutboxMessage, Person, Receivable
from tests.fakes.dingtalk_server import FakeDingTalk
from tests.fakes.wecom_server import FakeWeCom, build_callback, build_text_message_xml
from tests.harness import Bot
from bot.channels.wecom_crypto import WeComCrypto

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 18, 10, 30, tzinfo=TZ)
AGENT, SECRET, TOKEN = 1000002, "app-secret-sizes", "cbTokenSizes"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CONTINUED = "（续）"


# -- the splitting itself --------------------------------------------------------------------------

def lines(n: int) -> str:
    return "\n".join(f"{i}. 上海恒信贸易有限公司 FP2026{i:05d} 未付 ¥12,345.00 逾期{i}天" for i in range(1, n + 1))


@pytest.mark.parametrize("limit", [SizeLimit(bytes=2048), SizeLimit(bytes=4096), SizeLimit(chars=500)])
def test_long_text_is_split_at_lines_every_part_fits_and_nothing_is_lost(limit):
    text = lines(60)
    parts = split_text(text, limit, "markdown")
    assert len(parts) > 1 and all(limit.fits(p) for p in parts)
    assert all(p.startswith("**（续）**") for p in parts[1:]) and CONTINUED not in parts[0]
    # every line arrives whole, once, in order
    got = [ln for p in parts for ln in p.split("\n") if not ln.startswith("**（续）**")]
    assert got == text.split("\n")


def test_one_overlong_line_is_cut_between_characters_never_inside_one():
    text = "逾期" * 1500                      # one line of 9,000 bytes, no line break to split at
    parts = split_text(text, SizeLimit(bytes=2048), "text")
    assert all(len(p.encode("utf-8")) <= 2048 for p in parts)
    assert "".join(p.split("\n", 1)[1] if i else p for i, p in enumerate(parts)) == text
    for p in parts:
        p.encode("utf-8").decode("utf-8")    # each part is whole characters


def test_a_message_too_long_for_a_chat_is_summarised_with_a_pointer_to_the_rest():
    parts = split_text(lines(2000), SizeLimit(bytes=2048), "markdown")
    assert len(parts) == MAX_PARTS
    assert "行未发出" in parts[-1] and "/dashboard" in parts[-1]
    assert all(len(p.encode()) <= 2048 for p in parts)


# -- the demo company over the real platforms (fakes on loopback) ----------------------------------

async def load(db) -> dict:
    async with db.session() as s, s.begin():
        await load_demo(s, today=NOW.date(), now=NOW, platforms=("wecom", "dingtalk"))
    async with db.session() as s:
        rep = (await s.execute(select(Person.id).where(Person.role == "rep").order_by(Person.id))).scalars().first()
        inv, name = (await s.execute(
            select(Receivable.invoice_no, Customer.name).join(Customer, Customer.id == Receivable.customer_id)
            .where(Receivable.status == "open", Customer.rep_id == rep)
            .order_by(Receivable.open_amount.desc()).limit(1))).one()
    return {"inv": inv, "customer": name, "rep": rep}


def commands(d: dict) -> list[tuple[str, str]]:
    """(person id, text): each command as the people it is for would send it."""
    inv, cust = d["inv"], d["customer"]
    return [("gm", "/help"), ("gm", "/overdue"), ("director", "/overdue 团队"), ("gm", "/aging"),
            ("gm", f"/customer {cust}"), ("gm", "/kpi"), ("gm", "/dso"), ("fin1", "/claims"),
            ("gm", "/dashboard"), (d["rep"], "/overdue"), (d["rep"], f"/followup {inv} 已电话联系，月底付款"),
            (d["rep"], f"/promise {inv} 3月31日 5万"), (d["rep"], f"/dispute {inv} 发票抬头错误"),
            (d["rep"], f"/resolve {inv}"), ("fin1", f"/paid {inv} 100"), ("fin1", "确认"),
            (d["rep"], f"/writeoff {inv} 客户破产"), ("gm", "/approve 1"), ("gm", "/reject 1"),
            ("fin1", "/reverse 1 银行退票"), ("fin1", "/help")]


async def outbox_rows(db) -> list[OutboxMessage]:
    async with db.session() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def settle(bot: Bot) -> None:
    for _ in range(3):
        await bot.state.inbound.wait_idle()
        await bot.state.sender.drain()


async def assert_healthy(bot: Bot, platform: str) -> None:
    resp = await bot.client.get("/healthz")
    health = await resp.json()
    assert health["status"] == "ok", health
    assert health["channels"][platform]["status"] != "degraded"


async def test_every_command_answers_within_wecom_limits(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        d = await load(db)
        bot = await Bot.start(aiohttp_client, db, NOW, wecom=dict(
            enabled=True, corp_id=fake.corp_id, agent_id=str(AGENT), secret=SECRET, token=TOKEN,
            encoding_aes_key=AES_KEY, api_base=fake.url))
        crypto = WeComCrypto(TOKEN, AES_KEY, fake.corp_id)
        for i, (person, text) in enumerate(commands(d)):
            xml = build_text_message_xml(fake.corp_id, f"wecom_{person}", text, msg_id=9000 + i, agent_id=AGENT)
            query, body = build_callback(crypto, xml, int(time.time()), f"n{i}")
            resp = await bot.client.post("/wecom/callback", params=query, data=body.encode(),
                                         headers={"Content-Type": "text/xml"})
            assert resp.status == 200
            await settle(bot)
        rows = await outbox_rows(db)
        assert not [r.idem_key for r in rows if r.status in ("dead", "pending")]
        assert fake.refused == [] and fake.truncated == []
        contents = [(r.payload["msgtype"], r.payload[r.payload["msgtype"]].get("content", ""))
                    for r in fake.received if r.kind == "app"]
        assert all(len(c.encode()) <= 2048 for kind, c in contents if kind in ("text", "markdown"))
        # the long answers (the GM's overdue list, the help) came in parts, marked and in order
        split = [r for r in rows if r.status == "split"]
        assert split, "no answer was long enough to need parts: the test proves nothing"
        for parent in split:
            parts = [r for r in rows if r.idem_key.startswith(parent.idem_key + ":")]
            assert [r.idem_key for r in parts] == [f"{parent.idem_key}:{n}" for n in range(1, len(parts) + 1)]
            assert all(r.status == "sent" for r in parts) and CONTINUED in parts[1].text
        to_gm = [c for kind, c in contents if kind == "markdown"]
        firsts = [i for i, c in enumerate(to_gm) if "逾期" in c and CONTINUED not in c]
        assert any(CONTINUED in c for c in to_gm) and firsts
        await assert_healthy(bot, "wecom")


async def test_every_command_answers_within_dingtalk_limits(aiohttp_client, db):
    async with FakeDingTalk() as fake:
        d = await load(db)
        bot = await Bot.start(aiohttp_client, db, NOW, dingtalk={
            "enabled": True, "mode": "http", "app_key": fake.app_key, "app_secret": fake.app_secret,
            "robot_code": fake.robot_code, "api_base": fake.url, "oapi_base": fake.url})
        fake.clock = lambda: bot.clock.now().timestamp()
        for i, (person, text) in enumerate(commands(d)):
            body = fake.robot_message(text, staff_id=f"dingtalk_{person}", msg_id=f"m{i}")
            headers, raw = fake.signed_callback(body)
            assert (await bot.client.post("/dingtalk/callback", data=raw, headers=headers)).status == 200
            await settle(bot)
        rows = await outbox_rows(db)
        assert not [r.idem_key for r in rows if r.status in ("dead", "pending")]
        assert fake.refused == []
        assert len(fake.messages()) >= len(commands(d))
        await assert_healthy(bot, "dingtalk")


# -- outbox rows too big, on every route ---------------------------------------------------------

async def test_a_long_report_to_a_dingtalk_group_robot_and_session_arrives_in_parts(aiohttp_client, db):
    async with FakeDingTalk() as fake:
        bot = await Bot.start(aiohttp_client, db, NOW, dingtalk={
            "enabled": True, "mode": "http", "app_key": fake.app_key, "app_secret": fake.app_secret,
            "robot_code": fake.robot_code, "api_base": fake.url, "oapi_base": fake.url,
            "robot_webhooks": {"sales": {"url": fake.add_robot("rtok")}}})
        fake.clock = lambda: bot.clock.now().timestamp()
        url, expires = fake.session_webhook()
        report = lines(700)                              # ~50 KB: the body limit is 20,000 bytes
        async with db.session() as s, s.begin():
            for kind, target, extra in (("robot", "sales", {}), ("session", url, {"expires_ms": expires}),
                                        ("user", "dingtalk_gm", {}), ("group", "cidGroup", {})):
                await outbox.enqueue(s, OutgoingMessage("dingtalk", kind, target, report, "markdown",
                                                        title="周报", extra=extra), f"report:{kind}", bot.clock.now())
        await settle(bot)
        assert fake.refused == []
        for kind in ("robot", "session", "batchSend", "groupSend"):
            texts = [(r.payload.get("markdown") or {}).get("text") or (r.msg_param or {}).get("text")
                     for r in fake.messages(kind)]
            assert len(texts) > 2 and CONTINUED not in texts[0] and all(CONTINUED in t for t in texts[1:])
            got = [ln for t in texts for ln in t.split("\n") if CONTINUED not in ln]
            assert got == report.split("\n")
        assert not [r for r in await outbox_rows(db) if r.status in ("dead", "pending")]


async def test_a_part_that_fails_is_retried_alone_and_the_parts_still_arrive_in_order(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        bot = await Bot.start(aiohttp_client, db, NOW, wecom=dict(
            enabled=True, corp_id=fake.corp_id, agent_id=str(AGENT), secret=SECRET, token=TOKEN,
            encoding_aes_key=AES_KEY, api_base=fake.url))
        text = lines(60)
        async with db.session() as s, s.begin():
            await outbox.enqueue(s, OutgoingMessage("wecom", "user", "wecom_gm", text, "markdown"), "long:1",
                                 bot.clock.now())
        await bot.state.sender.drain()                   # the split, and the parts sent
        first = [r.payload["markdown"]["content"] for r in fake.messages_to("wecom_gm")]
        n = len(first)
        assert n > 1
        fake.received.clear()
        # the same rows again: nothing is sent twice
        await bot.state.sender.drain()
        assert fake.received == []
        # a fresh long message whose second part fails once
        async with db.session() as s, s.begin():
            await outbox.enqueue(s, OutgoingMessage("wecom", "user", "wecom_fin1", text, "markdown"), "long:2",
                                 bot.clock.now())
        sent = 0
        orig = fake.apply_fault

        async def fail_second(request, endpoint):
            nonlocal sent
            if endpoint == "message/send":
                sent += 1
                if sent == 2:
                    return web.Response(status=502, text="bad gateway")
            return await orig(request, endpoint)

        fake.apply_fault = fail_second
        await bot.state.sender.drain()
        got = [r.payload["markdown"]["content"] for r in fake.messages_to("wecom_fin1")]
        assert len(got) == 1                               # part 1; part 2 failed, 3.. wait for it
        bot.clock.set(bot.clock.now().replace(minute=45))
        await bot.state.sender.drain()
        got = [r.payload["markdown"]["content"] for r in fake.messages_to("wecom_fin1")]
        assert len(got) == n and all(CONTINUED in g for g in got[1:])
        assert [g.split("\n", 1)[0] for g in got[1:]] == [f"**（续）** 第 {i}/{n} 部分" for i in range(2, n + 1)]


async def test_a_customer_message_sent_in_parts_counts_as_sent_once_every_part_is(aiohttp_client, db):
    # a statement to a customer's group robot, too long for one message: the customer message is
    # "sent" when its last part is, and a cancelled one takes its unsent parts with it
    from storage import reminders as rem
    from storage.models import CustomerMessage
    from tests import ledger_fixture
    async with FakeDingTalk() as fake:
        bot = await Bot.start(aiohttp_client, db, NOW, dingtalk={
            "enabled": True, "mode": "http", "app_key": fake.app_key, "app_secret": fake.app_secret,
            "robot_code": fake.robot_code, "api_base": fake.url, "oapi_base": fake.url,
            "robot_webhooks": {"buyer": {"url": fake.add_robot("btok")}}})
        async with db.session() as s, s.begin():
            await ledger_fixture.build(s, NOW)
            customer = (await s.execute(select(Customer).limit(1))).scalar_one()
            for key in ("cm:sent", "cm:cancel"):
                s.add(CustomerMessage(customer_id=customer.id, step="statement", kind="statement", channel="robot",
                                      outbox_key=key, queued_at=NOW, send_at=NOW))
            await outbox.enqueue(s, OutgoingMessage("dingtalk", "robot", "buyer", lines(700), "markdown"),
                                 "cm:sent", NOW)
        await settle(bot)
        async with db.session() as s, s.begin():
            await rem.sync_sent(s)
        async with db.session() as s:
            sent = (await s.execute(select(CustomerMessage).where(CustomerMessage.outbox_key == "cm:sent"))).scalar_one()
            assert sent.status == "sent" and sent.sent_at is not None
            original = (await s.execute(select(OutboxMessage).where(OutboxMessage.idem_key == "cm:sent"))).scalar_one()
            assert original.status == "split"
        # parts still pending when the message is cancelled are cancelled with it
        async with db.session() as s, s.begin():
            for n in (1, 2):
                await outbox.enqueue(s, OutgoingMessage("dingtalk", "robot", "buyer", f"part {n}"), f"cm:cancel:{n}",
                                     NOW.replace(year=2030))
            await s.execute(OutboxMessage.__table__.insert().values(
                idem_key="cm:cancel", platform="dingtalk", target_kind="robot", target="buyer", text="…",
                status="split", next_attempt_at=NOW, created_at=NOW, extra={}))
        async with db.session() as s, s.begin():
            rid = (await s.execute(select(Receivable.id).where(Receivable.customer_id == customer.id).limit(1))).scalar_one()
            await s.execute(CustomerMessage.__table__.update().where(CustomerMessage.outbox_key == "cm:cancel")
                            .values(receivable_id=rid))
            await s.run_sync(lambda ss: rem._cancel_sync(ss, {rid: "disputed"}))
        async with db.session() as s:
            parts = (await s.execute(select(OutboxMessage.status).where(OutboxMessage.idem_key.like("cm:cancel:%")))
                     ).scalars().all()
            assert parts == ["cancelled", "cancelled"]
            cm = (await s.execute(select(CustomerMessage).where(CustomerMessage.outbox_key == "cm:cancel"))).scalar_one()
            assert cm.status == "cancelled"
