"""The DingTalk adapter end to end: the real bot app on loopback against the fake DingTalk.

HTTP callbacks (verify → persist → 200 → work), Stream CALLBACK frames (persist before the ACK),
reply routing (session webhook while valid, robot API otherwise) and the outbox under faults.
The fake's clock is the bot's fixed clock, so signatures, webhook expiry and tokens all agree.
"""
from __future__ import annotations

import json
import logging
import random
import time

import aiohttp
import pytest
from sqlalchemy import func, select

from bot import outbox
from bot.channels.dingtalk_crypto import robot_sign
from bot.core.messages import OutgoingMessage
from storage.models import InboundEvent
from tests import ledger_fixture
from tests.conftest import at
from tests.fakes.dingtalk_server import FakeDingTalk
from tests.harness import Bot

PATH = "/dingtalk/callback"


@pytest.fixture
async def fake():
    async with FakeDingTalk() as f:
        yield f


async def start_bot(aiohttp_client, db, fake: FakeDingTalk, mode: str = "http", **sections) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    dingtalk = {"enabled": True, "mode": mode, "app_key": fake.app_key, "app_secret": fake.app_secret,
                "robot_code": fake.robot_code, "api_base": fake.url, "oapi_base": fake.url}
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                          dingtalk=dingtalk, **sections)
    fake.clock = lambda: bot.clock.now().timestamp()
    return bot


async def settle(bot: Bot) -> None:
    await bot.state.inbound.wait_idle()
    await bot.state.sender.drain()


async def stored(db) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one()


async def post(bot: Bot, headers: dict, raw: bytes) -> aiohttp.ClientResponse:
    return await bot.client.post(PATH, data=raw, headers=headers)


def bot_log(caplog) -> str:
    """What the bot itself logged (the fake's access log and SQL echo are not the bot's output)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("bot", "storage"))


def assert_no_secrets_logged(text: str, fake: FakeDingTalk) -> None:
    for secret in (fake.app_secret, *fake.tokens, *fake.sessions):
        assert secret not in text
    assert "/robot/sendBySession" not in text


def channels(bot: Bot) -> dict:
    """The DingTalk channel as /healthz shows it."""
    return bot.state.channel_health.report()["dingtalk"]


def stream(bot: Bot) -> dict:
    return channels(bot)["stream"]


def now_ms(bot: Bot) -> int:
    return int(bot.clock.now().timestamp() * 1000)


# ------------------------------------------------------------------------------------------ HTTP mode

async def test_group_aging_replied_through_the_session_webhook(fake, aiohttp_client, db, caplog):
    caplog.set_level(logging.DEBUG)
    bot = await start_bot(aiohttp_client, db, fake)
    body = fake.robot_message("/aging", group=True, staff_id="dt_gm", nick="周总")
    assert body["text"]["content"].startswith("@ARBot ")
    headers, raw = fake.signed_callback(body)
    t0 = time.monotonic()
    resp = await post(bot, headers, raw)
    assert resp.status == 200 and await resp.json() == {}
    assert time.monotonic() - t0 < 1.0
    await settle(bot)
    reply, picture = fake.messages()               # the text, then the chart (a markdown picture)
    assert picture.kind == "session" and len(fake.pictures("session")) == 1
    assert reply.kind == "session" and reply.payload["msgtype"] == "markdown"
    text = reply.payload["markdown"]["text"]
    assert text.startswith("**账龄分析（截至") and "87,446.17" in text
    assert channels(bot)["accepted"] == 1
    assert_no_secrets_logged(bot_log(caplog), fake)
    assert "账龄" not in bot_log(caplog) and "/aging" not in bot_log(caplog)


async def test_expired_webhook_one_to_one_goes_through_batch_send(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake)
    body = fake.robot_message("/help", staff_id="dt_rep1", nick="张伟")
    body["sessionWebhookExpiredTime"] = now_ms(bot) - 1000
    resp = await post(bot, *fake.signed_callback(body))
    assert resp.status == 200
    await settle(bot)
    [reply] = fake.messages()
    assert reply.kind == "batchSend" and reply.target == "dt_rep1"
    assert reply.payload["msgKey"] == "sampleMarkdown" and "张伟" in reply.msg_param["text"]


async def test_webhook_about_to_expire_in_a_group_goes_through_group_send(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake)
    body = fake.robot_message("/overdue", group=True, staff_id="dt_rep1")
    body["sessionWebhookExpiredTime"] = now_ms(bot) + 30_000   # valid, but not for long enough
    assert (await post(bot, *fake.signed_callback(body))).status == 200
    await settle(bot)
    [reply] = fake.messages()
    assert reply.kind == "groupSend" and reply.target == body["conversationId"]
    assert "逾期账款" in reply.msg_param["text"]


async def test_session_webhook_outside_dingtalk_is_never_posted_to(fake, aiohttp_client, db):
    # the header sign does not cover the body: a replayed sign with a forged webhook must not leak data
    async with FakeDingTalk() as thief:
        bot = await start_bot(aiohttp_client, db, fake)
        body = fake.robot_message("/aging", staff_id="dt_gm")
        body["sessionWebhook"], _ = thief.session_webhook()
        assert (await post(bot, *fake.signed_callback(body))).status == 200
        await settle(bot)
        assert thief.received == [] and thief.requests == []
        reply, picture = fake.messages()           # the chart too: sampleImageMsg to the real sender
        assert reply.kind == "batchSend" and reply.target == "dt_gm"
        assert picture.payload["msgKey"] == "sampleImageMsg" and picture.target == "dt_gm"


async def test_same_msg_id_three_times_is_handled_once(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake)
    headers, raw = fake.signed_callback(fake.robot_message("/help", staff_id="dt_rep1"))
    for _ in range(3):
        resp = await post(bot, headers, raw)
        assert resp.status == 200 and await resp.json() == {}
    await settle(bot)
    assert await stored(db) == 1
    assert len(fake.messages("session")) == 1
    assert channels(bot)["duplicates"] == 2


def _reject_cases():
    two_mb = json.dumps({"msgtype": "text", "text": {"content": "x" * (2 * 1024 * 1024)}}).encode()

    def forged(fake, body, ts):
        h, raw = fake.signed_callback(body, timestamp_ms=ts)
        return {**h, "sign": robot_sign("not-the-app-secret", str(ts))}, raw

    def stale(fake, body, ts):
        return fake.signed_callback(body, timestamp_ms=ts - 2 * 3600 * 1000)

    def garbage_ts(fake, body, ts):
        h, raw = fake.signed_callback(body, timestamp_ms=ts)
        return {**h, "timestamp": "yesterday", "sign": robot_sign(fake.app_secret, "yesterday")}, raw

    def no_headers(fake, body, ts):
        h, raw = fake.signed_callback(body, timestamp_ms=ts)
        return {"Content-Type": "application/json"}, raw

    def malformed(fake, body, ts):
        h, _ = fake.signed_callback(body, timestamp_ms=ts)
        return h, b'{"msgId": "m1", "msgtype": '

    def missing_fields(fake, body, ts):
        return fake.signed_callback({k: v for k, v in body.items() if k not in ("msgId",)}, timestamp_ms=ts)

    def not_an_object(fake, body, ts):
        h, _ = fake.signed_callback(body, timestamp_ms=ts)
        return h, b'["/help"]'

    def wrong_type(fake, body, ts):
        h, raw = fake.signed_callback(body, timestamp_ms=ts)
        return {**h, "Content-Type": "text/plain"}, raw

    def too_big(fake, body, ts):
        h, _ = fake.signed_callback(body, timestamp_ms=ts)
        return h, two_mb

    return [("forged sign", forged, 401), ("stale 2 h", stale, 401), ("garbage timestamp", garbage_ts, 401),
            ("no headers", no_headers, 401), ("malformed json", malformed, 400),
            ("missing msgId", missing_fields, 400), ("json array", not_an_object, 400),
            ("text/plain", wrong_type, 415), ("2 MB", too_big, 413)]


@pytest.mark.parametrize("name,make,status", _reject_cases(), ids=[c[0] for c in _reject_cases()])
async def test_bad_callbacks_are_refused_and_nothing_is_stored_or_sent(fake, aiohttp_client, db, caplog,
                                                                     name, make, status):
    caplog.set_level(logging.DEBUG)
    bot = await start_bot(aiohttp_client, db, fake)
    headers, raw = make(fake, fake.robot_message("/help", staff_id="dt_rep1"), now_ms(bot))
    resp = await post(bot, headers, raw)
    assert resp.status == status, await resp.text()
    assert "error" in await resp.json()
    await settle(bot)
    assert await stored(db) == 0
    assert fake.received == [] and fake.requests == []
    assert channels(bot)["rejected"] == 1
    assert_no_secrets_logged(bot_log(caplog), fake)


async def test_unknown_person_gets_a_polite_answer(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake)
    assert (await post(bot, *fake.signed_callback(fake.robot_message("/help", staff_id="stranger")))).status == 200
    await settle(bot)
    [reply] = fake.messages("session")
    assert "stranger" in json.dumps(reply.payload, ensure_ascii=False)


# ------------------------------------------------------------------------------------------ Stream mode

async def test_stream_callback_persisted_acked_and_answered_once(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake, mode="stream")
    await fake.wait_until(lambda: fake.ws is not None and stream(bot)["connected"], timeout=5)
    assert fake.open_requests[0]["clientId"] == fake.app_key
    body = fake.robot_message("/overdue", staff_id="dt_rep1")
    ack = await fake.wait_ack(await fake.push_callback(body))
    assert ack["code"] == 200
    assert await stored(db) == 1          # the ACK came after the message was stored
    again = await fake.wait_ack(await fake.push_callback(body))   # redelivered frame, same msgId
    assert again["code"] == 200
    await settle(bot)
    assert await stored(db) == 1
    [reply] = fake.messages()
    assert reply.kind == "session" and "逾期账款（11月23日）：4笔" in reply.payload["markdown"]["text"]
    assert stream(bot)["callback_failures"] == 0


async def test_stream_malformed_bot_message_is_acked_and_dropped(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake, mode="stream")
    await fake.wait_until(lambda: fake.ws is not None, timeout=5)
    ack = await fake.wait_ack(await fake.push_callback({"msgtype": "text", "text": {"content": "hi"}}))
    assert ack["code"] == 200
    await settle(bot)
    assert await stored(db) == 0 and fake.received == []


async def test_stream_client_stops_with_the_app(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake, mode="stream")
    await fake.wait_until(lambda: fake.ws is not None, timeout=5)
    await bot.client.close()
    await fake.wait_until(lambda: fake.ws is None, timeout=5)
    assert stream(bot)["connected"] is False


# ------------------------------------------------------------------------------------------ outbox under faults

async def _enqueue_users(bot: Bot, db, n: int) -> None:
    async with db.session() as s, s.begin():
        for i in range(n):
            out = OutgoingMessage(platform="dingtalk", target_kind="user", target=f"dt_rep{i % 2 + 1}",
                                  text=f"提醒 #{i:03d}", format="text")
            assert await outbox.enqueue(s, out, f"test:{i}", bot.clock.now())


def _arrived(fake: FakeDingTalk) -> list[str]:
    return [r.msg_param["content"] for r in fake.messages("batchSend")]


async def test_outbox_under_faults_delivers_every_message_exactly_once(fake, aiohttp_client, db, caplog):
    """For five rounds 30% of the sends fail (HTTP 500 or 429 throttling) and every round the tokens
    expire and the refresh itself fails once (a timeout or HTTP 500).

    Each send attempt consumes at most one injected fault and the faults stop after five rounds,
    so no message can use up the outbox's eight attempts: "none dead" is deterministic, not luck.
    Timeouts hit the token endpoint: a timed-out *send* may have been accepted by DingTalk (which
    has no idempotency key), see the next test.
    """
    caplog.set_level(logging.INFO)
    bot = await start_bot(aiohttp_client, db, fake)
    bot.state.channels["dingtalk"].api.timeout = aiohttp.ClientTimeout(total=0.3)
    await _enqueue_users(bot, db, 60)
    rng = random.Random(20261123)
    sender = bot.state.sender
    for round_no in range(40):
        async with db.session() as s:
            pending = (await outbox.backlog(s))["pending"]
        if not pending:
            break
        if round_no < 5:
            for _ in range(round(0.3 * pending)):
                if rng.random() < 0.5:
                    fake.inject("http", status=rng.choice([500, 502, 503]), endpoint="batchSend")
                else:
                    fake.inject("throttle", endpoint="batchSend")
            fake.inject("token_expired")      # the next send answers 401 and the bot refreshes...
            if round_no % 2:                  # ...and that refresh fails once
                fake.inject("http", status=500, endpoint="token")
            else:
                fake.inject("delay", delay=1.0, endpoint="token")
        else:
            fake.clear_faults()
        await sender.drain()
        bot.clock.advance(seconds=bot.state.config.outbox.backoff_cap_seconds + 1)
    async with db.session() as s:
        assert await outbox.backlog(s) == {"pending": 0, "sent": 60, "dead": 0}
    arrived = _arrived(fake)
    assert sorted(arrived) == sorted(f"提醒 #{i:03d}" for i in range(60))      # each exactly once
    answered = {status for _, status in fake.requests}
    assert {200, 500, 429, 401} <= answered
    assert sender.stats["retried"] >= 18 and sender.stats["dead"] == 0
    assert "timed out" in bot_log(caplog) and "token endpoint HTTP 500" in bot_log(caplog)
    assert bot.state.channels["dingtalk"].api.token_fetches <= 12   # one refresh per expiry, not a storm
    assert_no_secrets_logged(bot_log(caplog), fake)


async def test_a_timed_out_send_is_retried_never_lost(fake, aiohttp_client, db):
    """DingTalk's send APIs have no idempotency key: when the answer times out we cannot know
    whether the message went out. The outbox retries (at least once), so it may arrive twice."""
    bot = await start_bot(aiohttp_client, db, fake)
    bot.state.channels["dingtalk"].api.timeout = aiohttp.ClientTimeout(total=0.2)
    await _enqueue_users(bot, db, 3)
    fake.inject("delay", delay=0.6, endpoint="batchSend")
    await bot.state.sender.drain()
    bot.clock.advance(seconds=60)
    await bot.state.sender.drain()
    await fake.wait_until(lambda: len(_arrived(fake)) >= 3, timeout=2)
    assert set(_arrived(fake)) == {f"提醒 #{i:03d}" for i in range(3)}
    assert 3 <= len(_arrived(fake)) <= 4
    async with db.session() as s:
        assert (await outbox.backlog(s))["sent"] == 3
