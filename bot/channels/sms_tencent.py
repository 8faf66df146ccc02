"""Tencent Cloud SMS (腾讯云短信, API 3.0 ``SendSms``, version 2021-01-11), TC3-HMAC-SHA256.

Written by hand rather than with ``tencentcloud-sdk-python``: the SDK is synchronous (it
blocks on ``requests``), and the signature is short. The request (cloud.tencent.com API 3.0
"签名方法 v3"):

* ``POST https://sms.tencentcloudapi.com/`` with a JSON body and headers Content-Type
  ``application/json; charset=utf-8``, Host, X-TC-Action ``SendSms``, X-TC-Version
  ``2021-01-11``, X-TC-Timestamp (Unix seconds; within 5 minutes of Tencent's clock),
  X-TC-Region;
* CanonicalRequest = ``POST \\n / \\n (empty query) \\n content-type:...\\nhost:...\\n \\n
  content-type;host \\n hex(sha256(body))``;
* StringToSign = ``TC3-HMAC-SHA256 \\n timestamp \\n <UTC date>/sms/tc3_request \\n
  hex(sha256(CanonicalRequest))``;
* key = HMAC chain ``"TC3" + SecretKey`` → date → ``sms`` → ``tc3_request``; Signature =
  hex(HMAC-SHA256(key, StringToSign));
* ``Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/tc3_request,
  SignedHeaders=content-type;host, Signature=<hex>``.

The answer is always HTTP 200: ``{"Response": {"Error": {"Code", "Message"}}}`` when the call
failed as a whole (authentication, parameters), else ``SendStatusSet`` with a ``Code`` per number
(``Ok``, or why that number was not sent).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any

SERVICE, ACTION, VERSION = "sms", "SendSms", "2021-01-11"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"

# Code → (kind, explanation), from SendSms's error codes and the common ones.
CODES: dict[str, tuple[str, str]] = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": ("rate", "one message to this number per 30 seconds"),
    "LimitExceeded.PhoneNumberOneHourLimit": ("rate", "this number's hourly limit is reached"),
    "LimitExceeded.PhoneNumberDailyLimit": ("rate", "this number's daily limit is reached"),
    "LimitExceeded.PhoneNumberSameContentDailyLimit": ("rate", "the same text to this number, too often today"),
    "LimitExceeded.DailyLimit": ("rate", "the account's daily limit is reached"),
    "LimitExceeded.DeliveryFrequencyLimit": ("rate", "sending too often"),
    "RequestLimitExceeded": ("rate", "API calls too frequent"),
    "InvalidParameterValue.IncorrectPhoneNumber": ("permanent", "invalid mobile number"),
    "FailedOperation.PhoneNumberInBlacklist": ("permanent", "the number unsubscribed (on the block list)"),
    "FailedOperation.TemplateIncorrectOrUnapproved": ("permanent", "template not found or not approved: check [sms] templates"),
    "FailedOperation.SignatureIncorrectOrUnapproved": ("permanent", "sign_name not found or not approved"),
    "FailedOperation.MissingSignature": ("permanent", "sign_name missing"),
    "FailedOperation.InsufficientBalanceInSmsPackage": ("permanent", "SMS package balance insufficient"),
    "FailedOperation.ContainSensitiveWord": ("permanent", "the text contains a blocked word"),
    "InvalidParameterValue.TemplateParameterFormatError": ("permanent", "template variables do not match: check [sms] template_params"),
    "InvalidParameterValue.TemplateParameterLengthLimit": ("permanent", "a template variable is too long"),
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter": ("permanent", "template variables may not contain links"),
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": ("permanent", "SmsSdkAppId not valid for this key: check [sms] sdk_app_id"),
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber": ("permanent", "domestic and international numbers mixed"),
    "AuthFailure.SignatureFailure": ("permanent", "signature rejected: check [sms] access_key_secret"),
    "AuthFailure.SecretIdNotFound": ("permanent", "unknown SecretId: check [sms] access_key_id"),
    "AuthFailure.InvalidSecretId": ("permanent", "not an API key"),
    "AuthFailure.SignatureExpire": ("permanent", "request timestamp out of range: check the server clock"),
    "AuthFailure.UnauthorizedOperation": ("permanent", "the key may not send SMS"),
    "InternalError": ("transient", "provider internal error"),
}
RATE_WAIT = {"LimitExceeded.PhoneNumberThirtySecondLimit": 30.0, "RequestLimitExceeded": 1.0,
             "LimitExceeded.DeliveryFrequencyLimit": 60.0, "LimitExceeded.PhoneNumberOneHourLimit": 3600.0}
DAILY_WAIT = 4 * 3600.0     # a daily limit: try again later today, then tomorrow (the outbox's attempts)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    # the UTC date, not the local one: a request at 00:30 in Beijing is still yesterday's scope
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


def canonical_request(body: bytes, host: str, content_type: str = CONTENT_TYPE,
                      signed_headers: str = "content-type;host") -> str:
    headers = {"content-type": content_type.strip().lower(), "host": host.strip().lower()}
    names = signed_headers.split(";")
    canonical_headers = "".join(f"{n}:{headers[n]}\n" for n in names)
    return "\n".join(["POST", "/", "", canonical_headers, signed_headers, hashlib.sha256(body).hexdigest()])


def signature(secret_key: str, timestamp: int, canonical: str, service: str = SERVICE) -> str:
    date = utc_date(timestamp)
    to_sign = "\n".join([ALGORITHM, str(timestamp), f"{date}/{service}/tc3_request",
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def phone_e164(phone: str) -> str:
    """Tencent wants E.164: a mainland mobile without a prefix gets +86."""
    digits = phone.strip()
    if digits.startswith("+"):
        return digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return "+86" + digits
    return "+" + digits


def request(*, secret_id: str, secret_key: str, sdk_app_id: str, region: str, host: str, phone: str,
            sign_name: str, template_id: str, params: list[str], timestamp: int) -> tuple[dict[str, str], bytes]:
    """(headers, body) of one signed SendSms POST."""
    body = json.dumps({"PhoneNumberSet": [phone_e164(phone)], "SmsSdkAppId": sdk_app_id, "SignName": sign_name,
                       "TemplateId": template_id, "TemplateParamSet": params},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    sig = signature(secret_key, timestamp, canonical_request(body, host))
    auth = (f"{ALGORITHM} Credential={secret_id}/{utc_date(timestamp)}/{SERVICE}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={sig}")
    headers = {"Authorization": auth, "Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": ACTION,
               "X-TC-Version": VERSION, "X-TC-Timestamp": str(timestamp), "X-TC-Region": region}
    return headers, body


def outcome(answer: Any) -> tuple[str, str, str] | None:
    """None when the one number was sent, else (kind, code, explanation)."""
    resp = answer.get("Response") if isinstance(answer, dict) else None
    if not isinstance(resp, dict):
        return ("transient", "no_response", "answer without a Response")
    error = resp.get("Error")
    if isinstance(error, dict):
        return _classify(str(error.get("Code") or ""), str(error.get("Message") or ""))
    statuses = resp.get("SendStatusSet")
    if not isinstance(statuses, list) or not statuses or not isinstance(statuses[0], dict):
        return ("transient", "no_status", "answer without a SendStatusSet")
    code = str(statuses[0].get("Code") or "")
    return None if code == "Ok" else _classify(code, str(statuses[0].get("Message") or ""))


def _classify(code: str, message: str) -> tuple[str, str, str]:
    if code in CODES:
        kind, why = CODES[code]
    elif code.startswith("InternalError"):
        kind, why = "transient", "provider internal error"
    elif code.startswith("AuthFailure"):
        kind, why = "permanent", "authentication failed: check [sms] access_key_id / access_key_secret"
    else:
        kind, why = "transient", message[:200] or "unknown error"
    return kind, code, why


def rate_wait(code: str) -> float:
    return RATE_WAIT.get(code, DAILY_WAIT)
