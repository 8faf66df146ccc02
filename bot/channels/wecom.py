"""The WeCom (企业微信) adapter: callbacks in, app messages out.

Verify → persist → acknowledge → work. A callback is verified and decrypted (401 forged
signature, 403 encrypted for another corp, 400 malformed), stored in ``inbound_events`` keyed by
the platform's id, answered 200 with an empty body, and only then handled in the background:
WeCom waits 5 s and re-sends (3 tries in all), so a slow handler must never hold the answer up,
and a re-sent event finds its key taken and is acknowledged without being handled twice.

Content type is not checked (no 415): WeCom's is not documented and varies by proxy; the
signature is what proves the sender. Bodies over 1 MB get 413 from the app's client_max_size.
Nothing here logs a token, a key, a user id or what anyone wrote.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import update

from bot import inbound
from bot.channels.errors import PermanentDeliveryError, TransientDeliveryError
from bot.channels.wecom_api import (APP_MARKDOWN_MAX_BYTES, ROBOT_MARKDOWN_MAX_BYTES, TEXT_MAX_BYTES,
                                    WeComAPI)
from bot.channels.wecom_crypto import (
    SIGNATURE_ERROR,
    VALIDATE_RECEIVEID_ERROR,
    WeComCrypto,
    WeComCryptoError,
    parse_xml,
)
from bot.config import ConfigError, WeComConfig
from bot.core.channel import Capabilities, Platform, SizeLimit, register
from bot.core.messages import Card, IncomingMessage, OutgoingMessage
from storage.models import InboundEvent

log = logging.getLogger(__name__)
API_TIMEOUT = 10.0          # seconds per WeCom API request
MAX_TEXT = 4000             # characters kept of an incoming message
MAX_KEY = 200               # inbound_events.event_key width
_MENTION = re.compile(r"^\s*[@＠]\S+\s*")


def capabilities(cfg: WeComConfig) -> Capabilities:
    return Capabilities(
        targets=frozenset({"user", "robot"}),
        # app text is cut silently past 2048 bytes, app markdown past 2048 and robot markdown past
        # 4096 are refused (40058): every message is sized for these before it is queued
        sizes=((("user", "text"), SizeLimit(bytes=TEXT_MAX_BYTES)),
               (("user", "markdown"), SizeLimit(bytes=APP_MARKDOWN_MAX_BYTES)),
               (("robot", "text"), SizeLimit(bytes=TEXT_MAX_BYTES)),
               (("robot", "markdown"), SizeLimit(bytes=ROBOT_MARKDOWN_MAX_BYTES))),
        # App images need a media upload (media/upload → media_id) that WeComAPI does not do yet,
        # so only group robots take the chart; a reply (an app message) carries text only.
        images=frozenset({"robot"}),
        cards=True,
        # a card is one more message against the 30-a-minute limit per member: a few, if asked
        cards_per_push=cfg.card_items if cfg.card_buttons else 0,
        rate_limits=(("robot", "robot"), ("user", "member")),
    )


class WeComChannel:
    platform = "wecom"

    def __init__(self, config: WeComConfig, status: dict | None = None):
        self.config = config
        self.capabilities = capabilities(config)
        self.status = status if status is not None else {}
        self.api: WeComAPI | None = None

    def __repr__(self) -> str:
        return f"WeComChannel(corp_id={self.config.corp_id!r}, agent_id={self.config.agent_id!r})"

    def connect(self, session: aiohttp.ClientSession, *, timeout: float = API_TIMEOUT,
                clock=time.monotonic) -> WeComAPI:
        c = self.config
        self.api = WeComAPI(session, c.api_base, c.corp_id, c.secret, c.agent_id, clock, timeout=timeout)
        return self.api

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        # App messages go to the person; a group robot is send-only and cannot be answered.
        return ("user", msg.platform_user_id)

    async def deliver(self, out: OutgoingMessage) -> None:
        if self.api is None:
            raise TransientDeliveryError("WeCom channel not started yet", code="not_started")
        if out.target_kind == "user" and "image_base64" in out.extra:
            raise PermanentDeliveryError("WeCom app image messages need a media upload (not supported)",
                                         code="image_to_user")
        card = out.card
        if card is not None and out.target_kind == "user":
            out = dataclasses.replace(out, extra={**out.extra, "template_card": template_card(card)})
        try:
            await self.api.deliver(out, dict(self.config.robot_webhook_keys))
        except PermanentDeliveryError as e:
            self.status["wecom"] = f"send failed: {e.reason}"   # e.g. 60020 IP not trusted: say it on /healthz
            raise
        self.status["wecom"] = "ok"


def template_card(card: Card) -> dict[str, Any]:
    """A neutral card as WeCom's button_interaction template card: its clicks come back as
    template_card_event callbacks naming the task_id and the button's key (at most 6 buttons)."""
    return {"card_type": "button_interaction", "task_id": card.id,
            "main_title": {"title": card.title, "desc": card.description},
            "button_list": [{"text": b.label, "style": 1, "key": b.key} for b in card.buttons[:6]]}


def _event_key(*parts: Any) -> str:
    key = ":".join(str(p) for p in parts)
    # a platform id longer than the column still dedupes: by its digest
    return key if len(key) <= MAX_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def message_from_xml(fields: dict[str, Any]) -> tuple[IncomingMessage, bool]:
    """Map a decrypted app callback to (message, handle?). Unhandled kinds are stored, not handled."""
    sender = str(fields.get("FromUserName") or "")
    created = str(fields.get("CreateTime") or "")
    msgtype = str(fields.get("MsgType") or "")
    if not sender or not msgtype:
        raise ValueError("callback without FromUserName/MsgType")
    base = dict(platform="wecom", platform_user_id=sender, chat_id=None, mentioned_bot=True)
    if msgtype == "text":
        msg_id = str(fields.get("MsgId") or "") or _event_key(sender, created)
        return IncomingMessage(text=str(fields.get("Content") or "")[:MAX_TEXT], message_id=_event_key(msg_id),
                               **base), True
    if msgtype == "event" and fields.get("Event") == "template_card_event":
        task, key = str(fields.get("TaskId") or ""), str(fields.get("EventKey") or "")
        card = {"task_id": task, "key": key, "response_code": str(fields.get("ResponseCode") or "")}
        return IncomingMessage(text="", message_id=_event_key(task, sender, key), card_action=card, **base), True
    # enter_agent, subscribe, image/voice/location messages ...: kept for the record, not answered.
    # The event name is part of the key so two different events in one second are not merged.
    ident = fields.get("MsgId") or f"{created}:{fields.get('Event') or msgtype}"
    return IncomingMessage(text="", message_id=_event_key(sender, ident), **base), False


def message_from_aibot(data: dict[str, Any]) -> IncomingMessage | None:
    """Map a decrypted AI-bot (智能机器人) callback; None for what the bot does not answer."""
    sender = data.get("from") if isinstance(data.get("from"), dict) else {}
    user, msgid = str(sender.get("userid") or ""), str(data.get("msgid") or "")
    if data.get("msgtype") != "text" or not user or not msgid:
        return None   # stream refreshes, images, enter_chat events ...
    content = str((data.get("text") or {}).get("content") or "") if isinstance(data.get("text"), dict) else ""
    group = data.get("chattype") == "group"
    if group:
        content = _MENTION.sub("", content, count=1)   # "@机器人 /aging" → "/aging"
    chat = (str(data.get("chatid") or "") or None) if group else None
    return IncomingMessage(platform="wecom", platform_user_id=user, text=content.strip()[:MAX_TEXT],
                           message_id=_event_key("aibot", msgid), chat_id=chat, mentioned_bot=True)


def install(app: web.Application, state) -> WeComChannel:
    cfg: WeComConfig = state.config.wecom
    try:
        int(cfg.agent_id)
        app_crypto = WeComCrypto(cfg.token, cfg.encoding_aes_key, cfg.corp_id)
        # *uncertain*: the AI bot's receiveid is "" (community code; the docs do not say).
        bot_crypto = (WeComCrypto(cfg.ai_bot_token, cfg.ai_bot_encoding_aes_key, "")
                      if cfg.ai_bot_enabled else None)
    except (ValueError, WeComCryptoError) as e:
        reason = e.message if isinstance(e, WeComCryptoError) else "agent_id must be a number"
        raise ConfigError(f"[wecom] {reason}") from None
    channel = WeComChannel(cfg, state.channel_status)

    async def api_session(app: web.Application):
        async with aiohttp.ClientSession() as session:
            channel.connect(session)
            yield
            channel.api = None

    app.cleanup_ctx.append(api_session)

    def reject(e: WeComCryptoError, what: str) -> web.HTTPException:
        status = 401 if e.code == SIGNATURE_ERROR else 403 if e.code == VALIDATE_RECEIVEID_ERROR else 400
        state.channel_status["wecom"] = f"{what} rejected: {e.code}"
        log.warning("wecom %s rejected: %s (HTTP %s)", what, e.code, status)
        cls = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 400: web.HTTPBadRequest}[status]
        return cls(text=f"rejected ({e.code})")

    def params(request: web.Request, *names: str) -> list[str]:
        q = request.query   # decoded once by aiohttp: never unquote again, "+" stays "+"
        if any(not q.get(n) for n in names):
            raise web.HTTPBadRequest(text="missing query parameter")
        return [q[n] for n in names]

    def url_check(crypto: WeComCrypto, what: str):
        async def handler(request: web.Request) -> web.Response:
            sig, ts, nonce, echostr = params(request, "msg_signature", "timestamp", "nonce", "echostr")
            try:
                plain = crypto.verify_url(sig, ts, nonce, echostr)
            except WeComCryptoError as e:
                raise reject(e, what) from None
            state.channel_status["wecom"] = "ok"
            return web.Response(body=plain.encode("utf-8"), content_type="text/plain")
        return handler

    async def accept(msg: IncomingMessage, handle: bool) -> web.Response:
        now = state.services.clock.now()
        event_id = await inbound.store(state.db, msg, now)
        state.channel_status["wecom"] = "ok"
        if event_id is None:
            return web.Response(text="")          # a re-send: acknowledged, handled once already
        if handle:
            state.inbound.spawn(event_id)         # the work happens after the 200 has gone out
        else:
            async with state.db.session() as s, s.begin():   # nothing to do; not resumed at start-up
                await s.execute(update(InboundEvent).where(InboundEvent.id == event_id)
                                .values(status="handled", handled_at=now))
        return web.Response(text="")

    async def callback(request: web.Request) -> web.Response:
        sig, ts, nonce = params(request, "msg_signature", "timestamp", "nonce")
        body = await request.read()               # over client_max_size: 413 from aiohttp
        try:
            plain = app_crypto.decrypt_body(sig, ts, nonce, body)
            fields = parse_xml(plain)
            msg, handle = message_from_xml(fields)
        except WeComCryptoError as e:
            raise reject(e, "callback") from None
        except ValueError:
            raise reject(WeComCryptoError(-40002, "incomplete message"), "callback") from None
        return await accept(msg, handle)

    async def aibot(request: web.Request) -> web.Response:
        sig, ts, nonce = params(request, "msg_signature", "timestamp", "nonce")
        try:
            outer = json.loads(await request.read())
            encrypt = outer.get("encrypt") if isinstance(outer, dict) else None
            if not isinstance(encrypt, str) or not encrypt:
                raise ValueError("no encrypt field")
            data = json.loads(bot_crypto.decrypt(sig, ts, nonce, encrypt))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except WeComCryptoError as e:
            raise reject(e, "aibot callback") from None
        except (ValueError, UnicodeDecodeError):
            raise reject(WeComCryptoError(-40002, "malformed json"), "aibot callback") from None
        msg = message_from_aibot(data)
        if msg is None:
            state.channel_status["wecom"] = "ok"
            return web.Response(text="")
        # The answer goes through the outbox as an app message; no passive (stream) reply.
        return await accept(msg, True)

    app.add_routes([web.get("/wecom/callback", url_check(app_crypto, "url check")),
                    web.post("/wecom/callback", callback)])
    if bot_crypto is not None:
        app.add_routes([web.get("/wecom/aibot", url_check(bot_crypto, "aibot url check")),
                        web.post("/wecom/aibot", aibot)])
    return channel


PLATFORM = register(Platform(
    name="wecom", capabilities=capabilities, install=install,
    account_headers=("wecom", "企业微信ID", "企业微信账号", "企微ID", "企业微信")))
