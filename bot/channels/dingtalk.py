"""The DingTalk adapter: robot messages and card clicks in (HTTP callback or Stream), outbox rows out.

Only what is DingTalk's lives here. HTTP mode is an ``Endpoint`` for the shared intake
(bot/web/intake.py): the ``timestamp``/``sign`` headers are checked before the body is read, the
body must be JSON, and the message is stored (deduplicated by msgId) before the 200 ``{}`` goes
out. Stream mode stores the message the same way (``state.inbound.receive``) before the frame is
ACKed. Handling happens in the background and every reply leaves through the outbox.

Decisions:

* **Reply route.** A message's ``sessionWebhook`` needs no permission and no token, so replies use
  it while it is comfortably valid (``SESSION_MARGIN_S`` before its expiry, enough for a few outbox
  retries). An event handled late (the bot was down, ``resume_unhandled``) finds it near expiry and
  replies through the robot API instead: group → ``groupMessages/send`` to the conversationId,
  1:1 → ``oToMessages/batchSend`` to the sender's staffId. The route is decided when the reply is
  queued; a session row that still outlives its webhook dies loudly (errcode 300001).
* **Session webhooks only from DingTalk.** The header sign covers the timestamp, not the body, so
  a captured sign could be replayed within the hour with a forged body. A ``sessionWebhook`` whose
  origin is not ``oapi_base`` is ignored (the reply goes through the robot API to the real sender)
  so a forged body can never make the bot post ledger figures to an outside URL.
* **Clock.** Signature freshness and webhook expiry use the services clock (real time in
  production, the fixed clock in tests), like everything else in the bot.
* **Lifecycle.** The ClientSession lives in a ``cleanup_ctx`` registered before the app's own
  resources, so it closes *after* the sender stopped. The Stream client needs ``state.inbound``,
  which exists only once those resources started, so it starts ``on_startup`` (after every
  cleanup_ctx) and stops ``on_shutdown`` (before the database closes). Both are kept on the app
  under typed keys (``CHANNEL``, ``CONNECTIONS``).
* **Cards** (互动卡片, bot/channels/dingtalk_cards.py): with ``[dingtalk] card_template_id`` set,
  a row with a ``Card`` to a person becomes a card instance of that template (createAndDeliver);
  in Stream mode clicks come over the socket (topic ``/v1.0/card/instances/callback``), in HTTP
  mode to ``/dingtalk/card``, the route registered at start-up. A click is stored and handled
  like a message; the row answering it updates the card in place by its outTrackId.
* **Logs** carry reasons and message ids only: never secrets, tokens, webhook URLs (they are
  credentials) or message text.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.channels.dingtalk_api import DingTalkAPI
from bot.channels.dingtalk_cards import (CARD_PATH, SIGNATURE_HEADER, SIGNATURE_TIMESTAMP_HEADER, card_params,
                                         click_from_callback, out_track_id, verify_card_request)
from bot.channels.dingtalk_crypto import (DingTalkAuthError, incoming_from_robot_payload, parse_json_body,
                                          verify_robot_request)
from bot.channels.dingtalk_stream import StreamClient
from bot.channels.errors import TransientDeliveryError
from bot.config import DingTalkConfig
from bot.core.channel import CARD_DESCRIPTION, Capabilities, Platform, SizeLimit, register
from bot.core.intake import EMPTY_JSON, BadSignature, Endpoint, Malformed, RawRequest, Received
from bot.core.messages import IncomingMessage, OutgoingMessage
from bot.render import render
from bot.web import intake

log = logging.getLogger(__name__)

CALLBACK_PATH = "/dingtalk/callback"
SESSION_PATH = "/robot/sendBySession"       # where a message's sessionWebhook points, on the oapi
# Reply through the session webhook only while it has this much life left: the outbox may need a
# few backed-off attempts (2 + 4 + 8 + ... s) and each must still find the webhook valid.
SESSION_MARGIN_S = 300
CONTENT_MAX_BYTES = 15_000     # of a message's text: the body's 20,000 bytes less envelope and escaping


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", "", None


def capabilities(cfg: DingTalkConfig) -> Capabilities:
    cards = bool(cfg.card_template_id)
    return Capabilities(
        targets=frozenset({"user", "group", "session", "robot"}),
        # DingTalk refuses a message body over 20,000 bytes (errcode 460101 "message too long,
        # exceed 20000 bytes"); text and markdown alike, on every route. The content gets what the
        # body leaves after the envelope and JSON escaping (the robot API nests the message as a
        # JSON string in JSON: a newline costs 3 bytes there). A card's text is held to the same
        # (no limit of the card API's own is documented; *uncertain*)
        sizes=tuple(((kind, fmt), SizeLimit(bytes=CONTENT_MAX_BYTES))
                    for kind in ("user", "group", "session", "robot") for fmt in ("text", "markdown"))
        + ((("user", CARD_DESCRIPTION), SizeLimit(bytes=CONTENT_MAX_BYTES)),),
        # a picture is uploaded (oapi media/upload → media_id) and shown as sampleImageMsg through
        # the robot API, as a markdown picture through a session webhook or custom robot;
        # ``[dingtalk] images = false``: the text only
        images=frozenset({"user", "group", "session", "robot"}) if cfg.images else frozenset(),
        # interactive cards (互动卡片) to a person, from the configured template, whose clicks come
        # back over Stream or the HTTP card callback (bot/channels/dingtalk_cards.py)
        cards=cards,
        cards_per_push=cfg.card_items if cards and cfg.card_buttons else 0,
        rate_limits=(("robot", "robot"),),     # a custom robot: 20 a minute, or muted for 10 minutes
    )


class DingTalkChannel:
    """The outbox's view of DingTalk: where a reply goes, and how a row is sent."""

    platform = "dingtalk"

    def __init__(self, config: DingTalkConfig, clock: Any):
        self.config = config
        self.capabilities = capabilities(config)
        self.clock = clock
        self.api: DingTalkAPI | None = None     # set when the app starts (needs the ClientSession)

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def _trusted_webhook(self, url: Any) -> bool:
        """DingTalk's own session-reply endpoint: the oapi origin *and* its /robot/sendBySession
        path (the origin alone let a forged body aim the reply at any oapi URL, /robot/send with
        someone else's access_token among them), no userinfo, no fragment."""
        if not isinstance(url, str) or not url:
            return False
        scheme, host, port = _origin(url)
        try:
            parts = urlsplit(url)
            base = urlsplit(self.config.oapi_base)
        except ValueError:
            return False
        path = base.path.rstrip("/") + SESSION_PATH
        return (bool(host) and (scheme, host, port) == _origin(self.config.oapi_base) and parts.path == path
                and not parts.username and not parts.password and not parts.fragment)

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        route = msg.reply_route or {}
        url, expires = route.get("session_webhook"), route.get("expires_ms")
        if url and not self._trusted_webhook(url):
            log.warning("dingtalk: message %s carried a session webhook outside %s; replying via the robot API",
                        msg.message_id, _origin(self.config.oapi_base)[1])
        elif url and (expires is None or int(expires) - self.now_ms() > SESSION_MARGIN_S * 1000):
            return "session", url
        if msg.chat_id:
            return "group", msg.chat_id
        return "user", msg.platform_user_id

    async def deliver(self, out: OutgoingMessage) -> None:
        if self.api is None:
            raise TransientDeliveryError("dingtalk channel not started", code="not-started")
        card = out.card
        if out.answers is not None:
            # the clicked card, updated in place: the outcome where the buttons were
            track = str(out.answers.get("task_id") or "")
            if card is not None and track and self.capabilities.cards:
                await self.api.update_card(track, card_params(card, answered=True))
            return
        if "image_base64" in out.extra and not self.capabilities.images:
            return     # queued before images were switched off: the text row says it all
        if card is not None and out.target_kind == "user" and self.capabilities.cards:
            cfg = self.config
            await self.api.deliver_card(out_track_id(card, out.key), out.target, cfg.card_template_id,
                                        card_params(card),
                                        callback_route_key=cfg.card_callback_route_key if cfg.mode == "http" else "")
            return
        await self.api.deliver(out, self.config.robot_webhooks, image_title=render("charts/image_title.j2"))


def robot_callback(cfg: DingTalkConfig, now_ms) -> Endpoint:
    def verify(req: RawRequest) -> None:
        try:
            verify_robot_request(req.headers.get("timestamp"), req.headers.get("sign"), cfg.app_secret,
                                 now_ms=now_ms())
        except DingTalkAuthError as e:
            raise BadSignature(e.reason) from None

    def parse(req: RawRequest) -> Received:
        try:
            msg = incoming_from_robot_payload(parse_json_body(req.body), bot_names=())
        except ValueError as e:
            raise Malformed(str(e)) from None
        return Received(((msg, True),), EMPTY_JSON)

    return Endpoint("POST", CALLBACK_PATH, parse, verify=verify, content_types=frozenset({"application/json"}))


def card_callback(cfg: DingTalkConfig, now_ms) -> Endpoint:
    """HTTP mode: a click on a card, posted to the route registered at start-up. Its signature
    headers (timestamp only, like the robot's) are checked before the body is read."""
    def verify(req: RawRequest) -> None:
        why = verify_card_request(req.headers.get(SIGNATURE_TIMESTAMP_HEADER), req.headers.get(SIGNATURE_HEADER),
                                  cfg.card_callback_secret, now_ms())
        if why is not None:
            raise BadSignature(why)

    def parse(req: RawRequest) -> Received:
        try:
            msg = click_from_callback(parse_json_body(req.body))
        except ValueError as e:
            raise Malformed(str(e)) from None
        # the answer carries no card update: the card is updated once the click is recorded
        return Received(() if msg is None else ((msg, True),), EMPTY_JSON)

    return Endpoint("POST", CARD_PATH, parse, verify=verify, content_types=frozenset({"application/json"}))


def _card_route_registration(state, channel: DingTalkChannel):
    """At start-up (HTTP mode with cards): point the card callback route at this bot, so that
    clicks on the cards it delivers come to ``/dingtalk/card``. Run in the background: DingTalk
    being unreachable must not hold up the start; a failure shows on /healthz (``card_route``)
    and the cards still go out, their clicks waiting for the route."""
    cfg = channel.config
    url = state.config.server.public_url.rstrip("/") + CARD_PATH
    status: dict[str, Any] = {"registered": False, "last_error": None}

    async def register() -> None:
        for attempt in range(5):
            if channel.api is None:
                return
            try:
                await channel.api.register_card_callback(cfg.card_callback_route_key, url, cfg.card_callback_secret)
                status.update(registered=True, last_error=None)
                return
            except Exception as e:       # network, refusal: said on /healthz, tried again a few times
                status["last_error"] = f"{type(e).__name__}: {e}"[:300]
                log.warning("dingtalk: card callback route not registered: %s", status["last_error"])
            await asyncio.sleep(2 ** attempt)

    async def start(app: web.Application) -> None:
        state.channel_health.watch(channel.platform, "card_route", status)
        app[CONNECTIONS].card_route = asyncio.create_task(register(), name="dingtalk-card-route")

    return start


async def _stop_card_route(app: web.Application) -> None:
    task = app[CONNECTIONS].card_route
    if task is not None and not task.done():
        task.cancel()


@dataclass
class Connections:
    """What the channel opens while the app runs: the HTTP client session, and in Stream mode the
    socket's client and its task (kept on the app under ``CONNECTIONS``, filled in at start-up)."""
    session: aiohttp.ClientSession | None = None
    stream: StreamClient | None = None
    task: asyncio.Task | None = None
    card_route: asyncio.Task | None = None     # HTTP mode with cards: the route's registration


CHANNEL = web.AppKey("dingtalk.channel", DingTalkChannel)
CONNECTIONS = web.AppKey("dingtalk.connections", Connections)


def install(app: web.Application, state) -> DingTalkChannel:
    cfg: DingTalkConfig = state.config.dingtalk
    if cfg.mode not in ("http", "stream"):
        raise ValueError(f"[dingtalk] mode must be \"http\" or \"stream\", not {cfg.mode!r}")
    channel = app[CHANNEL] = DingTalkChannel(cfg, state.services.clock)
    conn = app[CONNECTIONS] = Connections()
    state.channel_health.add(channel.platform, mode=cfg.mode)

    async def http_session(app: web.Application):
        async with aiohttp.ClientSession() as session:
            conn.session = session
            channel.api = DingTalkAPI(session, cfg.api_base, cfg.oapi_base, app_key=cfg.app_key,
                                      app_secret=cfg.app_secret, robot_code=cfg.robot_code, wall_ms=channel.now_ms)
            yield
            channel.api = None

    app.cleanup_ctx.append(http_session)

    if cfg.mode == "http":
        endpoints = [robot_callback(cfg, channel.now_ms)]
        if channel.capabilities.cards:
            endpoints.append(card_callback(cfg, channel.now_ms))
            app.on_startup.append(_card_route_registration(state, channel))
            app.on_shutdown.append(_stop_card_route)
        app.add_routes(intake.routes(state, channel.platform, endpoints))
        return channel

    async def on_card(payload: dict) -> None:
        # a click is stored before the ACK like a message; one that does not parse is counted
        try:
            msg = click_from_callback(payload)
        except ValueError as e:
            state.channel_health.refused(channel.platform, Malformed(str(e)))
            log.info("dingtalk stream card callback refused: %s", e)
            return
        if msg is not None:
            state.channel_health.verified(channel.platform)
            await state.inbound.receive(msg)

    async def on_callback(payload: dict) -> None:
        # Stored before the ACK (StreamClient ACKs when this returns): DingTalk never re-sends a bot
        # message, so one that does not parse is counted as refused and dropped, not retried.
        try:
            msg = incoming_from_robot_payload(payload, bot_names=())
        except ValueError as e:
            state.channel_health.refused(channel.platform, Malformed(str(e)))
            log.info("dingtalk stream message refused: %s", e)
            return
        await state.inbound.receive(msg)

    async def start_stream(app: web.Application) -> None:
        conn.stream = StreamClient(conn.session, cfg.api_base, cfg.app_key, cfg.app_secret, on_callback,
                                   on_card=on_card if channel.capabilities.cards else None)
        conn.task = asyncio.create_task(conn.stream.run(), name="dingtalk-stream")
        state.channel_health.watch(channel.platform, "stream", conn.stream.status)

    async def stop_stream(app: web.Application) -> None:
        client, task = conn.stream, conn.task
        if client is None or task is None:
            return
        await client.stop()
        try:
            await asyncio.wait_for(task, timeout=10)   # run() lets in-flight callbacks finish storing
        except asyncio.TimeoutError:
            task.cancel()

    app.on_startup.append(start_stream)
    app.on_shutdown.append(stop_stream)
    return channel


def mobile_lookup(cfg: DingTalkConfig, session: aiohttp.ClientSession):
    """A member's userId by mobile (topapi/v2/user/getbymobile), for binding people imported with a mobile."""
    api = DingTalkAPI(session, cfg.api_base, cfg.oapi_base, app_key=cfg.app_key, app_secret=cfg.app_secret,
                      robot_code=cfg.robot_code)
    return api.user_id_by_mobile


PLATFORM = register(Platform(
    name="dingtalk", capabilities=capabilities, install=install, mobile_lookup=mobile_lookup,
    account_headers=("dingtalk", "钉钉ID", "钉钉账号", "钉钉")))
