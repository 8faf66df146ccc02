"""Alibaba Cloud SMS (阿里云短信, dysmsapi 2017-05-25 ``SendSms``), RPC style.

Written by hand rather than with Alibaba's SDK: its async client drags in the Tea/Darabonba
runtime (several packages and its own HTTP stack) for one signed POST, and the signature is a
dozen lines. The request (help.aliyun.com "签名机制", RPC API):

* every parameter (the common ones: AccessKeyId, Action, Format, RegionId, SignatureMethod
  HMAC-SHA1, SignatureNonce, SignatureVersion 1.0, Timestamp in UTC ISO 8601, Version; and
  SendSms's: PhoneNumbers, SignName, TemplateCode, TemplateParam as a JSON string) is
  percent-encoded (RFC 3986: ``A-Za-z0-9-_.~`` kept, a space is ``%20``), sorted by name and
  joined ``k=v&...`` (the canonicalized query string);
* StringToSign = ``METHOD & percent("/") & percent(canonicalized query string)``;
* Signature = base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign)), sent as one more
  parameter.

The answer is JSON ``{"Code": "OK", "Message", "BizId", "RequestId"}``; anything but ``OK`` is a
failure whose ``Code`` says what kind (``CODES``). Authentication errors come with HTTP 4xx and the
same shape.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

ACTION, VERSION = "SendSms", "2017-05-25"

# Code → (kind, what to do about it). Business codes from the SendSms error-code page; the
# gateway's own (signature, key, nonce, timestamp) from the common error codes.
CODES: dict[str, tuple[str, str]] = {
    "isv.BUSINESS_LIMIT_CONTROL": ("rate", "the number's minute/hour/day flow control (业务限流)"),
    "isv.DAY_LIMIT_CONTROL": ("rate", "the daily limit for this number or account is reached"),
    "Throttling.User": ("rate", "API calls too frequent"),
    "isv.MOBILE_NUMBER_ILLEGAL": ("permanent", "invalid mobile number"),
    "isv.MOBILE_COUNT_OVER_LIMIT": ("permanent", "too many numbers in one request"),
    "isv.SMS_TEMPLATE_ILLEGAL": ("permanent", "template not found or not approved: check [sms] templates"),
    "isv.SMS_SIGNATURE_ILLEGAL": ("permanent", "sign_name not found or not approved"),
    "isv.SMS_SIGN_ILLEGAL": ("permanent", "sign_name not found or not approved"),
    "isv.TEMPLATE_MISSING_PARAMETERS": ("permanent", "template variables missing: check [sms] template_params"),
    "isv.TEMPLATE_PARAMS_ILLEGAL": ("permanent", "template variables do not match the template"),
    "isv.INVALID_JSON_PARAM": ("permanent", "TemplateParam is not valid JSON"),
    "isv.INVALID_PARAMETERS": ("permanent", "invalid parameters"),
    "isv.PARAM_LENGTH_LIMIT": ("permanent", "a template variable is too long"),
    "isv.PARAM_NOT_SUPPORT_URL": ("permanent", "template variables may not contain links"),
    "isv.BLACK_KEY_CONTROL_LIMIT": ("permanent", "the text contains a blocked word"),
    "isv.AMOUNT_NOT_ENOUGH": ("permanent", "account balance insufficient"),
    "isv.OUT_OF_SERVICE": ("permanent", "the account is suspended (balance)"),
    "isv.ACCOUNT_NOT_EXISTS": ("permanent", "account does not exist"),
    "isv.ACCOUNT_ABNORMAL": ("permanent", "account abnormal"),
    "isp.RAM_PERMISSION_DENY": ("permanent", "the AccessKey's RAM user may not send SMS"),
    "SignatureDoesNotMatch": ("permanent", "signature rejected: check [sms] access_key_secret"),
    "IncompleteSignature": ("permanent", "signature rejected"),
    "InvalidAccessKeyId.NotFound": ("permanent", "unknown AccessKey ID: check [sms] access_key_id"),
    "InvalidAccessKeyId.Inactive": ("permanent", "the AccessKey is disabled"),
    "InvalidTimeStamp.Expired": ("permanent", "request timestamp out of range: check the server clock"),
    # a nonce clash is ours to fix by sending again (a new nonce each time)
    "SignatureNonceUsed": ("transient", "signature nonce reused"),
    "isp.SYSTEM_ERROR": ("transient", "provider internal error"),
    "ServiceUnavailable": ("transient", "provider unavailable"),
    "InternalError": ("transient", "provider internal error"),
}


def percent(value: str) -> str:
    """RFC 3986 encoding as the RPC signature wants it (``quote`` with ``~`` left alone)."""
    return quote(value, safe="-_.~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    canonical = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()) if k != "Signature")
    return f"{method.upper()}&{percent('/')}&{percent(canonical)}"


def signature(method: str, params: dict[str, str], access_key_secret: str) -> str:
    digest = hmac.new((access_key_secret + "&").encode("utf-8"), string_to_sign(method, params).encode("utf-8"),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def request_params(*, access_key_id: str, access_key_secret: str, region: str, phone: str, sign_name: str,
                   template_code: str, template_param: dict[str, str], now: datetime,
                   nonce: str | None = None) -> dict[str, str]:
    """The signed form of one SendSms POST."""
    params = {
        "AccessKeyId": access_key_id, "Action": ACTION, "Format": "JSON", "RegionId": region,
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": nonce or uuid.uuid4().hex, "SignatureVersion": "1.0",
        "Timestamp": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": VERSION,
        # a domestic number goes as is (no "+86" needed); Aliyun takes digits only
        "PhoneNumbers": phone.lstrip("+"), "SignName": sign_name, "TemplateCode": template_code,
        "TemplateParam": json.dumps(template_param, ensure_ascii=False, separators=(",", ":")),
    }
    params["Signature"] = signature("POST", params, access_key_secret)
    return params


def outcome(answer: Any) -> tuple[str, str, str] | None:
    """None on success, else (kind, code, explanation)."""
    if not isinstance(answer, dict) or "Code" not in answer:
        return ("transient", "no_code", "answer without a Code")
    code = str(answer.get("Code"))
    if code == "OK":
        return None
    kind, why = CODES.get(code, ("transient", str(answer.get("Message") or "unknown error")[:200]))
    return kind, code, why


def rate_wait(code: str, message: str) -> float:
    """How long a flow-control refusal asks us to wait: the message names the window
    ("触发分钟级流控" / "小时级" / "天级"); a daily limit waits a few hours, not a day, so a
    message still goes the same day once an hour's window opens again."""
    if "分钟" in message or "minute" in message.lower() or code == "Throttling.User":
        return 60.0
    if "小时" in message or "hour" in message.lower():
        return 3600.0
    return 4 * 3600.0
