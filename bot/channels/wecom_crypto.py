"""WeCom callback crypto: the WXBizMsgCrypt scheme, without wechatpy.

WeCom signs and encrypts every callback it sends to the bot (and expects the same for
passive replies). The scheme, as in Tencent's own sample:

* signature = sha1 over the sorted concatenation of token, timestamp, nonce and Encrypt;
* key = base64(EncodingAESKey + "=") (32 bytes), AES-256-CBC with IV = key[:16];
* plaintext = 16 random bytes + 4-byte big-endian length + message + receiveid,
  PKCS#7-padded to 32-byte blocks (not the usual 16).

DingTalk's DingCallbackCrypto is the same construction, so this class can serve it too
(receive_id = the owner key / suite key).

Every failure raises ``WeComCryptoError`` carrying the sample's numeric code so logs and
tests can tell a forged signature from a misconfigured key.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import xml.etree.ElementTree as ET
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# Error codes from Tencent's WXBizMsgCrypt sample (ierror.py).
SIGNATURE_ERROR = -40001
PARSE_XML_ERROR = -40002
ILLEGAL_AES_KEY = -40004
VALIDATE_RECEIVEID_ERROR = -40005
DECRYPT_AES_ERROR = -40007
ILLEGAL_BUFFER = -40008

BLOCK_SIZE = 32              # WeCom pads to 32 bytes, not to the AES block size
MAX_XML_BYTES = 512 * 1024   # callbacks are a few KB; anything near this is an attack or a bug


class WeComCryptoError(Exception):
    """A callback could not be verified, decrypted or parsed.

    ``code`` is one of the sample's negative error codes; ``message`` never contains key
    material, so it is safe to log.
    """

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def cdata(value: str) -> str:
    """Wrap text in a CDATA section for the XML bodies WeCom exchanges."""
    # "]]>" inside CDATA would end the section early; split it across two sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


MAX_XML_DEPTH = 16


def _element_to_value(elem: ET.Element) -> Any:
    """Leaf -> its text (never None); element with children -> dict; repeated tags -> list."""
    children = list(elem)
    if not children:
        return elem.text or ""
    out: dict[str, Any] = {}
    for child in children:
        value = _element_to_value(child)
        if child.tag in out:
            if not isinstance(out[child.tag], list):
                out[child.tag] = [out[child.tag]]
            out[child.tag].append(value)
        else:
            out[child.tag] = value
    return out


def parse_xml(text: str | bytes, *, max_bytes: int = MAX_XML_BYTES) -> dict[str, Any]:
    """Parse a WeCom ``<xml>...</xml>`` document into a dict of its children.

    The body arrives from the internet before we know who sent it, so: refuse anything
    with a DOCTYPE or ENTITY declaration (entity-expansion bombs, external entities) and
    anything larger than ``max_bytes``. Raises ``WeComCryptoError(-40002)``.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > max_bytes:
        raise WeComCryptoError(PARSE_XML_ERROR, f"xml body too large ({len(raw)} bytes)")
    upper = raw.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise WeComCryptoError(PARSE_XML_ERROR, "xml with DOCTYPE/ENTITY declarations refused")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise WeComCryptoError(PARSE_XML_ERROR, f"malformed xml: {exc}") from None
    # The signature covers the Encrypt element, so the XML is read before anything is verified: a
    # body nested a thousand levels deep must be refused here, not blow the recursion limit below
    # (it answered 500). WeCom's callbacks are two levels deep; events with lists are a few more.
    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        if depth > MAX_XML_DEPTH:
            raise WeComCryptoError(PARSE_XML_ERROR, f"xml nested deeper than {MAX_XML_DEPTH} levels")
        stack.extend((child, depth + 1) for child in elem)
    value = _element_to_value(root)
    return value if isinstance(value, dict) else {}


class WeComCrypto:
    """Sign, verify, encrypt and decrypt WeCom callback payloads for one app.

    ``receive_id`` is the CorpID for an internal app (the bot rejects messages encrypted
    for another corp even when the key matches) and "" for the AI-bot callbacks.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str):
        if not token:
            raise WeComCryptoError(SIGNATURE_ERROR, "empty callback token")
        if len(encoding_aes_key or "") != 43:
            raise WeComCryptoError(ILLEGAL_AES_KEY, "EncodingAESKey must be 43 characters")
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except (binascii.Error, ValueError):
            raise WeComCryptoError(ILLEGAL_AES_KEY, "EncodingAESKey is not valid base64") from None
        if len(key) != 32:
            raise WeComCryptoError(ILLEGAL_AES_KEY, "EncodingAESKey does not decode to 32 bytes")
        self.token = token
        self.receive_id = receive_id
        self._key = key
        self._iv = key[:16]
        # built once: constructing the Cipher cost more than decrypting a callback with it
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(self._iv))

    def __repr__(self) -> str:  # never show the token or key in logs
        return f"WeComCrypto(receive_id={self.receive_id!r})"

    # -- signatures -----------------------------------------------------------------
    def signature(self, timestamp: str | int, nonce: str, encrypt: str) -> str:
        """sha1 hex (lowercase) over the sorted token, timestamp, nonce and Encrypt."""
        parts = sorted([self.token, str(timestamp), str(nonce), encrypt])
        return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()

    def _check_signature(self, msg_signature: str, timestamp: str | int, nonce: str, encrypt: str) -> None:
        expected = self.signature(timestamp, nonce, encrypt)
        # compare_digest needs ASCII str or bytes; encode so odd input cannot raise TypeError.
        if not hmac.compare_digest(expected.encode(), (msg_signature or "").encode("utf-8", "replace")):
            raise WeComCryptoError(SIGNATURE_ERROR, "msg_signature does not match")

    # -- inbound ----------------------------------------------------------------------
    def verify_url(self, msg_signature: str, timestamp: str | int, nonce: str, echostr: str) -> str:
        """The GET URL check: verify and return the plaintext echo to answer verbatim.

        ``echostr`` must be the value exactly as decoded once from the query string.
        """
        return self.decrypt(msg_signature, timestamp, nonce, echostr)

    def decrypt(self, msg_signature: str, timestamp: str | int, nonce: str, encrypt: str) -> str:
        """Verify the signature, then decrypt ``encrypt`` and return the inner message text."""
        self._check_signature(msg_signature, timestamp, nonce, encrypt)
        try:
            ciphertext = base64.b64decode(encrypt, validate=True)
            decryptor = self._cipher.decryptor()
            plain = decryptor.update(ciphertext) + decryptor.finalize()
        except (binascii.Error, ValueError):
            # not base64, or not a whole number of AES blocks
            raise WeComCryptoError(DECRYPT_AES_ERROR, "ciphertext cannot be decrypted") from None
        return self._unpack(plain)

    def decrypt_body(self, msg_signature: str, timestamp: str | int, nonce: str, body: str | bytes) -> str:
        """Convenience for the POST callback: parse ``<xml><Encrypt/>...</xml>`` and decrypt."""
        encrypt = parse_xml(body).get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise WeComCryptoError(PARSE_XML_ERROR, "callback body has no Encrypt element")
        return self.decrypt(msg_signature, timestamp, nonce, encrypt)

    def _unpack(self, plain: bytes) -> str:
        if not plain:
            raise WeComCryptoError(ILLEGAL_BUFFER, "empty plaintext")
        pad = plain[-1]
        if not 1 <= pad <= BLOCK_SIZE or plain[-pad:] != bytes([pad]) * pad:
            raise WeComCryptoError(ILLEGAL_BUFFER, "bad PKCS#7 padding")
        content = plain[16:-pad]                    # drop the random prefix and the pad
        if len(content) < 4:
            raise WeComCryptoError(ILLEGAL_BUFFER, "plaintext too short for its length field")
        (msg_len,) = struct.unpack(">I", content[:4])
        if 4 + msg_len > len(content):
            raise WeComCryptoError(ILLEGAL_BUFFER, "length field points past the buffer")
        msg, from_id = content[4:4 + msg_len], content[4 + msg_len:]
        if from_id != self.receive_id.encode("utf-8"):
            # Decryption "worked" but the payload was meant for another corp/app: refuse.
            raise WeComCryptoError(VALIDATE_RECEIVEID_ERROR, "receiveid does not match")
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError:
            raise WeComCryptoError(ILLEGAL_BUFFER, "message is not utf-8") from None

    # -- outbound ---------------------------------------------------------------------
    def encrypt(self, plaintext: str, nonce: str | None = None, timestamp: str | int | None = None,
                random16: bytes | None = None) -> str:
        """Encrypt ``plaintext`` and return the base64 Encrypt value.

        ``nonce`` and ``timestamp`` do not enter the ciphertext (they go into the
        signature); they are accepted so the call reads like the sample's EncryptMsg.
        ``random16`` fixes the random prefix for reproducible tests.
        """
        del nonce, timestamp
        prefix = os.urandom(16) if random16 is None else random16
        if len(prefix) != 16:
            raise ValueError("random16 must be exactly 16 bytes")
        msg = plaintext.encode("utf-8")
        body = prefix + struct.pack(">I", len(msg)) + msg + self.receive_id.encode("utf-8")
        pad = BLOCK_SIZE - len(body) % BLOCK_SIZE    # a full block when already aligned
        body += bytes([pad]) * pad
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode("ascii")

    def encrypted_reply_xml(self, plaintext: str, timestamp: str | int, nonce: str) -> str:
        """The passive reply body: ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>``."""
        encrypt = self.encrypt(plaintext, nonce, timestamp)
        signature = self.signature(timestamp, nonce, encrypt)
        return (
            "<xml>"
            f"<Encrypt>{cdata(encrypt)}</Encrypt>"
            f"<MsgSignature>{cdata(signature)}</MsgSignature>"
            f"<TimeStamp>{int(timestamp)}</TimeStamp>"
            f"<Nonce>{cdata(str(nonce))}</Nonce>"
            "</xml>"
        )
