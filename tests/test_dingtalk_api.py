"""DingTalkAPI against the fake DingTalk: tokens, error mapping, custom robots, deliver()."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.channels.dingtalk_api import DingTalkAPI
from bot.channels.errors import PermanentDeliveryError, RateLimitedError, TransientDeliveryError
from bot.core.messages import OutgoingMessage
from tests.fakes.dingtalk_server import FakeDingTalk

ROBOT_SECRET = "SECfake0123456789abcdefROBOT"


@pytest.fixture
async def fake():
    async with FakeDingTalk() as f:
        yield f


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_api(session, fake, **kw):
    kw.setdefault("timeout", 0.5)
    return DingTalkAPI(session, fake.url, fake.url, app_key=fake.app_key, app_secret=fake.app_secret,
                       robot_code=fake.robot_code, **kw)


def assert_no_secrets(exc: Exception, fake: FakeDingTalk, *extra: str) -> None:
    text = f"{exc} {exc!r} {getattr(exc, 'reason', '')}"
    for secret in (fake.app_secret, *fake.tokens, *extra):
        assert secret not in text


async def test_token_cached_and_single_flight(session, fake):
    api = make_api(session, fake)
    await asyncio.gather(*(api.send_to_users([f"u{i}"], "sampleText", {"content": "hi"}) for i in range(50)))
    assert fake.token_requests == 1 and api.token_fetches == 1
    assert len(fake.messages("batchSend")) == 50
    await api.send_to_group("cidG", "sampleText", {"content": "again"})
    assert fake.token_requests == 1


async def test_token_refreshed_early(session, fake):
    now = [0.0]
    api = make_api(session, fake, clock=lambda: now[0])
    await api.send_to_users(["u1"], "sampleText", {"content": "a"})
    now[0] = 7200 - 299  # inside the early-refresh margin (5 min before expiry)
    await api.send_to_users(["u1"], "sampleText", {"content": "b"})
    assert fake.token_requests == 2


async def test_expired_token_refreshed_once_and_retried(session, fake):
    api = make_api(session, fake)
    await api.send_to_users(["u1"], "sampleText", {"content": "a"})
    fake.inject("token_expired")
    await asyncio.gather(*(api.send_to_users(["u1"], "sampleText", {"content": "b"}) for _ in range(10)))
    assert fake.token_requests == 2          # one refresh for all ten, not ten refreshes
    assert len(fake.messages("batchSend")) == 11


async def test_msg_param_is_json_string_and_recorded(session, fake):
    api = make_api(session, fake)
    await api.send_to_users(["u1", "u2"], "sampleMarkdown", {"title": "Overdue", "text": "**ACME** 10,000"})
    r = fake.messages("batchSend")[0]
    assert isinstance(r.payload["msgParam"], str)
    assert r.msg_param == {"title": "Overdue", "text": "**ACME** 10,000"}
    assert r.payload["userIds"] == ["u1", "u2"] and r.payload["robotCode"] == fake.robot_code


async def test_more_than_20_users_rejected(session, fake):
    api = make_api(session, fake)
    with pytest.raises(ValueError, match="20"):
        await api.send_to_users([f"u{i}" for i in range(21)], "sampleText", {"content": "x"})
    assert fake.requests == []


async def test_all_recipients_invalid_is_permanent(session, fake):
    fake.invalid_staff_ids.add("ghost")
    api = make_api(session, fake)
    with pytest.raises(PermanentDeliveryError):
        await api.send_to_users(["ghost"], "sampleText", {"content": "x"})


async def test_throttling_is_rate_limited(session, fake):
    api = make_api(session, fake)
    fake.inject("throttle")
    with pytest.raises(RateLimitedError) as ei:
        await api.send_to_users(["u1"], "sampleText", {"content": "x"})
    assert ei.value.retryable and "Throttling" in str(ei.value.code)
    assert_no_secrets(ei.value, fake)


async def test_http_500_is_transient(session, fake):
    api = make_api(session, fake)
    fake.inject("http", status=500)
    with pytest.raises(TransientDeliveryError) as ei:
        await api.send_to_group("cidG", "sampleText", {"content": "x"})
    assert_no_secrets(ei.value, fake)


async def test_timeout_is_transient(session, fake):
    api = make_api(session, fake, timeout=0.2)
    fake.inject("delay", delay=1.0)
    with pytest.raises(TransientDeliveryError, match="timed out"):
        await api.send_to_users(["u1"], "sampleText", {"content": "x"})


async def test_connection_refused_is_transient(session, fake):
    api = DingTalkAPI(session, "http://127.0.0.1:9", "http://127.0.0.1:9", app_key="k",
                      app_secret="very-secret-value", robot_code="r", timeout=0.5)
    with pytest.raises(TransientDeliveryError) as ei:
        await api.send_to_users(["u1"], "sampleText", {"content": "x"})
    assert "very-secret-value" not in str(ei.value)


async def test_other_4xx_is_permanent_and_bad_app_secret_too(session, fake):
    api = make_api(session, fake)
    fake.inject("http", status=400)
    with pytest.raises(PermanentDeliveryError):
        await api.send_to_users(["u1"], "sampleText", {"content": "x"})
    bad = DingTalkAPI(session, fake.url, fake.url, app_key=fake.app_key, app_secret="wrong-secret-xyz",
                      robot_code=fake.robot_code)
    with pytest.raises(PermanentDeliveryError) as ei:
        await bad.send_to_users(["u1"], "sampleText", {"content": "x"})
    assert "wrong-secret-xyz" not in str(ei.value)


async def test_custom_robot_signed_and_accepted(session, fake):
    url = fake.add_robot("robottoken123", secret=ROBOT_SECRET)
    api = make_api(session, fake)
    await api.send_custom_robot(url, ROBOT_SECRET, {"msgtype": "text", "text": {"content": "hello"},
                                                    "at": {"atUserIds": ["staff1"]}})
    r = fake.messages("robot")[0]
    assert r.payload["text"]["content"] == "hello" and r.target == "robottoken123"


async def test_custom_robot_sign_mismatch_is_permanent(session, fake):
    url = fake.add_robot("robottoken123", secret=ROBOT_SECRET)
    api = make_api(session, fake)
    with pytest.raises(PermanentDeliveryError, match="sign not match") as ei:
        await api.send_custom_robot(url, "SECwrong-secret-0000", {"msgtype": "text", "text": {"content": "x"}})
    assert ei.value.code == 310000 and not ei.value.retryable
    assert_no_secrets(ei.value, fake, "robottoken123", "SECwrong-secret-0000", ROBOT_SECRET)


async def test_custom_robot_stale_timestamp_is_permanent(session, fake):
    url = fake.add_robot("rt", secret=ROBOT_SECRET)
    api = make_api(session, fake, wall_ms=lambda: 1_000_000_000_000)  # clock far in the past
    with pytest.raises(PermanentDeliveryError, match="invalid timestamp"):
        await api.send_custom_robot(url, ROBOT_SECRET, {"msgtype": "text", "text": {"content": "x"}})


async def test_custom_robot_over_20_per_minute_is_throttled(session, fake):
    url = fake.add_robot("rt", secret=ROBOT_SECRET)
    api = make_api(session, fake)
    for i in range(20):
        await api.send_custom_robot(url, ROBOT_SECRET, {"msgtype": "text", "text": {"content": str(i)}})
    with pytest.raises(RateLimitedError) as ei:
        await api.send_custom_robot(url, ROBOT_SECRET, {"msgtype": "text", "text": {"content": "21"}})
    assert ei.value.retry_after == 600 and ei.value.code == 130101
    assert_no_secrets(ei.value, fake, ROBOT_SECRET)


async def test_deliver_routes_every_target_kind(session, fake):
    api = make_api(session, fake)
    url = fake.add_robot("rt", secret=ROBOT_SECRET)
    session_url, expires = fake.session_webhook()
    await api.deliver(OutgoingMessage("dingtalk", "user", "staff9", "**ACME** owes 5", title="Overdue"), {})
    await api.deliver(OutgoingMessage("dingtalk", "group", "cidG", "plain", format="text"), {})
    await api.deliver(OutgoingMessage("dingtalk", "session", session_url, "reply", format="text",
                                      extra={"expires_ms": expires}), {})
    await api.deliver(OutgoingMessage("dingtalk", "robot", "finance", "## Aging\nrows", extra={"at_user_ids": ["s1"]}),
                      {"finance": {"url": url, "secret": ROBOT_SECRET}})
    user, group = fake.messages("batchSend")[0], fake.messages("groupSend")[0]
    assert user.payload["msgKey"] == "sampleMarkdown" and user.msg_param == {"title": "Overdue", "text": "**ACME** owes 5"}
    assert group.payload["msgKey"] == "sampleText" and group.msg_param == {"content": "plain"}
    assert fake.messages("session")[0].payload == {"msgtype": "text", "text": {"content": "reply"}}
    robot = fake.messages("robot")[0].payload
    assert robot["msgtype"] == "markdown" and robot["markdown"]["title"] == "Aging"
    assert robot["at"]["atUserIds"] == ["s1"]
    with pytest.raises(PermanentDeliveryError):
        await api.deliver(OutgoingMessage("dingtalk", "robot", "unknown", "x"), {})


async def test_expired_session_webhook_is_permanent(session, fake):
    api = make_api(session, fake)
    url, _ = fake.session_webhook()
    with pytest.raises(PermanentDeliveryError, match="expired"):
        await api.send_session_webhook(url, {"msgtype": "text", "text": {"content": "x"}}, expires_ms=1)
    gone, _ = fake.session_webhook(ttl=-1)     # DingTalk itself says the session is gone
    with pytest.raises(PermanentDeliveryError) as ei:
        await api.send_session_webhook(gone, {"msgtype": "text", "text": {"content": "x"}})
    assert gone.split("session=")[1] not in str(ei.value)


async def test_oapi_http_500_is_transient(session, fake):
    api = make_api(session, fake)
    url = fake.add_robot("rt")
    fake.inject("http", status=502, endpoint="robot")
    with pytest.raises(TransientDeliveryError):
        await api.send_custom_robot(url, None, {"msgtype": "text", "text": {"content": "x"}})
    await api.send_custom_robot(url, None, {"msgtype": "text", "text": {"content": "x"}})
    assert len(fake.messages("robot")) == 1


async def test_server_echoing_a_secret_is_redacted(session, fake):
    url = fake.add_robot("robottoken123", secret=ROBOT_SECRET)
    api = make_api(session, fake)
    fake.inject("errcode", endpoint="robot", errcode=310000,
                errmsg=f"keywords not in content, token robottoken123 secret {ROBOT_SECRET}")
    with pytest.raises(PermanentDeliveryError, match="keywords not in content") as ei:
        await api.send_custom_robot(url, ROBOT_SECRET, {"msgtype": "text", "text": {"content": "x"}})
    assert_no_secrets(ei.value, fake, "robottoken123", ROBOT_SECRET)
