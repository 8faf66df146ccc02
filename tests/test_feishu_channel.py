"""The Feishu adapter end to end, on loopback: the real bot app with ``[feishu] enabled`` receives
signed, encrypted event callbacks (and long-connection frames) like Feishu sends them and
answers through a fake Feishu open platform (tests/fakes/feishu_server.py)."""
from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from sqlalchemy import select

from bot import outbox
from bot.channels import feishu_crypto
from bot.channels.feishu import FeishuChannel, interactive_card, split_for_body
from bot.channels.feishu_api import FeishuAPI
from bot.channels.feishu_ws import Frame
from bot.config import FeishuConfig
from bot.core.messages import Button, Card, OutgoingMessage
from storage.models import FollowUp, InboundEvent, OutboxMessage, PersonAccount
from tests import ledger_fixture
from tests.conftest import at
from tests.fakes.feishu_server import FakeFeishu
from tests.harness import Bot

SECRET = "fs-app-sEcReT-never-logged"
VTOKEN = "fs-vToken-never-logged"
EKEY = "fs-encrypt-KEY-never-logged"
PEOPLE = {"gm": "fs_gm", "sup1": "fs_sup1", "rep1": "fs_rep1", "rep2": "fs_rep2", "fin1": "fs_fin1"}


@pytest.fixture
async def fake():
    async with FakeFeishu(app_id="cli_test0001", app_secret=SECRET, verification_token=VTOKEN,
                          encrypt_key=EKEY) as server:
        yield server


def feishu_config(fake, **extra) -> dict:
    return {**dict(enabled=True, app_id=fake.app_id, app_secret=SECRET, verification_token=VTOKEN, encrypt_key=EKEY,
                   api_base=fake.url, bot_open_id="ou_bot"), **extra}


async def start_bot(aiohttp_client, db, fake, **extra) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        for person, uid in PEOPLE.items():
            s.add(PersonAccount(platform="feishu", user_id=uid, person_id=person))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           feishu=feishu_config(fake, **extra))


async def post(bot: Bot, fake: FakeFeishu, payload: dict) -> tuple[int, str]:
    return await fake.post_event(bot.client.session, str(bot.client.make_url("/feishu/events")), payload)


async def settle(bot: Bot) -> None:
    await bot.state.inbound.wait_idle()
    await bot.state.sender.drain()


async def events(db) -> list[InboundEvent]:
    async with db.session() as s:
        return list((await s.execute(select(InboundEvent).order_by(InboundEvent.id))).scalars())


def md(sent) -> str:
    return sent.content["zh_cn"]["content"][0][0]["text"]


# -- the URL check and what is refused ----------------------------------------------------------

async def test_url_verification_echoes_the_challenge(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    headers, body, challenge = fake.url_verification()
    resp = await bot.client.post("/feishu/events", data=body, headers=headers)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == {"challenge": challenge}
    # the same check with another app's token is refused
    plain = json.dumps({"challenge": "c", "token": "not-ours", "type": "url_verification"})
    resp = await bot.client.post("/feishu/events", json={"encrypt": feishu_crypto.encrypt(EKEY, plain)})
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    assert await events(db) == []


def _tampered_body(fake):
    headers, body = fake.sign_and_encrypt(fake.text_event("fs_gm", "/aging"))
    return headers, body.replace(b'"encrypt": "', b'"encrypt": "AAAA')


def _forged_signature(fake):
    headers, body = fake.sign_and_encrypt(fake.text_event("fs_gm", "/aging"))
    return {**headers, "X-Lark-Signature": "0" * 64}, body


def _unsigned(fake):
    headers, body = fake.sign_and_encrypt(fake.text_event("fs_gm", "/aging"))
    return {"Content-Type": "application/json"}, body


def _plain_body(fake):   # no encryption while an encrypt key is configured
    return fake.sign_and_encrypt(fake.text_event("fs_gm", "/aging"), encrypt=False)


def _wrong_token(fake):
    return fake.sign_and_encrypt(fake.text_event("fs_gm", "/aging", token="other-app-token"))


def _other_app(fake):
    return fake.sign_and_encrypt(fake.text_event("fs_gm", "/aging", app_id="cli_someoneelse"))


def _garbage_inside(fake):
    body = json.dumps({"encrypt": feishu_crypto.encrypt(EKEY, "not json {")}).encode()
    headers, _ = fake.sign_and_encrypt({})
    headers["X-Lark-Signature"] = feishu_crypto.signature(EKEY, headers["X-Lark-Request-Timestamp"],
                                                          headers["X-Lark-Request-Nonce"], body)
    return headers, body


@pytest.mark.parametrize("make, status, error", [
    (_tampered_body, 401, "bad_signature"), (_forged_signature, 401, "bad_signature"),
    (_unsigned, 401, "bad_signature"), (_plain_body, 401, "bad_signature"), (_wrong_token, 401, "bad_signature"),
    (_other_app, 403, "forbidden"), (_garbage_inside, 400, "malformed")])
async def test_refused_callbacks_have_the_common_shape_and_store_nothing(aiohttp_client, db, fake, make, status,
                                                                         error):
    bot = await start_bot(aiohttp_client, db, fake)
    headers, body = make(fake)
    resp = await bot.client.post("/feishu/events", data=body, headers=headers)
    answer = await resp.json()
    assert (resp.status, resp.content_type) == (status, "application/json")
    assert set(answer) == {"error", "reason"} and answer["error"] == error
    assert EKEY not in answer["reason"] and VTOKEN not in answer["reason"]
    await settle(bot)
    assert await events(db) == [] and fake.sent == []
    health = (await (await bot.client.get("/healthz")).json())["channels"]["feishu"]
    assert health["rejected"] == 1 and health["last_rejection"].startswith(f"{status} {error}")


# -- messages in, answers out ---------------------------------------------------------------------

async def test_a_command_in_a_one_to_one_chat_is_answered(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    assert await post(bot, fake, fake.text_event("fs_gm", "/aging", message_id="om_1")) == (200, "{}")
    await settle(bot)
    reply, picture = fake.messages_to("fs_gm")      # the text, then the chart
    assert picture.msg_type == "image"
    assert (reply.receive_id_type, reply.msg_type) == ("user_id", "post")
    assert "账龄分析" in md(reply)
    [ev] = await events(db)
    assert (ev.platform, ev.event_key, ev.status) == ("feishu", "om_1", "handled")
    health = (await (await bot.client.get("/healthz")).json())["channels"]["feishu"]
    assert (health["status"], health["accepted"], health["mode"]) == ("ok", 1, "http")


async def test_the_same_question_asked_twice_is_answered_twice(aiohttp_client, db, fake):
    # Feishu sends one message per uuid an hour: the uuid follows the outbox row, not the text,
    # so two questions with the same answer get two answers (and a retried row stays one)
    bot = await start_bot(aiohttp_client, db, fake)
    for mid in ("om_a", "om_b"):
        assert await post(bot, fake, fake.text_event("fs_gm", "/kpi", message_id=mid)) == (200, "{}")
        await settle(bot)
    answers = [m for m in fake.messages_to("fs_gm") if m.msg_type != "image"]
    assert len(answers) == 2 and md(answers[0]) == md(answers[1])


async def test_an_overlong_text_is_answered_clearly_and_not_acted_on(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    assert await post(bot, fake, fake.text_event("fs_gm", "/aging " + "华东" * 3000, message_id="om_long")) == (200, "{}")
    await settle(bot)
    [reply] = fake.messages_to("fs_gm")
    assert "太长" in md(reply) and "账龄分析" not in md(reply)
    [ev] = await events(db)
    assert len(ev.payload["text"]) <= 4000


async def test_a_group_command_that_mentions_the_bot_is_answered_in_the_group(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    await post(bot, fake, fake.text_event("fs_gm", "/help", chat_id="oc_group1", mention_bot=True))
    await post(bot, fake, fake.text_event("fs_gm", "/help", chat_id="oc_group1"))     # not to the bot
    await settle(bot)
    [reply] = fake.messages_to("oc_group1")
    assert reply.receive_id_type == "chat_id" and reply.msg_type == "post"
    first, second = await events(db)
    assert first.payload["text"] == "/help" and first.payload["chat_id"] == "oc_group1"
    assert first.payload["mentioned_bot"] is True and second.payload["mentioned_bot"] is False


async def test_a_redelivered_event_is_handled_once(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    event = fake.text_event("fs_gm", "/aging", message_id="om_again")
    for _ in range(3):     # Feishu re-sends (new timestamp, nonce, IV: the same event id and message id)
        assert (await post(bot, fake, event))[0] == 200
    await settle(bot)
    assert [m.msg_type for m in fake.messages_to("fs_gm")] == ["post", "image"] and len(await events(db)) == 1
    health = (await (await bot.client.get("/healthz")).json())["channels"]["feishu"]
    assert health["duplicates"] == 2


async def test_pushed_cards_and_a_click_records_the_follow_up(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake, card_buttons=True, card_items=2)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    sent = [m for m in fake.messages_to("fs_rep1") if m.msg_type == "interactive"]
    cards = [m.content for m in sent]
    assert [c["header"]["title"]["content"] for c in cards] == ["3. 苏州明达电子科技有限公司 INV-B2",
                                                                "1. 上海恒信机电有限公司 INV-A3"]
    buttons = cards[0]["elements"][-1]["actions"]
    assert [b["text"]["content"] for b in buttons] == ["已联系", "本周五付", "下周五付", "月底付", "有异议"]
    bot.clock.set(at("2026-11-23 10:00"))
    click = fake.card_event("fs_rep1", buttons[4]["value"], message_id=sent[0].message_id)
    for _ in range(2):                           # a click delivered twice is one click
        assert await post(bot, fake, click) == (200, "{}")
    await settle(bot)
    assert "已记录第3笔 INV-B2：有异议" in md(fake.messages_to("fs_rep1")[-1])
    async with db.session() as s:
        [fu] = (await s.execute(select(FollowUp).where(FollowUp.channel == "feishu"))).scalars().all()
        assert fu.outcome == "dispute"


async def test_a_card_the_bot_sent_can_be_updated(fake):
    async with aiohttp.ClientSession() as session:
        api = FeishuAPI(session, fake.url, fake.app_id, SECRET)
        card = interactive_card(Card("c1", "标题", "说明", (Button("已联系", "k1"),)))
        sent = await api.send("user_id", "fs_rep1", "interactive", card)
        done = dict(card, elements=[{"tag": "div", "text": {"tag": "lark_md", "content": "已处理"}}])
        await api.update_card(sent["data"]["message_id"], done)
        assert fake.updates[0][1]["elements"][0]["text"]["content"] == "已处理"


# -- sending: token, rate limits, sizes --------------------------------------------------------------

async def test_the_token_is_refreshed_before_expiry_and_on_the_expired_code(aiohttp_client, db, fake):
    now = [1000.0]
    fake.clock = lambda: now[0]
    async with aiohttp.ClientSession() as session:
        api = FeishuAPI(session, fake.url, fake.app_id, SECRET, clock=lambda: now[0])
        await api.send("user_id", "fs_gm", "text", {"text": "一"})
        await api.send("user_id", "fs_gm", "text", {"text": "二"})
        assert (api.token_fetches, fake.token_calls) == (1, 1)            # cached
        now[0] += 7200 - 200                                              # inside the refresh margin
        await api.send("user_id", "fs_gm", "text", {"text": "三"})
        assert api.token_fetches == 2 and len(fake.tokens) == 2           # a new one, before it ran out
        fake.expire_tokens()                                              # 99991663 from now on
        await api.send("user_id", "fs_gm", "text", {"text": "四"})
        assert api.token_fetches == 3
        assert [m.content["text"] for m in fake.messages_to("fs_gm")] == ["一", "二", "三", "四"]


async def _queue(bot: Bot, out: OutgoingMessage, key: str) -> None:
    async with bot.services.db.session() as s, s.begin():
        await outbox.enqueue(s, out, key, bot.clock.now())


async def _rows(bot: Bot) -> list[OutboxMessage]:
    async with bot.services.db.session() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_a_rate_limited_send_is_retried_and_goes_once(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    fake.inject(code=230020)                         # 5 QPS to one user exceeded
    await _queue(bot, OutgoingMessage("feishu", "user", "fs_rep1", "你好", format="text"), "t:1")
    await bot.state.sender.drain()
    [row] = await _rows(bot)
    assert row.status == "pending" and row.attempts == 1 and "230020" in row.last_error
    assert fake.sent == []
    bot.clock.advance(seconds=3)
    await bot.state.sender.drain()
    [row] = await _rows(bot)
    assert row.status == "sent"
    assert [m.content["text"] for m in fake.messages_to("fs_rep1")] == ["你好"]


async def test_an_oversize_answer_is_split_not_dead_lettered(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake)
    lines = [f"第{i}行 苏州明达电子科技有限公司 INV-{i:05d} 逾期 ¥12,345.67" for i in range(900)]
    text = "\n".join(lines)                          # ~55 KB: over the 30 KB post body limit
    assert len(text.encode()) > 50_000
    await _queue(bot, OutgoingMessage("feishu", "group", "oc_group1", text), "t:big")
    for _ in range(10):                              # the parts go one after another
        await bot.state.sender.drain()
    original, *part_rows = await _rows(bot)
    assert original.status == "split" and len(part_rows) >= 2
    assert [r.idem_key for r in part_rows] == [f"t:big:{i}" for i in range(1, len(part_rows) + 1)]
    assert {r.status for r in part_rows} == {"sent"}
    parts = fake.messages_to("oc_group1")
    assert len(parts) == len(part_rows) and all(p.msg_type == "post" for p in parts)
    # every line once, in order, none cut; each part after the first says it continues
    shown = [line for p in parts for line in md(p).split("\n") if not line.startswith("**（续）**")]
    assert shown == lines
    assert all(md(p).startswith(f"**（续）** 第 {i}/{len(parts)} 部分") for i, p in enumerate(parts[1:], start=2))
    assert not [r for r in fake.refused if r[0] == 230025]
    # and a part retried after a timeout is not posted twice (Feishu's uuid, from the row's key)
    fake.sent.clear()
    channel: FeishuChannel = bot.state.channels["feishu"]
    row = part_rows[0]
    await channel.deliver(OutgoingMessage("feishu", "group", "oc_group1", row.text, format=row.format, key=row.idem_key))
    assert fake.sent == []


def test_split_keeps_lines_whole_and_cuts_a_line_too_long_for_any_message():
    huge = "账" * 20000                                # 60 KB on one line
    parts = split_for_body("开头\n" + huge + "\n结尾", "markdown")
    assert "".join(parts).replace("\n", "") == "开头" + huge + "结尾" and len(parts) >= 3


def test_frames_match_the_sdk_encoding():
    from lark_oapi.ws.pb.pbbp2_pb2 import Frame as SdkFrame
    ours = Frame(seq_id=5, log_id=77, service=33, method=1, headers=[("type", "event"), ("sum", "1")], payload=b"{}")
    sdk = SdkFrame()
    sdk.ParseFromString(ours.encode())
    assert (sdk.SeqID, sdk.LogID, sdk.service, sdk.method, sdk.payload) == (5, 77, 33, 1, b"{}")
    assert [(h.key, h.value) for h in sdk.headers] == ours.headers
    assert Frame.decode(sdk.SerializeToString()) == ours


# -- the long connection ---------------------------------------------------------------------------

async def test_long_connection_stores_acks_and_answers_once(aiohttp_client, db, fake):
    bot = await start_bot(aiohttp_client, db, fake, mode="ws", encrypt_key="", verification_token="")
    event = fake.text_event("fs_gm", "/aging", message_id="om_ws1")
    await fake.push_frame(event, message_id="f1", parts=2)     # a payload split over two frames
    await fake.push_frame(event, message_id="f2")              # delivered again
    acks = await fake.wait_acks(2)
    assert [(a["message_id"], a["code"]) for a in acks] == [("f1", 200), ("f2", 200)]
    await settle(bot)
    assert [m.msg_type for m in fake.messages_to("fs_gm")] == ["post", "image"] and len(await events(db)) == 1
    health = (await (await bot.client.get("/healthz")).json())["channels"]["feishu"]
    assert health["long_connection"]["connected"] is True and health["mode"] == "ws"
    assert (await bot.client.post("/feishu/events", data=b"{}")).status in (404, 405)   # no callback URL


# -- nothing secret in the logs ----------------------------------------------------------------------

async def test_logs_hold_no_secrets_or_contents(aiohttp_client, db, fake, caplog):
    caplog.set_level(logging.DEBUG)
    bot = await start_bot(aiohttp_client, db, fake)
    await post(bot, fake, fake.text_event("fs_gm", "/aging 华东"))
    headers, body = _forged_signature(fake)
    await bot.client.post("/feishu/events", data=body, headers=headers)
    fake.inject(code=230020)
    fake.expire_tokens()
    await settle(bot)
    bot.clock.advance(seconds=5)
    await bot.state.sender.drain()
    await asyncio.sleep(0)
    assert fake.sent
    logs = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("bot", "storage", "aiohttp"))
    assert "feishu" in logs
    for secret in (SECRET, VTOKEN, EKEY, *fake.tokens, "华东", "账龄分析"):
        assert secret not in logs
    assert SECRET not in repr(bot.state.channels["feishu"]) and SECRET not in repr(bot.state.channels["feishu"].api)


def test_config_requires_the_credentials():
    from bot.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=r"\[feishu\] app_secret"):
        load_config(env={"ARBOT_FEISHU_ENABLED": "true", "ARBOT_FEISHU_APP_ID": "cli_x"})
    cfg = load_config(env={"ARBOT_FEISHU_ENABLED": "true", "ARBOT_FEISHU_APP_ID": "cli_x",
                           "ARBOT_FEISHU_APP_SECRET": "s", "ARBOT_FEISHU_MODE": "ws"})
    assert cfg.feishu.mode == "ws" and isinstance(cfg.feishu, FeishuConfig)


async def test_people_import_reads_the_feishu_id_column(db, tmp_path):
    from storage.imports import import_file
    path = tmp_path / "people.csv"
    path.write_text("工号,姓名,角色,飞书ID,钉钉ID\nE1,甲,业务员,fs_1,dt_1\nE2,乙,业务员,fs_2,\n", encoding="utf-8")
    report = await import_file(db, "people", path, actor="admin", now=at("2026-11-23 10:00"),
                               today=at("2026-11-23 10:00").date())
    assert report.ok, report.to_dict()
    async with db.session() as s:
        got = {(a.person_id, a.platform, a.user_id) for a in (await s.execute(select(PersonAccount))).scalars()}
    assert got == {("E1", "feishu", "fs_1"), ("E1", "dingtalk", "dt_1"), ("E2", "feishu", "fs_2")}
