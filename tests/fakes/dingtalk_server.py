"""A fake DingTalk on loopback: send APIs, custom robots, session webhooks and the Stream gateway.

It behaves like the real service where the bot's correctness depends on it (see
/work/shared/PROTOCOLS.md): tokens in a header that expire (HTTP 401), ``{code, message}`` errors on
the new API, ``errcode`` in HTTP 200 bodies on the oapi, signed custom robots (310000 on a bad
sign or stale timestamp), 20 messages/minute/robot then a 10 minute mute (130101), and a Stream
gateway with single-use tickets, frame ACKs and a "silent" mode that simulates a zombie socket.

    async with FakeDingTalk() as fake:
        api = DingTalkAPI(session, fake.url, fake.url, app_key=fake.app_key,
                          app_secret=fake.app_secret, robot_code=fake.robot_code)
        fake.inject("http", status=500)          # next send answers HTTP 500
        fake.inject("delay", delay=2.0)           # next send is slower than the client's timeout
        fake.inject("throttle")                   # 429 Throttling (or errcode 130101 on oapi)
        fake.inject("token_expired")              # every issued token now answers 401
        url = fake.add_robot("rtok", secret="SEC...")   # custom robot webhook (unsigned URL)
        mid = await fake.push_callback(fake.robot_message("hi"))   # Stream CALLBACK frame
        await fake.wait_ack(mid)
        headers, body = fake.signed_callback(fake.robot_message("hi"))  # HTTP-mode callback
        card = fake.cards_to("staff001")[0]       # an interactive card the bot delivered
        await fake.click(card, card.buttons()[1]["key"], session=...)   # Stream frame or signed HTTP
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import WSMsgType, web

from bot.channels.dingtalk_cards import SIGNATURE_HEADER, SIGNATURE_TIMESTAMP_HEADER, card_sign
from bot.channels.dingtalk_crypto import robot_sign
from bot.channels.dingtalk_stream import CARD_CALLBACK_TOPIC
from tests.fakes.forms import parse_form

ENDPOINTS = {
    "/v1.0/oauth2/accessToken": "token",
    "/v1.0/robot/oToMessages/batchSend": "batchSend",
    "/v1.0/robot/groupMessages/send": "groupSend",
    "/robot/sendBySession": "session",
    "/robot/send": "robot",
    "/v1.0/gateway/connections/open": "open",
    "/gettoken": "oapi_token",
    "/media/upload": "upload",
    "/v1.0/card/instances/createAndDeliver": "cardDeliver",
    "/v1.0/card/instances": "cardUpdate",
    "/v1.0/card/callbacks/register": "cardRoute",
    "/topapi/v2/user/getbymobile": "getbymobile",
}
IMAGE_MAX = 20 * 1024 * 1024       # media/upload type=image: jpg, gif, png, bmp, at most 20 MB
_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"GIF8", "gif"), (b"BM", "bmp"))
# a markdown picture: ![alt](target); a target starting with "@" is a media_id
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def image_format(data: bytes) -> str | None:
    return next((f for sig, f in _IMAGE_SIGNATURES if data.startswith(sig)), None)
SEND_KINDS = {"batchSend", "groupSend", "session", "robot"}
# DingTalk refuses a message body over 20,000 bytes: errcode 460101 "message too long, exceed 20000
# bytes" on the oapi (custom robot, session webhook). The new robot API (batchSend, groupMessages)
# is held to the same body size; its error there is *uncertain* (community reports only), so the
# fake answers it in that API's own shape, HTTP 400 {code, message}
BODY_MAX = 20_000
OAPI_KINDS = {"session", "robot"}
MSG_KEYS = {"sampleText", "sampleMarkdown", "sampleActionCard", "sampleActionCard2", "sampleLink", "sampleImageMsg"}


@dataclass
class Received:
    """One accepted message. ``msg_param`` is the parsed JSON of msgParam (robot API sends)."""
    kind: str                 # "batchSend" | "groupSend" | "session" | "robot"
    payload: dict[str, Any]
    at: float
    target: str = ""          # user ids joined by "," / openConversationId / session id / robot token
    msg_param: dict[str, Any] | None = None


@dataclass
class CardInstance:
    """An interactive card delivered (createAndDeliver) and what became of it."""
    out_track_id: str
    template_id: str
    user_id: str                        # the IM_ROBOT space: the person's chat with the robot
    params: dict[str, str]              # cardParamMap now (after updates)
    callback_type: str                  # "STREAM" | "HTTP"
    route_key: str = ""
    updates: list[dict[str, str]] = field(default_factory=list)

    def buttons(self) -> list[dict[str, Any]]:
        """The buttons the template draws from the card's data (none once answered)."""
        if self.params.get("answered") == "true":
            return []
        try:
            buttons = json.loads(self.params.get("buttons") or "[]")
        except ValueError:
            return []
        return [b for b in buttons if isinstance(b, dict)]


@dataclass
class Fault:
    """One injected misbehaviour for the next request to ``endpoint``.

    kind: "http" (answer ``status``), "delay" (sleep ``delay`` s, then answer normally),
    "throttle" (new API: HTTP 429 Throttling; oapi: errcode 130101), "errcode" (oapi HTTP 200 with
    ``errcode``). endpoint: "send" (any send), "*", or one of ENDPOINTS' values.
    """
    kind: str
    endpoint: str = "send"
    status: int = 500
    delay: float = 0.0
    errcode: int = 0
    errmsg: str = ""

    def matches(self, ep: str) -> bool:
        return self.endpoint == "*" or self.endpoint == ep or (self.endpoint == "send" and ep in SEND_KINDS)


@dataclass
class Robot:
    secret: str | None
    sent: deque = field(default_factory=deque)
    muted_until: float = 0.0


class FakeDingTalk:
    """The fake server. ``await start()`` (or ``async with``) binds 127.0.0.1 on a free port."""

    def __init__(self, app_key: str = "dingfakeappkey", app_secret: str = "fake-app-secret-0123456789",
                 robot_code: str = "dingfakerobot", token_ttl: float = 7200.0,
                 clock: Callable[[], float] = time.time):
        self.app_key, self.app_secret, self.robot_code = app_key, app_secret, robot_code
        self.token_ttl = token_ttl
        self.clock = clock                       # seconds; also the base of timestamp checks
        self.url = ""
        self.received: list[Received] = []
        self.acks: list[dict[str, Any]] = []
        self.token_requests = 0
        self.requests: list[tuple[str, int]] = []  # (endpoint kind, HTTP status answered)
        self.invalid_staff_ids: set[str] = set()
        self.robot_limit = 20
        self.tokens: dict[str, float] = {}        # token -> expiry (clock)
        self.robots: dict[str, Robot] = {}
        self.sessions: dict[str, float] = {}      # session id -> expiry (clock)
        self.tickets: dict[str, bool] = {}        # ticket -> used
        self.open_requests: list[dict[str, Any]] = []
        self.ws_connections: list[web.WebSocketResponse] = []
        self.zombies: set[int] = set()            # id() of sockets that went silent
        self._faults: list[Fault] = []
        self.oapi_tokens: dict[str, float] = {}   # oapi access_token -> expiry (clock)
        self.media: dict[str, bytes] = {}         # media_id -> the uploaded bytes
        self.refused: list[tuple[Any, str]] = []  # (errcode / code, what) of refused uploads and pictures
        # interactive cards: the templates this organisation built, the cards delivered, the
        # callback routes registered ({route key: (url, apiSecret)})
        self.card_templates: set[str] = {"arbot_card.schema"}
        self.cards: dict[str, CardInstance] = {}
        self.card_routes: dict[str, tuple[str, str]] = {}
        self.members: dict[str, str] = {}         # the organisation's members by mobile: mobile -> userId
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> "FakeDingTalk":
        self._runner = web.AppRunner(_create_app(self), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        for ws in list(self.ws_connections):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> "FakeDingTalk":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ faults
    def inject(self, kind: str, *, count: int = 1, endpoint: str = "send", status: int = 500,
               delay: float = 0.0, errcode: int = 0, errmsg: str = "") -> None:
        """Queue ``count`` faults (see ``Fault``). ``"token_expired"`` acts at once instead."""
        if kind == "token_expired":
            self.expire_tokens()
            return
        for _ in range(count):
            self._faults.append(Fault(kind, endpoint, status, delay, errcode, errmsg))

    def clear_faults(self) -> None:
        self._faults.clear()

    def expire_tokens(self) -> None:
        for tok in self.tokens:
            self.tokens[tok] = 0.0

    def _take_fault(self, ep: str) -> Fault | None:
        for i, f in enumerate(self._faults):
            if f.matches(ep):
                return self._faults.pop(i)
        return None

    async def _apply_fault(self, ep: str) -> web.Response | None:
        f = self._take_fault(ep)
        if f is None:
            return None
        if f.kind == "delay":
            await asyncio.sleep(f.delay)
            return None
        if f.kind == "http":
            if ep in OAPI_KINDS:
                return web.Response(status=f.status, text="error")
            return web.json_response({"code": "ServiceUnavailable" if f.status >= 500 else "Fault",
                                      "message": "injected"}, status=f.status)
        if f.kind == "throttle":
            if ep in OAPI_KINDS:
                return _errcode(130101, "send too fast, exceed 20 times per minute")
            return web.json_response({"code": "Throttling.Api", "message": "flow control"}, status=429)
        if f.kind == "errcode":
            return _errcode(f.errcode, f.errmsg or "injected")
        raise ValueError(f"unknown fault kind {f.kind!r}")

    # ------------------------------------------------------------------ robots and sessions
    def add_robot(self, access_token: str, secret: str | None = None) -> str:
        """Register a custom robot; returns its webhook URL (without timestamp/sign)."""
        self.robots[access_token] = Robot(secret)
        return f"{self.url}/robot/send?access_token={access_token}"

    def session_webhook(self, ttl: float = 3600.0) -> tuple[str, int]:
        """A fresh session webhook: (url, sessionWebhookExpiredTime in ms)."""
        sid = secrets.token_hex(8)
        self.sessions[sid] = self.clock() + ttl
        return f"{self.url}/robot/sendBySession?session={sid}", int((self.clock() + ttl) * 1000)

    def robot_message(self, text: str, *, group: bool = False, staff_id: str = "staff001",
                      nick: str = "Li Lei", msg_id: str | None = None, at_bot: str = "ARBot") -> dict:
        """A realistic robot message body (as DingTalk posts it / puts it in a CALLBACK frame)."""
        url, expires = self.session_webhook()
        body = {
            "msgtype": "text", "text": {"content": (f"@{at_bot} {text}" if group else text)},
            "msgId": msg_id or "msg" + secrets.token_hex(8), "createAt": int(self.clock() * 1000),
            "conversationType": "2" if group else "1", "conversationId": "cid" + secrets.token_hex(6),
            "senderId": "$:LWCP_v1:$" + secrets.token_hex(8), "senderNick": nick,
            "senderStaffId": staff_id, "senderCorpId": "dingcorp", "chatbotUserId": "$:LWCP_v1:$bot",
            "sessionWebhook": url, "sessionWebhookExpiredTime": expires, "isAdmin": False,
            "robotCode": self.robot_code,
        }
        if group:
            body.update(conversationTitle="AR team", isInAtList=True,
                        atUsers=[{"dingtalkId": "$:LWCP_v1:$bot"}])
        return body

    def signed_callback(self, body: dict, *, secret: str | None = None,
                        timestamp_ms: int | None = None) -> tuple[dict[str, str], bytes]:
        """Headers (timestamp, sign) and JSON bytes of an HTTP-mode robot callback."""
        return build_signed_callback(secret or self.app_secret, body,
                                     timestamp_ms if timestamp_ms is not None else int(self.clock() * 1000))

    def messages(self, kind: str | None = None) -> list[Received]:
        return [r for r in self.received if kind is None or r.kind == kind]

    def pictures(self, kind: str | None = None) -> list[bytes]:
        """The uploaded pictures the accepted messages show: a sampleImageMsg's photoURL, or a
        markdown picture naming a media_id."""
        out = []
        for r in self.messages(kind):
            if (r.msg_param or {}).get("photoURL") in self.media:
                out.append(self.media[r.msg_param["photoURL"]])
            for text in _markdown_texts(r):
                out += [self.media[ref] for ref in _MD_IMAGE.findall(text) if ref in self.media]
        return out

    # ------------------------------------------------------------------ interactive cards
    def cards_to(self, user_id: str) -> list[CardInstance]:
        return [c for c in self.cards.values() if c.user_id == user_id]

    def card_callback(self, card: CardInstance, key: str, user_id: str | None = None) -> dict[str, Any]:
        """A click as DingTalk reports it (Stream frame data or HTTP body)."""
        content = json.dumps({"cardPrivateData": {"actionIds": ["button_item"], "params": {"key": key}}})
        return {"extension": "{}", "corpId": "dingcorp", "spaceType": "IM_ROBOT", "userIdType": 1,
                "type": "actionCallback", "userId": user_id or card.user_id, "content": content,
                "spaceId": card.user_id, "outTrackId": card.out_track_id, "value": content}

    async def click(self, card: CardInstance, key: str, *, user_id: str | None = None,
                    session: aiohttp.ClientSession | None = None, secret: str | None = None,
                    timestamp_ms: int | None = None) -> tuple[int, Any]:
        """A person clicks a button of a delivered card: the callback goes the way the card was
        delivered with, over the Stream socket (returns (the ACK's code, the ACK)) or by HTTP to
        the registered route, signed with its apiSecret (returns (status, body text); ``secret``
        forges another signature). Only a button the card shows now can be clicked."""
        if key not in [b.get("key") for b in card.buttons()]:
            raise AssertionError(f"card {card.out_track_id} shows no button {key!r}")
        body = self.card_callback(card, key, user_id)
        if card.callback_type == "STREAM":
            subscribed = [s.get("topic") for s in (self.open_requests[-1] if self.open_requests else {})
                          .get("subscriptions") or ()]
            if CARD_CALLBACK_TOPIC not in subscribed:
                raise AssertionError("the Stream connection did not subscribe to card callbacks")
            ack = await self.wait_ack(await self.push("CALLBACK", CARD_CALLBACK_TOPIC, body))
            return ack["code"], ack
        url, api_secret = self.card_routes[card.route_key]
        ts = str(timestamp_ms if timestamp_ms is not None else int(self.clock() * 1000))
        headers = {SIGNATURE_TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: card_sign(secret or api_secret, ts)}
        assert session is not None, "an HTTP click needs a client session"
        async with session.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.text()

    # ------------------------------------------------------------------ stream gateway
    @property
    def ws(self) -> web.WebSocketResponse | None:
        """The newest open, non-zombie connection (where ``push`` sends)."""
        live = [w for w in self.ws_connections if not w.closed and id(w) not in self.zombies]
        return live[-1] if live else None

    async def push(self, ftype: str, topic: str, data: Any, *, message_id: str | None = None,
                   extra_headers: dict | None = None) -> str:
        """Send a frame to the newest live Stream connection; returns its messageId."""
        ws = self.ws
        if ws is None:
            raise RuntimeError("no live stream connection")
        mid = message_id or secrets.token_hex(8)
        headers = {"topic": topic, "messageId": mid, "contentType": "application/json",
                   "time": str(int(self.clock() * 1000)), **(extra_headers or {})}
        await ws.send_str(json.dumps({"specVersion": "1.0", "type": ftype, "headers": headers,
                                      "data": data if isinstance(data, str) else json.dumps(data)}))
        return mid

    async def push_callback(self, body: dict) -> str:
        return await self.push("CALLBACK", "/v1.0/im/bot/messages/get", body)

    async def push_ping(self, opaque: str) -> str:
        return await self.push("SYSTEM", "ping", {"opaque": opaque})

    async def push_disconnect(self) -> str:
        return await self.push("SYSTEM", "disconnect", {"reason": "server maintenance"})

    def go_silent(self, silent: bool = True) -> None:
        """Turn the current sockets into zombies: open, but they deliver nothing, answer no ping
        and no close frame. Connections made afterwards are healthy. ``False`` revives them."""
        if silent:
            self.zombies.update(id(w) for w in self.ws_connections if not w.closed)
        else:
            self.zombies.clear()

    def ack_for(self, message_id: str) -> dict | None:
        return next((a for a in self.acks if (a.get("headers") or {}).get("messageId") == message_id), None)

    async def wait_ack(self, message_id: str, timeout: float = 2.0) -> dict:
        await self.wait_until(lambda: self.ack_for(message_id) is not None, timeout)
        return self.ack_for(message_id)  # type: ignore[return-value]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.01)

    @property
    def connections_made(self) -> int:
        return len(self.ws_connections)

    # ------------------------------------------------------------------ token check
    def check_token(self, request: web.Request) -> web.Response | None:
        tok = request.headers.get("x-acs-dingtalk-access-token", "")
        if self.tokens.get(tok, 0.0) <= self.clock():
            return web.json_response({"code": "InvalidAuthentication", "message": "token invalid"}, status=401)
        return None


def _markdown_texts(r: Received) -> list[str]:
    texts = [str((r.msg_param or {}).get("text") or "")]
    if isinstance(r.payload.get("markdown"), dict):
        texts.append(str(r.payload["markdown"].get("text") or ""))
    return [t for t in texts if t]


def build_signed_callback(app_secret: str, body: dict, timestamp_ms: int) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as DingTalk posts a robot message in HTTP mode."""
    ts = str(timestamp_ms)
    headers = {"timestamp": ts, "sign": robot_sign(app_secret, ts), "Content-Type": "application/json"}
    return headers, json.dumps(body, ensure_ascii=False).encode("utf-8")


def _errcode(code: int, msg: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": msg})


def _bad(code: str, message: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _create_app(fake: FakeDingTalk) -> web.Application:
    @web.middleware
    async def faults_and_log(request: web.Request, handler: Any) -> web.StreamResponse:
        ep = ENDPOINTS.get(request.path, "other")
        resp = await fake._apply_fault(ep)
        if resp is None:
            resp = await handler(request)
        fake.requests.append((ep, resp.status))
        return resp

    async def too_long(request: web.Request, ep: str) -> web.Response | None:
        raw = await request.read()
        if len(raw) <= BODY_MAX:
            return None
        fake.refused.append((460101, f"{ep} body of {len(raw)} bytes"))
        if ep in OAPI_KINDS:
            return _errcode(460101, "message too long, exceed 20000 bytes")
        return _bad("InvalidParameter.MsgParam", "message too long, exceed 20000 bytes")

    async def body_of(request: web.Request) -> dict | None:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    async def token(request: web.Request) -> web.Response:
        fake.token_requests += 1
        body = await body_of(request)
        if not body or body.get("appKey") != fake.app_key or body.get("appSecret") != fake.app_secret:
            return _bad("invalidClientIdOrSecret", "appKey or appSecret invalid", 400)
        tok = "tok" + secrets.token_hex(12)
        fake.tokens[tok] = fake.clock() + fake.token_ttl
        return web.json_response({"accessToken": tok, "expireIn": int(fake.token_ttl)})

    def bad_picture(texts: list[str], photo: Any = None) -> str | None:
        """A picture a message shows must be one this app uploaded (a media_id) or a web URL."""
        refs = [ref for t in texts for ref in _MD_IMAGE.findall(t)] + ([str(photo)] if photo is not None else [])
        for ref in refs:
            if ref.startswith("@") and ref not in fake.media or not ref.startswith(("@", "http://", "https://")):
                fake.refused.append(("mediaId", ref))
                return ref
        return None

    async def oapi_token(request: web.Request) -> web.Response:
        fake.token_requests += 1
        q = request.query
        if q.get("appkey") != fake.app_key or q.get("appsecret") != fake.app_secret:
            return _errcode(40089, "不合法的corpid或corpsecret")
        tok = "oapi" + secrets.token_hex(12)
        fake.oapi_tokens[tok] = fake.clock() + fake.token_ttl
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": int(fake.token_ttl)})

    async def media_upload(request: web.Request) -> web.Response:
        raw = await request.read()
        tok = request.query.get("access_token", "")
        if tok not in fake.oapi_tokens:
            return _errcode(40014, "不合法的access_token")
        if fake.oapi_tokens[tok] <= fake.clock():
            return _errcode(42001, "access_token超时")
        if request.query.get("type") not in ("image", "voice", "video", "file"):
            return _errcode(40004, "不合法的媒体文件类型")
        form = parse_form(request.headers.get("Content-Type", ""), raw)
        filename, data = (form or {}).get("media", (None, b""))
        if not filename or not data:
            return _errcode(41005, "缺少多媒体文件数据")        # the part is "media", with a file name
        if image_format(data) is None:
            fake.refused.append((40004, "upload"))
            return _errcode(40004, "不合法的媒体文件类型")
        if len(data) > IMAGE_MAX:
            fake.refused.append((40006, "upload"))
            return _errcode(40006, "不合法的文件大小")
        media_id = "@lA" + secrets.token_urlsafe(18)
        fake.media[media_id] = data
        return web.json_response({"errcode": 0, "errmsg": "ok", "type": "image", "media_id": media_id,
                                  "created_at": int(fake.clock() * 1000)})

    def robot_param(body: dict) -> tuple[dict | None, web.Response | None]:
        if body.get("robotCode") != fake.robot_code:
            return None, _bad("robot.notExist", "robotCode invalid")
        if body.get("msgKey") not in MSG_KEYS:
            return None, _bad("InvalidParameter.MsgKey", "msgKey invalid")
        raw = body.get("msgParam")
        if not isinstance(raw, str):  # the real API wants a JSON *string*, not an object
            return None, _bad("InvalidParameter.MsgParam", "msgParam must be a JSON string")
        try:
            param = json.loads(raw)
        except ValueError:
            return None, _bad("InvalidParameter.MsgParam", "msgParam is not JSON")
        if not isinstance(param, dict):
            return None, _bad("InvalidParameter.MsgParam", "msgParam must be an object")
        if body["msgKey"] == "sampleImageMsg" and not param.get("photoURL"):
            return None, _bad("InvalidParameter.MsgParam", "photoURL missing")
        if bad_picture([str(param.get("text") or "")], param.get("photoURL")) is not None:
            return None, _bad("InvalidParameter.MediaId", "media id does not exist")
        return param, None

    async def batch_send(request: web.Request) -> web.Response:
        if (denied := fake.check_token(request)) is not None:
            return denied
        if (long := await too_long(request, "batchSend")) is not None:
            return long
        body = await body_of(request) or {}
        param, err = robot_param(body)
        if err:
            return err
        users = body.get("userIds")
        if not isinstance(users, list) or not users or len(users) > 20:
            return _bad("InvalidParameter.UserIds", "userIds must hold 1..20 ids")
        good = [u for u in users if u not in fake.invalid_staff_ids]
        if good:
            fake.received.append(Received("batchSend", body, fake.clock(), ",".join(good), param))
        return web.json_response({"processQueryKey": secrets.token_hex(8), "flowControlledStaffIdList": [],
                                  "invalidStaffIdList": [u for u in users if u in fake.invalid_staff_ids]})

    async def group_send(request: web.Request) -> web.Response:
        if (denied := fake.check_token(request)) is not None:
            return denied
        if (long := await too_long(request, "groupSend")) is not None:
            return long
        body = await body_of(request) or {}
        param, err = robot_param(body)
        if err:
            return err
        if not body.get("openConversationId"):
            return _bad("InvalidParameter.OpenConversationId", "openConversationId missing")
        fake.received.append(Received("groupSend", body, fake.clock(), body["openConversationId"], param))
        return web.json_response({"processQueryKey": secrets.token_hex(8)})

    def check_msg(body: dict | None) -> web.Response | None:
        # webhooks (session, custom robot) take no image message: a picture goes in markdown
        if not body or body.get("msgtype") not in {"text", "markdown", "actionCard", "feedCard", "link"}:
            return _errcode(40035, "invalid msgtype")
        md = body.get("markdown")
        if body["msgtype"] == "markdown" and (not isinstance(md, dict) or not md.get("title") or not md.get("text")):
            return _errcode(40035, "markdown needs title and text")
        if isinstance(md, dict) and bad_picture([str(md.get("text") or "")]) is not None:
            return _errcode(40035, "media id does not exist")
        return None

    async def session_send(request: web.Request) -> web.Response:
        sid = request.query.get("session", "")
        if fake.sessions.get(sid, 0.0) <= fake.clock():
            return _errcode(300001, "session webhook invalid or expired")
        if (long := await too_long(request, "session")) is not None:
            return long
        body = await body_of(request)
        if (bad := check_msg(body)) is not None:
            return bad
        fake.received.append(Received("session", body or {}, fake.clock(), sid))
        return _errcode(0, "ok")

    async def robot_send(request: web.Request) -> web.Response:
        q = request.query  # decoded once by aiohttp, as DingTalk does: "+" stays "+" only if encoded
        robot = fake.robots.get(q.get("access_token", ""))
        if robot is None:
            return _errcode(300001, "token is not exist")
        now = fake.clock()
        if robot.secret:
            ts = q.get("timestamp", "")
            if not ts.isdigit() or abs(now * 1000 - int(ts)) > 3600 * 1000:
                return _errcode(310000, "invalid timestamp")
            if q.get("sign", "") != robot_sign(robot.secret, ts):
                return _errcode(310000, "sign not match")
        if now < robot.muted_until:
            return _errcode(130101, "send too fast, exceed 20 times per minute")
        while robot.sent and robot.sent[0] <= now - 60:
            robot.sent.popleft()
        if len(robot.sent) >= fake.robot_limit:
            robot.muted_until = now + 600  # over the limit: muted for 10 minutes
            return _errcode(130101, "send too fast, exceed 20 times per minute")
        if (long := await too_long(request, "robot")) is not None:
            return long
        body = await body_of(request)
        if (bad := check_msg(body)) is not None:
            return bad
        robot.sent.append(now)
        fake.received.append(Received("robot", body or {}, now, q["access_token"]))
        return _errcode(0, "ok")

    def card_data(body: dict) -> tuple[dict[str, str] | None, web.Response | None]:
        data = body.get("cardData")
        params = data.get("cardParamMap") if isinstance(data, dict) else None
        if not isinstance(params, dict) or not params:
            return None, _bad("param.cardPublicDataEmpty", "cardData.cardParamMap is empty")
        # the API's model is Map<String, String>: a list or a number where a string belongs is refused
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
            return None, _bad("param.cardParamMapInvalid", "cardParamMap values must be strings")
        return params, None

    async def card_deliver(request: web.Request) -> web.Response:
        if (denied := fake.check_token(request)) is not None:
            return denied
        if (long := await too_long(request, "cardDeliver")) is not None:
            return long
        body = await body_of(request)
        if not body:
            return _bad("param.empty", "request body is empty")
        template, track, space = body.get("cardTemplateId"), body.get("outTrackId"), body.get("openSpaceId")
        if not template:
            return _bad("param.cardTemplateIdEmpty", "cardTemplateId is empty")
        if template not in fake.card_templates:
            return _bad("param.cardTemplateNotExist", "card template does not exist")
        if not track or not isinstance(track, str):
            return _bad("param.outTrackIdEmpty", "outTrackId is empty")
        params, err = card_data(body)
        if err:
            return err
        prefix = "dtv1.card//IM_ROBOT."
        deliver = body.get("imRobotOpenDeliverModel")
        if not isinstance(space, str) or not space.startswith(prefix) or not space[len(prefix):]:
            return _bad("param.openSpaceIdInvalid", "openSpaceId must be dtv1.card//IM_ROBOT.<userId> here")
        if not isinstance(deliver, dict) or deliver.get("spaceType") != "IM_ROBOT" \
                or deliver.get("robotCode") != fake.robot_code or body.get("userIdType") not in (None, 1):
            return _bad("param.openSpaceModelInvalid", "imRobotOpenDeliverModel needs spaceType IM_ROBOT and the robotCode")
        callback_type, route = body.get("callbackType"), str(body.get("callbackRouteKey") or "")
        if callback_type not in ("STREAM", "HTTP") or callback_type == "HTTP" and route not in fake.card_routes:
            return _bad("param.callbackInvalid", "callbackType STREAM, or HTTP with a registered callbackRouteKey")
        user = space[len(prefix):]
        ok = user not in fake.invalid_staff_ids
        if ok:
            fake.cards[track] = CardInstance(track, template, user, dict(params), callback_type, route)
        return web.json_response({"success": True, "result": {"outTrackId": track, "deliverResults": [
            {"spaceType": "IM_ROBOT", "spaceId": user, "success": ok, "carrierId": secrets.token_hex(6) if ok else "",
             "errorMsg": "" if ok else "user not in the app's visible range"}]}})

    async def card_update(request: web.Request) -> web.Response:
        if (denied := fake.check_token(request)) is not None:
            return denied
        body = await body_of(request) or {}
        card = fake.cards.get(str(body.get("outTrackId") or ""))
        if card is None:
            return _bad("param.outTrackIdInvalid", "no card instance with this outTrackId")
        params, err = card_data(body)
        if err:
            return err
        options = body.get("cardUpdateOptions") if isinstance(body.get("cardUpdateOptions"), dict) else {}
        card.params = {**card.params, **params} if options.get("updateCardDataByKey") else dict(params)
        card.updates.append(dict(params))
        return web.json_response({"success": True, "result": True})

    async def card_route(request: web.Request) -> web.Response:
        if (denied := fake.check_token(request)) is not None:
            return denied
        body = await body_of(request) or {}
        key, url, api_secret = body.get("callbackRouteKey"), body.get("callbackUrl"), body.get("apiSecret")
        if not key or not url or not api_secret:
            return _bad("param.empty", "callbackRouteKey, callbackUrl and apiSecret are required")
        if key in fake.card_routes and not body.get("forceUpdate"):
            return _bad("param.callbackRouteKeyExist", "route key registered already (forceUpdate to replace)")
        fake.card_routes[str(key)] = (str(url), str(api_secret))
        return web.json_response({"success": True, "result": {"callbackUrl": url, "apiSecret": api_secret}})

    async def get_by_mobile(request: web.Request) -> web.Response:
        # topapi/v2/user/getbymobile: oapi token in the query, POST {"mobile"} -> {"result": {"userid"}}
        tok = request.query.get("access_token", "")
        if tok not in fake.oapi_tokens:
            return _errcode(40014, "不合法的access_token")
        if fake.oapi_tokens[tok] <= fake.clock():
            return _errcode(42001, "access_token超时")
        body = await body_of(request)
        mobile = (body or {}).get("mobile")
        if not isinstance(mobile, str) or not mobile.isdigit():
            return _errcode(40035, "缺少参数 mobile")
        if mobile not in fake.members:
            return _errcode(60121, "找不到该用户")
        return web.json_response({"errcode": 0, "errmsg": "ok", "result": {"userid": fake.members[mobile]},
                                  "request_id": secrets.token_hex(6)})

    async def open_connection(request: web.Request) -> web.Response:
        body = await body_of(request) or {}
        fake.open_requests.append({k: v for k, v in body.items() if k != "clientSecret"})
        if body.get("clientId") != fake.app_key or body.get("clientSecret") != fake.app_secret:
            return _bad("InvalidAuthentication", "clientId or clientSecret invalid", 401)
        ticket = secrets.token_urlsafe(16)
        fake.tickets[ticket] = False
        return web.json_response({"endpoint": f"{fake.url.replace('http', 'ws', 1)}/connect", "ticket": ticket})

    async def connect(request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if fake.tickets.get(ticket, True):  # unknown or already used: tickets are single use
            return web.Response(status=403, text="invalid ticket")
        fake.tickets[ticket] = True
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        fake.ws_connections.append(ws)
        while not ws.closed:
            if id(ws) in fake.zombies:
                # a zombie reads nothing: no pongs, no answer to the client's close frame
                await asyncio.sleep(0.02)
                continue
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if msg.type == WSMsgType.PING and id(ws) not in fake.zombies:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.TEXT:
                try:
                    fake.acks.append(json.loads(msg.data))
                except ValueError:
                    fake.acks.append({"_invalid": msg.data})
        return ws

    app = web.Application(middlewares=[faults_and_log], client_max_size=25 * 1024 * 1024)
    app.router.add_get("/gettoken", oapi_token)
    app.router.add_post("/media/upload", media_upload)
    app.router.add_post("/v1.0/oauth2/accessToken", token)
    app.router.add_post("/v1.0/robot/oToMessages/batchSend", batch_send)
    app.router.add_post("/v1.0/robot/groupMessages/send", group_send)
    app.router.add_post("/robot/sendBySession", session_send)
    app.router.add_post("/robot/send", robot_send)
    app.router.add_post("/v1.0/gateway/connections/open", open_connection)
    app.router.add_get("/connect", connect)
    app.router.add_post("/v1.0/card/instances/createAndDeliver", card_deliver)
    app.router.add_put("/v1.0/card/instances", card_update)
    app.router.add_post("/v1.0/card/callbacks/register", card_route)
    app.router.add_post("/topapi/v2/user/getbymobile", get_by_mobile)
    return app
