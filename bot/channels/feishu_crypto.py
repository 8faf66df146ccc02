"""Feishu (飞书/Lark) event-callback crypto: the encrypt key's AES-256-CBC and the request signature.

From the open platform's "接收事件 / 接收回调" pages (and read against lark-oapi's
``core/utils/decryptor.py`` and ``event/dispatcher_handler.py``):

* **Encryption** (only when an Encrypt Key is configured in the console): the body is
  ``{"encrypt": base64(iv[16] + AES-256-CBC(key=sha256(encrypt_key), iv, pkcs7(json)))}``.
  The padding is PKCS#7 to AES's 16-byte block (unlike WeCom's 32).
* **Signature** (events and new-style callbacks, not the URL check): the headers
  ``X-Lark-Request-Timestamp``, ``X-Lark-Request-Nonce`` and
  ``X-Lark-Signature = sha256_hex(timestamp + nonce + encrypt_key + raw body)``.
  It covers the raw body, so it is checked on the exact bytes received, before decrypting.
* **Verification Token**: ``header.token`` (schema 2.0) or ``token`` (the URL check) must equal
  the console's Verification Token.

Nothing here logs or puts a key, a token or a body into an exception message.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SIGNATURE_HEADER = "X-Lark-Signature"
TIMESTAMP_HEADER = "X-Lark-Request-Timestamp"
NONCE_HEADER = "X-Lark-Request-Nonce"
BLOCK = 16


class FeishuCryptoError(ValueError):
    """A callback that does not decrypt or verify. ``kind``: "signature" | "token" | "decrypt"."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def encrypt(encrypt_key: str, plaintext: str, iv: bytes | None = None) -> str:
    """What Feishu puts in ``{"encrypt": ...}`` (used by the fake platform in tests)."""
    iv = iv if iv is not None else os.urandom(BLOCK)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    enc = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + enc.update(data) + enc.finalize()).decode("ascii")


def decrypt(encrypt_key: str, encrypted: str) -> str:
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise FeishuCryptoError("decrypt", "encrypt field is not base64") from None
    if len(raw) < 2 * BLOCK or len(raw) % BLOCK:
        raise FeishuCryptoError("decrypt", "encrypt field has a bad length")
    dec = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(raw[:BLOCK])).decryptor()
    padded = dec.update(raw[BLOCK:]) + dec.finalize()
    pad = padded[-1]
    if not 1 <= pad <= BLOCK or padded[-pad:] != bytes([pad]) * pad:
        raise FeishuCryptoError("decrypt", "bad padding (wrong encrypt key?)")
    try:
        return padded[:-pad].decode("utf-8")
    except UnicodeDecodeError:
        raise FeishuCryptoError("decrypt", "plaintext is not UTF-8 (wrong encrypt key?)") from None


def signature(encrypt_key: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


def verify_signature(encrypt_key: str, headers: Any, body: bytes) -> None:
    """Raise ``FeishuCryptoError("signature")`` unless the three X-Lark headers sign ``body``."""
    ts, nonce, sig = (headers.get(h) for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER))
    if not ts or not nonce or not sig:
        raise FeishuCryptoError("signature", "missing X-Lark signature headers")
    if not hmac.compare_digest(signature(encrypt_key, ts, nonce, body).encode(), sig.strip().lower().encode()):
        raise FeishuCryptoError("signature", "X-Lark-Signature does not match")


def verify_token(expected: str, got: Any) -> None:
    if not expected or not isinstance(got, str) or not hmac.compare_digest(expected.encode(), got.encode()):
        raise FeishuCryptoError("token", "verification token does not match")


def open_body(body: bytes, encrypt_key: str) -> dict[str, Any]:
    """The callback's JSON, decrypted when an encrypt key is configured (then a plain body is
    refused: it could only come from someone who does not know the key)."""
    try:
        outer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FeishuCryptoError("decrypt", "body is not JSON") from None
    if not isinstance(outer, dict):
        raise FeishuCryptoError("decrypt", "body is not a JSON object")
    if encrypt_key:
        enc = outer.get("encrypt")
        if not isinstance(enc, str) or not enc:
            raise FeishuCryptoError("signature", "unencrypted body while an encrypt key is configured")
        try:
            inner = json.loads(decrypt(encrypt_key, enc))
        except ValueError as e:
            if isinstance(e, FeishuCryptoError):
                raise
            raise FeishuCryptoError("decrypt", "decrypted body is not JSON") from None
        if not isinstance(inner, dict):
            raise FeishuCryptoError("decrypt", "decrypted body is not a JSON object")
        return inner
    return outer
