"""DingTalk interactive cards (互动卡片) end to end: the real bot on loopback against the fake DingTalk.

The morning push delivers item cards (createAndDeliver from the configured template); a click
comes back over the Stream socket or, in HTTP mode, to the card route the bot registered at
start-up, signed with its apiSecret; it is recorded like a WeCom or Feishu click and the card is
updated in place (the outcome where the buttons were).
"""
from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select

from bot.channels.dingtalk import capabilities
from bot.channels.dingtalk_cards import click_from_callback
from bot.config import DingTalkConfig
from storage.models import FollowUp, InboundEvent, Promise, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.fakes.dingtalk_server import FakeDingTalk
from tests.harness import Bot

SECRET = "card-callback-secret-0123456789"
BUTTONS = ["已联系", "本周五付", "下周五付", "月底付", "有异议"]


@pytest.fixture
async def fake():
    async with FakeDingTalk() as f:
        yield f


async def start_bot(aiohttp_client, db, fake: FakeDingTalk, mode: str) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    dingtalk = {"enabled": True, "mode": mode, "app_key": fake.app_key, "app_secret": fake.app_secret,
                "robot_code": fake.robot_code, "api_base": fake.url, "oapi_base": fake.url,
                "card_template_id": "arbot_card.schema", "card_buttons": True, "card_items": 2,
                "card_callback_secret": SECRET}
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                          dingtalk=dingtalk, server={"public_url": "http://placeholder.invalid"})
    fake.clock = lambda: bot.clock.now().timestamp()
    return bot


async def settle(bot: Bot) -> None:
    await bot.state.inbound.wait_idle()
    await bot.state.sender.drain()


def texts_to(fake: FakeDingTalk, user: str) -> list[str]:
    return [(r.msg_param or {}).get("text") or (r.msg_param or {}).get("content") or ""
            for r in fake.messages("batchSend") if r.target == user]


async def followups(db) -> list[FollowUp]:
    async with db.session() as s:
        return list((await s.execute(select(FollowUp).where(FollowUp.channel == "dingtalk"))).scalars())


async def pushed_cards(bot: Bot, fake: FakeDingTalk):
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    cards = fake.cards_to("dt_rep1")
    # the two oldest of rep1's items: 3. INV-B2 (206 days) and 1. INV-A3 (60 days)
    assert [c.params["title"] for c in cards] == ["3. 苏州明达电子科技有限公司 INV-B2", "1. 上海恒信机电有限公司 INV-A3"]
    assert [b["label"] for b in cards[0].buttons()] == BUTTONS
    assert all(c.template_id == "arbot_card.schema" and c.params["answered"] == "false" for c in cards)
    return cards


async def test_a_click_over_stream_records_a_promise_and_updates_the_card(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake, "stream")
    await fake.wait_until(lambda: fake.ws is not None, timeout=5)
    subscribed = [s["topic"] for s in fake.open_requests[-1]["subscriptions"]]
    assert "/v1.0/card/instances/callback" in subscribed and "/v1.0/im/bot/messages/get" in subscribed
    card = (await pushed_cards(bot, fake))[0]
    assert card.callback_type == "STREAM"
    bot.clock.set(at("2026-11-23 10:00"))                      # a Monday: 本周五 is 11月27日
    key = card.buttons()[1]["key"]                             # 本周五付 on INV-B2
    code, _ = await fake.click(card, key)
    assert code == 200
    assert (await fake.wait_ack(await fake.push("CALLBACK", "/v1.0/card/instances/callback",
                                                fake.card_callback(card, key))))["code"] == 200   # delivered twice
    await settle(bot)
    [fu] = await followups(db)
    assert fu.outcome == "promised" and fu.promised_date == date(2026, 11, 27)
    async with db.session() as s:
        [promise] = (await s.execute(select(Promise))).scalars().all()
        assert promise.promised_date == date(2026, 11, 27)
        assert (await s.get(Receivable, promise.receivable_id)).invoice_no == "INV-B2"
    # the card now shows what was recorded, and no button to click a second time
    assert card.params["answered"] == "true" and card.buttons() == []
    assert card.params["description"] == "已记录：承诺11月27日付"
    assert "已记录第3笔 INV-B2：承诺11月27日付款" in texts_to(fake, "dt_rep1")[-1]
    with pytest.raises(AssertionError):
        await fake.click(card, key)


async def test_http_mode_registers_the_route_and_takes_signed_clicks(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake, "http")
    await fake.wait_until(lambda: "arbot_cards" in fake.card_routes)
    url, api_secret = fake.card_routes["arbot_cards"]
    assert url == "http://placeholder.invalid/dingtalk/card" and api_secret == SECRET
    fake.card_routes["arbot_cards"] = (str(bot.client.make_url("/dingtalk/card")), api_secret)   # loopback here
    card = (await pushed_cards(bot, fake))[1]
    assert card.callback_type == "HTTP" and card.route_key == "arbot_cards"
    session = bot.client.session
    key = card.buttons()[4]["key"]                             # 有异议 on INV-A3
    # a forged signature and a stale timestamp are refused before anything is stored
    assert (await fake.click(card, key, session=session, secret="forged"))[0] == 401
    stale = int(bot.clock.now().timestamp() * 1000) - 2 * 3600 * 1000
    assert (await fake.click(card, key, session=session, timestamp_ms=stale))[0] == 401
    async with db.session() as s:
        assert (await s.execute(select(InboundEvent))).scalars().all() == []
    status, body = await fake.click(card, key, session=session)
    assert (status, json.loads(body)) == (200, {})
    await settle(bot)
    [fu] = await followups(db)
    assert fu.outcome == "dispute"
    assert card.buttons() == [] and card.params["description"] == "已记录：有异议"
    health = (await (await bot.client.get("/healthz")).json())["channels"]["dingtalk"]
    assert health["card_route"]["registered"] is True and health["rejected"] == 2


async def test_a_click_by_someone_else_changes_nothing(fake, aiohttp_client, db):
    bot = await start_bot(aiohttp_client, db, fake, "stream")
    await fake.wait_until(lambda: fake.ws is not None, timeout=5)
    card = (await pushed_cards(bot, fake))[0]
    code, _ = await fake.click(card, card.buttons()[0]["key"], user_id="dt_rep2")
    assert code == 200
    await settle(bot)
    assert await followups(db) == [] and card.params["answered"] == "false"


def test_cards_are_declared_only_with_a_template():
    assert capabilities(DingTalkConfig()).cards is False
    caps = capabilities(DingTalkConfig(card_template_id="t.schema", card_buttons=True, card_items=3))
    assert caps.cards is True and caps.cards_per_push == 3
    assert capabilities(DingTalkConfig(card_template_id="t.schema")).cards_per_push == 0


@pytest.mark.parametrize("payload", [
    {"userId": ["x"], "outTrackId": "t"}, {"outTrackId": "t"}, "a string", {"userId": "u", "userIdType": 2},
])
def test_a_callback_without_a_usable_user_is_refused(payload):
    with pytest.raises(ValueError):
        click_from_callback(payload)


@pytest.mark.parametrize("content", ["not json", json.dumps({"cardPrivateData": {"params": {"key": 5}}}),
                                     json.dumps({"cardPrivateData": []}), json.dumps([1, 2])])
def test_a_callback_of_odd_shape_is_not_a_click(content):
    assert click_from_callback({"userId": "u", "outTrackId": "t", "type": "actionCallback",
                                "content": content}) is None


async def test_the_card_route_refuses_like_every_callback(fake, aiohttp_client, db):
    """The bad-request policy of bot/core/intake.py holds on the card route too (400, 415, 413)."""
    from bot.channels.dingtalk_cards import card_sign
    bot = await start_bot(aiohttp_client, db, fake, "http")
    ts = str(int(bot.clock.now().timestamp() * 1000))
    signed = {"x-ddpaas-signature-timestamp": ts, "x-ddpaas-signature": card_sign(SECRET, ts)}
    cases = [({"Content-Type": "application/json"}, b"{not json", 400, "malformed"),
             ({"Content-Type": "application/json"}, json.dumps({"outTrackId": "t"}).encode(), 400, "malformed"),
             ({"Content-Type": "text/html"}, b"{}", 415, "unsupported_media_type"),
             ({"Content-Type": "application/json"}, b"x" * (2 * 1024 * 1024), 413, "too_large")]
    for headers, body, status, error in cases:
        resp = await bot.client.post("/dingtalk/card", data=body, headers={**signed, **headers})
        assert (resp.status, (await resp.json())["error"]) == (status, error)
    async with db.session() as s:
        assert (await s.execute(select(InboundEvent))).scalars().all() == []


async def test_the_fake_holds_card_calls_to_the_documented_shape(fake):
    """What the bot is held to: a known template, string-only card data, the IM_ROBOT space, a
    registered route for HTTP callbacks, a token; and a card that did not reach its person is
    a permanent failure, not a success."""
    import aiohttp

    from bot.channels.dingtalk_api import DingTalkAPI
    from bot.channels.errors import PermanentDeliveryError
    async with aiohttp.ClientSession() as session:
        api = DingTalkAPI(session, fake.url, fake.url, app_key=fake.app_key, app_secret=fake.app_secret,
                          robot_code=fake.robot_code)
        params = {"title": "t", "description": "d", "buttons": "[]", "answered": "false"}
        with pytest.raises(PermanentDeliveryError, match="cardTemplateNotExist"):
            await api.deliver_card("c1", "dt_rep1", "no-such.schema", params)
        with pytest.raises(PermanentDeliveryError, match="cardParamMapInvalid"):
            await api.deliver_card("c1", "dt_rep1", "arbot_card.schema", {**params, "answered": False})
        with pytest.raises(PermanentDeliveryError, match="callbackInvalid"):
            await api.deliver_card("c1", "dt_rep1", "arbot_card.schema", params, callback_route_key="unregistered")
        fake.invalid_staff_ids.add("dt_gone")
        with pytest.raises(PermanentDeliveryError, match="visible range"):
            await api.deliver_card("c2", "dt_gone", "arbot_card.schema", params)
        with pytest.raises(PermanentDeliveryError, match="outTrackIdInvalid"):
            await api.update_card("never-sent", params)
        fake.expire_tokens()                      # a stale token is refreshed once, then the call goes
        await api.deliver_card("c3", "dt_rep1", "arbot_card.schema", params)
        assert fake.cards["c3"].callback_type == "STREAM" and fake.cards["c3"].user_id == "dt_rep1"
        assert list(fake.cards) == ["c3"]


def test_http_cards_need_a_secret_and_a_public_url():
    """Without them DingTalk could not reach the card route, or the bot could not tell its clicks
    from forged ones: refused at start-up, with what to set."""
    from bot.config import ConfigError, redacted, validate
    from tests.harness import config_for
    base = dict(enabled=True, mode="http", app_key="k", app_secret="s", card_template_id="t.schema")
    with pytest.raises(ConfigError, match="card_callback_secret"):
        validate(config_for("sqlite:///x.db", dingtalk=base, server={"public_url": "https://a.example"}))
    with pytest.raises(ConfigError, match="public_url"):
        validate(config_for("sqlite:///x.db", dingtalk={**base, "card_callback_secret": SECRET}))
    validate(config_for("sqlite:///x.db", dingtalk={**base, "mode": "stream"}))          # Stream needs neither
    cfg = config_for("sqlite:///x.db", dingtalk={**base, "card_callback_secret": SECRET},
                     server={"public_url": "https://a.example"})
    validate(cfg)
    assert redacted(cfg)["dingtalk"]["card_callback_secret"] == "***"
