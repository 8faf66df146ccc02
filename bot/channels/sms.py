"""Customer SMS through an SMS provider: Alibaba Cloud (``sms_aliyun``), Tencent Cloud
(``sms_tencent``), or a relay of your own speaking this bot's "generic" protocol.

Every provider sends pre-approved templates (模板) with variables under an approved signature
(签名). ``[sms] provider`` picks one; this module does what they share (the number check, the
template by message kind, the HTTP call, turning an answer into a ``DeliveryError`` the outbox
understands: permanent → dead-lettered and shown on /healthz, rate → retried after the wait the
provider's limit implies, anything else → retried with backoff). The secrets (AccessKey secret,
SecretKey, app_key) sign requests and are never logged or put into an error.

The generic relay's request:

    POST {api_base}/sms/send
    Content-Type: application/json
    X-App-Id: <app_id>
    X-Signature: hex(HMAC-SHA256(app_key, raw body bytes))

    {"app_id": ..., "timestamp": <unix seconds>, "nonce": ..., "phone": "138...",
     "sign_name": ..., "template_id": ..., "params": {...}}

answered ``{"errcode": 0, "errmsg": "ok", "msg_id": ...}``; errcodes map to the outbox's failure
kinds in ``ERRCODES`` (unknown codes are retried).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp

from bot.channels import sms_aliyun, sms_tencent
from bot.channels.errors import (DeliveryError, PermanentDeliveryError, RateLimitedError,
                                 TransientDeliveryError)
from bot.clock import Clock
from bot.core.channel import Capabilities
from bot.core.messages import IncomingMessage, OutgoingMessage

# errcode → (kind, explanation)
ERRCODES = {
    1001: ("permanent", "signature rejected: check [sms] app_key"),
    1002: ("permanent", "unknown app_id: check [sms] app_id"),
    1003: ("permanent", "request timestamp out of range: check the server clock"),
    2001: ("permanent", "invalid phone number"),
    2002: ("permanent", "template not found or not approved: check [sms] templates"),
    2003: ("permanent", "signature name (sign_name) not approved"),
    2004: ("permanent", "template parameters do not match the template"),
    2005: ("permanent", "the number is on the provider's block list (unsubscribed)"),
    3001: ("rate", "too many messages to this number; try later"),
    3002: ("rate", "the account's daily quota is used up"),
    4001: ("permanent", "account balance insufficient"),
    5000: ("transient", "provider internal error"),
}
PHONE = re.compile(r"^\+?\d{6,15}$")


def sign(app_key: str, body: bytes) -> str:
    return hmac.new(app_key.encode("utf-8"), body, hashlib.sha256).hexdigest()


class SmsChannel:
    platform = "sms"
    capabilities = Capabilities(targets=frozenset({"sms"}))   # send-only, to customer contacts

    def __init__(self, config, *, clock=None, session_factory=aiohttp.ClientSession):
        # the providers sign with the current time: the injected clock, the system's by default
        self.config, self.clock, self.session_factory = config, clock or Clock(), session_factory

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        raise NotImplementedError("SMS is send-only")

    def _now(self) -> datetime:
        return self.clock.now()

    def _template(self, out: OutgoingMessage) -> tuple[str, str]:
        kind = out.extra.get("sms_template", "")
        template_id = self.config.templates.get(kind, "")
        if not template_id:
            raise PermanentDeliveryError(f"no SMS template configured for {kind!r} ([sms] templates)",
                                         code="template")
        return kind, template_id

    def _params(self, out: OutgoingMessage) -> dict[str, str]:
        return {k: str(v) for k, v in (out.extra.get("sms_params") or {}).items()}

    def _variables(self, out: OutgoingMessage, kind: str) -> tuple[list[str] | None, dict[str, str]]:
        """The configured variable names of the kind's template (None: not configured) and the
        message's values. A configured name the message lacks is refused here: a customer must
        not get a reminder with a blank amount."""
        params = self._params(out)
        names = self.config.template_params.get(kind)
        if names:
            missing = [n for n in names if n not in params]
            if missing:
                raise PermanentDeliveryError(f"the message has no value for template variable(s) {missing}",
                                             code="template_params")
        return (list(names) if names else None), params

    def payload(self, out: OutgoingMessage) -> dict:
        cfg = self.config
        _, template_id = self._template(out)
        return {"app_id": cfg.app_id, "timestamp": int(self._now().timestamp()), "nonce": uuid.uuid4().hex,
                "phone": out.target, "sign_name": cfg.sign_name, "template_id": template_id,
                "params": self._params(out)}

    async def deliver(self, out: OutgoingMessage) -> None:
        if not PHONE.match(out.target or ""):
            raise PermanentDeliveryError("not a phone number", code="phone")
        kind = self.config.kind
        if kind == "aliyun":
            await self._aliyun(out)
        elif kind == "tencent":
            await self._tencent(out)
        else:
            await self._generic(out)

    async def _post(self, url: str, *, data, headers: dict[str, str] | None = None) -> tuple[int, str, str | None]:
        """One POST; (status, body text, Retry-After). Network trouble is transient, and its text
        (which may hold the URL) is not passed on."""
        try:
            async with self.session_factory(timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds)) as http:
                async with http.post(url, data=data, headers=headers) as resp:
                    return resp.status, await resp.text(), resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise TransientDeliveryError(f"SMS provider unreachable: {type(e).__name__}", code="network") from None

    # -- Alibaba Cloud ---------------------------------------------------------------------
    async def _aliyun(self, out: OutgoingMessage) -> None:
        cfg = self.config
        kind, template = self._template(out)
        names, params = self._variables(out, kind)
        variables = {n: params[n] for n in names} if names else params
        form = sms_aliyun.request_params(
            access_key_id=cfg.access_key_id, access_key_secret=cfg.access_key_secret, region=cfg.region_name,
            phone=out.target, sign_name=cfg.sign_name, template_code=template, template_param=variables,
            now=self._now())
        status, text, _ = await self._post(cfg.endpoint + "/", data=form)
        if status >= 500:
            raise TransientDeliveryError(f"Aliyun SMS answered HTTP {status}", code=status)
        answer = _json(text)
        failed = sms_aliyun.outcome(answer)
        if failed is None:
            return
        kind_, code, why = failed
        message = str(answer.get("Message") or "") if isinstance(answer, dict) else ""
        raise _error(kind_, f"Aliyun SMS {code}: {why}", code,
                     sms_aliyun.rate_wait(code, message) if kind_ == "rate" else None)

    # -- Tencent Cloud ---------------------------------------------------------------------
    async def _tencent(self, out: OutgoingMessage) -> None:
        cfg = self.config
        kind, template = self._template(out)
        names, params = self._variables(out, kind)
        if not names:
            raise PermanentDeliveryError(f"no [sms] template_params.{kind}: Tencent fills templates by position",
                                         code="template_params")
        host = urlsplit(cfg.endpoint).netloc
        headers, body = sms_tencent.request(
            secret_id=cfg.access_key_id, secret_key=cfg.access_key_secret, sdk_app_id=cfg.sdk_app_id,
            region=cfg.region_name, host=host, phone=out.target, sign_name=cfg.sign_name, template_id=template,
            params=[params[n] for n in names], timestamp=int(self._now().timestamp()))
        status, text, _ = await self._post(cfg.endpoint + "/", data=body, headers=headers)
        if status >= 500:
            raise TransientDeliveryError(f"Tencent SMS answered HTTP {status}", code=status)
        failed = sms_tencent.outcome(_json(text))
        if failed is None:
            return
        kind_, code, why = failed
        raise _error(kind_, f"Tencent SMS {code}: {why}", code,
                     sms_tencent.rate_wait(code) if kind_ == "rate" else None)

    # -- the generic relay -------------------------------------------------------------------
    async def _generic(self, out: OutgoingMessage) -> None:
        body = json.dumps(self.payload(out), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "X-App-Id": self.config.app_id,
                   "X-Signature": sign(self.config.app_key, body)}
        status, text, retry_after = await self._post(self.config.endpoint + "/sms/send", data=body, headers=headers)
        if status == 429:
            raise RateLimitedError("SMS gateway throttled (HTTP 429)", code=429,
                                   retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None)
        if status in (401, 403):
            raise PermanentDeliveryError(f"SMS gateway refused our credentials (HTTP {status})", code=status)
        if status >= 500:
            raise TransientDeliveryError(f"SMS gateway error (HTTP {status})", code=status)
        try:
            answer = json.loads(text)
            errcode = int(answer.get("errcode", -1))
        except (ValueError, TypeError, AttributeError):
            raise TransientDeliveryError(f"SMS gateway answered HTTP {status} with no JSON", code=status) from None
        if errcode == 0:
            return
        raise error_for(errcode, str(answer.get("errmsg", "")), answer.get("retry_after"))


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None     # a proxy's error page: the outcome functions call it transient


def _error(kind: str, reason: str, code: str, retry_after: float | None) -> DeliveryError:
    if kind == "permanent":
        return PermanentDeliveryError(reason, code=code)
    if kind == "rate":
        return RateLimitedError(reason, code=code, retry_after=retry_after)
    return TransientDeliveryError(reason, code=code)


def error_for(errcode: int, errmsg: str = "", retry_after=None) -> DeliveryError:
    kind, why = ERRCODES.get(errcode, ("transient", "unknown error"))
    reason = f"SMS errcode {errcode}: {why}" + (f" ({errmsg})" if errmsg else "")
    if kind == "permanent":
        return PermanentDeliveryError(reason, code=errcode)
    if kind == "rate":
        wait = float(retry_after) if isinstance(retry_after, (int, float)) else (3600.0 if errcode == 3002 else 60.0)
        return RateLimitedError(reason, code=errcode, retry_after=wait)
    return TransientDeliveryError(reason, code=errcode)
