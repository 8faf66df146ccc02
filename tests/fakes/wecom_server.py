"""A fake WeCom API server on loopback, plus builders for the callbacks WeCom sends.

It behaves like the real service where the bot's correctness depends on it (see
/work/shared/PROTOCOLS.md): tokens that expire, errcodes in HTTP 200 bodies, the
30/min/member limit (excess *silently dropped*), 45009 for robots over 20/min,
``enable_duplicate_check`` (the same content to the same members within the interval is answered
ok and not delivered again: what a client relies on when it re-sends after a timeout), and
faults injected on demand.

    async with FakeWeCom(apps={1000002: "s3cret"}, robot_keys={"rk"}) as fake:
        api = WeComAPI(session, fake.url, fake.corp_id, "s3cret", 1000002)
        fake.inject_errcode(45009)          # next send answers 45009
        fake.inject_http_error(500, count=2)
        fake.inject_delay(3.0)              # longer than the client's timeout
        fake.expire_tokens()                # every issued token now answers 42001
        ... fake.received[-1].payload ...
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web

from bot.channels.wecom_crypto import WeComCrypto, cdata, parse_xml
from tests.fakes.forms import parse_form

SEND_ENDPOINTS = ("message/send", "message/update_template_card", "webhook/send", "media/upload",
                  "aibot/response")
IMAGE_MAX_BYTES = 2 * 1024 * 1024      # media/upload type=image and robot images: JPG/PNG, ≤ 2 MB
TEXT_MAX = 2048                         # app text (cut past it), robot text (refused past it)
APP_MARKDOWN_MAX = 2048                 # app markdown: 40058 past it
ROBOT_MARKDOWN_MAX = 4096               # group robot markdown: 40058 past it
# template_card (doc page 90236): main_title.title 26 characters, main_title.desc 30, a button's
# text 10, at most 6 buttons, task_id 128 bytes. The page words the text limits as "建议不超过";
# this fake holds the bot to them (40058, WeCom's "invalid Request Parameter")
CARD_TITLE_MAX, CARD_DESC_MAX, CARD_BUTTON_TEXT_MAX, CARD_BUTTONS_MAX, CARD_TASK_ID_MAX = 26, 30, 10, 6, 128
MEDIA_TTL = 3 * 24 * 3600              # a temporary media_id lives 3 days
# An AI-bot callback's response_url: one call, within an hour (doc page 101138). The docs name no
# errcodes for a spent, expired or unknown one; these are the fake's own, and the bot must not rely
# on which it gets (any refusal sends the answer to the asker instead).
RESPONSE_URL_TTL = 3600.0
RESPONSE_SPENT, RESPONSE_EXPIRED, RESPONSE_UNKNOWN = 60401, 60402, 60403


def image_kind(data: bytes) -> str | None:
    """What WeCom accepts as a picture, by the file's own signature (not its name or type)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    return None


@dataclass
class Received:
    """One accepted message. ``touser`` lists the members it actually reached (app sends)."""
    kind: str                      # "app" | "update_card" | "robot" | "upload" | "response"
    payload: dict[str, Any]
    at: float                      # the fake's clock
    agent_id: int | None = None
    key: str | None = None
    touser: list[str] = field(default_factory=list)
    chat_id: str | None = None     # a response: the conversation it answered into


@dataclass
class Fault:
    """One injected misbehaviour for the next request to ``endpoint``.

    kind: "http" (answer ``status``), "delay" (sleep ``delay`` s, then answer normally:
    like the real thing, a request the client gave up on may still be delivered),
    "errcode" (HTTP 200 with ``errcode``). endpoint: "send" (any send endpoint),
    "gettoken", one of SEND_ENDPOINTS, or "*".
    """
    kind: str
    endpoint: str = "send"
    status: int = 500
    delay: float = 0.0
    errcode: int = 0
    errmsg: str = ""

    def matches(self, endpoint: str) -> bool:
        return (self.endpoint == "*" or self.endpoint == endpoint
                or (self.endpoint == "send" and endpoint in SEND_ENDPOINTS))


@dataclass
class _Token:
    agent_id: int
    expires_at: float
    revoked: bool = False


class FakeWeCom:
    """State and control surface of the fake; ``start()``/``close()`` or ``async with``."""

    def __init__(self, corp_id: str = "wwfakecorp0001", apps: dict[int, str] | None = None,
                 robot_keys: set[str] | tuple[str, ...] = ("robot-key-1",), *, token_ttl: float = 7200,
                 clock: Callable[[], float] = time.monotonic, known_users: set[str] | None = None,
                 member_limit: int = 30, robot_limit: int = 20):
        self.corp_id = corp_id
        self.apps = dict(apps or {1000002: "fake-app-secret"})     # agent_id -> secret
        self.robot_keys = set(robot_keys)
        self.token_ttl = token_ttl
        self.clock = clock
        self.known_users = known_users          # None: every user id exists
        self.member_limit = member_limit        # per app per member per 60 s, excess dropped
        self.robot_limit = robot_limit          # per robot per 60 s, excess -> 45009
        self.tokens: dict[str, _Token] = {}
        self.gettoken_calls = 0
        self.received: list[Received] = []
        self.dropped: list[Received] = []       # accepted with errcode 0 but never delivered
        self.requests: list[str] = []           # endpoint of every request, in order
        self.faults: deque[Fault] = deque()
        self._fault_rate: tuple[float, Fault, random.Random] | None = None
        self._member_sends: dict[tuple[int, str], deque[float]] = defaultdict(deque)
        self._robot_sends: dict[str, deque[float]] = defaultdict(deque)
        self._contents: dict[tuple, float] = {}   # (agent, touser, msgtype, content) -> when last accepted
        self.duplicates_suppressed = 0
        self.media: dict[str, tuple[bytes, float]] = {}      # media_id -> (the uploaded bytes, expires at)
        self.members: dict[str, str] = {}       # the corp's members by mobile: mobile -> userid (user/getuserid)
        self.used_response_codes: set[str] = set()
        self.refused: list[tuple[int, str]] = []             # (errcode, what) of refused uploads / images / sizes
        self.truncated: list[Received] = []                  # app text over 2,048 bytes: cut, as WeCom does
        # AI-bot response_code -> [issued at, chat it answers into, used?]
        self.response_codes: dict[str, list] = {}
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> "FakeWeCom":
        self._closing = asyncio.Event()
        # No access log: it would print tokens and secrets from query strings into test logs.
        self._runner = web.AppRunner(create_app(self), shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        self._closing.set()                     # cut injected delays short
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeWeCom":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- fault injection ------------------------------------------------------------------
    def inject(self, fault: Fault, count: int = 1) -> None:
        self.faults.extend([fault] * count)

    def inject_http_error(self, status: int = 500, count: int = 1, endpoint: str = "send") -> None:
        self.inject(Fault("http", endpoint, status=status), count)

    def inject_delay(self, seconds: float, count: int = 1, endpoint: str = "send") -> None:
        self.inject(Fault("delay", endpoint, delay=seconds), count)

    def inject_errcode(self, errcode: int, count: int = 1, endpoint: str = "send", errmsg: str = "") -> None:
        self.inject(Fault("errcode", endpoint, errcode=errcode, errmsg=errmsg or f"fake error {errcode}"), count)

    def set_fault_rate(self, probability: float, fault: Fault | None = None, seed: int | None = 0) -> None:
        """Every matching request fails with ``fault`` (default HTTP 500) at this probability."""
        self._fault_rate = (probability, fault or Fault("http"), random.Random(seed)) if probability else None

    def clear_faults(self) -> None:
        self.faults.clear()
        self._fault_rate = None

    def expire_tokens(self, token: str | None = None) -> None:
        """Make one (or every) issued token answer 42001 from now on."""
        for value, tok in self.tokens.items():
            if token is None or value == token:
                tok.revoked = True

    def _take_fault(self, endpoint: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.matches(endpoint):
                del self.faults[i]
                return fault
        if self._fault_rate:
            probability, fault, rng = self._fault_rate
            if fault.matches(endpoint) and rng.random() < probability:
                return fault
        return None

    # -- AI bot ------------------------------------------------------------------------------
    def issue_response_url(self, chat_id: str) -> str:
        """The response_url WeCom puts into an AI-bot callback about a message in ``chat_id``
        (a group's chatid, or the asker's userid for the bot's own chat)."""
        code = secrets.token_urlsafe(24)
        self.response_codes[code] = [self.clock(), chat_id, False]
        return f"{self.url}/cgi-bin/aibot/response?response_code={code}"

    def responses_in(self, chat_id: str) -> list[Received]:
        return [r for r in self.received if r.kind == "response" and r.chat_id == chat_id]

    # -- views for tests -------------------------------------------------------------------
    def messages_to(self, userid: str) -> list[Received]:
        return [r for r in self.received if r.kind == "app" and userid in r.touser]

    def robot_messages(self, key: str) -> list[Received]:
        return [r for r in self.received if r.kind == "robot" and r.key == key]

    def images_to(self, userid: str) -> list[bytes]:
        """The pictures of the image messages that reached ``userid`` (by their media_id)."""
        return [self.media[r.payload["image"]["media_id"]][0] for r in self.messages_to(userid)
                if r.payload.get("msgtype") == "image"]

    def card_updates(self, userid: str) -> list[dict[str, Any]]:
        return [r.payload for r in self.received if r.kind == "update_card" and userid in r.touser]

    def expire_media(self) -> None:
        """Three days passed: every media_id issued so far is unknown now."""
        self.media = {k: (v, 0.0) for k, (v, _) in self.media.items()}

    # -- request handling (used by create_app) ----------------------------------------------
    async def apply_fault(self, request: web.Request, endpoint: str) -> web.Response | None:
        self.requests.append(endpoint)
        # Read (and cache) the body first: a real server has the request in hand before it
        # stalls, so a send the client timed out on can still be delivered.
        await request.read()
        fault = self._take_fault(endpoint)
        if fault is None:
            return None
        if fault.kind == "delay":
            try:
                await asyncio.wait_for(self._closing.wait(), fault.delay)
            except asyncio.TimeoutError:
                pass
            return None
        if fault.kind == "http":
            return web.Response(status=fault.status, text="fake upstream failure")
        return _err(fault.errcode, fault.errmsg)

    def check_token(self, request: web.Request) -> int | web.Response:
        value = request.query.get("access_token", "")
        if not value:
            return _err(41001, "access_token missing")
        tok = self.tokens.get(value)
        if tok is None:
            return _err(40014, "invalid access_token")
        if tok.revoked or self.clock() >= tok.expires_at:
            return _err(42001, "access_token expired")
        return tok.agent_id

    def is_duplicate(self, agent: int, body: dict) -> bool:
        """WeCom's enable_duplicate_check: the same content to the same recipients within
        duplicate_check_interval seconds (default 1800) is not delivered again. Every message is
        remembered, so a re-send with the check on is caught even if the first went without it."""
        msgtype = body.get("msgtype")
        key = (agent, body.get("touser"), msgtype, json.dumps(body.get(msgtype), sort_keys=True, ensure_ascii=False))
        now, last = self.clock(), self._contents.get(key)
        interval = float(body.get("duplicate_check_interval") or 1800)
        if body.get("enable_duplicate_check") and last is not None and now - last < interval:
            return True
        self._contents[key] = now
        return False

    def forget_contents(self) -> None:
        """Start the duplicate check afresh (a test that replays the same day on one fake)."""
        self._contents.clear()

    def _within(self, window: deque[float], limit: int) -> bool:
        now = self.clock()
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True


def _err(errcode: int, errmsg: str, **extra: Any) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg, **extra})


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def create_app(fake: FakeWeCom) -> web.Application:
    """The aiohttp application serving ``fake``'s state under /cgi-bin/."""

    async def gettoken(request: web.Request) -> web.Response:
        if (resp := await fake.apply_fault(request, "gettoken")) is not None:
            return resp
        fake.gettoken_calls += 1
        if request.query.get("corpid") != fake.corp_id:
            return _err(40013, "invalid corpid")
        agent = next((a for a, s in fake.apps.items() if s == request.query.get("corpsecret")), None)
        if agent is None:
            return _err(40001, "invalid credential")
        token = secrets.token_urlsafe(32)
        fake.tokens[token] = _Token(agent, fake.clock() + fake.token_ttl)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token,
                                  "expires_in": int(fake.token_ttl)})

    def oversize(kind: str, body: dict[str, Any]) -> web.Response | None:
        """The documented limits (doc pages 90236, 91770), enforced: app markdown over 2,048
        bytes and robot markdown over 4,096 / robot text over 2,048 are refused with 40058;
        a template card's title, description, button texts, button count and task_id over
        theirs too. App *text* over 2,048 bytes is not refused: WeCom cuts it silently, and
        so does this fake (``fake.truncated`` lists those, for tests to assert none)."""
        msgtype = body.get("msgtype")
        part = body.get(msgtype) if isinstance(body.get(msgtype), dict) else {}
        limit = {("app", "markdown"): APP_MARKDOWN_MAX, ("robot", "markdown"): ROBOT_MARKDOWN_MAX,
                 ("robot", "text"): TEXT_MAX}.get((kind, msgtype))
        content = str(part.get("content") or "")
        if limit is not None and len(content.encode("utf-8")) > limit:
            fake.refused.append((40058, f"{kind} {msgtype} over {limit} bytes"))
            return _err(40058, f"{msgtype}.content exceed max length {limit}. invalid Request Parameter")
        if msgtype == "template_card":
            title = part.get("main_title") if isinstance(part.get("main_title"), dict) else {}
            buttons = part.get("button_list") if isinstance(part.get("button_list"), list) else []
            bad = (len(str(title.get("title") or "")) > CARD_TITLE_MAX and "main_title.title"
                   or len(str(title.get("desc") or "")) > CARD_DESC_MAX and "main_title.desc"
                   or len(buttons) > CARD_BUTTONS_MAX and "button_list"
                   or any(len(str(b.get("text") or "")) > CARD_BUTTON_TEXT_MAX for b in buttons
                          if isinstance(b, dict)) and "button_list.text"
                   or len(str(part.get("task_id") or "").encode()) > CARD_TASK_ID_MAX and "task_id")
            if bad:
                fake.refused.append((40058, f"template_card {bad}"))
                return _err(40058, f"template_card.{bad} exceed max length. invalid Request Parameter")
        return None

    async def message_send(request: web.Request) -> web.Response:
        if (resp := await fake.apply_fault(request, "message/send")) is not None:
            return resp
        agent = fake.check_token(request)
        if isinstance(agent, web.Response):
            return agent
        body = await _json_body(request)
        if body is None:
            return _err(47001, "data format error")
        if int(body.get("agentid", -1)) != agent:
            return _err(40056, "invalid agentid")
        msgtype = body.get("msgtype")
        if not msgtype or not isinstance(body.get(msgtype), dict):
            return _err(40008, "invalid message type")
        if msgtype == "image":
            # the picture must have been uploaded first, and within the last 3 days
            media = fake.media.get(str(body["image"].get("media_id") or ""))
            if media is None or fake.clock() >= media[1]:
                fake.refused.append((40007, "image"))
                return _err(40007, "invalid media_id")
        if (refused := oversize("app", body)) is not None:
            return refused
        truncated = msgtype == "text" and len(str(body["text"].get("content") or "").encode("utf-8")) > TEXT_MAX
        if truncated:
            cut = str(body["text"]["content"]).encode("utf-8")[:TEXT_MAX].decode("utf-8", "ignore")
            body = {**body, "text": {**body["text"], "content": cut}}
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        invalid = [u for u in users if fake.known_users is not None and u not in fake.known_users]
        valid = [u for u in users if u not in invalid]
        if not valid:
            return _err(81013, "user & party & tag all invalid", invaliduser="|".join(invalid))
        if fake.is_duplicate(agent, body):
            fake.duplicates_suppressed += 1
            return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid),
                                      "msgid": secrets.token_hex(8)})
        # The real service answers ok and silently drops messages over the member limit.
        reached = [u for u in valid if fake._within(fake._member_sends[(agent, u)], fake.member_limit)]
        record = Received("app", body, fake.clock(), agent_id=agent, touser=reached)
        (fake.received if reached else fake.dropped).append(record)
        if truncated:
            fake.truncated.append(record)
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid),
                                  "msgid": secrets.token_hex(8)})

    async def update_card(request: web.Request) -> web.Response:
        if (resp := await fake.apply_fault(request, "message/update_template_card")) is not None:
            return resp
        agent = fake.check_token(request)
        if isinstance(agent, web.Response):
            return agent
        body = await _json_body(request)
        if body is None or not body.get("response_code"):
            return _err(47001, "data format error")
        if int(body.get("agentid", -1)) != agent:
            return _err(40056, "invalid agentid")
        code = str(body["response_code"])
        if code in fake.used_response_codes:          # single use
            fake.refused.append((40058, "response_code used"))
            return _err(40058, "response_code already used")
        card = body.get("template_card")
        button = body.get("button")
        if not (isinstance(card, dict) and card.get("card_type") and isinstance(card.get("main_title"), dict)
                or isinstance(button, dict) and button.get("replace_name")):
            return _err(40058, "template_card or button required")
        if isinstance(card, dict) and not isinstance(card.get("button_list", []), list):
            return _err(40058, "button_list must be a list")
        if isinstance(card, dict) and (refused := oversize("app", {"msgtype": "template_card",
                                                                  "template_card": card})) is not None:
            return refused
        fake.used_response_codes.add(code)
        fake.received.append(Received("update_card", body, fake.clock(), agent_id=agent,
                                      touser=list(body.get("userids", []))))
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": []})

    async def webhook_send(request: web.Request) -> web.Response:
        if (resp := await fake.apply_fault(request, "webhook/send")) is not None:
            return resp
        key = request.query.get("key", "")
        if key not in fake.robot_keys:
            return _err(93000, "invalid webhook url")
        body = await _json_body(request)
        if body is None or not isinstance(body.get(body.get("msgtype", ""), None), dict):
            return _err(47001, "data format error")
        if body["msgtype"] == "image":
            # "webhook/image": a fault for robot image messages only (a test retries the picture alone)
            fault = fake._take_fault("webhook/image")
            if fault is not None and fault.kind == "http":
                return web.Response(status=fault.status, text="fake upstream failure")
            if fault is not None and fault.kind == "errcode":
                return _err(fault.errcode, fault.errmsg)
            try:
                image = base64.b64decode(str(body["image"].get("base64") or ""), validate=True)
            except (binascii.Error, ValueError):
                image = b""
            if not image or image_kind(image) is None:
                fake.refused.append((40005, "robot image"))
                return _err(40005, "invalid file type")
            if len(image) > IMAGE_MAX_BYTES:
                fake.refused.append((40009, "robot image"))
                return _err(40009, "invalid image size")
            if body["image"].get("md5") != hashlib.md5(image).hexdigest():
                fake.refused.append((301019, "robot image"))
                return _err(301019, "image md5 not match")
        if (refused := oversize("robot", body)) is not None:
            return refused
        if not fake._within(fake._robot_sends[key], fake.robot_limit):
            return _err(45009, "api freq out of limit")
        fake.received.append(Received("robot", body, fake.clock(), key=key))
        return _err(0, "ok")

    async def media_upload(request: web.Request) -> web.Response:
        if (resp := await fake.apply_fault(request, "media/upload")) is not None:
            return resp
        agent = fake.check_token(request)
        if isinstance(agent, web.Response):
            return agent
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "file"):
            return _err(40004, "invalid media type")
        form = parse_form(request.headers.get("Content-Type", ""), await request.read())
        filename, data = (form or {}).get("media", (None, b""))
        if not filename:
            return _err(44001, "empty media data")       # the part must be "media", with a filename
        if kind == "image" and image_kind(data) is None:
            fake.refused.append((40005, "upload"))
            return _err(40005, "invalid file type")
        if len(data) <= 5 or kind == "image" and len(data) > IMAGE_MAX_BYTES:
            fake.refused.append((40006, "upload"))
            return _err(40006, "invalid file size")
        media_id = "3" + secrets.token_urlsafe(30)
        fake.media[media_id] = (data, fake.clock() + MEDIA_TTL)
        fake.received.append(Received("upload", {"type": kind, "filename": filename, "size": len(data)},
                                      fake.clock(), agent_id=agent))
        return web.json_response({"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                                  "created_at": str(int(time.time()))})

    async def aibot_response(request: web.Request) -> web.Response:
        if (resp := await fake.apply_fault(request, "aibot/response")) is not None:
            return resp
        entry = fake.response_codes.get(request.query.get("response_code", ""))
        if entry is None:
            return _err(RESPONSE_UNKNOWN, "invalid response_code")
        issued, chat, used = entry
        if used:
            return _err(RESPONSE_SPENT, "response_code has been used")
        if fake.clock() - issued >= RESPONSE_URL_TTL:
            return _err(RESPONSE_EXPIRED, "response_code expired")
        body = await _json_body(request)
        # the page documents markdown and template_card replies only
        msgtype = body.get("msgtype") if body else None
        if msgtype not in ("markdown", "template_card") or not isinstance(body.get(msgtype), dict):
            return _err(40008, "invalid message type")
        entry[2] = True
        fake.received.append(Received("response", body, fake.clock(), chat_id=chat))
        return _err(0, "ok")

    app = web.Application(client_max_size=25 * 1024 * 1024)
    async def getuserid(request: web.Request) -> web.Response:
        # user/getuserid (doc page 95402): POST {"mobile"} -> {"userid"}; 46004 when no member has it
        agent = fake.check_token(request)
        if isinstance(agent, web.Response):
            return agent
        try:
            body = await request.json()
        except ValueError:
            return _err(40058, "invalid json")
        mobile = body.get("mobile") if isinstance(body, dict) else None
        if not isinstance(mobile, str) or not mobile:
            return _err(40058, "mobile missing")
        if not mobile.isdigit():
            return _err(60103, "invalid mobile")
        if mobile not in fake.members:
            return _err(46004, "user not exist")
        return web.json_response({"errcode": 0, "errmsg": "ok", "userid": fake.members[mobile]})

    app.router.add_post("/cgi-bin/user/getuserid", getuserid)
    app.router.add_post("/cgi-bin/media/upload", media_upload)
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    app.router.add_post("/cgi-bin/message/send", message_send)
    app.router.add_post("/cgi-bin/message/update_template_card", update_card)
    app.router.add_post("/cgi-bin/webhook/send", webhook_send)
    app.router.add_post("/cgi-bin/aibot/response", aibot_response)
    return app


# -- callbacks WeCom sends to the bot ------------------------------------------------------

def build_text_message_xml(to_user: str, from_user: str, content: str, *, msg_id: int | str,
                           agent_id: int | str, create_time: int | None = None) -> str:
    """The decrypted inner XML of an app text message."""
    return (f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
            f"<CreateTime>{int(create_time or time.time())}</CreateTime><MsgType>{cdata('text')}</MsgType>"
            f"<Content>{cdata(content)}</Content><MsgId>{msg_id}</MsgId><AgentID>{agent_id}</AgentID></xml>")


def build_card_click_xml(to_user: str, from_user: str, *, event_key: str, task_id: str, response_code: str,
                         agent_id: int | str, create_time: int | None = None,
                         card_type: str = "button_interaction") -> str:
    """The decrypted inner XML of a template-card button click (template_card_event)."""
    return (f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
            f"<CreateTime>{int(create_time or time.time())}</CreateTime><MsgType>{cdata('event')}</MsgType>"
            f"<Event>{cdata('template_card_event')}</Event><EventKey>{cdata(event_key)}</EventKey>"
            f"<TaskId>{cdata(task_id)}</TaskId><CardType>{cdata(card_type)}</CardType>"
            f"<ResponseCode>{cdata(response_code)}</ResponseCode><AgentID>{agent_id}</AgentID></xml>")


def build_callback(crypto: WeComCrypto, xml_text: str, timestamp: str | int,
                   nonce: str) -> tuple[dict[str, str], str]:
    """The encrypted POST WeCom would send: (query params, body). Pass the query as
    ``params=`` so the client URL-encodes it once (``+`` -> %2B), as WeCom does."""
    encrypt = crypto.encrypt(xml_text, nonce, timestamp)
    agent = parse_xml(xml_text).get("AgentID", "")
    body = (f"<xml><ToUserName>{cdata(crypto.receive_id)}</ToUserName><AgentID>{cdata(str(agent))}</AgentID>"
            f"<Encrypt>{cdata(encrypt)}</Encrypt></xml>")
    query = {"msg_signature": crypto.signature(timestamp, nonce, encrypt),
             "timestamp": str(timestamp), "nonce": str(nonce)}
    return query, body


def build_url_check(crypto: WeComCrypto, echo: str, timestamp: str | int, nonce: str) -> dict[str, str]:
    """The GET query of WeCom's URL verification; the bot must answer ``echo`` verbatim."""
    echostr = crypto.encrypt(echo, nonce, timestamp)
    return {"msg_signature": crypto.signature(timestamp, nonce, echostr), "timestamp": str(timestamp),
            "nonce": str(nonce), "echostr": echostr}


async def deliver_callback(session: aiohttp.ClientSession, url: str, crypto: WeComCrypto, xml_text: str, *,
                           timestamp: int | None = None, nonce: str | None = None, tries: int = 3,
                           timeout: float = 5.0) -> list[tuple[int | None, str]]:
    """POST a callback like WeCom: wait ``timeout`` s, retry the *same* request on no
    answer or non-200, ``tries`` times in all. Returns (status or None, body) per try."""
    query, body = build_callback(crypto, xml_text, timestamp or int(time.time()),
                                 nonce or secrets.token_hex(5))
    attempts: list[tuple[int | None, str]] = []
    for _ in range(tries):
        try:
            async with session.post(url, params=query, data=body.encode("utf-8"),
                                    headers={"Content-Type": "text/xml"},
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                attempts.append((resp.status, await resp.text()))
                if resp.status == 200:
                    break
        except (asyncio.TimeoutError, aiohttp.ClientError):
            attempts.append((None, ""))
    return attempts
