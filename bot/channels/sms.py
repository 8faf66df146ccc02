"""Customer SMS through an SMS provider's HTTP API.

Shaped like the common Chinese SMS gateways: messages are pre-approved templates (模板) with
parameters, sent under an approved signature (签名). The request:

    POST {api_base}/sms/send
    Content-Type: application/json
    X-App-Id: <app_id>
    X-Signature: hex(HMAC-SHA256(app_key, raw body bytes))

    {"app_id": ..., "timestamp": <unix seconds>, "nonce": ..., "phone": "138...",
     "sign_name": ..., "template_id": ..., "params": {...}}

The answer ``{"errcode": 0, "errmsg": "ok", "msg_id": ...}``; errcodes map to the outbox's
failure kinds in ``ERRCODES`` (unknown codes are retried).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid

import aiohttp

from bot.channels.errors import (DeliveryError, PermanentDeliveryError, RateLimitedError,
                                 TransientDeliveryError)
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
        self.config, self.clock, self.session_factory = config, clock, session_factory

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        raise NotImplementedError("SMS is send-only")

    def payload(self, out: OutgoingMessage) -> dict:
        cfg = self.config
        kind = out.extra.get("sms_template", "")
        template_id = cfg.templates.get(kind, "")
        if not template_id:
            raise PermanentDeliveryError(f"no SMS template configured for {kind!r} ([sms] templates)",
                                         code="template")
        now = self.clock.now().timestamp() if self.clock is not None else time.time()
        return {"app_id": cfg.app_id, "timestamp": int(now), "nonce": uuid.uuid4().hex, "phone": out.target,
                "sign_name": cfg.sign_name, "template_id": template_id,
                "params": {k: str(v) for k, v in (out.extra.get("sms_params") or {}).items()}}

    async def deliver(self, out: OutgoingMessage) -> None:
        if not PHONE.match(out.target or ""):
            raise PermanentDeliveryError(f"not a phone number: {out.target!r}", code=2001)
        body = json.dumps(self.payload(out), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "X-App-Id": self.config.app_id,
                   "X-Signature": sign(self.config.app_key, body)}
        url = self.config.api_base.rstrip("/") + "/sms/send"
        try:
            async with self.session_factory(timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds)) as http:
                async with http.post(url, data=body, headers=headers) as resp:
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise TransientDeliveryError(f"SMS gateway unreachable: {type(e).__name__}", code="network") from None
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


def error_for(errcode: int, errmsg: str = "", retry_after=None) -> DeliveryError:
    kind, why = ERRCODES.get(errcode, ("transient", "unknown error"))
    reason = f"SMS errcode {errcode}: {why}" + (f" ({errmsg})" if errmsg else "")
    if kind == "permanent":
        return PermanentDeliveryError(reason, code=errcode)
    if kind == "rate":
        wait = float(retry_after) if isinstance(retry_after, (int, float)) else (3600.0 if errcode == 3002 else 60.0)
        return RateLimitedError(reason, code=errcode, retry_after=wait)
    return TransientDeliveryError(reason, code=errcode)
