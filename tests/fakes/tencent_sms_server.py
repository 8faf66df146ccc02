"""A fake Tencent Cloud SMS endpoint (API 3.0 ``SendSms`` 2021-01-11) on loopback.

It checks what the real one checks, from the documents, and answers the same way (always HTTP
200, ``{"Response": {"Error": ...}}`` or a ``SendStatusSet``): the TC3-HMAC-SHA256 signature,
recomputed over the received body and the signed headers (``AuthFailure.SignatureFailure``); the
credential scope (date from X-TC-Timestamp in UTC, service ``sms``); the timestamp within 5
minutes (``AuthFailure.SignatureExpire``); the SecretId (``AuthFailure.SecretIdNotFound``); the
action and version; then the SmsSdkAppId, sign name, template and its number of variables, E.164
numbers, and per-number limits (30 s, daily).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections import defaultdict
from typing import Callable

from datetime import datetime, timezone

from aiohttp import web

ALGORITHM = "TC3-HMAC-SHA256"


def utc_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def expected_signature(secret: str, ts: int, service: str, method: str, signed: list[str],
                       headers: dict[str, str], body: bytes) -> str:
    """The documented recipe, written apart from the bot's."""
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip().lower()}\n" for h in signed)
    canonical = f"{method}\n/\n\n{canonical_headers}\n{';'.join(signed)}\n{hashlib.sha256(body).hexdigest()}"
    date = utc_date(ts)
    to_sign = f"{ALGORITHM}\n{ts}\n{date}/{service}/tc3_request\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    k = hmac.new(f"TC3{secret}".encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    k = hmac.new(k, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()

TIMESTAMP_WINDOW = 5 * 60
E164_CN = re.compile(r"^\+861\d{10}$")
AUTH = re.compile(r"^(?P<alg>\S+) Credential=(?P<id>[^/]+)/(?P<date>[^/]+)/(?P<service>[^/]+)/tc3_request, "
                  r"SignedHeaders=(?P<headers>[a-z;-]+), Signature=(?P<sig>[0-9a-f]{64})$")


class FakeTencentSms:
    def __init__(self, *, keys: dict[str, str], sdk_app_id: str = "1400000001",
                 sign_names: set[str] = frozenset({"示例公司"}), templates: dict[str, int] | None = None,
                 daily_limit: int = 10, clock: Callable[[], float] = time.time):
        self.keys, self.sdk_app_id, self.sign_names = dict(keys), sdk_app_id, set(sign_names)
        self.templates = dict(templates or {})      # template id → how many variables ({1}..{n})
        self.daily_limit = daily_limit
        self.clock = clock
        self.sent: list[dict] = []
        self.refused: list[str] = []
        self._per_number: dict[str, list[float]] = defaultdict(list)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> "FakeTencentSms":
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _error(self, code: str, message: str) -> web.Response:
        self.refused.append(code)
        return web.json_response({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "fake"}})

    def _status(self, phone: str, code: str, message: str) -> web.Response:
        if code != "Ok":
            self.refused.append(code)
        return web.json_response({"Response": {"SendStatusSet": [
            {"SerialNo": "fake-serial", "PhoneNumber": phone, "Fee": 1 if code == "Ok" else 0, "SessionContext": "",
             "Code": code, "Message": message, "IsoCode": "CN"}], "RequestId": "fake"}})

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        m = AUTH.match(request.headers.get("Authorization", ""))
        if m is None or m["alg"] != ALGORITHM:
            return self._error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        try:
            ts = int(request.headers.get("X-TC-Timestamp", ""))
        except ValueError:
            return self._error("MissingParameter", "X-TC-Timestamp")
        if abs(self.clock() - ts) > TIMESTAMP_WINDOW:
            return self._error("AuthFailure.SignatureExpire", "Signature expired.")
        secret = self.keys.get(m["id"])
        if secret is None:
            return self._error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        signed = m["headers"].split(";")
        if "content-type" not in signed or "host" not in signed or set(signed) - {"content-type", "host"}:
            return self._error("AuthFailure.SignatureFailure", "content-type and host must be signed")
        if m["date"] != utc_date(ts) or m["service"] != "sms":
            return self._error("AuthFailure.SignatureFailure", "credential scope does not match the request")
        headers = {"content-type": request.headers.get("Content-Type", ""), "host": request.headers.get("Host", "")}
        if not hmac.compare_digest(m["sig"], expected_signature(secret, ts, m["service"], request.method, signed,
                                                                headers, body)):
            return self._error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        if request.headers.get("X-TC-Action") != "SendSms" or request.headers.get("X-TC-Version") != "2021-01-11":
            return self._error("InvalidAction", "unknown action or version")
        if not request.headers.get("X-TC-Region"):
            return self._error("MissingParameter", "X-TC-Region")
        try:
            data = json.loads(body)
        except ValueError:
            return self._error("InvalidParameter", "body is not JSON")
        if data.get("SmsSdkAppId") != self.sdk_app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify fail")
        if data.get("SignName") not in self.sign_names:
            return self._error("FailedOperation.SignatureIncorrectOrUnapproved", "signature incorrect or unapproved")
        n = self.templates.get(str(data.get("TemplateId")))
        if n is None:
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved", "template incorrect or unapproved")
        params = data.get("TemplateParamSet") or []
        if len(params) != n or not all(isinstance(p, str) for p in params):
            return self._error("InvalidParameterValue.TemplateParameterFormatError", "template parameter format error")
        [phone] = data.get("PhoneNumberSet") or [""]
        if not E164_CN.match(phone):
            return self._status(phone, "InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number")
        now, sends = self.clock(), self._per_number[phone]
        if sends and now - sends[-1] < 30:
            return self._status(phone, "LimitExceeded.PhoneNumberThirtySecondLimit", "30 second limit")
        if len([t for t in sends if now - t < 86400]) >= self.daily_limit:
            return self._status(phone, "LimitExceeded.PhoneNumberDailyLimit", "daily limit")
        sends.append(now)
        self.sent.append(data)
        return self._status(phone, "Ok", "send success")
