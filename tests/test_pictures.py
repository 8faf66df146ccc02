"""Pictures and answered cards, through real HTTP on loopback against the fake platforms.

A chart arrives as an image on each platform (WeCom app, WeCom group robot, DingTalk, Feishu, the
local chat): the bytes the fake received are a valid PNG, the text arrived too, and an image whose
delivery failed is retried alone, without sending the text again. A clicked card (WeCom, Feishu)
is updated in place to show what was recorded, with no buttons left to click.
"""
from __future__ import annotations

import base64
import struct
import time
import zlib
from datetime import date

from sqlalchemy import select

from storage.models import FollowUp, OutboxMessage, PersonAccount, Promise
from tests import ledger_fixture
from tests.conftest import at
from tests.fakes.dingtalk_server import FakeDingTalk
from tests.fakes.feishu_server import FakeFeishu
from tests.fakes.wecom_server import FakeWeCom, build_callback, build_card_click_xml, build_text_message_xml
from tests.harness import Bot
from tests.test_wecom_channel import AES_KEY, AGENT, SECRET, TOKEN, crypto, post_callback

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(data: bytes) -> None:
    """A whole PNG: the signature, an IHDR with a size, every chunk's CRC right, an IEND last."""
    assert data[:8] == PNG_SIGNATURE
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100


async def ledger(db, accounts: dict[str, str] | None = None, platform: str = "") -> None:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        for person, uid in (accounts or {}).items():
            s.add(PersonAccount(platform=platform, user_id=uid, person_id=person))


async def settle(bot: Bot) -> None:
    await bot.state.inbound.wait_idle()
    await bot.state.sender.drain()


async def retry_later(bot: Bot) -> None:
    """The outbox's backoff runs out: a row that failed is due again."""
    bot.clock.advance(seconds=600)
    await bot.state.sender.drain()


async def statuses(db) -> dict[str, str]:
    async with db.session() as s:
        return {r.idem_key: r.status for r in (await s.execute(select(OutboxMessage))).scalars()}


# -- WeCom ----------------------------------------------------------------------------------------

def wecom(fake: FakeWeCom, **extra) -> dict:
    return dict(enabled=True, corp_id=fake.corp_id, agent_id=str(AGENT), secret=SECRET, token=TOKEN,
                encoding_aes_key=AES_KEY, api_base=fake.url, **extra)


async def test_a_chart_arrives_as_an_image_in_a_wecom_app(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        await ledger(db)
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                              wecom=wecom(fake))
        fake.inject_http_error(500, endpoint="media/upload")       # the first upload fails
        xml = build_text_message_xml(fake.corp_id, "wx_gm", "/aging", msg_id=5001, agent_id=AGENT)
        assert await post_callback(bot, *build_callback(crypto(fake), xml, int(time.time()), "p1")) == (200, "")
        await settle(bot)
        [text] = fake.messages_to("wx_gm")                          # the text went; the picture waits
        assert text.payload["msgtype"] == "markdown" and "账龄分析" in text.payload["markdown"]["content"]
        assert (await statuses(db))["reply:wecom:5001:0:image"] == "pending"

        await retry_later(bot)
        text_again, image = fake.messages_to("wx_gm")
        assert text_again is text                                   # the text was not sent again
        assert image.payload["msgtype"] == "image" and image.payload["agentid"] == AGENT
        [png] = fake.images_to("wx_gm")
        assert_png(png)
        assert set((await statuses(db)).values()) == {"sent"}

        # the same picture again within the media_id's life: no second upload
        xml = build_text_message_xml(fake.corp_id, "wx_gm", "/aging", msg_id=5002, agent_id=AGENT)
        await post_callback(bot, *build_callback(crypto(fake), xml, int(time.time()), "p2"))
        await settle(bot)
        assert [r.kind for r in fake.received].count("upload") == 1
        # (WeCom's duplicate check drops the identical text and picture within 30 minutes)
        assert fake.duplicates_suppressed == 2 and fake.refused == []


async def test_wecom_images_off_sends_the_text_only(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        await ledger(db)
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                              wecom=wecom(fake, images=False))
        xml = build_text_message_xml(fake.corp_id, "wx_gm", "/aging", msg_id=5003, agent_id=AGENT)
        await post_callback(bot, *build_callback(crypto(fake), xml, int(time.time()), "p3"))
        await settle(bot)
        assert [r.payload["msgtype"] for r in fake.messages_to("wx_gm")] == ["markdown"]
        assert "reply:wecom:5003:0:image" not in await statuses(db)


async def test_the_weekly_chart_arrives_as_an_image_in_a_wecom_robot_group(aiohttp_client, db, tmp_path):
    async with FakeWeCom(apps={AGENT: SECRET}, robot_keys={"rk-managers"}) as fake:
        await ledger(db)
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                              wecom=wecom(fake, robot_webhook_keys={"managers": "rk-managers"}),
                              reports={"manager_groups": ("wecom:robot:managers",), "dir": str(tmp_path)},
                              web={"secret": "test-secret"})
        fake.inject_http_error(502, endpoint="webhook/image")       # the picture's first try fails
        await bot.run("weekly_aging_report", at("2026-11-23 09:00"))
        [text] = fake.robot_messages("rk-managers")
        assert text.payload["msgtype"] == "markdown" and "应收账款周报" in text.payload["markdown"]["content"]

        await retry_later(bot)
        text_again, image = fake.robot_messages("rk-managers")
        assert text_again is text
        png = base64.b64decode(image.payload["image"]["base64"])
        assert_png(png)
        assert png == (tmp_path / "aging-weekly-2026-11-23.png").read_bytes()   # the chart the link serves
        assert fake.refused == []


# -- DingTalk -------------------------------------------------------------------------------------

async def test_a_chart_arrives_as_an_image_on_dingtalk(aiohttp_client, db):
    async with FakeDingTalk() as fake:
        await ledger(db)
        cfg = {"enabled": True, "app_key": fake.app_key, "app_secret": fake.app_secret,
               "robot_code": fake.robot_code, "api_base": fake.url, "oapi_base": fake.url}
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                              dingtalk=cfg)
        fake.clock = lambda: bot.clock.now().timestamp()
        fake.inject("http", status=500, endpoint="upload")          # the first upload fails

        # in a group: the reply goes through the session webhook, the picture as markdown
        resp = await bot.client.post("/dingtalk/callback",
                                     **dict(zip(("headers", "data"), fake.signed_callback(
                                         fake.robot_message("/aging", group=True, staff_id="dt_gm", msg_id="m1")))))
        assert resp.status == 200
        await settle(bot)
        [text] = fake.messages("session")
        assert text.payload["msgtype"] == "markdown" and "账龄分析" in text.payload["markdown"]["text"]
        await retry_later(bot)
        text_again, picture = fake.messages("session")
        assert text_again is text and picture.payload["markdown"]["text"].startswith("![图表](@")
        assert picture.payload["markdown"]["title"] == "图表"
        [png] = fake.pictures("session")
        assert_png(png)

        # a reply handled late (its session webhook near expiry): the robot API's image message
        body = fake.robot_message("/aging", staff_id="dt_gm", msg_id="m2")
        body["sessionWebhookExpiredTime"] = int(bot.clock.now().timestamp() * 1000) + 1000
        resp = await bot.client.post("/dingtalk/callback", **dict(zip(("headers", "data"), fake.signed_callback(body))))
        assert resp.status == 200
        await settle(bot)
        text, picture = fake.messages("batchSend")
        assert text.payload["msgKey"] == "sampleMarkdown"
        assert picture.payload["msgKey"] == "sampleImageMsg" and picture.target == "dt_gm"
        [png_again] = fake.pictures("batchSend")
        assert png_again == png and len(fake.media) == 1            # one upload for the same picture
        assert fake.refused == []


# -- Feishu ---------------------------------------------------------------------------------------

FS_SECRET, FS_VTOKEN, FS_EKEY = "fs-secret", "fs-vtoken", "fs-ekey"
FS_PEOPLE = {"gm": "fs_gm", "sup1": "fs_sup1", "rep1": "fs_rep1", "rep2": "fs_rep2", "fin1": "fs_fin1"}


async def feishu_bot(aiohttp_client, db, fake: FakeFeishu, **extra) -> Bot:
    await ledger(db, FS_PEOPLE, "feishu")
    cfg = dict(enabled=True, app_id=fake.app_id, app_secret=FS_SECRET, verification_token=FS_VTOKEN,
               encrypt_key=FS_EKEY, api_base=fake.url, bot_open_id="ou_bot", **extra)
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           feishu=cfg)


def feishu_fake() -> FakeFeishu:
    return FakeFeishu(app_id="cli_pictures", app_secret=FS_SECRET, verification_token=FS_VTOKEN, encrypt_key=FS_EKEY)


async def feishu_post(bot: Bot, fake: FakeFeishu, payload: dict) -> tuple[int, str]:
    return await fake.post_event(bot.client.session, str(bot.client.make_url("/feishu/events")), payload)


async def test_a_chart_arrives_as_an_image_on_feishu(aiohttp_client, db):
    async with feishu_fake() as fake:
        bot = await feishu_bot(aiohttp_client, db, fake)
        fake.inject_upload(code=2200, status=500)                   # the first upload fails
        assert await feishu_post(bot, fake, fake.text_event("fs_gm", "/aging", chat_id="oc_mgmt",
                                                            mention_bot=True)) == (200, "{}")
        await settle(bot)
        [text] = fake.messages_to("oc_mgmt")
        assert text.msg_type == "post" and text.receive_id_type == "chat_id"
        await retry_later(bot)
        text_again, image = fake.messages_to("oc_mgmt")
        assert text_again is text and image.msg_type == "image"
        [png] = fake.images_to("oc_mgmt")
        assert_png(png)
        assert fake.uploads == 1 and fake.refused == []


# -- the local chat -------------------------------------------------------------------------------

async def test_a_chart_arrives_as_an_image_in_the_local_chat(aiohttp_client, db):
    await ledger(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX})
    resp = await bot.client.post("/local/messages", json={"user": "gm", "chat": None, "text": "/aging"})
    assert resp.status == 200
    [reply] = (await resp.json())["replies"]
    assert "账龄分析" in reply["text"]
    prefix = "data:image/png;base64,"
    assert reply["image"].startswith(prefix)
    assert_png(base64.b64decode(reply["image"][len(prefix):]))
    page = await (await bot.client.get("/")).text()
    assert "createElement(\"img\")" in page                         # the page shows it

    # a question without a chart carries no picture
    resp = await bot.client.post("/local/messages", json={"user": "gm", "chat": None, "text": "/help"})
    assert all("image" not in r for r in (await resp.json())["replies"])


async def test_local_chat_images_off(aiohttp_client, db):
    await ledger(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                          local={"enabled": True, "images": False})
    resp = await bot.client.post("/local/messages", json={"user": "gm", "chat": None, "text": "/aging"})
    [reply] = (await resp.json())["replies"]
    assert "image" not in reply and "账龄分析" in reply["text"]


# -- cards updated after a click ------------------------------------------------------------------

async def test_a_clicked_wecom_card_is_updated_and_keeps_no_buttons(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        await ledger(db)
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                              wecom=wecom(fake, card_buttons=True, card_items=1))
        await bot.run("overdue_push", at("2026-11-23 09:00"))
        [card] = [r.payload["template_card"] for r in fake.messages_to("wx_rep1")
                  if r.payload["msgtype"] == "template_card"]
        promised = next(b["key"] for b in card["button_list"] if b["text"] == "下周五付")
        bot.clock.set(at("2026-11-23 10:00"))
        xml = build_card_click_xml(fake.corp_id, "wx_rep1", event_key=promised, task_id=card["task_id"],
                                   response_code="rc-once", agent_id=AGENT)
        for nonce in ("c1", "c2"):                                  # delivered twice: one click
            assert await post_callback(bot, *build_callback(crypto(fake), xml, int(time.time()), nonce)) == (200, "")
        await settle(bot)

        [update] = fake.card_updates("wx_rep1")
        assert update["response_code"] == "rc-once" and update["agentid"] == AGENT
        answered = update["template_card"]
        assert answered["card_type"] == "button_interaction" and answered["task_id"] == card["task_id"]
        # Monday 11-23: 下周五 is 12-04, worked out at the click
        assert answered["button_list"] == [] and answered["replace_text"] == "已记录：承诺12月4日付"
        assert answered["main_title"]["title"] == card["main_title"]["title"]
        ack = [r.payload["markdown"]["content"] for r in fake.messages_to("wx_rep1")
               if r.payload["msgtype"] == "markdown"][-1]
        assert "已记录第3笔 INV-B2：承诺12月4日付款" in ack            # the text says it too
        async with db.session() as s:
            [fu] = (await s.execute(select(FollowUp).where(FollowUp.channel == "wecom"))).scalars().all()
            assert fu.outcome == "promised" and fu.promised_date == date(2026, 12, 4)
            [p] = (await s.execute(select(Promise))).scalars().all()      # the promise is watched like a typed one
            assert p.promised_date == date(2026, 12, 4) and p.status == "open" and p.receivable_id == fu.receivable_id
        assert fake.used_response_codes == {"rc-once"} and fake.refused == []


async def test_a_this_friday_button_clicked_after_friday_records_nothing_and_says_so(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        await ledger(db)
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                              wecom=wecom(fake, card_buttons=True, card_items=1))
        await bot.run("overdue_push", at("2026-11-23 09:00"))
        [card] = [r.payload["template_card"] for r in fake.messages_to("wx_rep1")
                  if r.payload["msgtype"] == "template_card"]
        this_friday = next(b["key"] for b in card["button_list"] if b["text"] == "本周五付")
        bot.clock.set(at("2026-11-28 10:00"))                       # Saturday: that Friday has passed
        xml = build_card_click_xml(fake.corp_id, "wx_rep1", event_key=this_friday, task_id=card["task_id"],
                                   response_code="rc-sat", agent_id=AGENT)
        assert await post_callback(bot, *build_callback(crypto(fake), xml, int(time.time()), "s1")) == (200, "")
        await settle(bot)
        answer = [r.payload["markdown"]["content"] for r in fake.messages_to("wx_rep1")
                  if r.payload["msgtype"] == "markdown"][-1]
        assert "本周五已经过了，没有记录" in answer
        assert fake.card_updates("wx_rep1") == []                  # the card keeps its buttons: pick again
        async with db.session() as s:
            assert (await s.execute(select(FollowUp))).scalars().all() == []
            assert (await s.execute(select(Promise))).scalars().all() == []


async def test_a_clicked_feishu_card_is_updated_and_keeps_no_buttons(aiohttp_client, db):
    async with feishu_fake() as fake:
        bot = await feishu_bot(aiohttp_client, db, fake, card_buttons=True, card_items=1)
        bot.clock.set(at("2026-11-23 08:00"))
        await bot.run("overdue_push", at("2026-11-23 09:00"))
        [sent] = [m for m in fake.messages_to("fs_rep1") if m.msg_type == "interactive"]
        buttons = sent.content["elements"][-1]["actions"]
        dispute = next(b for b in buttons if b["text"]["content"] == "有异议")
        bot.clock.set(at("2026-11-23 10:00"))
        click = fake.card_event("fs_rep1", dispute["value"], message_id=sent.message_id)
        for _ in range(2):
            assert await feishu_post(bot, fake, click) == (200, "{}")
        await settle(bot)

        [(message_id, card)] = fake.updates
        assert message_id == sent.message_id
        assert card["header"]["title"]["content"] == sent.content["header"]["title"]["content"]
        assert card["config"]["update_multi"] is True
        assert not [e for e in card["elements"] if e["tag"] == "action"]     # no buttons left
        assert "已记录：有异议" in card["elements"][0]["text"]["content"]
        assert sent.content == card                                 # the fake's copy of the message changed
        async with db.session() as s:
            [fu] = (await s.execute(select(FollowUp).where(FollowUp.channel == "feishu"))).scalars().all()
            assert fu.outcome == "dispute"


async def test_a_wecom_card_update_that_is_refused_does_not_hold_back_the_answer(aiohttp_client, db):
    # the response_code was used already (another instance answered): the update is dead-lettered,
    # the text answer still goes
    async with FakeWeCom(apps={AGENT: SECRET}) as fake:
        await ledger(db)
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                              wecom=wecom(fake, card_buttons=True, card_items=1))
        await bot.run("overdue_push", at("2026-11-23 09:00"))
        [card] = [r.payload["template_card"] for r in fake.messages_to("wx_rep1")
                  if r.payload["msgtype"] == "template_card"]
        fake.used_response_codes.add("rc-used")
        bot.clock.set(at("2026-11-23 10:00"))
        xml = build_card_click_xml(fake.corp_id, "wx_rep1", event_key=card["button_list"][0]["key"],
                                   task_id=card["task_id"], response_code="rc-used", agent_id=AGENT)
        await post_callback(bot, *build_callback(crypto(fake), xml, int(time.time()), "u1"))
        await settle(bot)
        assert fake.card_updates("wx_rep1") == []
        assert "已联系" in [r.payload["markdown"]["content"] for r in fake.messages_to("wx_rep1")
                          if r.payload["msgtype"] == "markdown"][-1]
        st = await statuses(db)
        assert [v for k, v in st.items() if k.endswith(":card")] == ["dead"]
