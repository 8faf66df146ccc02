"""The DingTalk adapter: robot messages in (HTTP callback or Stream), outbox rows out.

Verify → persist → acknowledge → work. HTTP mode checks the ``timestamp``/``sign`` headers before
it reads the body, stores the message (deduplicated by msgId) and answers 200 at once; Stream mode
stores the message before the frame is ACKed. Handling happens in ``state.inbound``'s background
tasks and every reply leaves through the outbox.

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
  cleanup_ctx) and stops ``on_shutdown`` (before the database closes).
* **Logs** carry reasons and message ids only: never secrets, tokens, webhook URLs (they are
  credentials) or message text.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot import inbound
from bot.channels.dingtalk_api import DingTalkAPI
from bot.channels.dingtalk_crypto import (DingTalkAuthError, incoming_from_robot_payload, parse_json_body,
                                          verify_robot_request)
from bot.channels.dingtalk_stream import StreamClient
from bot.channels.errors import TransientDeliveryError
from bot.config import DingTalkConfig
from bot.core.channel import Capabilities, Platform, register
from bot.core.messages import IncomingMessage, OutgoingMessage

log = logging.getLogger(__name__)

CALLBACK_PATH = "/dingtalk/callback"
# Reply through the session webhook only while it has this much life left: the outbox may need a
# few backed-off attempts (2 + 4 + 8 + ... s) and each must still find the webhook valid.
SESSION_MARGIN_S = 300


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", "", None


def capabilities(cfg: DingTalkConfig) -> Capabilities:
    return Capabilities(
        targets=frozenset({"user", "group", "session", "robot"}),
        # markdown shows an image by URL only: the chart goes by link; no button cards whose clicks
        # come back (actionCard buttons open URLs)
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
        self.status: dict[str, Any] = {"mode": config.mode, "accepted": 0, "duplicates": 0, "rejected": 0,
                                       "last_rejection": None}

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def _trusted_webhook(self, url: Any) -> bool:
        if not isinstance(url, str) or not url:
            return False
        scheme, host, port = _origin(url)
        return bool(host) and (scheme, host, port) == _origin(self.config.oapi_base)

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
        await self.api.deliver(out, self.config.robot_webhooks)

    def reject(self, status: int, reason: str) -> web.Response:
        self.status["rejected"] += 1
        self.status["last_rejection"] = f"{status} {reason}"
        log.info("dingtalk callback rejected: %s %s", status, reason)
        return web.json_response({"error": reason}, status=status)


async def persist(state, channel: DingTalkChannel, payload: dict) -> int | None:
    """Store one robot message (dedupe by msgId) and hand it to the background worker.

    Raises ValueError for a payload that is not a robot message. Returns the event id, or None for
    a redelivery.
    """
    msg = incoming_from_robot_payload(payload, bot_names=())
    event_id = await inbound.store(state.db, msg, state.services.clock.now())
    if event_id is None:
        channel.status["duplicates"] += 1
        log.info("dingtalk: message %s already received", msg.message_id)
        return None
    channel.status["accepted"] += 1
    state.inbound.spawn(event_id)
    return event_id


def callback_handler(state, channel: DingTalkChannel):
    cfg = channel.config

    async def callback(request: web.Request) -> web.Response:
        # 1. verify, before reading a byte of the body
        try:
            verify_robot_request(request.headers.get("timestamp"), request.headers.get("sign"),
                                 cfg.app_secret, now_ms=channel.now_ms())
        except DingTalkAuthError as e:
            return channel.reject(401, e.reason)
        if request.content_type != "application/json":
            return channel.reject(415, "content type must be application/json")
        if request.content_length is not None and request.content_length > request.client_max_size:
            return channel.reject(413, "body too large")
        try:
            raw = await request.read()       # enforces client_max_size for chunked bodies too
        except web.HTTPRequestEntityTooLarge:
            return channel.reject(413, "body too large")
        try:
            body = parse_json_body(raw)
            # 2. persist (a redelivered msgId is stored once)
            await persist(state, channel, body)
        except ValueError as e:
            return channel.reject(400, str(e))
        # 3. acknowledge at once; the work already runs in the background
        return web.json_response({})

    return callback


def install(app: web.Application, state) -> DingTalkChannel:
    cfg: DingTalkConfig = state.config.dingtalk
    if cfg.mode not in ("http", "stream"):
        raise ValueError(f"[dingtalk] mode must be \"http\" or \"stream\", not {cfg.mode!r}")
    channel = DingTalkChannel(cfg, state.services.clock)
    holder: dict[str, Any] = {}

    async def http_session(app: web.Application):
        session = aiohttp.ClientSession()
        holder["session"] = session
        channel.api = DingTalkAPI(session, cfg.api_base, cfg.oapi_base, app_key=cfg.app_key,
                                  app_secret=cfg.app_secret, robot_code=cfg.robot_code, wall_ms=channel.now_ms)
        yield
        channel.api = None
        await session.close()

    app.cleanup_ctx.append(http_session)

    if cfg.mode == "http":
        state.channel_status["dingtalk"] = channel.status
        app.router.add_post(CALLBACK_PATH, callback_handler(state, channel))
        return channel

    async def on_callback(payload: dict) -> None:
        # Persist before the ACK (StreamClient ACKs when this returns): DingTalk never re-sends a bot
        # message, so a failure here is logged and counted, not retried.
        try:
            await persist(state, channel, payload)
        except ValueError as e:
            channel.reject(400, str(e))

    async def start_stream(app: web.Application) -> None:
        client = StreamClient(holder["session"], cfg.api_base, cfg.app_key, cfg.app_secret, on_callback)
        holder["client"] = client
        holder["task"] = asyncio.create_task(client.run(), name="dingtalk-stream")
        state.channel_status["dingtalk"] = client.status

    async def stop_stream(app: web.Application) -> None:
        client, task = holder.get("client"), holder.get("task")
        if client is None:
            return
        await client.stop()
        try:
            await asyncio.wait_for(task, timeout=10)   # run() lets in-flight callbacks finish storing
        except asyncio.TimeoutError:
            task.cancel()

    app.on_startup.append(start_stream)
    app.on_shutdown.append(stop_stream)
    return channel


PLATFORM = register(Platform(
    name="dingtalk", capabilities=capabilities, install=install,
    account_headers=("dingtalk", "钉钉ID", "钉钉账号", "钉钉")))
