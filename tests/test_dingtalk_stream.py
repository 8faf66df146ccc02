"""StreamClient against the fake Stream gateway: ACKs, pings, reconnects, zombie watchdog, backoff."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from bot.channels.dingtalk_stream import StreamClient
from tests.fakes.dingtalk_server import FakeDingTalk


@pytest.fixture
async def fake():
    async with FakeDingTalk() as f:
        yield f


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


class Runner:
    """Start a client in the background; always stop it at the end of the test."""

    def __init__(self, client: StreamClient):
        self.client = client
        self.task = asyncio.create_task(client.run())

    async def stop(self):
        await self.client.stop()
        await asyncio.wait_for(self.task, 2)


@pytest.fixture
async def start(session, fake):
    runners: list[Runner] = []

    def _start(on_callback=None, api_base=None, **kw):
        received = []

        async def default_cb(payload):
            received.append(payload)

        kw.setdefault("ping_timeout", 5.0)
        kw.setdefault("backoff_base", 0.01)
        client = StreamClient(session, api_base or fake.url, fake.app_key, fake.app_secret,
                              on_callback or default_cb, **kw)
        client.received = received  # type: ignore[attr-defined]
        runners.append(Runner(client))
        return client

    yield _start
    for r in runners:
        await r.stop()


async def test_connect_callback_is_delivered_and_acked(fake, start):
    client = start()
    await fake.wait_until(lambda: fake.ws is not None and client.status["connected"])
    opened = fake.open_requests[0]
    assert {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"} in opened["subscriptions"]
    assert {"type": "EVENT", "topic": "*"} in opened["subscriptions"]
    body = fake.robot_message("how much does ACME owe?", group=True)
    mid = await fake.push_callback(body)
    ack = await fake.wait_ack(mid)
    assert client.received == [body]
    assert ack["code"] == 200 and ack["message"] == "OK"
    assert ack["headers"] == {"messageId": mid, "contentType": "application/json"}
    assert client.status["last_frame_at"] is not None


async def test_card_clicks_are_subscribed_and_routed_only_with_a_handler(fake, start):
    """Without ``on_card`` the card topic is not subscribed and a frame for it is answered 404
    (as any topic the client does not serve); with it, clicks reach the handler and are ACKed."""
    topic = "/v1.0/card/instances/callback"
    plain = start()
    await fake.wait_until(lambda: fake.ws is not None and plain.status["connected"])
    assert {"type": "CALLBACK", "topic": topic} not in fake.open_requests[-1]["subscriptions"]
    assert (await fake.wait_ack(await fake.push("CALLBACK", topic, {"outTrackId": "t"})))["code"] == 404
    await plain.stop()
    clicks = []

    async def on_card(payload):
        clicks.append(payload)

    with_cards = start(on_card=on_card)
    await fake.wait_until(lambda: with_cards.status["connected"] and len(fake.open_requests) == 2)
    assert {"type": "CALLBACK", "topic": topic} in fake.open_requests[-1]["subscriptions"]
    click = {"outTrackId": "t1", "userId": "dt_rep1", "type": "actionCallback"}
    ack = await fake.wait_ack(await fake.push("CALLBACK", topic, click))
    assert ack["code"] == 200 and clicks == [click] and with_cards.received == []


async def test_ack_comes_after_the_callback_persisted(fake, start):
    persisted = []
    gate = asyncio.Event()

    async def slow_persist(payload):
        await gate.wait()
        persisted.append(payload["msgId"])

    start(on_callback=slow_persist)
    await fake.wait_until(lambda: fake.ws is not None)
    mid = await fake.push_callback(fake.robot_message("x", msg_id="m1"))
    ping = await fake.push_ping("op-while-busy")  # a slow callback must not block pings
    await fake.wait_ack(ping)
    assert fake.ack_for(mid) is None
    gate.set()
    await fake.wait_ack(mid)
    assert persisted == ["m1"]


async def test_failing_callback_acked_with_error_and_counted(fake, start):
    async def broken(payload):
        raise RuntimeError("db down")

    client = start(on_callback=broken)
    await fake.wait_until(lambda: fake.ws is not None)
    ack = await fake.wait_ack(await fake.push_callback(fake.robot_message("x")))
    assert ack["code"] == 500
    assert client.status["callback_failures"] == 1 and client.status["connected"]


async def test_event_failure_asks_for_redelivery(fake, start):
    seen = []

    async def on_event(headers, data):
        seen.append(data)
        if len(seen) == 1:
            raise RuntimeError("try later")

    start(on_event=on_event)
    await fake.wait_until(lambda: fake.ws is not None)
    first = await fake.wait_ack(await fake.push("EVENT", "org_dept_create", {"deptId": [1]}))
    second = await fake.wait_ack(await fake.push("EVENT", "org_dept_create", {"deptId": [1]}))
    assert first["code"] != 200 and json.loads(first["data"])["status"] == "LATER"
    assert second["code"] == 200 and json.loads(second["data"])["status"] == "SUCCESS"


async def test_ping_answered_with_opaque(fake, start):
    start()
    await fake.wait_until(lambda: fake.ws is not None)
    ack = await fake.wait_ack(await fake.push_ping("opaque-123"))
    assert ack["code"] == 200
    assert json.loads(ack["data"])["opaque"] == "opaque-123"


async def test_disconnect_reconnects_with_new_ticket(fake, start):
    client = start()
    await fake.wait_until(lambda: fake.ws is not None)
    first_ws = fake.ws
    await fake.push_disconnect()
    await fake.wait_until(lambda: fake.connections_made == 2 and fake.ws is not None and fake.ws is not first_ws)
    assert len(fake.tickets) == 2 and all(fake.tickets.values())  # two tickets, each used once
    assert client.status["reconnects"] == 1 and client.backoff_delays == type(client.backoff_delays)()
    mid = await fake.push_callback(fake.robot_message("after reconnect"))
    await fake.wait_ack(mid)


async def test_zombie_socket_detected_and_reconnected(fake, start):
    client = start(ping_timeout=0.3, close_timeout=0.2)
    await fake.wait_until(lambda: fake.ws is not None)
    await fake.wait_ack(await fake.push_ping("alive"))
    t0 = asyncio.get_running_loop().time()
    fake.go_silent()   # the socket stays open but delivers nothing and answers no ping, no close
    await fake.wait_until(lambda: fake.connections_made >= 2 and fake.ws is not None
                          and client.status["connected"], timeout=2)
    # watchdog (0.3 s) + bounded close of the dead socket (0.2 s), not aiohttp's 10 s close wait
    assert asyncio.get_running_loop().time() - t0 < 1.2
    assert client.status["zombies"] == 1 and "zombie" in client.status["last_error"]
    mid = await fake.push_callback(fake.robot_message("not lost"))
    await fake.wait_ack(mid)


async def test_quiet_but_alive_socket_is_kept(fake, start):
    client = start(ping_timeout=0.3)
    await fake.wait_until(lambda: fake.ws is not None)
    await asyncio.sleep(0.8)             # several watchdog periods with no frames: pongs keep it up
    assert fake.connections_made == 1 and client.status["zombies"] == 0


async def test_gateway_down_backoff_grows_and_is_capped(fake, start):
    client = start(api_base="http://127.0.0.1:9", backoff_base=0.01, backoff_cap=0.08, rng=lambda: 1.0)
    await fake.wait_until(lambda: len(client.backoff_delays) >= 6, timeout=2.5)
    delays = list(client.backoff_delays)
    assert delays[:5] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08])
    assert max(delays) <= 0.08
    assert not client.status["connected"] and "StreamOpenError" in client.status["last_error"]


async def test_gateway_errors_back_off_then_recover(fake, start):
    fake.inject("http", status=500, endpoint="open", count=3)
    client = start(backoff_cap=0.05)
    await fake.wait_until(lambda: client.status["connected"], timeout=2)
    assert len(client.backoff_delays) == 3
    assert all(0.005 <= d <= 0.05 for d in client.backoff_delays)
    assert fake.app_secret not in json.dumps(client.status)


def test_backoff_jitter_bounds():
    client = StreamClient(None, "http://x", "id", "secret", None, backoff_base=1, backoff_cap=60)  # type: ignore[arg-type]
    for n in range(1, 40):
        d = client.backoff_delay(n)
        step = min(60, 2 ** (n - 1))
        assert step / 2 <= d <= step


async def test_bad_credentials_never_connect(fake, session):
    client = StreamClient(session, fake.url, fake.app_key, "wrong-secret", lambda p: None,
                          backoff_base=0.01, backoff_cap=0.02)
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0.2)
    await client.stop()
    await asyncio.wait_for(task, 2)
    assert fake.connections_made == 0 and "401" in client.status["last_error"]
    assert "wrong-secret" not in client.status["last_error"]
