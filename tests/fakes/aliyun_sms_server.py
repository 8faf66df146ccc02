"""A fake Alibaba Cloud SMS endpoint (dysmsapi ``SendSms``) on loopback.

It checks what the real one checks, from the documents, and refuses the same way: the RPC
signature (recomputed over every parameter but ``Signature``, with the AccessKey secret + "&";
HTTP 400 ``SignatureDoesNotMatch``), the AccessKey ID, the timestamp (15 minutes either way:
``InvalidTimeStamp.Expired``), a nonce used twice (``SignatureNonceUsed``), then the business
rules: an approved sign name and template, the template's variables exactly (TemplateParam
JSON), a valid number, and per-number flow control (``isv.BUSINESS_LIMIT_CONTROL``).

    async with FakeAliyunSms(keys={"LTAI-id": "secret"}, templates={"SMS_1": {"customer", "days"}}) as fake:
        ... fake.sent[-1] ...
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Callable

from urllib.parse import quote_plus

from aiohttp import web

TIMESTAMP_WINDOW = 15 * 60
MOBILE = re.compile(r"^(?:\+?86|0086)?1\d{10}$")
COMMON = ("AccessKeyId", "Action", "Format", "RegionId", "SignatureMethod", "SignatureNonce", "SignatureVersion",
          "Timestamp", "Version", "Signature")


def signature(method: str, params: dict[str, str], secret: str) -> str:
    """The documented recipe, written apart from the bot's: form-encode, then "+" → %20,
    "*" → %2A, "%7E" → "~"; sort; sign ``METHOD&%2F&<encoded query>`` with the secret + "&"."""
    def enc(v: str) -> str:
        return quote_plus(v, encoding="utf-8").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")
    query = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params) if k != "Signature")
    to_sign = f"{method}&{enc('/')}&{enc(query)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


class FakeAliyunSms:
    def __init__(self, *, keys: dict[str, str], sign_names: set[str] = frozenset({"示例公司"}),
                 templates: dict[str, set[str]] | None = None, per_minute: int = 1,
                 clock: Callable[[], float] = time.time):
        self.keys, self.sign_names = dict(keys), set(sign_names)
        self.templates = dict(templates or {})
        self.per_minute = per_minute          # the default flow control: 1 a minute per number
        self.clock = clock
        self.sent: list[dict[str, str]] = []
        self.refused: list[str] = []          # the Code of every refusal, in order
        self.nonces: set[str] = set()
        self._per_number: dict[str, list[float]] = defaultdict(list)
        self.next_code: str | None = None     # answer the next valid request with this Code
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> "FakeAliyunSms":
        app = web.Application()
        app.router.add_route("*", "/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)   # query strings carry signatures
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refuse(self, code: str, message: str, status: int = 200) -> web.Response:
        self.refused.append(code)
        return web.json_response({"Code": code, "Message": message, "RequestId": "fake-req"}, status=status)

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update(dict(await request.post()))
        params = {k: str(v) for k, v in params.items()}
        missing = [k for k in COMMON if not params.get(k)]
        if missing:
            return self._refuse("MissingParameter", f"missing {missing[0]}", 400)
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            return self._refuse("InvalidParameter", "unsupported signature method", 400)
        secret = self.keys.get(params["AccessKeyId"])
        if secret is None:
            return self._refuse("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        expected = signature(request.method, params, secret)
        if not hmac.compare_digest(params["Signature"], expected):
            return self._refuse("SignatureDoesNotMatch", "Specified signature is not matched with our calculation.", 400)
        try:
            ts = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            return self._refuse("InvalidTimeStamp.Format", "Specified time stamp is not valid.", 400)
        if abs(self.clock() - ts) > TIMESTAMP_WINDOW:
            return self._refuse("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400)
        if params["SignatureNonce"] in self.nonces:
            return self._refuse("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        self.nonces.add(params["SignatureNonce"])
        if params["Action"] != "SendSms" or params["Version"] != "2017-05-25":
            return self._refuse("InvalidAction.NotFound", "unknown action", 404)
        if self.next_code:
            code, self.next_code = self.next_code, None
            return self._refuse(code, f"fake {code}")
        if not MOBILE.match(params.get("PhoneNumbers", "")):
            return self._refuse("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if params.get("SignName") not in self.sign_names:
            return self._refuse("isv.SMS_SIGNATURE_ILLEGAL", "签名不合法")
        variables = self.templates.get(params.get("TemplateCode", ""))
        if variables is None:
            return self._refuse("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法")
        try:
            given = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return self._refuse("isv.INVALID_JSON_PARAM", "JSON参数不合法")
        if not isinstance(given, dict) or set(given) != set(variables):
            return self._refuse("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值")
        window = self._per_number[params["PhoneNumbers"]]
        now = self.clock()
        window[:] = [t for t in window if t > now - 60]
        if len(window) >= self.per_minute:
            return self._refuse("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
        window.append(now)
        self.sent.append(params)
        return web.json_response({"Code": "OK", "Message": "OK", "BizId": f"biz-{len(self.sent)}",
                                  "RequestId": "fake-req"})
