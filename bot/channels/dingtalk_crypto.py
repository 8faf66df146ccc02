"""DingTalk signatures, callback encryption and the robot-message parser.

Three separate mechanisms live here because they share nothing but the platform:

* ``robot_sign`` / ``verify_robot_request``: the HMAC-SHA256 header signature DingTalk puts on
  HTTP-mode robot callbacks (headers ``timestamp`` and ``sign``), and the same HMAC used to sign
  custom (send-only) group robot URLs.
* ``DingCallbackCrypto``: the AES scheme of event subscriptions (identical to WeCom's WXBizMsgCrypt,
  with the suite/app key as the trailing "owner key").
* ``incoming_from_robot_payload``: turns a robot message JSON (from HTTP mode or a Stream CALLBACK
  frame, which carry the same body) into the core ``IncomingMessage``.

Nothing here does I/O, so every function is easy to test against the published vectors.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any, Iterable
from urllib.parse import quote_plus

from bot.channels.wecom_crypto import (DECRYPT_AES_ERROR, ILLEGAL_BUFFER, SIGNATURE_ERROR,
                                      VALIDATE_RECEIVEID_ERROR, WeComCrypto, WeComCryptoError)
from bot.core.messages import IncomingMessage, capped

# DingTalk rejects callbacks whose timestamp is more than one hour away from its own clock; we
# apply the same window so a captured request cannot be replayed later.
MAX_CLOCK_SKEW_MS = 60 * 60 * 1000


class DingTalkAuthError(Exception):
    """A request or payload failed authentication; ``reason`` is safe to log (no secrets)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class DingTalkCryptoError(DingTalkAuthError):
    """The encrypted callback body could not be decrypted or failed an integrity check."""


# ---------------------------------------------------------------------------------------------
# HMAC robot signatures
# ---------------------------------------------------------------------------------------------

def robot_sign(secret: str, timestamp_ms: str) -> str:
    """base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)), not URL-encoded."""
    msg = f"{timestamp_ms}\n{secret}".encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_robot_request(headers_timestamp: str | None, headers_sign: str | None,
                         app_secret: str, now_ms: int | None = None) -> None:
    """Check the ``timestamp``/``sign`` headers of an HTTP-mode robot callback.

    Raises ``DingTalkAuthError`` when the timestamp is missing, not an integer, more than an hour
    away from ``now_ms``, or when the sign does not match (compared in constant time).
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    if not headers_timestamp or not headers_sign:
        raise DingTalkAuthError("missing timestamp or sign header")
    ts = headers_timestamp.strip()
    # int() alone would accept "+1", " 1" or "1_000"; demand plain digits as DingTalk sends.
    if not ts.isdigit() or not ts.isascii():
        raise DingTalkAuthError("timestamp is not an integer")
    if abs(int(now_ms) - int(ts)) > MAX_CLOCK_SKEW_MS:
        raise DingTalkAuthError("timestamp outside the 1 hour window")
    expected = robot_sign(app_secret, ts)
    if not hmac.compare_digest(expected.encode("ascii"), headers_sign.strip().encode("utf-8", "replace")):
        raise DingTalkAuthError("sign mismatch")


def custom_robot_url(base_url_with_access_token: str, secret: str, timestamp_ms: str | int) -> str:
    """Append ``timestamp`` and the URL-encoded ``sign`` to a custom robot webhook URL.

    The sign is base64 and contains ``+``, ``/`` and ``=``; it must be percent-encoded exactly once
    or DingTalk answers 310000 "sign not match".
    """
    ts = str(timestamp_ms)
    sep = "&" if "?" in base_url_with_access_token else "?"
    return f"{base_url_with_access_token}{sep}timestamp={ts}&sign={quote_plus(robot_sign(secret, ts))}"


# ---------------------------------------------------------------------------------------------
# Event callback encryption
# ---------------------------------------------------------------------------------------------

_REASONS = {SIGNATURE_ERROR: "signature mismatch", VALIDATE_RECEIVEID_ERROR: "owner key mismatch",
            DECRYPT_AES_ERROR: "encrypt cannot be decrypted", ILLEGAL_BUFFER: "bad padding or length"}


class DingCallbackCrypto:
    """Decrypt/encrypt DingTalk event callbacks (the ``{"encrypt": ...}`` bodies).

    token: the callback Token; aes_key: the 43-char EncodingAESKey; owner_key: the AppKey (or
    SuiteKey / CorpId, depending on the subscription) that every plaintext must end with. Checking
    it matters: decryption with a shared key "works" for someone else's messages too.
    """

    def __init__(self, token: str, aes_key: str, owner_key: str):
        # the same construction as WeCom's callbacks (DingTalk adopted WXBizMsgCrypt): one
        # implementation, with DingTalk's errors on top
        try:
            self._cipher = WeComCrypto(token, aes_key, owner_key)
        except WeComCryptoError as exc:
            raise ValueError(f"aes_key: {exc.message}") from None
        self.token = token
        self.owner_key = owner_key

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """sha1 over the lexically sorted concatenation of token, timestamp, nonce and encrypt."""
        return self._cipher.signature(timestamp, nonce, encrypt)

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """Verify the signature, then decrypt and check padding, length and owner key."""
        try:
            return self._cipher.decrypt((msg_signature or "").lower(), timestamp, nonce, encrypt)
        except WeComCryptoError as exc:
            raise DingTalkCryptoError(_REASONS.get(exc.code, exc.message)) from None

    def encrypt(self, plaintext: str, random16: bytes | None = None) -> str:
        """Encrypt ``plaintext`` to the base64 ``encrypt`` field (random prefix unless given)."""
        return self._cipher.encrypt(plaintext, random16=random16)

    def encrypted_map(self, plaintext: str, timestamp: str, nonce: str) -> dict[str, str]:
        """The reply map DingTalk expects: ``{msg_signature, encrypt, timeStamp, nonce}``."""
        enc = self.encrypt(plaintext)
        return {"msg_signature": self.signature(timestamp, nonce, enc), "encrypt": enc,
                "timeStamp": str(timestamp), "nonce": str(nonce)}

    def success_reply(self, timestamp: str, nonce: str) -> dict[str, str]:
        """The encrypted ``"success"`` a callback must answer, or DingTalk keeps re-sending."""
        return self.encrypted_map("success", timestamp, nonce)


# ---------------------------------------------------------------------------------------------
# Robot message JSON -> IncomingMessage
# ---------------------------------------------------------------------------------------------

_LEADING_AT = re.compile(r"^\s*@\S+")


def _strip_mentions(text: str, bot_names: Iterable[str], is_group: bool) -> str:
    text = text.strip()
    names = [n for n in bot_names if n]
    if names:
        changed = True
        while changed:  # "@bot @bot hi" happens when users tap the robot twice
            changed = False
            for name in names:
                tag = "@" + name
                if text.startswith(tag):
                    text, changed = text[len(tag):].strip(), True
                if text.endswith(tag):
                    text, changed = text[:-len(tag)].strip(), True
    elif is_group:
        # Without the bot's display name we can only trust position: DingTalk's client puts the
        # robot mention first when the user picks the robot. A trailing "@someone" may be a real
        # colleague (e.g. "remind @Zhang"), so it is kept unless the name is configured.
        text = _LEADING_AT.sub("", text, count=1).strip()
    return text


def _text_of(body: dict[str, Any]) -> str:
    msgtype = body.get("msgtype")
    if msgtype == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("content"), str):
            raise ValueError("text message without text.content")
        return text["content"]
    if msgtype == "richText":
        # rich text arrives as content.richText [{text}|{pictureDownloadCode}...]; keep the words
        content = body.get("content")
        if content is None:
            return ""
        if not isinstance(content, dict):
            raise ValueError("richText message whose content is not an object")
        parts = content.get("richText") or []
        if not isinstance(parts, list):
            raise ValueError("richText message whose content.richText is not a list")
        words = [p.get("text", "") for p in parts if isinstance(p, dict)]
        if not all(isinstance(w, str) for w in words):
            raise ValueError("richText part whose text is not a string")
        return "".join(words)
    if msgtype == "audio":
        # a voice message carries DingTalk's own transcript (content.recognition): read like text,
        # so a rep can dictate a follow-up; a voice without one is answered like a picture
        content = body.get("content")
        recognition = content.get("recognition") if isinstance(content, dict) else None
        return recognition if isinstance(recognition, str) else ""
    return ""  # pictures, files: the bot answers with help, it does not read them


def _string(body: dict[str, Any], name: str) -> str | None:
    """A field that must be a string (or a number, for ids) when present."""
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{name} is not a string")


def incoming_from_robot_payload(body: dict[str, Any], *, bot_names: Iterable[str] = ()) -> IncomingMessage:
    """Build an ``IncomingMessage`` from a DingTalk robot message body.

    Works for both HTTP-mode callbacks and Stream CALLBACK frame data (same JSON). Raises
    ``ValueError`` with a reason when required fields are missing or mistyped.
    """
    if not isinstance(body, dict):
        raise ValueError("payload is not a JSON object")
    msg_id = body.get("msgId")
    if not isinstance(msg_id, str) or not msg_id:
        raise ValueError("missing msgId")
    if not body.get("msgtype") or not isinstance(body.get("msgtype"), str):
        raise ValueError("missing msgtype")
    conv_type = str(body.get("conversationType", "1"))
    if conv_type not in ("1", "2"):
        raise ValueError(f"unknown conversationType {conv_type!r}")
    is_group = conv_type == "2"
    chat_id = _string(body, "conversationId") if is_group else None
    if is_group and not chat_id:
        raise ValueError("group message without conversationId")
    # staffId is the org's userid (what the directory and the send APIs use); senderId is an
    # opaque per-app id and the only one external (non-staff) users have.
    user_id = _string(body, "senderStaffId") or _string(body, "senderId")
    if not user_id:
        raise ValueError("missing senderStaffId")
    text, cut_from = capped(_strip_mentions(_text_of(body), bot_names, is_group))
    route: dict[str, Any] = {}
    if webhook := _string(body, "sessionWebhook"):
        route["session_webhook"] = webhook
        expires = body.get("sessionWebhookExpiredTime")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, str))
                                    or isinstance(expires, str) and not expires.strip().isdigit()):
            raise ValueError("sessionWebhookExpiredTime is not a number of milliseconds")
        route["expires_ms"] = int(expires) if expires is not None else None
    if robot_code := _string(body, "robotCode"):
        route["robot_code"] = robot_code
    return IncomingMessage(
        platform="dingtalk",
        platform_user_id=str(user_id),
        text=text,
        message_id=msg_id,
        chat_id=chat_id,
        # only @-mentions reach a robot in groups, but isInAtList says so explicitly when present
        mentioned_bot=bool(body.get("isInAtList", True)) if is_group else True,
        sender_name=str(body.get("senderNick") or ""),
        reply_route=route,
        cut_from=cut_from,
    )


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Decode a callback body, raising ``ValueError`` (not JSONDecodeError subclasses only)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("body is not JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("body is not a JSON object")
    return data
