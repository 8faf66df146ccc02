"""A fake Feishu open platform on loopback, plus the callbacks Feishu sends to the bot.

It enforces what the bot's correctness depends on (docs/feishu.md): tenant_access_token issued
for the right app id/secret, the same token returned until under 30 min are left, expiry
(99991663 afterwards), ``Authorization: Bearer``, ``receive_id_type`` (open_id / user_id /
chat_id) matching the receive id, ``content`` as a JSON *string* of the msg_type's shape, the
request body limits (text 150 KB, post / interactive 30 KB → 230025), 5 messages a second to one
receiver (230020), ``uuid`` de-duplication for an hour, card updates (PATCH, only a card the app
sent with ``update_multi``), and the long connection's endpoint and protobuf frames (encoded with
lark-oapi's own generated ``Frame``). It also signs and encrypts outgoing event callbacks.

    async with FakeFeishu(app_id="cli_x", app_secret="s") as fake:
        fake.inject(code=230020)                    # next send: rate limited
        fake.expire_tokens()                        # every token issued so far answers 99991663
        status, body = await fake.post_event(url, fake.text_event("ou_1", "/aging"))
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid as uuidlib
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web

from bot.channels import feishu_crypto
from tests.fakes.forms import parse_form

TEXT_BODY_MAX = 150 * 1024
RICH_BODY_MAX = 30 * 1024
PER_RECEIVER_PER_SECOND = 5
IMAGE_MAX = 10 * 1024 * 1024        # im/v1/images: at most 10 MB, never empty
# the formats im/v1/images reads, by the file's own signature
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF8": "gif", b"BM": "bmp",
                    b"II*\x00": "tiff", b"MM\x00*": "tiff", b"\x00\x00\x01\x00": "ico"}


def image_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((f for sig, f in IMAGE_SIGNATURES.items() if data.startswith(sig)), None)


@dataclass
class Sent:
    receive_id_type: str
    receive_id: str
    msg_type: str
    content: dict[str, Any]
    message_id: str
    at: float
    uuid: str = ""


@dataclass
class _Token:
    expires_at: float
    revoked: bool = False


@dataclass
class FakeFeishu:
    app_id: str = "cli_fakeapp0001"
    app_secret: str = "fake-app-secret"
    verification_token: str = "fake-verification-token"
    encrypt_key: str = "fake-encrypt-key"
    token_ttl: float = 7200
    clock: Callable[[], float] = time.monotonic
    url: str = ""
    tokens: dict[str, _Token] = field(default_factory=dict)
    token_calls: int = 0
    sent: list[Sent] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)     # (code, what) of refused sends
    updates: list[tuple[str, dict]] = field(default_factory=list)
    faults: deque = field(default_factory=deque)
    ws_acks: list[dict] = field(default_factory=list)
    ws_pings: int = 0
    images: dict[str, bytes] = field(default_factory=dict, repr=False)   # image_key -> the uploaded bytes
    uploads: int = 0
    upload_faults: deque = field(default_factory=deque)
    # the tenant's members by mobile: mobile -> {"user_id", "open_id", "union_id"} (batch_get_id)
    members: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._window: dict[str, deque] = defaultdict(deque)
        self._uuids: dict[str, tuple[float, str]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._ws_connected = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> "FakeFeishu":
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- control --------------------------------------------------------------------------
    def inject(self, *, code: int = 0, status: int = 400, count: int = 1, headers: dict | None = None) -> None:
        """The next ``count`` sends answer ``{code}`` with HTTP ``status``."""
        self.faults.extend([(code, status, headers or {})] * count)

    def inject_upload(self, *, code: int = 2200, status: int = 500, count: int = 1) -> None:
        """The next ``count`` image uploads answer ``{code}`` with HTTP ``status``."""
        self.upload_faults.extend([(code, status)] * count)

    def expire_tokens(self) -> None:
        for tok in self.tokens.values():
            tok.revoked = True

    def messages_to(self, receive_id: str) -> list[Sent]:
        return [m for m in self.sent if m.receive_id == receive_id]

    def images_to(self, receive_id: str) -> list[bytes]:
        """The pictures of the image messages sent to ``receive_id``."""
        return [self.images[m.content["image_key"]] for m in self.messages_to(receive_id) if m.msg_type == "image"]

    # -- the HTTP API ---------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_post("/open-apis/im/v1/messages", self._send)
        app.router.add_patch("/open-apis/im/v1/messages/{message_id}", self._update)
        app.router.add_post("/open-apis/im/v1/images", self._upload_image)
        app.router.add_post("/open-apis/contact/v3/users/batch_get_id", self._batch_get_id)
        app.router.add_post("/callback/ws/endpoint", self._ws_endpoint)
        app.router.add_get("/ws", self._ws)
        return app

    @staticmethod
    def _err(code: int, msg: str, status: int = 400, headers: dict | None = None) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_calls += 1
        body = await request.json()
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return self._err(10014, "app secret invalid")
        now = self.clock()
        live = [(v, t) for v, t in self.tokens.items() if not t.revoked and t.expires_at - now >= 1800]
        if live:       # at least 30 min left: the same token again
            value, tok = live[0]
        else:
            value, tok = "t-" + secrets.token_hex(16), _Token(now + self.token_ttl)
            self.tokens[value] = tok
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": value,
                                  "expire": int(tok.expires_at - now)})

    async def _batch_get_id(self, request: web.Request) -> web.Response:
        """contact/v3/users/batch_get_id: {"mobiles": [...]} (at most 50) -> data.user_list, one
        entry per mobile, with ``user_id`` only for a member (of the id type asked for)."""
        if (denied := self._auth(request)) is not None:
            return denied
        id_type = request.query.get("user_id_type", "open_id")
        if id_type not in ("open_id", "union_id", "user_id"):
            return self._err(99992402, "field validation failed: user_id_type")
        body = await request.json()
        mobiles = body.get("mobiles") if isinstance(body, dict) else None
        if not isinstance(mobiles, list) or not mobiles or len(mobiles) > 50:
            return self._err(99992402, "field validation failed: mobiles (1..50)")
        users = []
        for m in mobiles:
            member = self.members.get(str(m))
            users.append({"mobile": m, **({"user_id": member[id_type]} if member else {})})
        return web.json_response({"code": 0, "msg": "success", "data": {"user_list": users}})

    def _auth(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        tok = self.tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        if not auth:
            return self._err(99991661, "Missing access token for authorization", 400)
        if tok is None or tok.revoked or self.clock() >= tok.expires_at:
            return self._err(99991663, "Invalid access token for authorization", 400)
        return None

    async def _send(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if (denied := self._auth(request)) is not None:
            return denied
        if self.faults:
            code, status, headers = self.faults.popleft()
            self.refused.append((code, "injected"))
            return self._err(code, "injected fault", status, headers)
        id_type = request.query.get("receive_id_type", "")
        body = json.loads(raw)
        msg_type, receive_id = body.get("msg_type"), str(body.get("receive_id") or "")
        if id_type not in ("open_id", "user_id", "union_id", "email", "chat_id"):
            return self._err(99992402, "field validation failed: receive_id_type")
        if (id_type == "chat_id") != receive_id.startswith("oc_") or (id_type == "open_id") != receive_id.startswith("ou_"):
            return self._err(230001, "invalid receive_id")
        limit = TEXT_BODY_MAX if msg_type == "text" else RICH_BODY_MAX
        if len(raw) > limit:
            self.refused.append((230025, msg_type))
            return self._err(230025, "The length of the message content reaches its limit")
        if not isinstance(body.get("content"), str):
            return self._err(230001, "content must be a JSON string")
        content = json.loads(body["content"])
        shapes = {"text": ("text",), "post": ("zh_cn", "en_us"), "interactive": ("elements", "header", "i18n_elements"),
                  "image": ("image_key",)}
        if msg_type not in shapes or not any(k in content for k in shapes[msg_type]):
            return self._err(230001, "invalid content for msg_type")
        if msg_type == "image" and content.get("image_key") not in self.images:
            self.refused.append((230001, "image_key"))       # only a key this app uploaded
            return self._err(230001, "invalid image_key")
        uid, now = str(body.get("uuid") or ""), self.clock()
        if uid and uid in self._uuids and now - self._uuids[uid][0] < 3600:
            return web.json_response({"code": 0, "msg": "success", "data": {"message_id": self._uuids[uid][1]}})
        window = self._window[receive_id]
        while window and window[0] <= now - 1:
            window.popleft()
        if len(window) >= PER_RECEIVER_PER_SECOND:
            self.refused.append((230020, receive_id))
            return self._err(230020, "This operation triggers the frequency limit")
        window.append(now)
        mid = "om_" + uuidlib.uuid4().hex
        if uid:
            self._uuids[uid] = (now, mid)
        self.sent.append(Sent(id_type, receive_id, msg_type, content, mid, now, uid))
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": mid, "msg_type": msg_type}})

    async def _update(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if (denied := self._auth(request)) is not None:
            return denied
        mid = request.match_info["message_id"]
        original = next((m for m in self.sent if m.message_id == mid), None)
        if original is None or original.msg_type != "interactive":
            return self._err(230001, "invalid message_id")
        if not (original.content.get("config") or {}).get("update_multi"):
            return self._err(230001, "the card is not shared (update_multi)")
        if len(raw) > RICH_BODY_MAX:
            return self._err(230025, "The length of the message content reaches its limit")
        card = json.loads(json.loads(raw)["content"])
        if not (card.get("config") or {}).get("update_multi"):
            return self._err(230001, "the new card must say update_multi too")   # before and after
        self.updates.append((mid, card))
        original.content = card
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _upload_image(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if (denied := self._auth(request)) is not None:
            return denied
        if self.upload_faults:
            code, status = self.upload_faults.popleft()
            return self._err(code, "injected fault", status)
        form = parse_form(request.headers.get("Content-Type", ""), raw)
        if form is None:
            return self._err(234001, "Invalid request param: multipart/form-data expected")
        image_type = form.get("image_type", (None, b""))[1].decode("utf-8", "replace")
        _, data = form.get("image", (None, b""))
        if image_type not in ("message", "avatar") or "image" not in form:
            return self._err(234001, "Invalid request param: image_type and image")
        if not data:
            self.refused.append((234010, "image"))
            return self._err(234010, "File's size can't be 0")
        if len(data) > IMAGE_MAX:
            self.refused.append((234006, "image"))
            return self._err(234006, "The file size exceed the max value")
        if image_format(data) is None:
            self.refused.append((234011, "image"))
            return self._err(234011, "Can't recognize image format")
        key = "img_v3_" + uuidlib.uuid4().hex
        self.images[key] = data
        self.uploads += 1
        return web.json_response({"code": 0, "msg": "success", "data": {"image_key": key}})

    # -- callbacks to the bot --------------------------------------------------------------
    def envelope(self, event_type: str, event: dict, *, event_id: str | None = None, app_id: str | None = None,
                 token: str | None = None) -> dict:
        return {"schema": "2.0", "header": {
            "event_id": event_id or uuidlib.uuid4().hex, "event_type": event_type, "create_time": str(int(time.time() * 1000)),
            "token": self.verification_token if token is None else token, "app_id": app_id or self.app_id,
            "tenant_key": "tenant0"}, "event": event}

    def text_event(self, user_id: str, text: str, *, chat_id: str | None = None, mention_bot: bool = False,
                   message_id: str | None = None, **kw) -> dict:
        mentions = [{"key": "@_user_1", "id": {"open_id": "ou_bot", "user_id": "", "union_id": "on_bot"},
                     "name": "收款助手", "tenant_key": "tenant0"}] if mention_bot else []
        message = {"message_id": message_id or "om_" + uuidlib.uuid4().hex, "create_time": str(int(time.time() * 1000)),
                   "chat_id": chat_id or "oc_p2p" + user_id, "chat_type": "group" if chat_id else "p2p",
                   "message_type": "text", "mentions": mentions,
                   "content": json.dumps({"text": ("@_user_1 " if mention_bot else "") + text}, ensure_ascii=False)}
        sender = {"sender_id": {"open_id": "ou_" + user_id, "user_id": user_id, "union_id": "on_" + user_id},
                  "sender_type": "user", "tenant_key": "tenant0"}
        return self.envelope("im.message.receive_v1", {"sender": sender, "message": message}, **kw)

    def card_event(self, user_id: str, value: dict, *, message_id: str = "om_x", **kw) -> dict:
        """A click on a card; ``message_id``: the card's message (``sent[i].message_id``)."""
        return self.envelope("card.action.trigger", {
            "operator": {"open_id": "ou_" + user_id, "user_id": user_id, "union_id": "on_" + user_id},
            "token": "c-" + secrets.token_hex(8), "action": {"tag": "button", "value": value},
            "host": "im_message", "context": {"open_message_id": message_id, "open_chat_id": "oc_p2p" + user_id}}, **kw)

    def sign_and_encrypt(self, payload: dict, *, encrypt: bool = True) -> tuple[dict[str, str], bytes]:
        """The request Feishu sends: (headers, body), encrypted and signed with the encrypt key."""
        plain = json.dumps(payload, ensure_ascii=False)
        body = (json.dumps({"encrypt": feishu_crypto.encrypt(self.encrypt_key, plain)}) if encrypt else plain).encode()
        ts, nonce = str(int(time.time())), secrets.token_hex(8)
        sig = hashlib.sha256((ts + nonce + self.encrypt_key).encode() + body).hexdigest()
        return {"Content-Type": "application/json", "X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                "X-Lark-Signature": sig}, body

    def url_verification(self) -> tuple[dict[str, str], bytes, str]:
        challenge = str(uuidlib.uuid4())
        plain = json.dumps({"challenge": challenge, "token": self.verification_token, "type": "url_verification"})
        body = json.dumps({"encrypt": feishu_crypto.encrypt(self.encrypt_key, plain)}).encode()
        return {"Content-Type": "application/json"}, body, challenge

    async def post_event(self, session: aiohttp.ClientSession, url: str, payload: dict) -> tuple[int, str]:
        headers, body = self.sign_and_encrypt(payload)
        async with session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    # -- the long connection ----------------------------------------------------------------
    async def _ws_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return web.json_response({"code": 1000040343, "msg": "invalid app"})
        host = request.host
        return web.json_response({"code": 0, "msg": "ok", "data": {
            "URL": f"ws://{host}/ws?device_id=dev1&service_id=33",
            "ClientConfig": {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0, "PingInterval": 30}}})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame      # the SDK's own generated class (slow import)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self._ws_connected.set()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            frame = Frame()
            frame.ParseFromString(msg.data)
            headers = {h.key: h.value for h in frame.headers}
            if frame.method == 0 and headers.get("type") == "ping":
                self.ws_pings += 1
                pong = Frame(SeqID=0, LogID=0, service=frame.service, method=0)
                h = pong.headers.add()
                h.key, h.value = "type", "pong"
                await ws.send_bytes(pong.SerializeToString())
            elif frame.method == 1:
                self.ws_acks.append({"message_id": headers.get("message_id"), "biz_rt": headers.get("biz_rt"),
                                     **json.loads(frame.payload)})
        self._sockets.remove(ws)
        return ws

    async def push_frame(self, payload: dict, *, message_id: str | None = None, parts: int = 1) -> None:
        """Send an event over every open long connection (split into ``parts`` frames)."""
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame
        await asyncio.wait_for(self._ws_connected.wait(), 10)
        data = json.dumps(payload, ensure_ascii=False).encode()
        mid = message_id or uuidlib.uuid4().hex
        size = -(-len(data) // parts)
        for seq in range(parts):
            frame = Frame(SeqID=seq, LogID=7, service=33, method=1, payload=data[seq * size:(seq + 1) * size])
            for k, v in (("type", "event"), ("message_id", mid), ("sum", str(parts)), ("seq", str(seq)),
                         ("trace_id", "trace1")):
                h = frame.headers.add()
                h.key, h.value = k, v
            for ws in self._sockets:
                await ws.send_bytes(frame.SerializeToString())

    async def wait_acks(self, n: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.ws_acks) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.ws_acks
