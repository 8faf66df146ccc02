"""The local web chat: a newcomer picks a person and talks to the bot from a browser.

Anyone who reaches it can speak as anyone, so it is on only when ``[local] enabled`` (the demo
and dev configurations) and answers loopback clients only unless ``allow_remote`` is set.
Replies come back in the HTTP answer; pushes land in the outbox and are read from /local/inbox.
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import uuid
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import select

from bot.config import LocalConfig
from bot.core.channel import Capabilities, Platform, SizeLimit, register
from bot.core.intake import Forbidden, Malformed, UnsupportedMediaType
from bot.core.messages import IncomingMessage, OutgoingMessage, capped
from bot.outbox.sizes import split_text
from bot.render import html_environment
from bot.reply_window import close_at_arg, open_window_closes
from storage.models import OutboxMessage, Person

log = logging.getLogger(__name__)
MAX_REPLY_CHARS = 8000       # characters in one chat bubble


def capabilities(cfg: LocalConfig | None) -> Capabilities:
    # Replies come back in the HTTP answer; pushes wait in the outbox for /local/inbox. The page
    # shows a picture as an <img> whose source is a data: URL in the JSON (no file to serve, no
    # link to sign), unless ``[local] images = false``.
    # No platform limit, but a chat bubble is not a document: the same cap as a long report on
    # the other platforms, split the same way (bot/outbox/sizes.py)
    images = cfg is None or cfg.images
    return Capabilities(targets=frozenset({"user", "group"}), synchronous_replies=True,
                        sizes=tuple(((kind, fmt), SizeLimit(chars=MAX_REPLY_CHARS))
                                    for kind in ("user", "group") for fmt in ("text", "markdown")),
                        images=frozenset({"user", "group"}) if images else frozenset())


CAPABILITIES = capabilities(None)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class LocalChannel:
    platform = "local"

    def __init__(self, config: LocalConfig | None = None):
        self.capabilities = capabilities(config)

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        return ("group", msg.chat_id) if msg.chat_id else ("user", msg.platform_user_id)

    async def deliver(self, out: OutgoingMessage) -> None:
        """Nothing to send: the inbox page reads delivered rows straight from the outbox."""


def _is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _authority(origin: str) -> str:
    """``http://localhost:8080`` → ``localhost:8080``; "" for ``null`` or anything not a URL."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return ""
    return parts.netloc if parts.scheme in ("http", "https") else ""


def _local_name(authority: str | None, extra: tuple[str, ...] | list[str] = ()) -> bool:
    """Is this Host/Origin authority a loopback address, ``localhost`` or a configured name?"""
    try:
        host = urlsplit("//" + (authority or "")).hostname or ""
    except ValueError:
        return False
    host = host.rstrip(".").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost") or host in {h.lower() for h in extra}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def routes(app_state) -> list[web.RouteDef]:
    """app_state: bot.app.State (db, pipeline, inbound, config)."""

    # Refusals are bot/core/intake.py's, answered by the app's middleware in the shared JSON shape.
    def guard(request: web.Request) -> None:
        if not app_state.config.local.allow_remote and not _is_loopback(request):
            raise Forbidden("local chat answers loopback clients only ([local] allow_remote)")
        # DNS rebinding: a page elsewhere whose name resolves to 127.0.0.1 reaches a loopback
        # server with its own Host and Origin. Loopback mode answers loopback names only; an
        # operator who opens the chat to remote browsers ([local] allow_remote) already lets
        # anyone in, and is held to [local] allowed_hosts only when they set it.
        extra = app_state.config.local.allowed_hosts
        if app_state.config.local.allow_remote and not extra:
            return
        if not _local_name(request.host, extra):
            raise Forbidden("local chat answers only a loopback Host ([local] allowed_hosts)")
        origin = request.headers.get("Origin")
        if origin is not None and not _local_name(_authority(origin), extra):
            raise Forbidden("local chat answers only pages from a loopback origin ([local] allowed_hosts)")

    async def post_message(request: web.Request) -> web.Response:
        guard(request)
        if request.content_type != "application/json":
            raise UnsupportedMediaType("send JSON: {\"user\": ..., \"chat\": ..., \"text\": ...}")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Malformed("body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("user"), str) or not isinstance(body.get("text"), str):
            raise Malformed("expected {\"user\": \"<person id>\", \"chat\": \"<group id or null>\", \"text\": \"...\"}")
        chat = body.get("chat")
        if chat is not None and not isinstance(chat, str):
            raise Malformed("chat must be a string or null")
        text, cut_from = capped(body["text"])
        msg = IncomingMessage(platform="local", platform_user_id=body["user"], text=text, cut_from=cut_from,
                              message_id=str(body.get("id") or uuid.uuid4().hex), chat_id=chat or None,
                              mentioned_bot=True, card_action=body.get("card") if isinstance(body.get("card"), dict) else None)
        replies = await app_state.handle_now(msg)
        shows = capabilities(app_state.config.local).takes_image("group" if chat else "user")
        out = []
        caps = capabilities(app_state.config.local)
        for r in replies:
            # fitted like every outgoing message (bot/outbox/sizes.py): these never pass the sender
            limit = caps.size_limit("group" if chat else "user", r.format)
            texts = [r.text] if limit is None else split_text(r.text, limit, r.format)
            out.extend({"text": t, "format": r.format} for t in texts[:-1])
            reply = {"text": texts[-1], "format": r.format}
            if shows and r.image is not None:
                # drawn here, in a thread (a fifth of a second of plotting): the intake leaves the
                # pictures of replies that travel in the HTTP answer to the channel
                try:
                    reply["image"] = data_url(await asyncio.to_thread(r.image))
                except Exception:            # a chart that cannot be drawn: the text still answers
                    log.exception("local chat: the reply's picture could not be drawn")
            out.append(reply)
        return web.json_response({"replies": out})

    async def inbox(request: web.Request) -> web.Response:
        guard(request)
        user, chat = request.query.get("user"), request.query.get("chat")
        if not user and not chat:
            raise Malformed("give ?user=<person id> or ?chat=<group id>")
        kind, target = ("user", user) if user else ("group", chat)
        async with app_state.db.reader() as s:
            rows = (await s.execute(select(OutboxMessage).where(
                OutboxMessage.platform == "local", OutboxMessage.target_kind == kind,
                OutboxMessage.target == target).order_by(OutboxMessage.id.desc()).limit(200))).scalars().all()
        tz = app_state.config.tz          # the company's time, as the pushes themselves say it (not UTC)
        shows = capabilities(app_state.config.local).takes_image(kind)

        def message(r: OutboxMessage) -> dict:
            m = {"id": r.id, "text": r.text, "format": r.format, "status": r.status,
                 "at": (r.sent_at or r.created_at).astimezone(tz).isoformat()}
            picture = (r.extra or {}).get("image_base64")
            if shows and isinstance(picture, str) and picture:
                m["image"] = "data:image/png;base64," + picture      # stored as base64 already
            return m

        return web.json_response({"messages": [message(r) for r in reversed(rows)
                                               if not (r.extra or {}).get("answers")]})

    async def people(request: web.Request) -> web.Response:
        guard(request)
        async with app_state.db.reader() as s:
            rows = (await s.execute(select(Person).where(Person.active.is_(True)).order_by(Person.role, Person.id))).scalars()
            role = html_environment().get_template("_fmt.j2").module.role
            return web.json_response({"people": [{"id": p.id, "name": p.name, "role": p.role,
                                                  "role_label": str(role(p.role)), "team": p.team} for p in rows]})

    async def page(request: web.Request) -> web.Response:
        guard(request)
        close_cmd = None
        if app_state.config.demo:
            # README step 5 depends on the day the demo started: the sidebar says the exact command
            closes = await open_window_closes(app_state.services)
            if closes is not None:
                close_cmd = f"{app_state.cli} jobs run reply_window_close --at {close_at_arg(closes)}"
        html = html_environment().get_template("web/chat.html.j2").render(
            company=app_state.config.company.name, demo=app_state.config.demo, close_cmd=close_cmd)
        return web.Response(text=html, content_type="text/html")

    return [web.post("/local/messages", post_message), web.get("/local/inbox", inbox),
            web.get("/local/people", people), web.get("/", page)]


def install(app: web.Application, state) -> LocalChannel:
    app.add_routes(routes(state))
    return LocalChannel(state.config.local)


# Registered last of the chat platforms (bot/channels/adapters.py): a person is reached here only
# when no real platform knows them. The local chat speaks as a person id, it has no accounts.
PLATFORM = register(Platform(name="local", capabilities=capabilities, install=install,
                             identity="person"))
