"""The Feishu (飞书/Lark) adapter: events in (HTTP callback or long connection), outbox rows out.

Only what is Feishu's lives here (docs/channels.md, docs/feishu.md):

* **In, HTTP mode**: one ``Endpoint`` (``POST /feishu/events``) for the shared intake
  (bot/web/intake.py, which stores, deduplicates, acknowledges and answers refusals the same way
  for every platform). It takes the URL-verification challenge (answered with the JSON echo),
  ``im.message.receive_v1`` (schema 2.0) and the card callback ``card.action.trigger``: configure
  the same URL under 事件配置 and 回调配置. Feishu waits 3 s, so the 200 goes out once stored.
* **In, long connection** (``mode = "ws"``): bot/channels/feishu_ws.py; the same mapping, stored
  through ``state.inbound.receive`` before the frame is acknowledged.
* **Out**: an outbox row becomes a ``text`` message (format text), a ``post`` with one ``md``
  element (format markdown) or an ``interactive`` card (a neutral ``Card``), sent to a person
  (``receive_id_type`` = ``[feishu] id_type``) or a group (``chat_id``). A body over Feishu's
  request limit is split at line ends into several messages, never dead-lettered.

Refusals: a bad signature, a wrong verification token or a plain body where an encrypted one is
due is 401; an event for another app (``header.app_id``) is 403; what does not decrypt or parse
is 400. Nothing here logs a secret, a token, a user id or what anyone wrote.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels import feishu_crypto as crypto
from bot.channels.errors import PermanentDeliveryError, TransientDeliveryError
from bot.channels.feishu_api import RICH_BODY_MAX, TEXT_BODY_MAX, FeishuAPI, body_size
from bot.config import FeishuConfig
from bot.core.channel import Capabilities, Platform, SizeLimit, register
from bot.core.intake import (Answer, BadSignature, Endpoint, Forbidden, Malformed, RawRequest, Received)
from bot.core.messages import Card, IncomingMessage, OutgoingMessage, capped
from bot.web import intake

log = logging.getLogger(__name__)
EVENTS_PATH = "/feishu/events"
MAX_KEY = 200            # inbound_events.event_key width
JSON_ANSWER = "application/json"
# What the outbox may put in one message, leaving room for the request's envelope and for JSON
# escaping the content twice (it is a JSON string inside the JSON body): half the body limit.
# A message that still comes out over the limit is split at delivery (``FeishuChannel.deliver``).
TEXT_MAX_BYTES = TEXT_BODY_MAX // 2
MARKDOWN_MAX_BYTES = RICH_BODY_MAX // 2
_PLACEHOLDER = re.compile(r"@_user_\d+")


def capabilities(cfg: FeishuConfig) -> Capabilities:
    sizes = tuple(((kind, fmt), SizeLimit(bytes=TEXT_MAX_BYTES if fmt == "text" else MARKDOWN_MAX_BYTES))
                  for kind in ("user", "group") for fmt in ("text", "markdown"))
    return Capabilities(
        targets=frozenset({"user", "group"}),
        sizes=sizes,
        # a picture is uploaded first (im/v1/images → image_key), then sent as msg_type image;
        # ``[feishu] images = false``: the text only, which is complete on its own
        images=frozenset({"user", "group"}) if cfg.images else frozenset(),
        cards=True,
        cards_per_push=cfg.card_items if cfg.card_buttons else 0,
        # Feishu allows 5 messages a second to one user or one group; the limiter's per-minute
        # "member" window (30/min) stays well inside it and keeps a person from being flooded
        rate_limits=(("user", "member"), ("group", "member")),
    )


def _key(*parts: Any) -> str:
    key = ":".join(str(p) for p in parts)
    return key if len(key) <= MAX_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _text_of(message: dict[str, Any], bot_open_id: str) -> tuple[str, bool]:
    """The text of a text message with the bot's @mention stripped, and whether it @s the bot."""
    try:
        content = json.loads(message.get("content") or "{}")
    except ValueError:
        content = {}
    text = str(content.get("text") or "") if isinstance(content, dict) else ""
    mentions = [m for m in message.get("mentions") or () if isinstance(m, dict)]

    def is_bot(m: dict) -> bool:
        ids = m.get("id") if isinstance(m.get("id"), dict) else {}
        return ids.get("open_id") == bot_open_id if bot_open_id else True

    to_bot = any(is_bot(m) for m in mentions)
    names = {str(m.get("key")): ("" if is_bot(m) else "@" + str(m.get("name") or "")) for m in mentions}
    text = _PLACEHOLDER.sub(lambda mt: names.get(mt.group(0), ""), text)
    return text.strip(), to_bot


def map_event(payload: dict[str, Any], cfg: FeishuConfig) -> tuple[IncomingMessage, bool] | None:
    """A verified schema-2.0 event (or card callback) as (message, handle?); None: not for the
    record (an event type the bot does not subscribe to). Raises ValueError when it cannot be
    mapped (no sender, no id)."""
    header = payload.get("header") if isinstance(payload.get("header"), dict) else {}
    event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    event_type, event_id = str(header.get("event_type") or ""), str(header.get("event_id") or "")
    if event_type == "im.message.receive_v1":
        sender = event.get("sender") if isinstance(event.get("sender"), dict) else {}
        ids = sender.get("sender_id") if isinstance(sender.get("sender_id"), dict) else {}
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        user, msg_id = str(ids.get(cfg.id_type) or ""), str(message.get("message_id") or "")
        if not user:
            raise ValueError(f"message without the sender's {cfg.id_type} (check the app's contact scopes)")
        if not msg_id:
            raise ValueError("message without message_id")
        group = message.get("chat_type") == "group"
        base = dict(platform="feishu", platform_user_id=user, message_id=_key(msg_id),
                    chat_id=str(message.get("chat_id") or "") or None if group else None)
        # images, files, and voice too: Feishu's audio content is a file_key and a duration, with no
        # transcript to read (unlike DingTalk's content.recognition), so it is kept, not answered
        if message.get("message_type") != "text":
            return IncomingMessage(text="", mentioned_bot=not group, **base), False
        text, to_bot = _text_of(message, cfg.bot_open_id)
        text, cut_from = capped(text)              # the one cap on what people send (bot/core/messages.py)
        return IncomingMessage(text=text, cut_from=cut_from, mentioned_bot=to_bot or not group, **base), True
    if event_type == "card.action.trigger":
        operator = event.get("operator") if isinstance(event.get("operator"), dict) else {}
        action = event.get("action") if isinstance(event.get("action"), dict) else {}
        value = action.get("value") if isinstance(action.get("value"), dict) else {}
        user = str(operator.get(cfg.id_type) or "")
        task, key = str(value.get("task_id") or ""), str(value.get("key") or "")
        if not user:
            raise ValueError(f"card action without the operator's {cfg.id_type}")
        if not task or not key:
            return None          # a button that is not one of ours
        context = event.get("context") if isinstance(event.get("context"), dict) else {}
        # the card's message id: what the card is updated by once the click is recorded
        click = {"task_id": task, "key": key, "response_code": str(event.get("token") or ""),
                 "message_id": str(context.get("open_message_id") or "")}
        # one click per person, card and button, however often Feishu delivers it (as on WeCom)
        return IncomingMessage(platform="feishu", platform_user_id=user, text="", message_id=_key(task, user, key),
                               card_action=click), True
    if not event_id:
        raise ValueError("event without header.event_id")
    return None


class FeishuChannel:
    platform = "feishu"

    def __init__(self, config: FeishuConfig):
        self.config = config
        self.capabilities = capabilities(config)
        self.api: FeishuAPI | None = None

    def __repr__(self) -> str:
        return f"FeishuChannel(app_id={self.config.app_id!r}, mode={self.config.mode!r})"

    def connect(self, session: aiohttp.ClientSession, *, clock=time.monotonic, timeout: float = 10.0) -> FeishuAPI:
        self.api = FeishuAPI(session, self.config.api_base, self.config.app_id, self.config.app_secret, clock,
                             timeout=timeout)
        return self.api

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        # a question asked in a group is answered there; a card click or a 1:1 message, to the person
        if msg.chat_id and not msg.card_action:
            return ("group", msg.chat_id)
        return ("user", msg.platform_user_id)

    def _receiver(self, out: OutgoingMessage) -> str:
        if out.target_kind == "user":
            return self.config.id_type
        if out.target_kind == "group":
            return "chat_id"
        raise PermanentDeliveryError(f"Feishu cannot deliver target_kind {out.target_kind!r}", code="bad_target_kind")

    async def deliver(self, out: OutgoingMessage) -> None:
        if self.api is None:
            raise TransientDeliveryError("Feishu channel not started yet", code="not_started")
        id_type = self._receiver(out)
        card = out.card
        if out.answers is not None:
            # the clicked card, replaced in place by the answered one (outcome, no buttons). By
            # message id (PATCH, 14 days), not the callback's token (30 minutes, 2 uses): an
            # outbox row may wait longer than that
            message_id = str(out.answers.get("message_id") or "")
            if card is not None and message_id:
                await self.api.update_card(message_id, interactive_card(card))
            return
        if "image_base64" in out.extra:
            if self.capabilities.images and out.image_png:
                key = await self.api.upload_image(out.image_png)
                await self.api.send(id_type, out.target, "image", {"image_key": key}, uuid=_uuid(out, "image"))
            return               # image only: the text travels as its own row
        if card is not None:
            await self.api.send(id_type, out.target, "interactive", interactive_card(card), uuid=_uuid(out, "card"))
            return
        if not out.text.strip():
            return               # nothing to show
        parts = split_for_body(out.text, out.format, out.title)
        for i, part in enumerate(parts):
            # parts go in order; a retry after part 2 failed re-sends part 1 with the same uuid,
            # which Feishu answers without sending it again (one message per uuid per hour)
            await self.api.send(id_type, out.target, *payload_of(part, out.format, out.title), uuid=_uuid(out, i))


def _uuid(out: OutgoingMessage, part: Any) -> str:
    """Feishu's de-duplication key (≤ 50 characters): the same outbox row retried is the same
    message. From the row's own idempotency key; a message that never went through the outbox
    (none today) falls back to its content."""
    basis = [out.key, str(part)] if out.key else [out.target_kind, out.target, out.title, out.text, out.extra, str(part)]
    return hashlib.sha256(json.dumps(basis, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:40]


def payload_of(text: str, fmt: str, title: str) -> tuple[str, dict]:
    if fmt == "markdown":
        # no post title: an outbox row's title is a kind of message, not words to show
        return "post", {"zh_cn": {"title": "", "content": [[{"tag": "md", "text": text}]]}}
    return "text", {"text": text}


def _fits(text: str, fmt: str, title: str) -> bool:
    msg_type, content = payload_of(text, fmt, title)
    limit = TEXT_BODY_MAX if msg_type == "text" else RICH_BODY_MAX
    envelope = {"receive_id": "x" * 64, "msg_type": msg_type, "content": json.dumps(content, ensure_ascii=False),
                "uuid": "x" * 50}
    return body_size(envelope) <= limit


def split_for_body(text: str, fmt: str, title: str = "") -> list[str]:
    """``text`` in as few parts as fit Feishu's request body limit, cut at line ends (a line
    longer than a whole message is cut inside)."""
    if _fits(text, fmt, title):
        return [text]
    parts, current = [], ""
    for line in text.splitlines(keepends=True):
        while not _fits(line, fmt, title):          # one line too long for a message on its own
            lo, hi = 1, len(line)
            while lo < hi:                           # the longest head that fits
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if _fits(line[:mid], fmt, title) else (lo, mid - 1)
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:lo])
            line = line[lo:]
        if _fits(current + line, fmt, title):
            current += line
        else:
            parts.append(current)
            current = line
    if current:
        parts.append(current)
    return [p.rstrip("\n") for p in parts if p.strip()]


def interactive_card(card: Card) -> dict[str, Any]:
    """A neutral card as a Feishu message card: its buttons' clicks come back as
    ``card.action.trigger`` callbacks carrying ``value`` = {task_id, key}."""
    elements: list[dict[str, Any]] = []
    if card.description:
        elements.append({"tag": "div", "text": {"tag": "lark_md", "content": card.description}})
    if card.buttons:
        elements.append({"tag": "action", "actions": [
            {"tag": "button", "text": {"tag": "plain_text", "content": b.label}, "type": "default",
             "value": {"task_id": card.id, "key": b.key}} for b in card.buttons]})
    return {"config": {"wide_screen_mode": True, "update_multi": True},
            "header": {"title": {"tag": "plain_text", "content": card.title}},
            "elements": elements}


# -- the callback URL -------------------------------------------------------------------------

def _refusal(e: crypto.FeishuCryptoError):
    return (BadSignature if e.kind in ("signature", "token") else Malformed)(e.message)


def events_endpoint(cfg: FeishuConfig) -> Endpoint:
    def parse(req: RawRequest) -> Received:
        try:
            signed = any(req.headers.get(h) for h in (crypto.SIGNATURE_HEADER, crypto.TIMESTAMP_HEADER))
            if cfg.encrypt_key and signed:
                crypto.verify_signature(cfg.encrypt_key, req.headers, req.body)   # before decrypting
            payload = crypto.open_body(req.body, cfg.encrypt_key)
            if payload.get("type") == "url_verification":
                # the URL check carries no signature headers: the token (inside the encryption,
                # when there is one) is what authenticates it
                crypto.verify_token(cfg.verification_token, payload.get("token"))
                challenge = str(payload.get("challenge") or "")
                return Received(answer=Answer(json.dumps({"challenge": challenge}).encode(), JSON_ANSWER))
            if cfg.encrypt_key and not signed:
                raise crypto.FeishuCryptoError("signature", "missing X-Lark signature headers")
            header = payload.get("header")
            if payload.get("schema") != "2.0" or not isinstance(header, dict):
                raise Malformed("not a schema 2.0 event")
            crypto.verify_token(cfg.verification_token, header.get("token"))
        except crypto.FeishuCryptoError as e:
            raise _refusal(e) from None
        if header.get("app_id") and header.get("app_id") != cfg.app_id:
            raise Forbidden("event for another app_id")
        try:
            mapped = map_event(payload, cfg)
        except ValueError as e:
            raise Malformed(str(e)) from None
        return Received(() if mapped is None else (mapped,), Answer(b"{}", JSON_ANSWER))

    return Endpoint("POST", EVENTS_PATH, parse, content_types=frozenset({"application/json", "text/plain"}))


# -- installation -------------------------------------------------------------------------------

@dataclass
class Connections:
    """What the channel opens while the app runs (kept on the app under ``CONNECTIONS``)."""
    session: aiohttp.ClientSession | None = None
    ws: Any = None               # feishu_ws.LongConnection in ws mode
    task: asyncio.Task | None = None


CHANNEL = web.AppKey("feishu.channel", FeishuChannel)
CONNECTIONS = web.AppKey("feishu.connections", Connections)


def install(app: web.Application, state) -> FeishuChannel:
    cfg: FeishuConfig = state.config.feishu
    channel = app[CHANNEL] = FeishuChannel(cfg)
    conn = app[CONNECTIONS] = Connections()
    state.channel_health.add(channel.platform, mode=cfg.mode)

    async def api_session(app: web.Application):
        async with aiohttp.ClientSession() as session:
            conn.session = session
            channel.connect(session)
            yield
            channel.api = None

    app.cleanup_ctx.append(api_session)
    if cfg.mode == "http":
        app.add_routes(intake.routes(state, channel.platform, [events_endpoint(cfg)]))
        return channel

    from bot.channels.feishu_ws import LongConnection

    async def on_event(payload: dict) -> None:
        # stored before the frame is acknowledged; one that cannot be mapped is counted and dropped
        try:
            header = payload.get("header") if isinstance(payload.get("header"), dict) else {}
            if header.get("app_id") and header.get("app_id") != cfg.app_id:
                raise Forbidden("event for another app_id")
            mapped = map_event(payload, cfg)
        except (ValueError, Forbidden) as e:
            reason = e if isinstance(e, Forbidden) else Malformed(str(e))
            state.channel_health.refused(channel.platform, reason)
            log.info("feishu long connection: event refused: %s", reason.reason)
            return
        if mapped is not None:
            state.channel_health.verified(channel.platform)
            await state.inbound.receive(mapped[0], handle=mapped[1])

    async def start_ws(app: web.Application) -> None:
        conn.ws = LongConnection(conn.session, cfg.api_base, cfg.app_id, cfg.app_secret, on_event)
        conn.task = asyncio.create_task(conn.ws.run(), name="feishu-ws")
        state.channel_health.watch(channel.platform, "long_connection", conn.ws.status)

    async def stop_ws(app: web.Application) -> None:
        if conn.ws is None or conn.task is None:
            return
        await conn.ws.stop()
        try:
            await asyncio.wait_for(conn.task, timeout=10)
        except asyncio.TimeoutError:
            conn.task.cancel()

    app.on_startup.append(start_ws)
    app.on_shutdown.append(stop_ws)
    return channel


def mobile_lookup(cfg: FeishuConfig, session: aiohttp.ClientSession):
    """A member's id (``[feishu] id_type``) by mobile (contact/v3/users/batch_get_id)."""
    api = FeishuAPI(session, cfg.api_base, cfg.app_id, cfg.app_secret, time.monotonic)

    async def lookup(mobile: str) -> str | None:
        found = await api.user_ids_by_mobile([mobile], cfg.id_type)
        return next(iter(found.values()), None)
    return lookup


PLATFORM = register(Platform(
    name="feishu", capabilities=capabilities, install=install, mobile_lookup=mobile_lookup,
    account_headers=("feishu", "飞书ID", "飞书账号", "飞书", "lark")))
