"""Async client for the Feishu (飞书/Lark) send side: tenant_access_token, im/v1/messages.

Written on the bot's aiohttp session rather than lark-oapi's ``Client`` (docs/feishu.md says
why: the SDK's client is built on requests/httpx, keeps its own token cache that tests cannot
age, and answers with response objects this module would still have to map to the outbox's
``DeliveryError``s). The protocol facts, with their sources, are in docs/feishu.md:

* token: ``POST /open-apis/auth/v3/tenant_access_token/internal {app_id, app_secret}`` →
  ``{code, tenant_access_token, expire}`` (at most 2 h; a call with under 30 min left returns a
  new token, the old one stays valid). Cached (bot/channels/tokens.py), refreshed shortly before it runs
  out, single flight, and refreshed once more when a call answers an invalid-token code.
* send: ``POST /open-apis/im/v1/messages?receive_id_type=open_id|user_id|chat_id`` with
  ``{receive_id, msg_type, content: <a JSON *string*>, uuid}``; ``uuid`` makes Feishu send at
  most one message per uuid within an hour (the safety net for a retry after a timeout).
* card update: ``PATCH /open-apis/im/v1/messages/{message_id} {content}``.
* image upload: ``POST /open-apis/im/v1/images`` multipart (``image_type=message``, ``image``)
  → ``data.image_key``, then ``msg_type: image`` with ``{"image_key"}``.
* errors come as ``{code, msg}`` with HTTP 200 *or* 4xx: the code decides, never the status alone.

Secrets (app secret, token) travel in bodies and headers, never in URLs; exception text is built
here from safe parts only.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any, Callable

import aiohttp

from bot.channels.errors import DeliveryError, PermanentDeliveryError, RateLimitedError, TransientDeliveryError
from bot.channels.tokens import TokenCache

log = logging.getLogger(__name__)

# Request body limits of im/v1/messages (docs/feishu.md: the "发送消息" page).
TEXT_BODY_MAX = 150 * 1024          # msg_type text
RICH_BODY_MAX = 30 * 1024           # msg_type post and interactive (cards)
IMAGE_MAX = 10 * 1024 * 1024        # im/v1/images: at most 10 MB, not empty
IMAGE_CACHE_SIZE = 64
RATE_RETRY_AFTER = 2.0              # 230020 is a per-second limit (5 QPS per user / per group)

TOKEN_CODES = {99991663, 99991677, 99991661}    # token invalid / expired / missing: refresh once
RATE_CODES = {99991400, 230020}                 # app-wide frequency limit; per user/group 5 QPS
TRANSIENT_CODES = {-1, 1, 2200}                  # "system busy" / internal error: try later
PERMANENT_REASONS = {
    10003: "invalid app_id or app_secret (code 10003)",
    10014: "app secret invalid (code 10014): check [feishu] app_secret",
    230002: "the bot is not in this group (code 230002)",
    230006: "the app's bot ability is not enabled (code 230006): 应用能力 → 机器人",
    230013: "the user is outside the app's availability range (code 230013): 版本管理与发布 → 可用范围",
    230025: "message content too long (code 230025)",
    230099: "the card content was refused (code 230099)",
    99991672: "the app lacks a permission scope (code 99991672): grant im:message / im:message:send_as_bot",
    99991401: "this server's IP is not in the app's IP allow-list (code 99991401)",
}


class _TokenRejected(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class FeishuAPI:
    """The send side for one Feishu app. ``clock``: monotonic seconds (tests age the token)."""

    def __init__(self, session: aiohttp.ClientSession, api_base: str, app_id: str, app_secret: str,
                 clock: Callable[[], float] = time.monotonic, *, timeout: float = 10.0):
        self._session = session
        self.api_base = api_base.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._tokens = TokenCache(self._fetch, lambda: self._clock())
        self._images: dict[str, str] = {}       # sha256 of a picture → its image_key
        self.image_uploads = 0

    def __repr__(self) -> str:
        return f"FeishuAPI(api_base={self.api_base!r}, app_id={self.app_id!r})"

    # -- plumbing ------------------------------------------------------------------------
    async def _request(self, method: str, path: str, *, params: dict | None = None, payload: Any = None,
                       token: str | None = None, form: Callable[[], aiohttp.FormData] | None = None
                       ) -> tuple[int, dict[str, Any], Any]:
        # a form sets its own multipart Content-Type (with the boundary); it is built afresh per
        # request because an aiohttp FormData can be sent only once
        headers = {} if form is not None else {"Content-Type": "application/json; charset=utf-8"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data: Any = form() if form is not None else (
            json.dumps(payload, ensure_ascii=False).encode("utf-8") if payload is not None else None)
        failure: DeliveryError
        try:
            async with self._session.request(method, f"{self.api_base}{path}", params=params, data=data,
                                             headers=headers, timeout=self._timeout) as resp:
                raw = await resp.read()
                try:
                    body = json.loads(raw) if raw else {}
                except (ValueError, UnicodeDecodeError):
                    body = None
                if isinstance(body, dict):
                    return resp.status, body, resp.headers
                failure = (TransientDeliveryError if resp.status >= 500 or resp.status == 200 else
                           PermanentDeliveryError)(f"Feishu {path} answered HTTP {resp.status} without JSON",
                                                   code=resp.status)
        except asyncio.TimeoutError:
            failure = TransientDeliveryError(f"Feishu {path} timed out", code="timeout")
        except aiohttp.ClientError as exc:   # its text may hold the URL: the class name only
            failure = TransientDeliveryError(f"Feishu {path} connection error: {type(exc).__name__}",
                                             code="network")
        log.warning("feishu %s failed: %s", path, failure.reason)
        raise failure

    def _check(self, status: int, body: dict, headers: Any, path: str) -> dict[str, Any]:
        try:
            code = int(body.get("code", 0 if status == 200 else status))
        except (TypeError, ValueError):
            code = -1
        if code == 0 and status < 400:
            return body
        if code in TOKEN_CODES:
            raise _TokenRejected(code)
        msg = str(body.get("msg") or "")[:200].replace(self._secret or "\0", "***")
        err: DeliveryError
        if status == 429 or code in RATE_CODES:
            reset = headers.get("x-ogw-ratelimit-reset") if headers is not None else None
            retry = float(reset) if reset and str(reset).isdigit() else RATE_RETRY_AFTER
            err = RateLimitedError(f"Feishu rate limit (code {code}) on {path}: {msg}", code=code, retry_after=retry)
        elif code in PERMANENT_REASONS:
            err = PermanentDeliveryError(f"{PERMANENT_REASONS[code]} on {path}", code=code)
        elif status >= 500 or code in TRANSIENT_CODES:
            err = TransientDeliveryError(f"Feishu busy (HTTP {status}, code {code}) on {path}: {msg}", code=code)
        else:
            err = PermanentDeliveryError(f"Feishu code {code} (HTTP {status}) on {path}: {msg}", code=code)
        log.warning("feishu %s: %s", path, err.reason)
        raise err

    # -- tenant_access_token -----------------------------------------------------------------
    @property
    def token_fetches(self) -> int:
        return self._tokens.fetches

    async def token(self) -> str:
        return await self._tokens.get()

    async def _fetch(self) -> tuple[str, float]:
        path = "/open-apis/auth/v3/tenant_access_token/internal"
        status, body, headers = await self._request("POST", path, payload={"app_id": self.app_id,
                                                                           "app_secret": self._secret})
        try:
            self._check(status, body, headers, path)
        except _TokenRejected as e:
            raise PermanentDeliveryError(f"Feishu refused the app credentials (code {e.code})", code=e.code) from None
        token = body.get("tenant_access_token")
        if not isinstance(token, str) or not token:
            raise TransientDeliveryError("Feishu returned no tenant_access_token", code="no_token")
        try:
            expire = float(body.get("expire") or 7200)
        except (TypeError, ValueError):
            expire = 7200.0
        log.info("feishu tenant_access_token refreshed for app %s (expire=%ss)", self.app_id, int(expire))
        return token, expire

    async def call(self, method: str, path: str, *, params: dict | None = None, payload: Any = None,
                   form: Callable[[], aiohttp.FormData] | None = None) -> dict:
        """An authenticated call; an invalid/expired token is refreshed once and the call retried."""
        token = await self.token()
        for attempt in (1, 2):
            status, body, headers = await self._request(method, path, params=params, payload=payload, token=token,
                                                        form=form)
            try:
                return self._check(status, body, headers, path)
            except _TokenRejected as e:
                if attempt == 2:
                    raise TransientDeliveryError(f"Feishu rejected a fresh token (code {e.code}) on {path}",
                                                 code=e.code) from None
                log.info("feishu token rejected (code %s); refreshing", e.code)
                token = await self._tokens.replace(token)
        raise AssertionError("unreachable")

    # -- messages ------------------------------------------------------------------------------
    async def send(self, receive_id_type: str, receive_id: str, msg_type: str, content: dict,
                   uuid: str | None = None) -> dict:
        payload = {"receive_id": receive_id, "msg_type": msg_type,
                   "content": json.dumps(content, ensure_ascii=False)}
        if uuid:
            payload["uuid"] = uuid[:50]
        limit = TEXT_BODY_MAX if msg_type == "text" else RICH_BODY_MAX
        if body_size(payload) > limit:
            raise PermanentDeliveryError(f"{msg_type} message over Feishu's {limit // 1024} KB body limit",
                                         code="too_large")
        return await self.call("POST", "/open-apis/im/v1/messages", params={"receive_id_type": receive_id_type},
                               payload=payload)

    async def upload_image(self, image: bytes) -> str:
        """An image_key for ``image`` (``POST im/v1/images``, image_type=message). The key does not
        expire, so a picture sent again (a retried row, the weekly chart to several groups) is
        uploaded once per process."""
        if not image:
            raise PermanentDeliveryError("empty image", code="empty_image")
        if len(image) > IMAGE_MAX:
            raise PermanentDeliveryError(f"image over Feishu's {IMAGE_MAX // 1024 // 1024} MB limit", code="too_large")
        digest = hashlib.sha256(image).hexdigest()
        if (key := self._images.get(digest)) is not None:
            return key

        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("image_type", "message")
            f.add_field("image", image, filename=f"chart-{digest[:12]}.png", content_type="image/png")
            return f

        body = await self.call("POST", "/open-apis/im/v1/images", form=form)
        key = (body.get("data") or {}).get("image_key") if isinstance(body.get("data"), dict) else None
        if not isinstance(key, str) or not key:
            raise TransientDeliveryError("Feishu im/v1/images returned no image_key", code="no_image_key")
        self.image_uploads += 1
        self._images[digest] = key
        if len(self._images) > IMAGE_CACHE_SIZE:
            self._images.pop(next(iter(self._images)))
        return key

    async def user_ids_by_mobile(self, mobiles: list[str], user_id_type: str) -> dict[str, str]:
        """{mobile: the member's id of ``user_id_type``} for the mobiles that are members
        (``POST contact/v3/users/batch_get_id``, at most 50 a call); a mobile that is not, is absent."""
        found: dict[str, str] = {}
        for i in range(0, len(mobiles), 50):
            body = await self.call("POST", "/open-apis/contact/v3/users/batch_get_id",
                                   params={"user_id_type": user_id_type}, payload={"mobiles": mobiles[i:i + 50]})
            data = body.get("data") if isinstance(body.get("data"), dict) else {}
            for u in data.get("user_list") or ():
                if isinstance(u, dict) and isinstance(u.get("user_id"), str) and u["user_id"]:
                    found[str(u.get("mobile") or "")] = u["user_id"]
        return found

    async def update_card(self, message_id: str, card: dict) -> dict:
        """Replace an interactive card the bot sent (its config must say ``update_multi``)."""
        payload = {"content": json.dumps(card, ensure_ascii=False)}
        if body_size(payload) > RICH_BODY_MAX:
            raise PermanentDeliveryError("card over Feishu's 30 KB body limit", code="too_large")
        return await self.call("PATCH", f"/open-apis/im/v1/messages/{message_id}", payload=payload)


def body_size(payload: dict) -> int:
    """The request body's size as it goes over the wire (the limits are on the body)."""
    return len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))
