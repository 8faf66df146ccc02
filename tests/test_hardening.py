"""Issue #15's security and robustness findings, each through real HTTP on loopback: hostile or
odd bodies are refused 4xx with a reason (never a 500), replies go only to DingTalk's own session
endpoint, people's words shown to others in markdown cannot act as markdown, an over-long text
gets a clear answer, and the local chat answers loopback names only (DNS rebinding)."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from bot.channels.wecom_crypto import WeComCrypto
from storage.models import FollowUp, InboundEvent
from tests import ledger_fixture
from tests.conftest import at
from tests.fakes.dingtalk_server import FakeDingTalk
from tests.fakes.wecom_server import FakeWeCom, build_callback
from tests.harness import Bot

AGENT, SECRET, TOKEN = 1000002, "app-secret-hardening", "cbTokenHardening"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


async def start(aiohttp_client, db, **sections) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           **sections)


async def dingtalk_bot(aiohttp_client, db, fake: FakeDingTalk) -> Bot:
    bot = await start(aiohttp_client, db, dingtalk={
        "enabled": True, "mode": "http", "app_key": fake.app_key, "app_secret": fake.app_secret,
        "robot_code": fake.robot_code, "api_base": fake.url, "oapi_base": fake.url})
    fake.clock = lambda: bot.clock.now().timestamp()
    return bot


async def settle(bot: Bot) -> None:
    await bot.state.inbound.wait_idle()
    await bot.state.sender.drain()


async def stored(db) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one()


# -- WeCom: a body nested a thousand levels deep ----------------------------------------------------

@pytest.mark.parametrize("signed", [False, True])
async def test_wecom_body_nested_a_thousand_deep_is_refused_not_a_500(aiohttp_client, db, signed):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        bot = await start(aiohttp_client, db, wecom=dict(
            enabled=True, corp_id=fake.corp_id, agent_id=str(AGENT), secret=SECRET, token=TOKEN,
            encoding_aes_key=AES_KEY, api_base=fake.url))
        deep = "<xml>" + "<a>" * 1000 + "x" + "</a>" * 1000 + "</xml>"
        query = {"msg_signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "n"}
        if signed:   # the depth is refused whatever the signature says
            query, _ = build_callback(WeComCrypto(TOKEN, AES_KEY, fake.corp_id), "<xml/>", int(time.time()), "n")
        resp = await bot.client.post("/wecom/callback", params=query, data=deep.encode(),
                                     headers={"Content-Type": "text/xml"})
        assert resp.status == 400
        body = await resp.json()
        assert body["error"] == "malformed" and "nested deeper" in body["reason"]
        assert await stored(db) == 0


async def test_json_nested_deeper_than_python_recurses_is_400_everywhere(aiohttp_client, db):
    async with FakeDingTalk() as fake:
        bot = await dingtalk_bot(aiohttp_client, db, fake)
        raw = b"[" * 100_000 + b"]" * 100_000
        headers, _ = fake.signed_callback(fake.robot_message("x"))
        resp = await bot.client.post("/dingtalk/callback", data=raw, headers=headers)
        assert resp.status == 400 and (await resp.json())["error"] == "malformed"


# -- DingTalk: signed bodies with odd field types -------------------------------------------------

@pytest.mark.parametrize("field, value, reason", [
    ("sessionWebhookExpiredTime", [1, 2], "sessionWebhookExpiredTime"),
    ("sessionWebhookExpiredTime", {"ms": 1}, "sessionWebhookExpiredTime"),
    ("sessionWebhook", ["http://x"], "sessionWebhook"),
    ("senderStaffId", {"id": "dt_gm"}, "senderStaffId"),
    ("content", "not an object", "richText"),
    ("richText", "a string", "richText"),
])
async def test_dingtalk_odd_field_types_are_400_with_a_reason(aiohttp_client, db, field, value, reason):
    async with FakeDingTalk() as fake:
        bot = await dingtalk_bot(aiohttp_client, db, fake)
        body = fake.robot_message("/help", staff_id="dt_gm")
        if field in ("content", "richText"):
            body["msgtype"] = "richText"
            body["content"] = value if field == "content" else {"richText": value}
        else:
            body[field] = value
        resp = await bot.client.post("/dingtalk/callback", data=fake.signed_callback(body)[1],
                                     headers=fake.signed_callback(body)[0])
        assert resp.status == 400
        answer = await resp.json()
        assert answer["error"] == "malformed" and reason in answer["reason"]
        assert await stored(db) == 0


# -- DingTalk: a session webhook on DingTalk's host but another path --------------------------------

@pytest.mark.parametrize("path", ["/robot/send?access_token=someone-elses-robot", "/robot/sendBySession/../send",
                                  "/other?session=x"])
async def test_session_webhook_must_be_the_session_endpoint(aiohttp_client, db, path):
    async with FakeDingTalk() as fake:
        bot = await dingtalk_bot(aiohttp_client, db, fake)
        fake.add_robot("someone-elses-robot")
        body = fake.robot_message("/help", staff_id="dt_gm")
        body["sessionWebhook"] = fake.url + path
        headers, raw = fake.signed_callback(body)
        assert (await bot.client.post("/dingtalk/callback", data=raw, headers=headers)).status == 200
        await settle(bot)
        [reply] = fake.messages()
        assert reply.kind == "batchSend" and reply.target == "dt_gm"     # to the real sender, via the API
        assert fake.messages("robot") == []


# -- people's words in markdown that others read ----------------------------------------------------

async def test_a_reps_followup_shown_to_a_manager_cannot_act_as_markdown(aiohttp_client, db):
    bot = await start(aiohttp_client, db)
    words = '**[点此登记回款](http://evil.example/pay)** <@all> <font color="warning">已付清</font>\n# 已结清'
    acks = await bot.say("rep1", f"/followup INV-A1 {words}")
    assert any("INV-A1" in a for a in acks)
    [card] = await bot.say("gm", "/customer 上海恒信")
    line = next(ln for ln in card.splitlines() if "点此登记回款" in ln)
    assert "[点此登记回款](" not in card and "<@all>" not in card and "<font" not in card
    assert "**" not in line.split("：", 1)[1]
    assert "点此登记回款" in line and "evil.example/pay" in line and "已结清" in line   # still readable, on one line
    assert not any(ln.startswith("# ") for ln in card.splitlines())


# -- an over-long text ----------------------------------------------------------------------------

async def test_an_overlong_dingtalk_text_is_answered_clearly_and_not_stored_whole(aiohttp_client, db):
    async with FakeDingTalk() as fake:
        bot = await dingtalk_bot(aiohttp_client, db, fake)
        body = fake.robot_message("/followup INV-A1 " + "客户说" * 100_000, staff_id="dt_rep1")
        headers, raw = fake.signed_callback(body)
        assert (await bot.client.post("/dingtalk/callback", data=raw, headers=headers)).status == 200
        await settle(bot)
        [reply] = fake.messages()
        text = reply.payload["markdown"]["text"] if reply.kind == "session" else reply.msg_param["text"]
        assert "太长" in text and "300,017" not in text and "4000" in text
        async with db.session() as s:
            ev = (await s.execute(select(InboundEvent))).scalar_one()
            assert len(ev.payload["text"]) <= 4000
            assert (await s.execute(select(func.count()).select_from(FollowUp)
                                    .where(FollowUp.text.like("%客户说客户说%")))).scalar_one() == 0


async def test_an_overlong_local_chat_text_gets_the_same_answer(aiohttp_client, db):
    bot = await start(aiohttp_client, db)
    [reply] = await bot.say("rep1", "/followup INV-A1 " + "x" * 5000)
    assert "太长" in reply


# -- the local chat and DNS rebinding --------------------------------------------------------------

@pytest.mark.parametrize("headers", [{"Host": "evil.example:8080"}, {"Host": "evil.example"},
                                     {"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Host": "127.0.0.1.evil.example"}])
async def test_local_chat_refuses_foreign_host_or_origin(aiohttp_client, db, headers):
    bot = await start(aiohttp_client, db)
    for method, path, kw in (("POST", "/local/messages", {"json": {"user": "gm", "text": "/aging"}}),
                             ("GET", "/local/people", {}), ("GET", "/local/inbox?user=gm", {})):
        resp = await bot.client.request(method, path, headers=headers, **kw)
        assert resp.status == 403, (path, headers)
        body = await resp.json()
        assert body["error"] == "forbidden" and ("Host" in body["reason"] or "origin" in body["reason"])


@pytest.mark.parametrize("headers", [{}, {"Host": "localhost:8080"}, {"Host": "[::1]:8080"},
                                     {"Origin": "http://127.0.0.1:8080"}, {"Origin": "http://localhost:3000"}])
async def test_local_chat_answers_loopback_hosts_and_origins(aiohttp_client, db, headers):
    bot = await start(aiohttp_client, db)
    resp = await bot.client.post("/local/messages", json={"user": "gm", "text": "/help"}, headers=headers)
    assert resp.status == 200


async def test_local_chat_allowed_hosts_are_configurable(aiohttp_client, db):
    bot = await start(aiohttp_client, db, local={"enabled": True, "allowed_hosts": ("arbot.lan",)})
    ok = await bot.client.post("/local/messages", json={"user": "gm", "text": "/help"},
                               headers={"Host": "arbot.lan:8080", "Origin": "http://arbot.lan:8080"})
    assert ok.status == 200
    no = await bot.client.post("/local/messages", json={"user": "gm", "text": "/help"},
                               headers={"Host": "evil.example"})
    assert no.status == 403
