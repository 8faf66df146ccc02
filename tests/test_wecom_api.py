"""WeComAPI against the fake WeCom server on loopback: tokens, errcodes, faults, limits."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import traceback

import aiohttp
import pytest
from aiohttp import web

from bot.channels.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RateLimitedError,
    TransientDeliveryError,
)
from bot.channels.wecom_api import WeComAPI
from bot.channels.wecom_crypto import WeComCrypto, parse_xml
from bot.core.messages import OutgoingMessage
from tests.fakes.wecom_server import Fault, FakeWeCom, build_card_click_xml, deliver_callback

SECRET = "sEcReT-Zq8vK2-must-never-leak"
AGENT = 1000002
ROBOT_KEY = "robot-key-7d1e"
ROBOTS = {"finance-group": ROBOT_KEY}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake():
    async with FakeWeCom(apps={AGENT: SECRET}, robot_keys={ROBOT_KEY}) as server:
        yield server


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_api(session, fake, *, secret=SECRET, corp_id=None, **kw) -> WeComAPI:
    return WeComAPI(session, fake.url, corp_id or fake.corp_id, secret, AGENT, **kw)


# -- tokens --------------------------------------------------------------------------------

async def test_token_is_cached_across_sends(session, fake):
    api = make_api(session, fake)
    for i in range(5):
        await api.send_text(["zhangsan"], f"hello {i}")
    assert fake.gettoken_calls == 1
    assert [r.payload["text"]["content"] for r in fake.received] == [f"hello {i}" for i in range(5)]
    first = fake.received[0].payload
    assert first["touser"] == "zhangsan" and first["agentid"] == AGENT and first["msgtype"] == "text"
    assert first["enable_duplicate_check"] == 1 and first["duplicate_check_interval"] == 1800


async def test_token_refreshed_five_minutes_early(session, fake):
    clock = Clock()
    api = make_api(session, fake, clock=clock)
    await api.send_text(["u1"], "a")
    clock.now += 7200 - 301
    await api.send_text(["u1"], "b")
    assert fake.gettoken_calls == 1
    clock.now += 2                      # now inside the 5-minute margin
    await api.send_text(["u1"], "c")
    assert fake.gettoken_calls == 2


async def test_single_flight_refresh_on_local_expiry(session, fake):
    clock = Clock()
    api = make_api(session, fake, clock=clock)
    await api.send_text(["u0"], "warm up")
    clock.now += 7200
    await asyncio.gather(*(api.send_text([f"user{i}"], "x") for i in range(50)))
    assert fake.gettoken_calls == 2
    assert len(fake.received) == 51


async def test_single_flight_refresh_on_server_expiry(session, fake):
    api = make_api(session, fake)
    await api.send_text(["u0"], "warm up")
    fake.expire_tokens()                # every in-flight send will see 42001
    results = await asyncio.gather(*(api.send_text([f"user{i}"], "x") for i in range(50)))
    assert all(r["errcode"] == 0 for r in results)
    assert fake.gettoken_calls == 2
    assert len(fake.received) == 51


async def test_42001_refreshes_and_retries_once(session, fake):
    api = make_api(session, fake)
    fake.inject_errcode(42001, endpoint="message/send")
    await api.send_markdown(["zhangsan"], "**due**")
    assert fake.gettoken_calls == 2
    assert len(fake.received) == 1 and fake.received[0].payload["markdown"]["content"] == "**due**"


async def test_40014_refreshes_and_retries_once(session, fake):
    api = make_api(session, fake)
    await api.get_token()
    fake.tokens.clear()                 # the server forgot our token: 40014
    await api.send_text(["zhangsan"], "hi")
    assert fake.gettoken_calls == 2 and len(fake.received) == 1


async def test_persistent_token_rejection_does_not_loop(session, fake):
    api = make_api(session, fake)
    fake.inject_errcode(42001, count=5)
    with pytest.raises(TransientDeliveryError) as info:
        await api.send_text(["zhangsan"], "hi")
    assert info.value.code == 42001
    assert fake.gettoken_calls == 2 and fake.requests.count("message/send") == 2


# -- errcodes and transport failures ------------------------------------------------------------

@pytest.mark.parametrize("errcode", [45009, 45033])
async def test_rate_limit_errcodes(session, fake, errcode):
    fake.inject_errcode(errcode)
    with pytest.raises(RateLimitedError) as info:
        await make_api(session, fake).send_text(["zhangsan"], "hi")
    assert info.value.code == errcode and info.value.retry_after == 60 and info.value.retryable


async def test_60020_is_permanent_and_named(session, fake):
    fake.inject_errcode(60020, errmsg="not allow to access from your ip")
    with pytest.raises(PermanentDeliveryError) as info:
        await make_api(session, fake).send_text(["zhangsan"], "hi")
    assert info.value.code == 60020 and "60020" in str(info.value)
    assert not info.value.retryable and "IP" in info.value.reason


async def test_all_recipients_invalid_is_permanent(session):
    async with FakeWeCom(apps={AGENT: SECRET}, known_users={"zhangsan"}) as fake:
        api = make_api(session, fake)
        answer = await api.send_text(["zhangsan", "ghost"], "hi")
        assert answer["invaliduser"] == "ghost" and fake.received[0].touser == ["zhangsan"]
        with pytest.raises(PermanentDeliveryError) as info:
            await api.send_text(["ghost"], "hi")
        assert info.value.code == 81013


@pytest.mark.parametrize("kw,errcode", [({"corp_id": "wwwrongcorp"}, 40013), ({"secret": "wrong"}, 40001)])
async def test_bad_credentials_are_permanent(session, fake, kw, errcode):
    with pytest.raises(PermanentDeliveryError) as info:
        await make_api(session, fake, **kw).send_text(["zhangsan"], "hi")
    assert info.value.code == errcode and str(errcode) in str(info.value)


async def test_other_errcodes(session, fake):
    api = make_api(session, fake)
    fake.inject_errcode(-1)
    with pytest.raises(TransientDeliveryError):     # "system busy"
        await api.send_text(["zhangsan"], "hi")
    fake.inject_errcode(40008)
    with pytest.raises(PermanentDeliveryError) as info:
        await api.send_text(["zhangsan"], "hi")
    assert info.value.code == 40008


@pytest.mark.parametrize("endpoint", ["message/send", "gettoken"])
async def test_http_500_is_transient(session, fake, endpoint):
    fake.inject_http_error(500, endpoint=endpoint)
    with pytest.raises(TransientDeliveryError) as info:
        await make_api(session, fake).send_text(["zhangsan"], "hi")
    assert info.value.code == 500 and info.value.retryable


async def test_timeout_is_transient_and_may_still_arrive(session, fake):
    fake.inject_delay(1.0)
    with pytest.raises(TransientDeliveryError) as info:
        await make_api(session, fake, timeout=0.2).send_text(["zhangsan"], "slow")
    assert info.value.code == "timeout"
    # Like the real service, the request we gave up on may still be delivered: this is why
    # enable_duplicate_check is on by default.
    for _ in range(50):
        if fake.received:
            break
        await asyncio.sleep(0.05)
    assert [r.payload["text"]["content"] for r in fake.received] == ["slow"]


async def test_connection_refused_is_transient(session, fake):
    url = fake.url
    await fake.close()
    with pytest.raises(TransientDeliveryError) as info:
        await WeComAPI(session, url, fake.corp_id, SECRET, AGENT).send_text(["zhangsan"], "hi")
    assert info.value.code == "network"


async def test_random_faults_are_survivable_with_retries(session, fake):
    fake.set_fault_rate(0.4, Fault("http", status=502), seed=7)
    api = make_api(session, fake)
    failures = 0
    for i in range(20):
        while True:
            try:
                await api.send_text([f"user{i}"], f"m{i}")
                break
            except TransientDeliveryError:
                failures += 1
    assert failures > 0 and len(fake.received) == 20


# -- member and robot limits -------------------------------------------------------------------

async def test_member_limit_drops_silently(session, fake):
    api = make_api(session, fake)
    for i in range(31):
        await api.send_text(["zhangsan"], f"m{i}")    # the 31st raises nothing...
    assert len(fake.messages_to("zhangsan")) == 30 and len(fake.dropped) == 1   # ...and is lost


async def test_robot_limit_answers_45009(session, fake):
    api = make_api(session, fake)
    for i in range(20):
        await api.send_robot_text(ROBOT_KEY, f"m{i}")
    with pytest.raises(RateLimitedError):
        await api.send_robot_text(ROBOT_KEY, "one too many")
    assert len(fake.robot_messages(ROBOT_KEY)) == 20


# -- robots, cards, limits ------------------------------------------------------------------------

async def test_robot_messages_arrive_as_sent(session, fake):
    api = make_api(session, fake)
    await api.send_robot_text(ROBOT_KEY, "pay up", mentioned_list=["zhangsan", "@all"])
    await api.send_robot_markdown(ROBOT_KEY, "# Overdue\n<@lisi> **3** invoices")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    await api.send_robot_image(ROBOT_KEY, png)
    text, md, image = (r.payload for r in fake.robot_messages(ROBOT_KEY))
    assert text == {"msgtype": "text", "text": {"content": "pay up", "mentioned_list": ["zhangsan", "@all"]}}
    assert md == {"msgtype": "markdown", "markdown": {"content": "# Overdue\n<@lisi> **3** invoices"}}
    assert base64.b64decode(image["image"]["base64"]) == png
    assert image["image"]["md5"] == hashlib.md5(png).hexdigest()
    assert fake.gettoken_calls == 0       # robots need no token


async def test_bad_robot_key_is_permanent(session, fake):
    with pytest.raises(PermanentDeliveryError) as info:
        await make_api(session, fake).send_robot_text("no-such-key", "hi")
    assert info.value.code == 93000 and "93000" in str(info.value)


async def test_template_card_and_update(session, fake):
    api = make_api(session, fake)
    card = {"card_type": "button_interaction", "task_id": "t-1", "main_title": {"title": "Invoice 42"},
            "button_list": [{"text": "Paid", "style": 1, "key": "paid"}]}
    await api.send_template_card(["zhangsan"], card)
    await api.update_template_card(["zhangsan"], "rc-123", dict(card, button={"replace_name": "Done"}))
    sent, updated = fake.received
    assert sent.payload["msgtype"] == "template_card" and sent.payload["template_card"] == card
    assert updated.kind == "update_card" and updated.payload["response_code"] == "rc-123"
    assert updated.payload["agentid"] == AGENT and updated.payload["userids"] == ["zhangsan"]


async def test_byte_limits(session, fake):
    api = make_api(session, fake)
    exact = "\u4e00" * 682 + "ab"                          # 2046 + 2 = 2048 bytes
    await api.send_text(["u"], exact)
    await api.send_robot_text(ROBOT_KEY, exact)
    await api.send_robot_markdown(ROBOT_KEY, exact * 2)     # 4096 bytes
    for call in (api.send_text(["u"], exact + "c"), api.send_markdown(["u"], exact + "c"),
                 api.send_robot_text(ROBOT_KEY, exact + "c"), api.send_robot_markdown(ROBOT_KEY, exact * 2 + "c"),
                 api.send_robot_image(ROBOT_KEY, b"x" * (2 * 1024 * 1024 + 1))):
        with pytest.raises(ValueError):
            await call
    assert len(fake.received) == 3
    with pytest.raises(ValueError):
        await api.send_text([f"u{i}" for i in range(1001)], "hi")


# -- deliver(): the outbox entry ------------------------------------------------------------------

async def test_deliver_routes(session, fake):
    api = make_api(session, fake)
    png = b"\x89PNG\r\n\x1a\n fake"   # the signature: WeCom takes PNG and JPG only
    card = {"card_type": "button_interaction", "task_id": "t-9"}
    msgs = [
        OutgoingMessage("wecom", "user", "zhangsan", "**md**"),
        OutgoingMessage("wecom", "user", "zhangsan", "plain", format="text"),
        OutgoingMessage("wecom", "user", "zhangsan", "", extra={"template_card": card}),
        OutgoingMessage("wecom", "robot", "finance-group", "# md"),
        OutgoingMessage("wecom", "robot", "finance-group", "t", format="text", extra={"mentioned_list": ["lisi"]}),
        OutgoingMessage("wecom", "robot", "finance-group", "", extra={"image_base64": base64.b64encode(png).decode()}),
    ]
    for m in msgs:
        await api.deliver(m, ROBOTS)
    kinds = [(r.kind, r.payload["msgtype"]) for r in fake.received]
    assert kinds == [("app", "markdown"), ("app", "text"), ("app", "template_card"),
                     ("robot", "markdown"), ("robot", "text"), ("robot", "image")]
    assert fake.received[4].payload["text"]["mentioned_list"] == ["lisi"]
    assert base64.b64decode(fake.received[5].payload["image"]["base64"]) == png


@pytest.mark.parametrize("msg,code", [
    (OutgoingMessage("wecom", "robot", "unknown-robot", "x"), "no_robot_key"),
    (OutgoingMessage("wecom", "user", "zhangsan", "x" * 2049), "invalid_content"),
    (OutgoingMessage("wecom", "group", "chat1", "x"), "bad_target_kind"),
    (OutgoingMessage("wecom", "robot", "finance-group", "", extra={"image_base64": "%%%"}), "invalid_content"),
])
async def test_deliver_refuses_what_can_never_succeed(session, fake, msg, code):
    with pytest.raises(PermanentDeliveryError) as info:
        await make_api(session, fake).deliver(msg, ROBOTS)
    assert info.value.code == code and not fake.received


# -- secrets ------------------------------------------------------------------------------------

async def test_secret_and_token_never_leak(session, fake, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []

    async def collect(coro):
        try:
            await coro
        except DeliveryError as exc:
            errors.append(exc)

    api = make_api(session, fake, timeout=0.2)
    await api.send_text(["u"], "ok")                    # get a token so it could leak
    token = api._tokens.current
    fake.inject_errcode(40008, errmsg=f"echo {SECRET} {token}")   # a server that echoes credentials
    await collect(api.send_text(["u"], "x"))
    fake.inject_errcode(42001, count=2)
    await collect(api.send_text(["u"], "x"))
    for fault in (Fault("http", "*"), Fault("delay", "*", delay=1.0), Fault("errcode", "*", errcode=60020)):
        fake.expire_tokens()
        fake.inject(fault)
        await collect(api.send_text(["u"], "x"))
    await collect(make_api(session, fake, corp_id="wwbad").send_text(["u"], "x"))
    await collect(WeComAPI(session, "http://127.0.0.1:1", fake.corp_id, SECRET, AGENT).send_text(["u"], "x"))
    await collect(WeComAPI(session, "http://127.0.0.1:99999", fake.corp_id, SECRET, AGENT).send_text(["u"], "x"))
    await collect(api.send_robot_text(ROBOT_KEY + "x", "x"))
    assert len(errors) == 9
    tokens = [token, *fake.tokens]
    for exc in errors:
        rendered = "".join(traceback.format_exception(exc)) + repr(exc) + str(getattr(exc, "code", ""))
        for secret in (SECRET, *tokens):
            assert secret not in rendered, rendered
    assert SECRET not in caplog.text and not any(t in caplog.text for t in tokens)
    assert SECRET not in repr(api)


# -- the fake's callback sender -------------------------------------------------------------------

async def test_deliver_callback_retries_like_wecom(session, aiohttp_server):
    crypto = WeComCrypto("tok", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwfakecorp0001")
    seen: list[dict] = []

    async def bot(request: web.Request) -> web.Response:
        q = request.query
        seen.append(parse_xml(crypto.decrypt_body(q["msg_signature"], q["timestamp"], q["nonce"],
                                                  await request.read())))
        if len(seen) == 1:
            await asyncio.sleep(0.5)                      # too slow: WeCom gives up and retries
        if len(seen) == 2:
            return web.Response(status=500)
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/wecom/callback", bot)
    server = await aiohttp_server(app)
    xml_text = build_card_click_xml("wwfakecorp0001", "zhangsan", event_key="paid", task_id="t-1",
                                    response_code="rc-1", agent_id=AGENT)
    attempts = await deliver_callback(session, str(server.make_url("/wecom/callback")), crypto, xml_text,
                                      timeout=0.2)
    assert [status for status, _ in attempts] == [None, 500, 200]
    assert all(s == seen[0] for s in seen) and seen[0]["TaskId"] == "t-1"
    assert seen[0]["Event"] == "template_card_event" and seen[0]["ResponseCode"] == "rc-1"
