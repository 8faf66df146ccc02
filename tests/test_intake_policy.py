"""One bad-request policy for every platform (bot/core/intake.py): the WeCom, DingTalk and Feishu callback
endpoints refuse a forged signature, a malformed body, an oversize body and a wrong content type
with the same status and the same JSON body shape, store nothing, and count the refusal on the
channel's health. A storage fault stays 503 (tests/test_storage_faults.py)."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from bot.channels import feishu_crypto
from bot.channels.dingtalk_crypto import robot_sign
from bot.channels.wecom_crypto import WeComCrypto
from storage.models import InboundEvent
from tests.conftest import at
from tests.fakes.dingtalk_server import FakeDingTalk, build_signed_callback
from tests.fakes.feishu_server import FakeFeishu
from tests.fakes.wecom_server import FakeWeCom, build_callback, build_text_message_xml
from tests.harness import Bot

AGENT = 1000002
TOKEN = "cbTok3n"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
TWO_MB = 2 * 1024 * 1024


@pytest.fixture
async def bot(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: "secret"}) as wecom, FakeDingTalk() as dingtalk, FakeFeishu() as feishu:
        b = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"),
                            wecom=dict(enabled=True, corp_id=wecom.corp_id, agent_id=str(AGENT), secret="secret",
                                       token=TOKEN, encoding_aes_key=AES_KEY, api_base=wecom.url),
                            dingtalk=dict(enabled=True, app_key=dingtalk.app_key, app_secret=dingtalk.app_secret,
                                          robot_code=dingtalk.robot_code, api_base=dingtalk.url,
                                          oapi_base=dingtalk.url),
                            feishu=dict(enabled=True, app_id=feishu.app_id, app_secret=feishu.app_secret,
                                        verification_token=feishu.verification_token,
                                        encrypt_key=feishu.encrypt_key, api_base=feishu.url))
        b.corp_id, b.dingtalk_secret, b.feishu = wecom.corp_id, dingtalk.app_secret, feishu
        yield b


# Each builder returns (path, query, headers, body) for one platform and one kind of bad request.

def _wecom(bot, *, forged=False, body: bytes | None = None, content_type="text/xml"):
    crypto = WeComCrypto(TOKEN, AES_KEY, bot.corp_id)
    xml = build_text_message_xml(bot.corp_id, "wx_gm", "/aging", msg_id=1, agent_id=AGENT)
    query, signed = build_callback(crypto, xml, int(time.time()), "n0nce")
    if forged:
        query["msg_signature"] = "0" * 40
    return "/wecom/callback", query, {"Content-Type": content_type}, signed.encode() if body is None else body


def _dingtalk(bot, *, forged=False, body: bytes | None = None, content_type="application/json"):
    ts = int(bot.clock.now().timestamp() * 1000)
    payload = {"msgtype": "text", "text": {"content": "/aging"}, "msgId": "m1", "conversationType": "1",
               "senderStaffId": "dt_gm"}
    headers, raw = build_signed_callback(bot.dingtalk_secret, payload, ts)
    if forged:
        headers["sign"] = robot_sign("not-the-secret", str(ts))
    return "/dingtalk/callback", {}, {**headers, "Content-Type": content_type}, raw if body is None else body


def _feishu(bot, *, forged=False, body: bytes | None = None, content_type="application/json"):
    fake = bot.feishu
    headers, signed = fake.sign_and_encrypt(fake.text_event("fs_gm", "/aging", message_id="om_policy"))
    if body is not None:            # the signature covers the body: a malformed one is signed as sent
        headers, _ = fake.sign_and_encrypt({})
        headers["X-Lark-Signature"] = feishu_crypto.signature(fake.encrypt_key, headers["X-Lark-Request-Timestamp"],
                                                              headers["X-Lark-Request-Nonce"], body)
    if forged:
        headers["X-Lark-Signature"] = "0" * 64
    return "/feishu/events", {}, {**headers, "Content-Type": content_type}, signed if body is None else body


PLATFORMS = (("wecom", _wecom), ("dingtalk", _dingtalk), ("feishu", _feishu))

CASES = {
    "bad signature": (dict(forged=True), 401, "bad_signature"),
    "malformed body": (dict(body=b"<xml><Encrypt>abc</Encrypt"), 400, "malformed"),
    "oversize body": (dict(body=b"x" * TWO_MB), 413, "too_large"),
    "wrong content type": (dict(content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_same_refusal_on_every_platform(bot, db, case):
    kwargs, status, error = CASES[case]
    answers = {}
    for platform, build in PLATFORMS:
        path, query, headers, body = build(bot, **kwargs)
        resp = await bot.client.post(path, params=query, headers=headers, data=body)
        answers[platform] = (resp.status, resp.content_type, await resp.json())
    for platform, (got, content_type, body) in answers.items():
        assert (got, content_type) == (status, "application/json"), (platform, body)
        assert set(body) == {"error", "reason"} and body["error"] == error, (platform, body)
        assert isinstance(body["reason"], str) and body["reason"]
    health = (await (await bot.client.get("/healthz")).json())["channels"]
    for platform in answers:
        assert health[platform]["rejected"] == 1
        assert health[platform]["last_rejection"].startswith(f"{status} {error}")
        assert health[platform]["status"] == "enabled"      # a refusal does not make a channel unhealthy
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one() == 0


async def test_good_requests_pass_on_both_and_an_absent_content_type_is_read(bot, db):
    for platform, build in PLATFORMS:
        path, query, headers, body = build(bot)
        del headers["Content-Type"]
        resp = await bot.client.post(path, params=query, headers=headers, data=body,
                                     skip_auto_headers=("Content-Type",))
        assert resp.status == 200, (platform, await resp.text())
    await bot.state.inbound.wait_idle()
    health = (await (await bot.client.get("/healthz")).json())["channels"]
    assert {p: (h["status"], h["accepted"]) for p, h in health.items() if p != "local"} == {
        "wecom": ("ok", 1), "dingtalk": ("ok", 1), "feishu": ("ok", 1)}
    async with db.session() as s:
        rows = (await s.execute(select(InboundEvent.platform))).scalars().all()
    assert sorted(rows) == ["dingtalk", "feishu", "wecom"]


async def test_a_local_chat_refusal_has_the_same_shape(bot):
    resp = await bot.client.post("/local/messages", data="hello", headers={"Content-Type": "text/plain"})
    assert resp.status == 415 and set(await resp.json()) == {"error", "reason"}
    resp = await bot.client.post("/local/messages", data=json.dumps([1]), headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"] == "malformed"


async def test_a_storage_fault_is_503_on_every_platform(bot, db, monkeypatch):
    """Verified, but the database cannot store it: 503 with Retry-After (the platform delivers it
    again later), the same body shape; never a 200 for an event that was not stored."""
    from storage.db import StorageUnavailable

    async def cannot_store(msg, *, handle=True):
        raise StorageUnavailable("disk full")

    monkeypatch.setattr(bot.state.inbound, "receive", cannot_store)
    for platform, build in PLATFORMS:
        path, query, headers, body = build(bot)
        resp = await bot.client.post(path, params=query, headers=headers, data=body)
        assert (resp.status, resp.headers.get("Retry-After")) == (503, "5"), platform
        assert (await resp.json())["error"] == "storage_unavailable"
