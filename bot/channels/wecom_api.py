"""Async client for the WeCom send APIs: app messages, template cards and group robots.

One ``WeComAPI`` instance per WeCom app (corp_id + secret + agent_id); it owns that
app's access_token cache. Every response is checked for ``errcode`` (HTTP 200 is not
success) and every failure is turned into the ``DeliveryError`` the outbox understands.

Secrets: the app secret, the access_token and robot keys travel in query strings, and
aiohttp puts the full URL into some of its exception messages. So no aiohttp exception
text is passed on unscrubbed and no exception is chained from one that might carry it.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from typing import Any, Callable
from urllib.parse import parse_qsl

import aiohttp

from bot.channels.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RateLimitedError,
    TransientDeliveryError,
)
from bot.channels.tokens import TokenCache
from bot.core.messages import OutgoingMessage

log = logging.getLogger(__name__)

TEXT_MAX_BYTES = 2048              # app text and robot text
APP_MARKDOWN_MAX_BYTES = 2048      # app message markdown (doc page 90236)
ROBOT_MARKDOWN_MAX_BYTES = 4096    # group robot markdown (doc page 91770)
CARD_TITLE_MAX_CHARS = 26          # template_card main_title.title (doc page 90236)
CARD_DESC_MAX_CHARS = 30           # template_card main_title.desc
CARD_BUTTON_MAX_CHARS = 10         # template_card button_list[].text
ROBOT_IMAGE_MAX_BYTES = 2 * 1024 * 1024
APP_IMAGE_MAX_BYTES = 2 * 1024 * 1024  # media/upload: images up to 2 MB, JPG/PNG (docs/wecom.md)
MEDIA_REUSE = 2.5 * 24 * 3600        # a media_id lives 3 days; reused for a bit less
MEDIA_CACHE_SIZE = 64
MAX_TOUSER = 1000
RATE_LIMIT_RETRY_AFTER = 60.0      # WeCom rate windows are one minute long

# URL errors that mean a misconfigured api_base (NonHttpUrlClientError exists from aiohttp 3.10).
_BAD_URL_ERRORS = tuple(e for e in (aiohttp.InvalidURL, getattr(aiohttp, "NonHttpUrlClientError", None),
                                    ValueError) if e is not None)

TOKEN_ERRCODES = {40014, 42001}    # invalid / expired access_token: refresh once and retry
RATE_ERRCODES = {45009, 45033}
TRANSIENT_ERRCODES = {-1}          # "system busy": worth another try later
PERMANENT_REASONS = {
    40001: "invalid corp secret (errcode 40001): check the app secret",
    40013: "invalid corp id (errcode 40013): check corp_id",
    60020: "caller IP not trusted (errcode 60020): add this server's egress IP to the app's allow-list",
    81013: "all recipients invalid (errcode 81013): user ids not found or not visible to the app",
    93000: "group robot webhook invalid (errcode 93000): the robot key is wrong or the robot was removed",
}


USER_NOT_FOUND = 46004      # user/getuserid: no member with this mobile


class _TokenRejected(Exception):
    """Internal: the API said the access_token is invalid/expired (40014/42001)."""

    def __init__(self, errcode: int):
        super().__init__(errcode)
        self.errcode = errcode


def check_byte_limit(text: str, limit: int, what: str) -> None:
    """WeCom counts UTF-8 bytes (a CJK character is 3), and truncates silently past the limit."""
    size = len(text.encode("utf-8"))
    if size > limit:
        raise ValueError(f"{what} is {size} bytes, over the {limit}-byte limit; split it first")


def image_kind(image: bytes) -> str:
    """"png" or "jpg" by the file's own signature (WeCom takes only these two)."""
    if image.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if image.startswith(b"\xff\xd8\xff"):
        return "jpg"
    raise ValueError("image is neither PNG nor JPG")


def check_image(image: bytes, limit: int) -> None:
    image_kind(image)
    if not image or len(image) > limit:
        raise ValueError(f"image is {len(image)} bytes, over the {limit}-byte limit")


class WeComAPI:
    """Send-side client for one WeCom app, plus the group-robot webhooks.

    ``clock`` is a monotonic clock (seconds), injectable so tests can age the token.
    ``timeout`` bounds each HTTP request.
    """

    def __init__(self, session: aiohttp.ClientSession, api_base: str, corp_id: str, secret: str,
                 agent_id: int | str, clock: Callable[[], float] = time.monotonic, *, timeout: float = 10.0):
        self._session = session
        self.api_base = api_base.rstrip("/")
        self.corp_id = corp_id
        self._secret = secret
        self.agent_id = int(agent_id)
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._tokens = TokenCache(self._fetch_token, lambda: self._clock())
        self._media: dict[str, tuple[str, float]] = {}   # sha256 of a picture → (media_id, reuse until)
        self.media_uploads = 0

    def __repr__(self) -> str:
        return f"WeComAPI(api_base={self.api_base!r}, corp_id={self.corp_id!r}, agent_id={self.agent_id})"

    # -- plumbing ---------------------------------------------------------------------
    def _scrub(self, text: str, extra: tuple[str, ...] = ()) -> str:
        for secret in (self._secret, self._tokens.current, *extra):
            if secret:
                text = text.replace(secret, "***")
        return text

    async def _request(self, method: str, path: str, params: dict[str, str], payload: Any = None,
                       *, hide: tuple[str, ...] = (), form: Callable[[], aiohttp.FormData] | None = None
                       ) -> dict[str, Any]:
        """One HTTP call; returns the decoded JSON or raises a DeliveryError.

        Exceptions are built inside ``except`` but raised outside it so they carry no
        ``__context__`` pointing at an aiohttp error whose text holds the URL.
        """
        url = f"{self.api_base}{path}"
        failure: DeliveryError | None = None
        try:
            # a form is built afresh per request: an aiohttp FormData can be sent only once
            body = {"data": form()} if form is not None else {"json": payload}
            async with self._session.request(method, url, params=params, timeout=self._timeout,
                                             **body) as resp:
                if resp.status >= 500 or resp.status == 429:
                    cls = RateLimitedError if resp.status == 429 else TransientDeliveryError
                    failure = cls(f"WeCom {path} answered HTTP {resp.status}", code=resp.status,
                                  retry_after=RATE_LIMIT_RETRY_AFTER if resp.status == 429 else None)
                elif resp.status != 200:
                    failure = PermanentDeliveryError(f"WeCom {path} answered HTTP {resp.status}", code=resp.status)
                else:
                    try:
                        data = await resp.json(content_type=None)
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        # A proxy error page or truncated body: not WeCom's answer, try later.
                        failure = TransientDeliveryError(f"WeCom {path} returned a non-JSON body", code="bad_json")
                    else:
                        return data
        except asyncio.TimeoutError:
            failure = TransientDeliveryError(f"WeCom {path} timed out after {self._timeout.total}s", code="timeout")
        except _BAD_URL_ERRORS:
            # A malformed api_base is configuration, not weather: retrying will not help.
            failure = PermanentDeliveryError(f"WeCom {path}: invalid api_base URL", code="bad_url")
        except aiohttp.ClientError as exc:
            detail = self._scrub(str(exc), hide)
            failure = TransientDeliveryError(f"WeCom {path} connection error: {type(exc).__name__}: {detail}",
                                             code="network")
        log.warning("wecom %s failed: %s", path, failure.reason)
        raise failure

    def _check(self, data: dict[str, Any], path: str, hide: tuple[str, ...] = ()) -> dict[str, Any]:
        """Map WeCom's errcode to success, _TokenRejected or a DeliveryError."""
        try:
            errcode = int(data.get("errcode", 0))
        except (TypeError, ValueError):
            errcode = -1
        if errcode == 0:
            return data
        if errcode in TOKEN_ERRCODES:
            raise _TokenRejected(errcode)
        errmsg = self._scrub(str(data.get("errmsg", "")), hide)[:200]
        if errcode in RATE_ERRCODES:
            err: DeliveryError = RateLimitedError(f"WeCom rate limit (errcode {errcode}) on {path}: {errmsg}",
                                                  code=errcode, retry_after=RATE_LIMIT_RETRY_AFTER)
        elif errcode in TRANSIENT_ERRCODES:
            err = TransientDeliveryError(f"WeCom busy (errcode {errcode}) on {path}: {errmsg}", code=errcode)
        elif errcode in PERMANENT_REASONS:
            err = PermanentDeliveryError(f"{PERMANENT_REASONS[errcode]} on {path}", code=errcode)
        else:
            err = PermanentDeliveryError(f"WeCom errcode {errcode} on {path}: {errmsg}", code=errcode)
        log.warning("wecom %s: %s", path, err.reason)
        raise err

    # -- access token -------------------------------------------------------------------
    @property
    def token_fetches(self) -> int:
        return self._tokens.fetches

    async def get_token(self) -> str:
        """The cached access_token (bot/channels/tokens.py)."""
        return await self._tokens.get()

    async def _fetch_token(self) -> tuple[str, float]:
        path = "/cgi-bin/gettoken"
        data = await self._request("GET", path, {"corpid": self.corp_id, "corpsecret": self._secret})
        try:
            self._check(data, path)
        except _TokenRejected as exc:  # not expected from gettoken; treat as a bad credential
            raise PermanentDeliveryError(f"WeCom gettoken refused (errcode {exc.errcode})", code=exc.errcode) from None
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise TransientDeliveryError("WeCom gettoken returned no access_token", code="no_token")
        try:
            expires_in = float(data.get("expires_in") or 7200)
        except (TypeError, ValueError):
            expires_in = 7200.0
        log.info("wecom access_token refreshed for agent %s (expires_in=%ss)", self.agent_id, int(expires_in))
        return token, expires_in

    async def _call_with_token(self, path: str, payload: dict[str, Any] | None,
                               params: dict[str, str] | None = None,
                               form: Callable[[], aiohttp.FormData] | None = None) -> dict[str, Any]:
        """POST with the access_token; on 40014/42001 refresh once and retry once."""
        token = await self.get_token()
        for attempt in (1, 2):
            data = await self._request("POST", path, {**(params or {}), "access_token": token}, payload,
                                       hide=(token,), form=form)
            try:
                return self._check(data, path, hide=(token,))
            except _TokenRejected as exc:
                if attempt == 2:
                    # A fresh token rejected too: odd (clock skew, concurrent secret reset); retry later.
                    raise TransientDeliveryError(
                        f"WeCom rejected a freshly issued access_token (errcode {exc.errcode}) on {path}",
                        code=exc.errcode) from None
                log.info("wecom token rejected (errcode %s); refreshing", exc.errcode)
                token = await self._tokens.replace(token)
        raise AssertionError("unreachable")

    # -- people ---------------------------------------------------------------------------
    async def user_id_by_mobile(self, mobile: str) -> str | None:
        """The member's userid for a mobile number (``POST user/getuserid``, doc page 95402);
        None when no member of the corp has it (errcode 46004). Other refusals raise."""
        try:
            data = await self._call_with_token("/cgi-bin/user/getuserid", {"mobile": mobile})
        except PermanentDeliveryError as e:
            if e.code == USER_NOT_FOUND:
                return None
            raise
        userid = data.get("userid")
        return userid if isinstance(userid, str) and userid else None

    # -- app messages -------------------------------------------------------------------
    async def send_app_message(self, touser: list[str], msgtype: str, content: dict[str, Any], *,
                               enable_duplicate_check: bool = True,
                               duplicate_check_interval: int = 1800) -> dict[str, Any]:
        """POST message/send. Returns WeCom's answer (it lists invaliduser etc. on partial success)."""
        if not touser:
            raise ValueError("touser is empty")
        if len(touser) > MAX_TOUSER:
            raise ValueError(f"at most {MAX_TOUSER} recipients per message, got {len(touser)}")
        payload = {
            "touser": "|".join(touser),
            "msgtype": msgtype,
            "agentid": self.agent_id,
            msgtype: content,
            # WeCom drops a repeat of the same content within the interval: a safety net
            # against our own retries after a timeout whose request actually got through.
            "enable_duplicate_check": 1 if enable_duplicate_check else 0,
            "duplicate_check_interval": duplicate_check_interval,
        }
        return await self._call_with_token("/cgi-bin/message/send", payload)

    async def send_text(self, touser: list[str], text: str, **kw: Any) -> dict[str, Any]:
        check_byte_limit(text, TEXT_MAX_BYTES, "text message")
        return await self.send_app_message(touser, "text", {"content": text}, **kw)

    async def send_markdown(self, touser: list[str], text: str, **kw: Any) -> dict[str, Any]:
        check_byte_limit(text, APP_MARKDOWN_MAX_BYTES, "markdown message")
        return await self.send_app_message(touser, "markdown", {"content": text}, **kw)

    async def send_template_card(self, touser: list[str], card: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return await self.send_app_message(touser, "template_card", card, **kw)

    async def upload_image(self, image: bytes) -> str:
        """A media_id for ``image`` (media/upload?type=image). A media_id lives 3 days: the same
        picture sent again within ``MEDIA_REUSE`` seconds reuses it instead of uploading again
        (a retried image row, the weekly chart going to several people)."""
        check_image(image, APP_IMAGE_MAX_BYTES)
        digest = hashlib.sha256(image).hexdigest()
        cached = self._media.get(digest)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]

        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("media", image, filename=f"chart-{digest[:12]}.{image_kind(image)}",
                        content_type=f"image/{'jpeg' if image_kind(image) == 'jpg' else 'png'}")
            return f

        data = await self._call_with_token("/cgi-bin/media/upload", None, params={"type": "image"}, form=form)
        media_id = data.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise TransientDeliveryError("WeCom media/upload returned no media_id", code="no_media_id")
        self.media_uploads += 1
        self._media[digest] = (media_id, self._clock() + MEDIA_REUSE)
        if len(self._media) > MEDIA_CACHE_SIZE:          # the oldest goes: a chart a day, a few teams
            self._media.pop(next(iter(self._media)))
        return media_id

    async def send_image(self, touser: list[str], image: bytes, **kw: Any) -> dict[str, Any]:
        """An app image message: the picture is uploaded first (or its recent media_id reused)."""
        media_id = await self.upload_image(image)
        return await self.send_app_message(touser, "image", {"media_id": media_id}, **kw)

    async def update_template_card(self, userids: list[str], response_code: str,
                                   card: dict[str, Any]) -> dict[str, Any]:
        """Replace a clicked card (response_code: from the click event, single use, 72 h)."""
        payload = {"userids": list(userids), "agentid": self.agent_id,
                   "response_code": response_code, "template_card": card}
        return await self._call_with_token("/cgi-bin/message/update_template_card", payload)

    # -- group robots -------------------------------------------------------------------
    async def send_robot(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST webhook/send?key=. The key is a credential: scrubbed like the secret."""
        path = "/cgi-bin/webhook/send"
        data = await self._request("POST", path, {"key": key}, payload, hide=(key,))
        try:
            return self._check(data, path, hide=(key,))
        except _TokenRejected as exc:  # robots have no token; these codes mean a bad key here
            raise PermanentDeliveryError(f"group robot key rejected (errcode {exc.errcode})",
                                         code=exc.errcode) from None

    async def send_robot_text(self, key: str, text: str, mentioned_list: list[str] | None = None,
                              mentioned_mobile_list: list[str] | None = None) -> dict[str, Any]:
        check_byte_limit(text, TEXT_MAX_BYTES, "robot text message")
        body: dict[str, Any] = {"content": text}
        if mentioned_list:
            body["mentioned_list"] = list(mentioned_list)
        if mentioned_mobile_list:
            body["mentioned_mobile_list"] = list(mentioned_mobile_list)
        return await self.send_robot(key, {"msgtype": "text", "text": body})

    async def send_robot_markdown(self, key: str, text: str) -> dict[str, Any]:
        check_byte_limit(text, ROBOT_MARKDOWN_MAX_BYTES, "robot markdown message")
        return await self.send_robot(key, {"msgtype": "markdown", "markdown": {"content": text}})

    async def send_robot_image(self, key: str, image: bytes) -> dict[str, Any]:
        """Send a JPG/PNG; WeCom wants base64 plus the md5 of the raw bytes, ≤ 2 MB raw."""
        check_image(image, ROBOT_IMAGE_MAX_BYTES)
        return await self.send_robot(key, {"msgtype": "image", "image": {
            "base64": base64.b64encode(image).decode("ascii"),
            "md5": hashlib.md5(image).hexdigest(),
        }})

    # -- AI bot (智能机器人) replies ----------------------------------------------------------
    async def send_response(self, response_url: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a reply to the ``response_url`` an AI-bot callback carried (doc page 101138: one
        call per URL, within an hour; markdown or template_card). The URL must be under
        ``api_base``: its response_code is a credential, scrubbed like the robot keys."""
        base = self.api_base + "/"
        if not response_url.startswith(base):
            raise PermanentDeliveryError("AI-bot response_url is not under api_base", code="bad_response_url")
        path, _, query = response_url[len(self.api_base):].partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        hide = tuple(v for v in params.values() if v)
        data = await self._request("POST", path, params, payload, hide=hide)
        try:
            return self._check(data, path, hide=hide)
        except _TokenRejected as exc:   # no token on this call: the code means the URL is no good
            raise PermanentDeliveryError(f"AI-bot response_url refused (errcode {exc.errcode})",
                                         code=exc.errcode) from None

    # -- outbox entry ---------------------------------------------------------------------
    async def deliver(self, msg: OutgoingMessage, robot_keys: dict[str, str]) -> None:
        """Send one outbox message. Raises DeliveryError subclasses only.

        Content that can never be sent as is (over a byte limit, bad image) becomes a
        PermanentDeliveryError, so the outbox dead-letters it instead of retrying forever.
        """
        try:
            if msg.target_kind == "user":
                touser = [u for u in msg.target.split("|") if u]
                if "template_card" in msg.extra:
                    await self.send_template_card(touser, msg.extra["template_card"])
                elif "image_base64" in msg.extra:
                    # image only, like the robot's: the text went (or goes) as its own row
                    await self.send_image(touser, base64.b64decode(msg.extra["image_base64"], validate=True))
                elif msg.format == "markdown":
                    await self.send_markdown(touser, msg.text)
                else:
                    await self.send_text(touser, msg.text)
            elif msg.target_kind == "robot":
                key = robot_keys.get(msg.target)
                if not key:
                    raise PermanentDeliveryError(f"no WeCom robot key configured for {msg.target!r}",
                                                 code="no_robot_key")
                if "image_base64" in msg.extra:
                    # Image only: the pipeline queues any accompanying text as its own message,
                    # so a retry of one never duplicates the other.
                    image = base64.b64decode(msg.extra["image_base64"], validate=True)
                    await self.send_robot_image(key, image)
                elif msg.format == "markdown":
                    await self.send_robot_markdown(key, msg.text)
                else:
                    await self.send_robot_text(key, msg.text, msg.extra.get("mentioned_list"),
                                               msg.extra.get("mentioned_mobile_list"))
            else:
                raise PermanentDeliveryError(f"WeCom cannot deliver target_kind {msg.target_kind!r}",
                                             code="bad_target_kind")
        except (ValueError, binascii.Error) as exc:
            raise PermanentDeliveryError(f"message cannot be sent as is: {exc}", code="invalid_content") from None
