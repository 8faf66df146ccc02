"""The WeCom (企业微信) adapter: callbacks in, app messages out.

Only what is WeCom's lives here: how a callback is verified and decrypted and what it means
(``Endpoint``s for the shared intake, bot/web/intake.py, which stores, deduplicates,
acknowledges and answers refusals the same way for every platform), and how an outbox row is
sent. WeCom waits 5 s and re-sends (3 tries in all), so the answer (200, empty body) goes out as
soon as the event is stored; the work happens in the background.

Refusals: a forged signature is 401, a message encrypted for another corp 403, anything that
does not decrypt or parse 400. The body types read are the XML/JSON ones plus text/plain and
octet-stream, since WeCom's own Content-Type is not documented and varies by proxy: the
signature, not the header, proves the sender. Nothing here logs a token, a key, a user id or
what anyone wrote.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels.errors import PermanentDeliveryError, TransientDeliveryError
from bot.channels.wecom_api import (APP_MARKDOWN_MAX_BYTES, CARD_BUTTON_MAX_CHARS, CARD_DESC_MAX_CHARS,
                                    CARD_TITLE_MAX_CHARS, ROBOT_MARKDOWN_MAX_BYTES, TEXT_MAX_BYTES, WeComAPI)
from bot.channels.wecom_crypto import (
    SIGNATURE_ERROR,
    VALIDATE_RECEIVEID_ERROR,
    WeComCrypto,
    WeComCryptoError,
    parse_xml,
)
from bot.clock import Clock
from bot.config import ConfigError, WeComConfig
from bot.core.channel import CARD_BUTTON, CARD_DESCRIPTION, CARD_TITLE, Capabilities, Platform, SizeLimit, register
from bot.core.intake import (Answer, BadSignature, Endpoint, Forbidden, Malformed, RawRequest, Received,
                             Rejected)
from bot.core.messages import Card, IncomingMessage, OutgoingMessage, capped
from bot.outbox.sizes import split_text
from bot.web import intake

log = logging.getLogger(__name__)
API_TIMEOUT = 10.0          # seconds per WeCom API request
MAX_KEY = 200               # inbound_events.event_key width
# An AI-bot callback's response_url serves one call within an hour (doc page 101138)
RESPONSE_URL_TTL_S = 3600
# ...and is used only while this much of the hour is left: the outbox may need a few backed-off
# attempts, and each must still find it valid
RESPONSE_MARGIN_S = 120
SPENT_KEPT = 10_000          # response_urls remembered as spent (an hour's worth, generously)
_MENTION = re.compile(r"^\s*[@＠]\S+\s*")


def capabilities(cfg: WeComConfig) -> Capabilities:
    return Capabilities(
        # "session": an AI-bot message's response_url (one call, within the hour)
        targets=frozenset({"user", "robot", "session"}),
        # app text is cut silently past 2048 bytes, app markdown past 2048 and robot markdown past
        # 4096 are refused (40058): every message is sized for these before it is queued
        sizes=((("user", "text"), SizeLimit(bytes=TEXT_MAX_BYTES)),
               (("user", "markdown"), SizeLimit(bytes=APP_MARKDOWN_MAX_BYTES)),
               (("robot", "text"), SizeLimit(bytes=TEXT_MAX_BYTES)),
               (("robot", "markdown"), SizeLimit(bytes=ROBOT_MARKDOWN_MAX_BYTES)),
               # the AI bot's response_url reply: its page (101138) states no limit; the group
               # robot's documented markdown limit is the nearest known one, so it is assumed
               (("session", "markdown"), SizeLimit(bytes=ROBOT_MARKDOWN_MAX_BYTES)),
               (("session", "text"), SizeLimit(bytes=ROBOT_MARKDOWN_MAX_BYTES)),
               # template_card (button_interaction) fields, doc page 90236: main_title.title
               # 26 characters, main_title.desc 30, a button's text 10. The sender cuts a field
               # over its limit with an ellipsis (a card is not a text to split)
               (("user", CARD_TITLE), SizeLimit(chars=CARD_TITLE_MAX_CHARS)),
               (("user", CARD_DESCRIPTION), SizeLimit(chars=CARD_DESC_MAX_CHARS)),
               (("user", CARD_BUTTON), SizeLimit(chars=CARD_BUTTON_MAX_CHARS))),
        # an app image is uploaded first (media/upload → media_id, reused while it lives); a group
        # robot takes the picture inline (base64 + md5). ``[wecom] images = false``: text only.
        # An AI-bot reply (response_url) is markdown only: no picture there.
        images=frozenset({"user", "robot"}) if cfg.images else frozenset(),
        cards=True,
        # a card is one more message against the 30-a-minute limit per member: a few, if asked
        cards_per_push=cfg.card_items if cfg.card_buttons else 0,
        rate_limits=(("robot", "robot"), ("user", "member")),
    )


class WeComChannel:
    platform = "wecom"

    def __init__(self, config: WeComConfig, clock: Clock | None = None):
        self.config = config
        self.capabilities = capabilities(config)
        self.clock = clock or Clock()
        self.api: WeComAPI | None = None
        # response_urls this process has spent: each serves one call, so a second reply to the same
        # message goes to the asker at once instead of spending a request on a certain refusal
        self._spent: OrderedDict[str, None] = OrderedDict()

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def __repr__(self) -> str:
        return f"WeComChannel(corp_id={self.config.corp_id!r}, agent_id={self.config.agent_id!r})"

    def connect(self, session: aiohttp.ClientSession, *, timeout: float = API_TIMEOUT,
                clock=time.monotonic) -> WeComAPI:
        c = self.config
        self.api = WeComAPI(session, c.api_base, c.corp_id, c.secret, c.agent_id, clock, timeout=timeout)
        return self.api

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str] | tuple[str, str, dict[str, Any]]:
        """An AI-bot message is answered where it was asked (the group, or the bot's own chat)
        through the response_url it carried, while that is valid; the asker is kept as the
        fallback for when it is not (spent, expired). App messages go to the person: a group
        robot is send-only and cannot be answered."""
        route = msg.reply_route or {}
        url, expires = route.get("response_url"), route.get("expires_ms")
        if isinstance(url, str) and url and isinstance(expires, int):
            if not self._trusted(url):
                log.warning("wecom: AI-bot message %s carried a response_url outside api_base; "
                            "answering the sender privately", msg.message_id)
            elif expires - self.now_ms() > RESPONSE_MARGIN_S * 1000:
                return "session", url, {"expires_ms": expires, "fallback_user": msg.platform_user_id}
        return ("user", msg.platform_user_id)

    def _trusted(self, url: str) -> bool:
        # the callback is signed and encrypted, but the URL is still only followed to WeCom itself:
        # a leaked key must not make the bot post ledger figures to an outside address
        return url.startswith(self.config.api_base.rstrip("/") + "/")

    async def deliver(self, out: OutgoingMessage) -> None:
        if self.api is None:
            raise TransientDeliveryError("WeCom channel not started yet", code="not_started")
        if out.target_kind == "session":
            await self._respond(out)
            return
        card = out.card
        if out.answers is not None:
            await self._answer_card(out, card)
            return
        if "image_base64" in out.extra and not self.capabilities.images:
            return      # queued before images were switched off: the text row says it all
        if card is not None and out.target_kind == "user":
            out = dataclasses.replace(out, extra={**out.extra, "template_card": template_card(card)})
        await self.api.deliver(out, dict(self.config.robot_webhook_keys))

    async def _answer_card(self, out: OutgoingMessage, card: Card | None) -> None:
        """The card that was clicked, updated for the person who clicked it: the outcome in a
        grey, unclickable button (``replace_text``) instead of the buttons. The response_code
        is single use and lives 72 h; a click without one (none came) has nothing to update."""
        code = str((out.answers or {}).get("response_code") or "")
        if card is None or not code or out.target_kind != "user":
            return
        assert self.api is not None
        await self.api.update_template_card([out.target], code, answered_card(card))

    async def _respond(self, out: OutgoingMessage) -> None:
        """Answer through an AI-bot response_url: one call, within its hour. A reply that finds it
        spent or expired, or that WeCom refuses, goes to the asker as an app message instead: the
        answer reaches its person, if not in the group. Rate limits and network failures are
        raised for the outbox to retry (the expiry is checked again on every attempt)."""
        url, api = out.target, self.api
        assert api is not None
        fallback = str(out.extra.get("fallback_user") or "")
        expires = out.extra.get("expires_ms")
        why = ""
        if url in self._spent:
            why = "spent"
        elif isinstance(expires, int) and self.now_ms() >= expires - RESPONSE_MARGIN_S * 1000:
            why = "expired"
        else:
            self._remember(url)   # before the call: a timed-out call may still have used it
            try:
                await api.send_response(url, {"msgtype": "markdown", "markdown": {"content": out.text}})
                return
            except PermanentDeliveryError as e:
                why = f"refused ({e.code})"
        if not fallback:
            raise PermanentDeliveryError(f"AI-bot response_url {why} and no sender to fall back to",
                                         code="response_url")
        log.info("wecom: AI-bot response_url %s; the reply goes to the sender as an app message", why)
        private = dataclasses.replace(out, target_kind="user", target=fallback,
                                      extra={k: v for k, v in out.extra.items() if k not in ("fallback_user", "expires_ms")})
        # the outbox sized it for the response_url (4,096 bytes), an app message takes 2,048: a
        # longer answer (a manager's /help) goes in parts, split as the outbox splits
        limit = self.capabilities.size_limit("user", private.format)
        texts = split_text(private.text, limit, private.format) if limit and not limit.fits(private.text) else [private.text]
        for text in texts:
            await self.deliver(dataclasses.replace(private, text=text))

    def _remember(self, url: str) -> None:
        self._spent[url] = None
        while len(self._spent) > SPENT_KEPT:
            self._spent.popitem(last=False)


def answered_card(card: Card) -> dict[str, Any]:
    """A clicked card after the click (update_template_card, whole card): same kind, the answer
    where the buttons were. An empty ``button_list`` plus ``replace_text`` is how WeCom shows
    a button_interaction card that can no longer be clicked (docs/wecom.md)."""
    return {"card_type": "button_interaction", "task_id": card.id,
            "main_title": {"title": card.title, "desc": card.description},
            "button_list": [], "replace_text": card.description or card.title}


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
    # A voice message is read like text when it comes with a transcript. WeCom's app message page
    # lists no Recognition field (WeChat's official accounts have one); it is read if WeCom sends
    # it, and a voice without it is kept for the record like a picture.
    recognition = str(fields.get("Recognition") or "").strip() if msgtype == "voice" else ""
    if msgtype == "text" or recognition:
        msg_id = str(fields.get("MsgId") or "") or _event_key(sender, created)
        text, cut_from = capped(str(fields.get("Content") or "") if msgtype == "text" else recognition)
        return IncomingMessage(text=text, cut_from=cut_from, message_id=_event_key(msg_id), **base), True
    if msgtype == "event" and fields.get("Event") == "template_card_event":
        task, key = str(fields.get("TaskId") or ""), str(fields.get("EventKey") or "")
        card = {"task_id": task, "key": key, "response_code": str(fields.get("ResponseCode") or "")}
        return IncomingMessage(text="", message_id=_event_key(task, sender, key), card_action=card, **base), True
    # enter_agent, subscribe, image/voice/location messages ...: kept for the record, not answered.
    # The event name is part of the key so two different events in one second are not merged.
    ident = fields.get("MsgId") or f"{created}:{fields.get('Event') or msgtype}"
    return IncomingMessage(text="", message_id=_event_key(sender, ident), **base), False


def message_from_aibot(data: dict[str, Any], received_s: int | None = None) -> IncomingMessage | None:
    """Map a decrypted AI-bot (智能机器人) callback; None for what the bot does not answer.

    Text, and voice (doc page 100719: ``voice.content`` is WeCom's transcript), are read alike.
    ``received_s``: when WeCom sent the callback (its signed ``timestamp``), from which the
    response_url's hour is counted."""
    sender = data.get("from") if isinstance(data.get("from"), dict) else {}
    user, msgid, msgtype = str(sender.get("userid") or ""), str(data.get("msgid") or ""), data.get("msgtype")
    if msgtype not in ("text", "voice") or not user or not msgid:
        return None   # stream refreshes, images, enter_chat events ...
    body = data.get(msgtype)
    content = str(body.get("content") or "") if isinstance(body, dict) else ""
    group = data.get("chattype") == "group"
    if group:
        content = _MENTION.sub("", content, count=1)   # "@机器人 /aging" → "/aging"
    chat = (str(data.get("chatid") or "") or None) if group else None
    route: dict[str, Any] = {}
    url = data.get("response_url")
    if isinstance(url, str) and url and received_s is not None:
        route = {"response_url": url, "expires_ms": (received_s + RESPONSE_URL_TTL_S) * 1000}
    text, cut_from = capped(content.strip())
    return IncomingMessage(platform="wecom", platform_user_id=user, text=text, cut_from=cut_from,
                           message_id=_event_key("aibot", msgid), chat_id=chat, mentioned_bot=True,
                           reply_route=route)


# -- callbacks ---------------------------------------------------------------------------------

XML_TYPES = frozenset({"text/xml", "application/xml", "text/plain", "application/octet-stream"})
JSON_TYPES = frozenset({"application/json", "text/plain", "application/octet-stream"})


def refusal(e: WeComCryptoError) -> Rejected:
    """The sample's error classes, in the intake's words."""
    if e.code == SIGNATURE_ERROR:
        return BadSignature(f"{e.message} ({e.code})")
    if e.code == VALIDATE_RECEIVEID_ERROR:
        return Forbidden(f"{e.message} ({e.code})")
    return Malformed(f"{e.message} ({e.code})")


def url_check(path: str, crypto: WeComCrypto) -> Endpoint:
    """GET: WeCom checks the URL by asking for its echostr decrypted: the plaintext, exactly."""
    def parse(req: RawRequest) -> Received:
        sig, ts, nonce, echostr = req.params("msg_signature", "timestamp", "nonce", "echostr")
        try:
            plain = crypto.verify_url(sig, ts, nonce, echostr)
        except WeComCryptoError as e:
            raise refusal(e) from None
        return Received(answer=Answer(plain.encode("utf-8"), "text/plain"))
    return Endpoint("GET", path, parse)


def _signed(req: RawRequest) -> None:
    req.params("msg_signature", "timestamp", "nonce")


def app_callback(path: str, crypto: WeComCrypto) -> Endpoint:
    """POST from the app: ``<xml><Encrypt/>...</xml>``, signed over the Encrypt field."""
    def parse(req: RawRequest) -> Received:
        sig, ts, nonce = req.params("msg_signature", "timestamp", "nonce")
        try:
            msg, handle = message_from_xml(parse_xml(crypto.decrypt_body(sig, ts, nonce, req.body)))
        except WeComCryptoError as e:
            raise refusal(e) from None
        except ValueError as e:
            raise Malformed(str(e)) from None
        return Received(((msg, handle),))
    return Endpoint("POST", path, parse, verify=_signed, content_types=XML_TYPES)


def aibot_callback(path: str, crypto: WeComCrypto) -> Endpoint:
    """POST from the AI bot (智能机器人): ``{"encrypt": ...}``; acknowledged with an empty 200
    at once (the docs allow an empty answer) and answered later, through the outbox, by the
    response_url the callback carries: in the group it was asked in. A passive (stream) reply
    would have to be ready within WeCom's wait, and the answer needs the database."""
    def parse(req: RawRequest) -> Received:
        sig, ts, nonce = req.params("msg_signature", "timestamp", "nonce")
        try:
            outer = json.loads(req.body)
            encrypt = outer.get("encrypt") if isinstance(outer, dict) else None
            if not isinstance(encrypt, str) or not encrypt:
                raise ValueError("no encrypt field")
            data = json.loads(crypto.decrypt(sig, ts, nonce, encrypt))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except WeComCryptoError as e:
            raise refusal(e) from None
        except (ValueError, UnicodeDecodeError):
            raise Malformed("malformed json") from None
        try:
            received_s = int(ts)
        except ValueError:
            raise Malformed("timestamp is not a number") from None
        msg = message_from_aibot(data, received_s)
        return Received(() if msg is None else ((msg, True),))
    return Endpoint("POST", path, parse, verify=_signed, content_types=JSON_TYPES)


CHANNEL = web.AppKey("wecom.channel", WeComChannel)


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
    channel = app[CHANNEL] = WeComChannel(cfg, state.services.clock)

    async def api_session(app: web.Application):
        async with aiohttp.ClientSession() as session:
            app[CHANNEL].connect(session)
            yield
            app[CHANNEL].api = None

    app.cleanup_ctx.append(api_session)
    endpoints = [url_check("/wecom/callback", app_crypto), app_callback("/wecom/callback", app_crypto)]
    if bot_crypto is not None:
        endpoints += [url_check("/wecom/aibot", bot_crypto), aibot_callback("/wecom/aibot", bot_crypto)]
    app.add_routes(intake.routes(state, channel.platform, endpoints))
    return channel


def mobile_lookup(cfg: WeComConfig, session: aiohttp.ClientSession):
    """A member's userid by mobile (user/getuserid), for binding people imported with a mobile."""
    api = WeComAPI(session, cfg.api_base, cfg.corp_id, cfg.secret, cfg.agent_id, time.monotonic, timeout=API_TIMEOUT)
    return api.user_id_by_mobile


PLATFORM = register(Platform(
    name="wecom", capabilities=capabilities, install=install, mobile_lookup=mobile_lookup,
    account_headers=("wecom", "企业微信ID", "企业微信账号", "企微ID", "企业微信")))
