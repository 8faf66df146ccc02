"""The WeCom adapter end to end, on loopback: the real bot app with ``[wecom] enabled`` receives
encrypted callbacks like WeCom sends them and answers through a fake WeCom API server."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections import Counter
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import func, select

from bot import outbox
from bot.channels.wecom import WeComChannel, message_from_aibot
from bot.channels.wecom_crypto import WeComCrypto
from bot.clock import FixedClock
from bot.config import OutboxConfig, WeComConfig
from bot.core.messages import OutgoingMessage
from bot.outbox import Sender
from storage.models import FollowUp, InboundEvent, OutboxMessage, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.fakes.wecom_server import (
    RESPONSE_EXPIRED,
    RESPONSE_SPENT,
    RESPONSE_UNKNOWN,
    Fault,
    FakeWeCom,
    build_callback,
    build_card_click_xml,
    build_text_message_xml,
    build_url_check,
    deliver_callback,
)
from tests.harness import Bot

AGENT = 1000002
SECRET = "app-sEcReT-must-never-be-logged"
TOKEN = "cbTok3n-never-logged"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
BOT_TOKEN = "aiBotT0ken-never-logged"
BOT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture
async def fake():
    async with FakeWeCom(apps={AGENT: SECRET}) as server:
        yield server


def wecom_config(fake, **extra) -> dict:
    return dict(enabled=True, corp_id=fake.corp_id, agent_id=str(AGENT), secret=SECRET, token=TOKEN,
                encoding_aes_key=AES_KEY, api_base=fake.url, **extra)


async def start_bot(aiohttp_client, db, fake, **extra) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           wecom=wecom_config(fake, **extra))


def crypto(fake, receive_id: str | None = None) -> WeComCrypto:
    return WeComCrypto(TOKEN, AES_KEY, fake.corp_id if receive_id is None else receive_id)


def text_xml(fake, user: str, content: str, msg_id) -> str:
    return build_text_message_xml(fake.corp_id, user, content, msg_id=msg_id, agent_id=AGENT)


async def post_callback(bot: Bot, query: dict, body: str | bytes, path: str = "/wecom/callback"):
    data = body.encode("utf-8") if isinstance(body, str) else body
    resp = await bot.client.post(path, params=query, data=data, headers={"Content-Type": "text/xml"})
    return resp.status, await resp.text()


async def settle(bot: Bot) -> None:
    await bot.state.inbound.wait_idle()
    await bot.state.sender.drain()


async def events(db) -> list[InboundEvent]:
    async with db.session() as s:
        return list((await s.execute(select(InboundEvent).order_by(InboundEvent.id))).scalars())


def markdown_to(fake, user: str) -> list[str]:
    return [r.payload["markdown"]["content"] for r in fake.messages_to(user) if r.payload.get("msgtype") == "markdown"]


# -- URL verification -----------------------------------------------------------------------

async def test_url_check_answers_the_echo_exactly(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    echo = "4937284617284+/=回声"          # "+" and "/" survive one decode only
    for _ in range(5):                     # random prefixes make some ciphertexts carry "+" and "/"
        query = build_url_check(crypto(fake), echo, int(time.time()), "n0nce")
        resp = await bot.client.get("/wecom/callback", params=query)
        assert resp.status == 200
        assert await resp.read() == echo.encode("utf-8")      # no quotes, BOM or newline
        assert resp.content_type == "text/plain"


async def test_url_check_with_bad_signature_is_401(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    query = build_url_check(crypto(fake), "echo", 1700000000, "n0nce")
    query["msg_signature"] = "0" * 40
    resp = await bot.client.get("/wecom/callback", params=query)
    assert resp.status == 401 and "echo" not in await resp.text()
    resp = await bot.client.get("/wecom/callback", params={"timestamp": "1", "nonce": "x"})
    assert resp.status == 400


# -- messages in, replies out ---------------------------------------------------------------

async def test_aging_request_round_trip(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    query, body = build_callback(crypto(fake), text_xml(fake, "wx_gm", "/aging", 4561255354251345929),
                                 int(time.time()), "abc123")
    status, text = await post_callback(bot, query, body)
    assert (status, text) == (200, "")
    await settle(bot)
    reply, picture = fake.messages_to("wx_gm")          # the text, then the chart as an image
    assert picture.payload["msgtype"] == "image"
    assert reply.payload["msgtype"] == "markdown" and reply.payload["agentid"] == AGENT
    assert reply.payload["touser"] == "wx_gm"
    assert "账龄分析" in reply.payload["markdown"]["content"]
    [ev] = await events(db)
    assert (ev.platform, ev.event_key, ev.status) == ("wecom", "4561255354251345929", "handled")
    assert ev.payload["platform_user_id"] == "wx_gm" and ev.payload["chat_id"] is None
    health = await (await bot.client.get("/healthz")).json()
    assert health["channels"]["wecom"]["status"] == "ok" and health["status"] == "ok"
    assert health["channels"]["wecom"]["accepted"] == 1


async def test_redelivered_message_is_handled_once(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    xml = text_xml(fake, "wx_gm", "/aging", 777001)
    query, body = build_callback(crypto(fake), xml, int(time.time()), "same-nonce")
    for _ in range(3):                     # WeCom re-sends the very same request
        assert await post_callback(bot, query, body) == (200, "")
    # and a re-send that was re-encrypted (new nonce, new random prefix) is the same message too
    attempts = await deliver_callback(bot.client.session, str(bot.client.make_url("/wecom/callback")),
                                      crypto(fake), xml)
    assert attempts == [(200, "")]
    await settle(bot)
    assert len(markdown_to(fake, "wx_gm")) == 1
    assert len(await events(db)) == 1


async def test_burst_with_redeliveries_is_stored_and_answered_once_each(aiohttp_client, db, fake):
    # Callbacks arriving together are stored in one group-committed INSERT (a re-send may sit in
    # the same batch as its original), and background handling waits while intake is busy: still
    # every message is stored once, handled once and answered once.
    bot = await start_bot(aiohttp_client, db, fake)
    users = ["wx_gm", "wx_sup1", "wx_rep1"]
    sends = []
    for i in range(12):
        query, body = build_callback(crypto(fake), text_xml(fake, users[i % 3], "/help", 778000 + i),
                                     int(time.time()), f"n{i}")
        sends += [(query, body)] * (2 if i % 4 == 0 else 1)       # every 4th one re-sent at once
    random.Random(8).shuffle(sends)
    results = await asyncio.gather(*(post_callback(bot, q, b) for q, b in sends))
    assert results == [(200, "")] * len(sends)
    await settle(bot)
    stored = await events(db)
    assert sorted(int(e.event_key) for e in stored) == [778000 + i for i in range(12)]
    assert {e.status for e in stored} == {"handled"}
    async with db.session() as s:       # one reply queued per message (WeCom itself drops identical texts)
        # one answer per message (an answer too long for one WeCom message goes in parts: rows of its own)
        keys = (await s.execute(select(OutboxMessage.idem_key).where(OutboxMessage.status != "pending")
                                .where(~OutboxMessage.idem_key.like("%:0:%")))).scalars().all()
    assert sorted(keys) == sorted(f"reply:wecom:{778000 + i}:0" for i in range(12))


async def test_slow_handler_still_answers_within_deadline(aiohttp_client, db, fake, monkeypatch):
    bot = await start_bot(aiohttp_client, db, fake)
    pipeline = bot.state.pipeline
    real_handle = pipeline.handle

    async def slow_handle(session, msg):   # simulates a handler slower than WeCom's 5 s
        await asyncio.sleep(6)
        return await real_handle(session, msg)

    monkeypatch.setattr(pipeline, "handle", slow_handle)
    started = time.monotonic()
    attempts = await deliver_callback(bot.client.session, str(bot.client.make_url("/wecom/callback")),
                                      crypto(fake), text_xml(fake, "wx_gm", "/aging", 888001))
    assert time.monotonic() - started < 1.0
    assert attempts == [(200, "")]          # one try: WeCom has no reason to re-send
    assert fake.received == []              # the work has not finished yet...
    await settle(bot)
    [reply] = markdown_to(fake, "wx_gm")    # ...but the reply still comes
    assert "账龄分析" in reply


# -- what is refused ------------------------------------------------------------------------

def _tampered(fake):
    query, body = build_callback(crypto(fake), text_xml(fake, "wx_gm", "/aging", 1), 1700000000, "n1")
    query["msg_signature"] = query["msg_signature"][:-1] + ("0" if query["msg_signature"][-1] != "0" else "1")
    return query, body


def _wrong_corp(fake):
    return build_callback(crypto(fake, "wwsomeothercorp"), text_xml(fake, "wx_gm", "/aging", 2), 1700000000, "n2")


def _tampered_body(fake):
    query, body = build_callback(crypto(fake), text_xml(fake, "wx_gm", "/aging", 3), 1700000000, "n3")
    return query, body.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA")


def _malformed_xml(fake):
    query, _ = build_callback(crypto(fake), text_xml(fake, "wx_gm", "/aging", 4), 1700000000, "n4")
    return query, "<xml><Encrypt>abc</Encrypt"


def _signed_garbage_inside(fake):
    c = crypto(fake)                       # a correct signature over something that is not a message
    enc = c.encrypt("this is not xml <")
    query = {"msg_signature": c.signature("1700000000", "n5", enc), "timestamp": "1700000000", "nonce": "n5"}
    return query, f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"


def _signed_message_without_sender(fake):
    return build_callback(crypto(fake), "<xml><MsgType>text</MsgType><Content>x</Content></xml>", 1700000000, "n5")


def _no_params(fake):
    _, body = build_callback(crypto(fake), text_xml(fake, "wx_gm", "/aging", 6), 1700000000, "n6")
    return {}, body


def _huge(fake):
    query, _ = build_callback(crypto(fake), text_xml(fake, "wx_gm", "/aging", 7), 1700000000, "n7")
    return query, b"<xml><Encrypt>" + b"A" * (2 * 1024 * 1024) + b"</Encrypt></xml>"


@pytest.mark.parametrize("make, status", [
    (_tampered, 401), (_tampered_body, 401), (_wrong_corp, 403), (_malformed_xml, 400),
    (_signed_garbage_inside, 400), (_signed_message_without_sender, 400), (_no_params, 400), (_huge, 413)])
async def test_rejected_callbacks_store_and_send_nothing(aiohttp_client, db, fake, make, status):
    bot = await start_bot(aiohttp_client, db, fake)
    query, body = make(fake)
    got, text = await post_callback(bot, query, body)
    assert got == status
    assert "Traceback" not in text and TOKEN not in text
    await settle(bot)
    assert await events(db) == []
    assert fake.received == [] and fake.requests == []
    if status in (401, 403):
        health = await (await bot.client.get("/healthz")).json()
        assert health["channels"]["wecom"]["last_rejection"].startswith(str(status))
        assert health["channels"]["wecom"]["rejected"] == 1


# -- cards and events -------------------------------------------------------------------------

async def test_card_click_is_stored_as_card_action(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    xml = build_card_click_xml(fake.corp_id, "wx_rep1", event_key="promise_ok", task_id="task-42",
                               response_code="rc-9", agent_id=AGENT)
    query, body = build_callback(crypto(fake), xml, int(time.time()), "n8")
    assert await post_callback(bot, query, body) == (200, "")
    assert await post_callback(bot, query, body) == (200, "")     # a click re-sent is one click
    await settle(bot)
    [ev] = await events(db)
    assert ev.event_key == "task-42:wx_rep1:promise_ok"
    assert ev.payload["card_action"] == {"task_id": "task-42", "key": "promise_ok", "response_code": "rc-9"}
    assert ev.payload["text"] == "" and ev.status == "handled"
    [answer] = markdown_to(fake, "wx_rep1")                        # a stale button: a polite answer, once
    assert "按钮已失效" in answer


async def test_pushed_item_cards_and_a_click_logged_like_a_reply(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake, card_buttons=True, card_items=2)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    cards = [r.payload["template_card"] for r in fake.messages_to("wx_rep1") if r.payload["msgtype"] == "template_card"]
    # the two oldest of rep1's items: 3. INV-B2 (206 days) and 1. INV-A3 (60 days)
    assert [c["main_title"]["title"] for c in cards] == ["3. 苏州明达电子科技有限公司 INV-B2",
                                                         "1. 上海恒信机电有限公司 INV-A3"]
    assert [b["text"] for b in cards[0]["button_list"]] == ["已联系", "本周五付", "下周五付", "月底付", "有异议"]
    key = cards[0]["button_list"][4]["key"]                         # 有异议 on INV-B2
    bot.clock.set(at("2026-11-23 10:00"))
    xml = build_card_click_xml(fake.corp_id, "wx_rep1", event_key=key, task_id=cards[0]["task_id"],
                               response_code="rc-1", agent_id=AGENT)
    query, body = build_callback(crypto(fake), xml, int(time.time()), "n10")
    assert await post_callback(bot, query, body) == (200, "")
    await settle(bot)
    assert "已记录第3笔 INV-B2：有异议" in markdown_to(fake, "wx_rep1")[-1]
    async with db.session() as s:
        fu = (await s.execute(select(FollowUp).where(FollowUp.channel == "wecom"))).scalar_one()
        assert fu.outcome == "dispute" and fu.late is False
        r = await s.get(Receivable, fu.receivable_id)
        assert r.invoice_no == "INV-B2" and r.disputed
    # a click by another rep on rep1's card changes nothing
    xml = build_card_click_xml(fake.corp_id, "wx_rep2", event_key=key, task_id=cards[0]["task_id"],
                               response_code="rc-2", agent_id=AGENT)
    query, body = build_callback(crypto(fake), xml, int(time.time()), "n11")
    await post_callback(bot, query, body)
    await settle(bot)
    async with db.session() as s:
        assert len((await s.execute(select(FollowUp).where(FollowUp.channel == "wecom"))).scalars().all()) == 1


async def test_other_events_are_stored_but_not_answered(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    xml = (f"<xml><ToUserName><![CDATA[{fake.corp_id}]]></ToUserName><FromUserName><![CDATA[wx_gm]]></FromUserName>"
           f"<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
           f"<Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey><AgentID>{AGENT}</AgentID></xml>")
    query, body = build_callback(crypto(fake), xml, 1700000000, "n9")
    assert await post_callback(bot, query, body) == (200, "")
    assert await post_callback(bot, query, body) == (200, "")
    await settle(bot)
    [ev] = await events(db)
    assert ev.event_key == "wx_gm:1700000000:enter_agent"
    assert ev.status == "handled"          # so a restart does not "resume" it into a reply
    assert await bot.state.inbound.resume_unhandled() == 0
    assert fake.received == []


# -- the AI bot (智能机器人) --------------------------------------------------------------------

def aibot_request(data: dict, receive_id: str = "", ts: int | str = 1700000000) -> tuple[dict, str]:
    c = WeComCrypto(BOT_TOKEN, BOT_AES_KEY, receive_id)
    enc = c.encrypt(json.dumps(data, ensure_ascii=False))
    ts, nonce = str(int(ts)), "aib0t"
    return {"msg_signature": c.signature(ts, nonce, enc), "timestamp": ts, "nonce": nonce}, json.dumps({"encrypt": enc})


async def start_aibot(aiohttp_client, db, fake) -> Bot:
    return await start_bot(aiohttp_client, db, fake, ai_bot_enabled=True, ai_bot_token=BOT_TOKEN,
                           ai_bot_encoding_aes_key=BOT_AES_KEY)


def group_question(fake, text: str = "@收款助手 /aging", msgid: str = "CAIQ16HMjQYY", chat: str = "wrkSFfCgAA",
                   **extra) -> dict:
    return {"msgid": msgid, "aibotid": "AIBOTID", "chatid": chat, "chattype": "group",
            "from": {"userid": "wx_gm"}, "response_url": fake.issue_response_url(chat),
            "msgtype": "text", "text": {"content": text}, **extra}


async def post_aibot(bot: Bot, data: dict, ts: float | None = None, receive_id: str = ""):
    query, body = aibot_request(data, receive_id, bot.clock.now().timestamp() if ts is None else ts)
    return await bot.client.post("/wecom/aibot", params=query, data=body,
                                 headers={"Content-Type": "application/json"})


def responses(fake, chat: str) -> list[str]:
    return [r.payload["markdown"]["content"] for r in fake.responses_in(chat)]


async def test_aibot_group_question_is_answered_in_the_group(aiohttp_client, db, fake):
    bot = await start_aibot(aiohttp_client, db, fake)
    data = group_question(fake)
    query, body = aibot_request(data, ts=bot.clock.now().timestamp())
    for _ in range(2):                     # a re-send is the same message
        resp = await bot.client.post("/wecom/aibot", params=query, data=body,
                                     headers={"Content-Type": "application/json"})
        assert resp.status == 200 and await resp.text() == ""
    await settle(bot)
    [ev] = await events(db)
    assert ev.event_key == "aibot:CAIQ16HMjQYY"
    assert ev.payload["text"] == "/aging" and ev.payload["chat_id"] == "wrkSFfCgAA"
    # the group asked, the group gets the answer: through the response_url, once
    [reply] = responses(fake, "wrkSFfCgAA")
    assert "账龄分析" in reply
    assert markdown_to(fake, "wx_gm") == []
    assert fake.requests.count("aibot/response") == 1
    # forged, wrong receiveid, and URL check
    bad = dict(query, msg_signature="f" * 40)
    assert (await bot.client.post("/wecom/aibot", params=bad, data=body)).status == 401
    q2, b2 = aibot_request(dict(data, msgid="other"), receive_id="wwx")
    assert (await bot.client.post("/wecom/aibot", params=q2, data=b2)).status == 403
    assert (await bot.client.post("/wecom/aibot", params=query, data="{not json")).status == 400
    c = WeComCrypto(BOT_TOKEN, BOT_AES_KEY, "")
    resp = await bot.client.get("/wecom/aibot", params=build_url_check(c, "echo-42", 1700000000, "n"))
    assert resp.status == 200 and await resp.text() == "echo-42"
    assert len(await events(db)) == 1


async def test_aibot_single_chat_is_answered_in_the_bots_chat(aiohttp_client, db, fake):
    bot = await start_aibot(aiohttp_client, db, fake)
    data = {"msgid": "single-1", "aibotid": "AIBOTID", "chattype": "single", "from": {"userid": "wx_gm"},
            "response_url": fake.issue_response_url("wx_gm"), "msgtype": "text", "text": {"content": "/aging"}}
    assert (await post_aibot(bot, data)).status == 200
    await settle(bot)
    [reply] = responses(fake, "wx_gm")
    assert "账龄分析" in reply and markdown_to(fake, "wx_gm") == []


async def test_aibot_spent_response_url_falls_back_to_the_asker(aiohttp_client, db, fake):
    """One call per response_url: a URL already spent (by another instance, say) is refused by
    WeCom, and the answer still reaches the person, privately."""
    bot = await start_aibot(aiohttp_client, db, fake)
    data = group_question(fake)
    async with aiohttp.ClientSession() as s:
        async with s.post(data["response_url"], json={"msgtype": "markdown", "markdown": {"content": "x"}}) as r:
            assert (await r.json())["errcode"] == 0
    assert (await post_aibot(bot, data)).status == 200
    await settle(bot)
    assert len(responses(fake, "wrkSFfCgAA")) == 1          # only the one spent beforehand
    [reply] = markdown_to(fake, "wx_gm")
    assert "账龄分析" in reply
    async with db.session() as s:
        statuses = (await s.execute(select(OutboxMessage.status))).scalars().all()
    assert statuses == ["sent"]


async def test_aibot_response_url_used_once_then_the_asker(aiohttp_client, db, fake):
    """A second reply to the same question (an outbox row of its own) does not spend a request on
    a certain refusal: it goes to the asker."""
    bot = await start_aibot(aiohttp_client, db, fake)
    url = fake.issue_response_url("wrkSFfCgAA")
    from bot.channels.wecom import CHANNEL
    channel = bot.client.app[CHANNEL]
    extra = {"expires_ms": channel.now_ms() + 3_600_000, "fallback_user": "wx_gm"}
    for text in ("第一条", "第二条"):
        await channel.deliver(OutgoingMessage("wecom", "session", url, text, extra=extra))
    assert responses(fake, "wrkSFfCgAA") == ["第一条"]
    assert markdown_to(fake, "wx_gm") == ["第二条"]
    assert fake.requests.count("aibot/response") == 1


async def test_aibot_expired_response_url_is_not_used(aiohttp_client, db, fake):
    bot = await start_aibot(aiohttp_client, db, fake)
    # handled 59 minutes after WeCom sent it (the bot was down): too little of the hour is left
    late = bot.clock.now().timestamp() - 59 * 60
    assert (await post_aibot(bot, group_question(fake, msgid="late"), ts=late)).status == 200
    await settle(bot)
    # queued in time, but still in the outbox when the hour ran out
    assert (await post_aibot(bot, group_question(fake, "@收款助手 /help", msgid="slow"))).status == 200
    await bot.state.inbound.wait_idle()
    bot.clock.set(bot.clock.now() + timedelta(hours=1))
    await bot.state.sender.drain()
    assert fake.requests.count("aibot/response") == 0
    # both answers reached the asker as app messages; a manager's /help, over an app message's
    # 2,048 bytes, in parts (the fake refuses a bigger one)
    first, *help_parts = markdown_to(fake, "wx_gm")
    assert "账龄分析" in first and "可以使用的命令" in help_parts[0] and "命令前的 / 可省略" in help_parts[-1]
    assert responses(fake, "wrkSFfCgAA") == []


async def test_aibot_response_url_elsewhere_is_never_followed(aiohttp_client, db, fake):
    bot = await start_aibot(aiohttp_client, db, fake)
    data = group_question(fake, response_url="https://evil.example/cgi-bin/aibot/response?response_code=x")
    assert (await post_aibot(bot, data)).status == 200
    await settle(bot)
    assert fake.requests.count("aibot/response") == 0
    assert len(markdown_to(fake, "wx_gm")) == 1


async def test_fake_response_url_is_single_use_and_expires():
    """The fake holds the bot to the documented rules: one call, within an hour, markdown or card."""
    now = [1000.0]
    async with FakeWeCom(clock=lambda: now[0]) as server, aiohttp.ClientSession() as s:
        async def post(url, body=None):
            async with s.post(url, json=body or {"msgtype": "markdown", "markdown": {"content": "hi"}}) as r:
                return (await r.json())["errcode"]
        url = server.issue_response_url("g")
        assert await post(url, {"msgtype": "text", "text": {"content": "hi"}}) != 0   # not a reply type
        assert await post(url) == 0
        assert await post(url) == RESPONSE_SPENT
        late = server.issue_response_url("g")
        now[0] += 3600
        assert await post(late) == RESPONSE_EXPIRED
        assert await post(f"{server.url}/cgi-bin/aibot/response?response_code=nope") == RESPONSE_UNKNOWN
        assert [r.payload["markdown"]["content"] for r in server.responses_in("g")] == ["hi"]


def voice_xml(fake, user: str, msg_id: int, recognition: str | None) -> str:
    rec = "" if recognition is None else f"<Recognition><![CDATA[{recognition}]]></Recognition>"
    return (f"<xml><ToUserName><![CDATA[{fake.corp_id}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[voice]]></MsgType>"
            f"<MediaId><![CDATA[media-1]]></MediaId><Format><![CDATA[amr]]></Format>{rec}"
            f"<MsgId>{msg_id}</MsgId><AgentID>{AGENT}</AgentID></xml>")


async def test_a_voice_reply_with_a_transcript_is_read_like_text(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 10:00"))
    query, body = build_callback(crypto(fake), voice_xml(fake, "wx_rep1", 9001, "1 已电话联系王总，下周五付款"),
                                 int(time.time()), "v1")
    assert await post_callback(bot, query, body) == (200, "")
    # without a transcript (WeCom's app page documents none) it is kept, not answered
    query, body = build_callback(crypto(fake), voice_xml(fake, "wx_rep1", 9002, None), int(time.time()), "v2")
    assert await post_callback(bot, query, body) == (200, "")
    await settle(bot)
    assert "已记录" in markdown_to(fake, "wx_rep1")[-1]
    async with db.session() as s:
        [fu] = (await s.execute(select(FollowUp))).scalars().all()
    assert (fu.person_id, fu.channel) == ("rep1", "wecom")
    assert [e.status for e in await events(db)] == ["handled", "handled"]


async def test_aibot_voice_is_read_like_text(aiohttp_client, db, fake):
    bot = await start_aibot(aiohttp_client, db, fake)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 10:00"))
    data = {"msgid": "voice-1", "aibotid": "AIBOTID", "chattype": "single", "from": {"userid": "wx_rep1"},
            "response_url": fake.issue_response_url("wx_rep1"), "msgtype": "voice",
            "voice": {"content": "1 已电话联系王总，下周五付款"}}
    assert (await post_aibot(bot, data)).status == 200
    await settle(bot)
    [answer] = responses(fake, "wx_rep1")
    assert "已记录" in answer


def test_aibot_mapping_of_what_is_not_answered():
    assert message_from_aibot({"msgid": "m", "msgtype": "stream", "from": {"userid": "u"}}) is None
    msg = message_from_aibot({"msgid": "m", "chattype": "single", "from": {"userid": "u"}, "msgtype": "text",
                              "text": {"content": " /help "}})
    assert msg.text == "/help" and msg.chat_id is None


async def test_aibot_route_absent_unless_enabled(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    assert (await bot.client.post("/wecom/aibot", data="{}")).status in (404, 405)


# -- nothing secret or personal in the logs ---------------------------------------------------

async def test_logs_hold_no_secrets_or_contents(aiohttp_client, db, fake, caplog):
    caplog.set_level(logging.DEBUG)
    bot = await start_bot(aiohttp_client, db, fake)
    query, body = build_callback(crypto(fake), text_xml(fake, "wx_gm", "/aging 华东", 99), int(time.time()), "n")
    assert (await post_callback(bot, query, body))[0] == 200
    assert (await post_callback(bot, *_tampered(fake)))[0] == 401
    await settle(bot)
    assert [r.kind for r in fake.received] == ["app", "upload", "app"]     # the text, the chart's upload, the chart
    # our own loggers and aiohttp's (the database driver's DEBUG echo is the deployment's to silence)
    logs = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("bot", "storage", "aiohttp"))
    assert "wecom" in logs
    for secret in (SECRET, TOKEN, AES_KEY, *fake.tokens, "华东", "账龄分析"):
        assert secret not in logs
    assert SECRET not in repr(bot.state.channels["wecom"])


# -- the outbox against a flaky WeCom ----------------------------------------------------------

class MonoClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class FlakyWeCom(FakeWeCom):
    """A fraction of message/send calls fail: HTTP 500, a timeout (the request still gets through
    after the client gave up, like the real thing), 45009, 42001. FakeWeCom itself models
    ``enable_duplicate_check``, which is what the client relies on after a timeout."""

    FAULTS = (Fault("http", status=500), Fault("delay", delay=0.4),
              Fault("errcode", errcode=45009, errmsg="api freq out of limit"),
              Fault("errcode", errcode=42001, errmsg="access_token expired"))

    def __init__(self, *args, rate: float = 0.3, seed: int = 7, **kw):
        super().__init__(*args, **kw)
        self.rate, self.rng = rate, random.Random(seed)
        self.in_flight = 0
        self.faults_dealt: Counter = Counter()

    def _take_fault(self, endpoint):
        if endpoint != "message/send" or self.rng.random() >= self.rate:
            return None
        fault = self.rng.choice(self.FAULTS)
        self.faults_dealt[fault.kind + str(fault.errcode or fault.status)] += 1
        return fault

    async def apply_fault(self, request, endpoint):
        self.in_flight += 1
        try:
            return await super().apply_fault(request, endpoint)
        finally:
            self.in_flight -= 1


async def test_outbox_delivers_exactly_once_under_faults_within_member_limit(db):
    mono = MonoClock()
    clock = FixedClock(at("2026-11-23 10:00"))
    # one member gets more than the 30/min WeCom allows, so the limiter has to spread them out
    users = ["wx_u1"] * 40 + ["wx_u2"] * 15 + ["wx_u3"] * 15 + ["wx_u4"] * 15 + ["wx_u5"] * 15
    random.Random(3).shuffle(users)
    async with FlakyWeCom(apps={AGENT: SECRET}, clock=mono) as fake, aiohttp.ClientSession() as session:
        channel = WeComChannel(WeComConfig(**wecom_config(fake)))
        channel.connect(session, timeout=0.15, clock=mono)
        # more attempts than the default: this test is about exactly-once, not about dead letters
        cfg = dataclasses.replace(OutboxConfig(), max_attempts=15)
        sender = Sender(db, {"wecom": channel}, clock, cfg, rng=random.Random(5), monotonic=mono)
        async with db.session() as s, s.begin():
            for i, user in enumerate(users):
                key = f"test:{i}"
                assert await outbox.enqueue(s, OutgoingMessage("wecom", "user", user, f"第{i}条 {key}"), key, clock.now())

        for _round in range(2000):
            await sender.drain()
            while fake.in_flight:          # let requests the client gave up on land first
                await asyncio.sleep(0.02)
            # what the sender loop sleeps for: the next due row, or a full member's window freeing
            wait = await sender.next_wake()
            if wait is None:
                break
            step = wait + 0.001
            clock.advance(seconds=step)
            mono.now += step
        else:
            pytest.fail("outbox never emptied")

        async with db.session() as s:
            statuses = dict((await s.execute(select(OutboxMessage.status, func.count())
                                             .group_by(OutboxMessage.status))).all())
        assert statuses == {"sent": 100}
        contents = Counter(r.payload["markdown"]["content"] for r in fake.received if r.kind == "app")
        assert sorted(contents) == sorted(f"第{i}条 test:{i}" for i in range(100))
        assert set(contents.values()) == {1}
        assert fake.dropped == []          # nothing silently eaten by WeCom's member limit
        for user in set(users):
            times = sorted(r.at for r in fake.messages_to(user))
            assert len(times) == users.count(user)
            assert max(sum(1 for t in times if start <= t < start + 60) for start in times) <= 30
        # the faults really happened, including the timeouts whose request got through anyway
        assert sender.stats["retried"] >= 20 and sender.stats["deferred"] > 0
        assert set(fake.faults_dealt) == {"http500", "delay500", "errcode45009", "errcode42001"}
        assert fake.duplicates_suppressed >= 1
