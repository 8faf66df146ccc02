"""DingTalk send API: robot 1:1 and group messages, session webhooks and custom group robots.

Two API families with different error styles are hidden behind the ``DeliveryError`` hierarchy:

* the new API (``api.dingtalk.com/v1.0``) answers HTTP 4xx/5xx with ``{code, message}``;
* the old oapi (custom robots, session webhooks) answers HTTP 200 with ``{errcode, errmsg}``.

Secrets (app secret, access token, robot webhook token and secret) never appear in exception
text: webhook URLs carry the token in the query string and aiohttp error strings include URLs, so
every reason is built here from known-safe parts and then redacted once more.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp

from bot.channels.dingtalk_crypto import custom_robot_url
from bot.channels.errors import (DeliveryError, PermanentDeliveryError, RateLimitedError,
                                 TransientDeliveryError)
from bot.channels.tokens import TokenCache
from bot.core.messages import OutgoingMessage

MAX_BATCH_USERS = 20          # oToMessages/batchSend limit
ROBOT_THROTTLE_SECONDS = 600  # a custom robot over 20 msg/min is muted for 10 minutes
IMAGE_MAX = 20 * 1024 * 1024   # media/upload type=image: jpg, gif, png, bmp up to 20 MB (docs/dingtalk.md)
MEDIA_CACHE_SIZE = 64
USER_NOT_FOUND = 60121                 # topapi/v2/user/getbymobile: no member with this mobile
OAPI_TOKEN_ERRCODES = {40014, 42001}   # invalid / expired access_token on the oapi: fetch again once


def image_kind(image: bytes) -> str | None:
    """The picture's format by its own signature: what media/upload takes as an image."""
    for sig, kind in ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"), (b"BM", "bmp")):
        if image.startswith(sig):
            return kind
    return None


class DingTalkAPI:
    """Async client for the DingTalk send endpoints. One instance per app (robot)."""

    def __init__(self, session: aiohttp.ClientSession, api_base: str = "https://api.dingtalk.com",
                 oapi_base: str = "https://oapi.dingtalk.com", *, app_key: str, app_secret: str,
                 robot_code: str, clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 timeout: float = 10.0):
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.oapi_base = oapi_base.rstrip("/")
        self.app_key = app_key
        self._app_secret = app_secret
        self.robot_code = robot_code
        self.clock = clock
        self.wall_ms = wall_ms
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._tokens = TokenCache(self._fetch_access_token, lambda: self.clock())
        self._oapi_tokens = TokenCache(self._fetch_oapi_token, lambda: self.clock())
        self._media: dict[str, str] = {}       # sha256 of a picture → its media_id
        self.media_uploads = 0

    # ----------------------------------------------------------------------------- helpers
    def _redact(self, text: str, hide: tuple[str, ...] = ()) -> str:
        for s in (self._app_secret, self._tokens.current, self._oapi_tokens.current, *hide):
            if s and len(s) >= 4:
                text = text.replace(s, "***")
        return text

    def _err(self, cls: type[DeliveryError], reason: str, *, hide: tuple[str, ...] = (), **kw: Any) -> DeliveryError:
        """Build the error with every known secret masked (``hide``: this call's own secrets)."""
        return cls(self._redact(reason, hide), **kw)

    async def _post(self, url: str, payload: dict | None, headers: dict | None = None, *,
                    form: aiohttp.FormData | None = None, method: str = "POST") -> tuple[int, dict, dict]:
        """POST JSON (or a multipart ``form``); map transport failures to TransientDeliveryError.
        Returns status, body, headers."""
        # JSON as UTF-8, not \u-escaped: DingTalk counts the body's bytes (20,000 at most), and an
        # escaped CJK character costs 6 of them instead of 3
        body_arg: dict = ({"data": form} if form is not None else
                          {"data": json.dumps(payload, ensure_ascii=False).encode("utf-8")}
                          if payload is not None else {})
        if payload is not None and form is None:
            headers = {**(headers or {}), "Content-Type": "application/json"}
        try:
            async with self.session.request(method, url, headers=headers, timeout=self.timeout, **body_arg) as resp:
                raw = await resp.read()
                try:
                    body = json.loads(raw) if raw else {}
                except (UnicodeDecodeError, json.JSONDecodeError):
                    body = {"_raw": raw[:200].decode("utf-8", "replace")}
                if not isinstance(body, dict):
                    body = {"_raw": str(body)[:200]}
                return resp.status, body, dict(resp.headers)
        except asyncio.TimeoutError:
            raise self._err(TransientDeliveryError, "DingTalk request timed out", code="timeout") from None
        except aiohttp.ClientError as exc:
            # str(exc) may contain the URL (and so the webhook token): only the class name is safe
            raise self._err(TransientDeliveryError, f"DingTalk connection error: {type(exc).__name__}",
                            code="connection") from None

    # ----------------------------------------------------------------------------- token
    @property
    def token_fetches(self) -> int:
        return self._tokens.fetches + self._oapi_tokens.fetches

    async def access_token(self) -> str:
        """The cached app access token (bot/channels/tokens.py)."""
        return await self._tokens.get()

    async def _fetch_access_token(self) -> tuple[str, float]:
        status, body, _ = await self._post(f"{self.api_base}/v1.0/oauth2/accessToken",
                                           {"appKey": self.app_key, "appSecret": self._app_secret})
        if status >= 500:
            raise self._err(TransientDeliveryError, f"token endpoint HTTP {status}", code=status)
        if status == 429 or "Throttling" in str(body.get("code", "")):
            raise self._err(RateLimitedError, f"token endpoint throttled: HTTP {status}", code=status)
        token = body.get("accessToken")
        if status != 200 or not token:
            # wrong appKey/appSecret will not fix itself: dead-letter, and say so loudly
            raise self._err(PermanentDeliveryError,
                            f"token request rejected: HTTP {status} {body.get('code', '')}",
                            code=body.get("code") or status)
        return token, float(body.get("expireIn", 7200))

    async def oapi_token(self) -> str:
        """The app's access_token for the old oapi (media/upload): ``GET /gettoken?appkey&appsecret``,
        the call its documentation names (docs/dingtalk.md). Cached like the new API's token."""
        return await self._oapi_tokens.get()

    async def _fetch_oapi_token(self) -> tuple[str, float]:
        status, body, _ = await self._get(f"{self.oapi_base}/gettoken",
                                          {"appkey": self.app_key, "appsecret": self._app_secret})
        body = self._check_errcode(status, body, "oapi gettoken")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise self._err(TransientDeliveryError, "oapi gettoken returned no access_token", code="no-token")
        return token, float(body.get("expires_in") or 7200)

    async def _get(self, url: str, params: dict) -> tuple[int, dict, dict]:
        try:
            async with self.session.get(url, params=params, timeout=self.timeout) as resp:
                raw = await resp.read()
                try:
                    body = json.loads(raw) if raw else {}
                except (UnicodeDecodeError, json.JSONDecodeError):
                    body = {}
                return resp.status, body if isinstance(body, dict) else {}, dict(resp.headers)
        except asyncio.TimeoutError:
            raise self._err(TransientDeliveryError, "DingTalk request timed out", code="timeout") from None
        except aiohttp.ClientError as exc:       # the URL holds the app secret: the class name only
            raise self._err(TransientDeliveryError, f"DingTalk connection error: {type(exc).__name__}",
                            code="connection") from None

    async def upload_image(self, image: bytes) -> str:
        """A media_id for ``image`` (``POST oapi /media/upload?type=image``, multipart ``media``).
        A media_id can be used again and again: a picture sent twice is uploaded once."""
        kind = image_kind(image)
        if kind is None:
            raise self._err(PermanentDeliveryError, "image is not JPG/PNG/GIF/BMP", code="bad_image")
        if len(image) > IMAGE_MAX:
            raise self._err(PermanentDeliveryError, f"image over {IMAGE_MAX // 1024 // 1024} MB", code="too_large")
        digest = hashlib.sha256(image).hexdigest()
        if (media_id := self._media.get(digest)) is not None:
            return media_id
        for attempt in (0, 1):
            token = await self.oapi_token()
            form = aiohttp.FormData()
            form.add_field("media", image, filename=f"chart-{digest[:12]}.{kind}", content_type=f"image/{kind}")
            status, body, _ = await self._post(f"{self.oapi_base}/media/upload?"
                                               + urlencode({"access_token": token, "type": "image"}), None, form=form)
            if status == 200 and body.get("errcode") in OAPI_TOKEN_ERRCODES and attempt == 0:
                self._oapi_tokens.drop(token)     # refreshed once, whoever saw it first
                continue
            body = self._check_errcode(status, body, "media upload", hide=(token,))
            media_id = body.get("media_id")
            if not isinstance(media_id, str) or not media_id:
                raise self._err(TransientDeliveryError, "media upload returned no media_id", code="no-media-id")
            self.media_uploads += 1
            self._media[digest] = media_id
            if len(self._media) > MEDIA_CACHE_SIZE:
                self._media.pop(next(iter(self._media)))
            return media_id
        raise AssertionError("unreachable")

    async def _api_call(self, path: str, payload: dict, method: str = "POST") -> dict:
        """POST (or ``method``) to the new API with the token header; refresh once on 401/403 and retry."""
        for attempt in (0, 1):
            token = await self.access_token()
            status, body, headers = await self._post(
                f"{self.api_base}{path}", payload, headers={"x-acs-dingtalk-access-token": token}, method=method)
            if 200 <= status < 300:
                return body
            code = str(body.get("code") or "")
            if status in (401, 403) and attempt == 0 and "Throttling" not in code:
                self._tokens.drop(token)
                continue
            self._raise_api_error(status, body, headers)
        raise AssertionError("unreachable")

    def _raise_api_error(self, status: int, body: dict, headers: dict) -> None:
        code = str(body.get("code") or status)
        reason = f"DingTalk API HTTP {status} {code}: {body.get('message', '')}".strip()
        if status == 429 or "Throttling" in code:
            retry = headers.get("Retry-After")
            raise self._err(RateLimitedError, reason, code=code,
                            retry_after=float(retry) if retry and retry.isdigit() else None)
        if status >= 500:
            raise self._err(TransientDeliveryError, reason, code=code)
        raise self._err(PermanentDeliveryError, reason, code=code)

    # ----------------------------------------------------------------------------- senders
    async def send_to_users(self, user_ids: list[str], msg_key: str, msg_param: dict) -> dict:
        """1:1 robot message to up to 20 staff ids. Returns DingTalk's answer (processQueryKey...).

        Raises RateLimitedError / PermanentDeliveryError only when *no* recipient can get it
        (all flow-controlled / all invalid): a partial failure must not make the outbox re-send to
        the recipients who already received the message.
        """
        if not user_ids:
            raise ValueError("user_ids is empty")
        if len(user_ids) > MAX_BATCH_USERS:
            raise ValueError(f"at most {MAX_BATCH_USERS} userIds per batchSend, got {len(user_ids)}")
        body = await self._api_call("/v1.0/robot/oToMessages/batchSend", {
            "robotCode": self.robot_code, "userIds": list(user_ids), "msgKey": msg_key,
            "msgParam": json.dumps(msg_param, ensure_ascii=False)})
        invalid = set(body.get("invalidStaffIdList") or [])
        limited = set(body.get("flowControlledStaffIdList") or [])
        wanted = set(user_ids)
        if wanted <= invalid:
            raise self._err(PermanentDeliveryError, "no valid recipient (invalidStaffIdList)", code="invalidStaffId")
        if wanted <= (limited | invalid):
            raise self._err(RateLimitedError, "all recipients flow-controlled", code="flowControlled")
        return body

    async def send_to_group(self, open_conversation_id: str, msg_key: str, msg_param: dict) -> dict:
        """Robot message to a group the robot is in (openConversationId = robot conversationId)."""
        return await self._api_call("/v1.0/robot/groupMessages/send", {
            "robotCode": self.robot_code, "openConversationId": open_conversation_id,
            "msgKey": msg_key, "msgParam": json.dumps(msg_param, ensure_ascii=False)})

    # ----------------------------------------------------------------------------- people
    async def user_id_by_mobile(self, mobile: str) -> str | None:
        """The member's userId for a mobile number (``POST {oapi}/topapi/v2/user/getbymobile``);
        None when no member has it (errcode 60121). Other refusals raise."""
        for attempt in (0, 1):
            token = await self.oapi_token()
            status, body, _ = await self._post(f"{self.oapi_base}/topapi/v2/user/getbymobile?"
                                               + urlencode({"access_token": token}), {"mobile": mobile})
            if status == 200 and body.get("errcode") in OAPI_TOKEN_ERRCODES and attempt == 0:
                self._oapi_tokens.drop(token)
                continue
            if status == 200 and body.get("errcode") == USER_NOT_FOUND:
                return None
            body = self._check_errcode(status, body, "user getbymobile", hide=(token,))
            result = body.get("result") if isinstance(body.get("result"), dict) else {}
            userid = result.get("userid")
            return userid if isinstance(userid, str) and userid else None
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------------------- cards
    async def deliver_card(self, out_track_id: str, user_id: str, template_id: str, params: dict[str, str], *,
                           callback_route_key: str = "") -> dict:
        """Create a card instance from ``template_id`` and deliver it to the person's chat with
        the robot (``POST /v1.0/card/instances/createAndDeliver``, space ``IM_ROBOT``). Clicks
        come back over the Stream socket, or by HTTP to the route ``callback_route_key`` names.
        Raises PermanentDeliveryError when DingTalk created the card but could not deliver it."""
        payload: dict[str, Any] = {
            "cardTemplateId": template_id, "outTrackId": out_track_id,
            "cardData": {"cardParamMap": params},
            "openSpaceId": f"dtv1.card//IM_ROBOT.{user_id}",
            "imRobotOpenSpaceModel": {"supportForward": False},
            "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": self.robot_code},
            "userIdType": 1,
            "callbackType": "HTTP" if callback_route_key else "STREAM"}
        if callback_route_key:
            payload["callbackRouteKey"] = callback_route_key
        body = await self._api_call("/v1.0/card/instances/createAndDeliver", payload)
        result = body.get("result") if isinstance(body.get("result"), dict) else {}
        failed = [r for r in result.get("deliverResults") or () if isinstance(r, dict) and not r.get("success")]
        if body.get("success") is False or failed:
            reason = str((failed[0] if failed else {}).get("errorMsg") or "not delivered")[:200]
            raise self._err(PermanentDeliveryError, f"card not delivered: {reason}", code="card_deliver")
        return body

    async def update_card(self, out_track_id: str, params: dict[str, str]) -> dict:
        """Replace the named variables of a card already delivered (``PUT /v1.0/card/instances``)."""
        return await self._api_call("/v1.0/card/instances", {
            "outTrackId": out_track_id, "cardData": {"cardParamMap": params},
            "cardUpdateOptions": {"updateCardDataByKey": True}, "userIdType": 1}, method="PUT")

    async def register_card_callback(self, route_key: str, url: str, api_secret: str) -> dict:
        """Point a card callback route at ``url`` (``POST /v1.0/card/callbacks/register``); clicks
        on cards delivered with that route arrive there, signed with ``api_secret``."""
        return await self._api_call("/v1.0/card/callbacks/register", {
            "callbackRouteKey": route_key, "callbackUrl": url, "apiSecret": api_secret, "forceUpdate": True})

    def _check_errcode(self, status: int, body: dict, what: str, hide: tuple[str, ...] = ()) -> dict:
        """oapi style: HTTP 200 is not success, read errcode. ``hide``: secrets of this call."""
        if status == 429:
            raise self._err(RateLimitedError, f"{what} HTTP 429", code=429, retry_after=ROBOT_THROTTLE_SECONDS)
        if status >= 500:
            raise self._err(TransientDeliveryError, f"{what} HTTP {status}", code=status)
        if status != 200:
            raise self._err(PermanentDeliveryError, f"{what} HTTP {status}", code=status)
        if "errcode" not in body:
            raise self._err(TransientDeliveryError, f"{what} answered without errcode", code="no-errcode")
        errcode = body.get("errcode")
        errmsg = str(body.get("errmsg", ""))
        if errcode == 0:
            return body
        reason = self._redact(f"{what} errcode {errcode}: {errmsg}", hide)
        if errcode == 130101 or "send too fast" in errmsg.lower():
            raise self._err(RateLimitedError, reason, code=errcode, retry_after=ROBOT_THROTTLE_SECONDS)
        if errcode == -1:  # "system busy"
            raise self._err(TransientDeliveryError, reason, code=errcode)
        # 310000 (sign not match / invalid timestamp / keywords / IP), 300001 token missing, ...
        raise self._err(PermanentDeliveryError, reason, code=errcode)

    async def send_session_webhook(self, url: str, payload: dict, expires_ms: int | None = None) -> dict:
        """Reply through a message's sessionWebhook (valid ~1 h; after that, use the robot API)."""
        if expires_ms is not None and self.wall_ms() >= int(expires_ms):
            raise self._err(PermanentDeliveryError, "session webhook expired", code="expired")
        hide = (url.split("?", 1)[1],) if "?" in url else ()  # session=... is the credential
        status, body, _ = await self._post(url, payload)
        return self._check_errcode(status, body, "session webhook", hide)

    async def send_custom_robot(self, webhook_url: str, secret: str | None, payload: dict) -> dict:
        """Send to a custom group robot; signs the URL when the robot uses the "sign" security."""
        hide = tuple(x for x in (secret, webhook_url.partition("access_token=")[2].split("&")[0]) if x)
        if secret:
            webhook_url = custom_robot_url(webhook_url, secret, self.wall_ms())
        status, body, _ = await self._post(webhook_url, payload)
        return self._check_errcode(status, body, "custom robot", hide)

    # ----------------------------------------------------------------------------- outbox entry
    @staticmethod
    def _title(msg: OutgoingMessage) -> str:
        if msg.title:
            return msg.title
        first = msg.text.strip().splitlines()[0] if msg.text.strip() else "message"
        return first.lstrip("#").strip()[:32] or "message"

    @classmethod
    def _robot_api_param(cls, msg: OutgoingMessage) -> tuple[str, dict]:
        if "msg_key" in msg.extra:  # e.g. sampleActionCard prepared by a template
            return msg.extra["msg_key"], dict(msg.extra.get("msg_param") or {})
        if msg.format == "markdown":
            return "sampleMarkdown", {"title": cls._title(msg), "text": msg.text}
        return "sampleText", {"content": msg.text}

    @classmethod
    def _webhook_payload(cls, msg: OutgoingMessage) -> dict:
        if "action_card" in msg.extra:
            payload: dict = {"msgtype": "actionCard", "actionCard": dict(msg.extra["action_card"])}
        elif msg.format == "markdown":
            payload = {"msgtype": "markdown", "markdown": {"title": cls._title(msg), "text": msg.text}}
        else:
            payload = {"msgtype": "text", "text": {"content": msg.text}}
        at_ids = msg.extra.get("at_user_ids")
        if at_ids or msg.extra.get("at_all"):
            payload["at"] = {"atUserIds": list(at_ids or []), "isAtAll": bool(msg.extra.get("at_all"))}
        return payload

    async def _image_message(self, msg: OutgoingMessage, title: str) -> OutgoingMessage:
        """An image row as DingTalk shows it, once uploaded: ``sampleImageMsg`` (photoURL = the
        media_id) through the robot API; a markdown picture ``![](media_id)`` through a session
        webhook or custom robot, which take no image message (docs/dingtalk.md)."""
        media_id = await self.upload_image(msg.image_png or b"")
        if msg.target_kind in ("user", "group"):
            return dataclasses.replace(msg, extra={**msg.extra, "msg_key": "sampleImageMsg",
                                                   "msg_param": {"photoURL": media_id}})
        return dataclasses.replace(msg, title=title, format="markdown", text=f"![{title}]({media_id})")

    async def deliver(self, msg: OutgoingMessage, robot_webhooks: dict[str, dict], image_title: str = "") -> None:
        """Send one outbox message; raises a ``DeliveryError`` subclass when it did not go out."""
        if "image_base64" in msg.extra:
            msg = await self._image_message(msg, image_title or "chart")
        kind = msg.target_kind
        if kind == "user":
            key, param = self._robot_api_param(msg)
            await self.send_to_users([msg.target], key, param)
        elif kind == "group":
            key, param = self._robot_api_param(msg)
            await self.send_to_group(msg.target, key, param)
        elif kind == "session":
            await self.send_session_webhook(msg.target, self._webhook_payload(msg),
                                            expires_ms=msg.extra.get("expires_ms"))
        elif kind == "robot":
            conf = robot_webhooks.get(msg.target)
            if not conf or not conf.get("url"):
                raise PermanentDeliveryError(f"no custom robot configured named {msg.target!r}", code="config")
            await self.send_custom_robot(conf["url"], conf.get("secret"), self._webhook_payload(msg))
        else:
            raise PermanentDeliveryError(f"dingtalk cannot deliver target_kind {kind!r}", code="config")
