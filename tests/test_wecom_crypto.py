"""WeCom callback crypto: the official vector, round trips, and every rejection path."""
from __future__ import annotations

import base64
import struct

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.channels.wecom_crypto import WeComCrypto, WeComCryptoError, parse_xml
from tests.fakes.wecom_server import build_callback, build_text_message_xml, build_url_check

# Official doc page 91144 (see PROTOCOLS.md).
CORP_ID = "wx5823bf96d3bd56c7"
TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
TIMESTAMP = "1409659813"
NONCE = "1372623149"
ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3"
    "TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gs"
    "ijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUa"
    "x5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIG"
    "HBZZIs2pDBS8R07+qN+E7Q=="
)
KEY = base64.b64decode(AES_KEY + "=")


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(TOKEN, AES_KEY, CORP_ID)


def raw_encrypt(plain: bytes) -> str:
    """AES-CBC with the vector's key and no padding of our own: lets a test forge any buffer."""
    enc = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def decrypt_forged(crypto: WeComCrypto, encrypt: str) -> str:
    """Decrypt with a valid signature, so the test reaches the check after it."""
    return crypto.decrypt(crypto.signature(TIMESTAMP, NONCE, encrypt), TIMESTAMP, NONCE, encrypt)


def code_of(fn, *args) -> int:
    with pytest.raises(WeComCryptoError) as info:
        fn(*args)
    return info.value.code


# -- the public vector -----------------------------------------------------------------

def test_public_vector_signature(crypto):
    assert crypto.signature(TIMESTAMP, NONCE, ENCRYPT) == SIGNATURE


def test_public_vector_decrypts(crypto):
    fields = parse_xml(crypto.decrypt(SIGNATURE, TIMESTAMP, NONCE, ENCRYPT))
    assert fields["Content"] == "hello"
    assert fields["MsgId"] == "4561255354251345929"
    assert fields["AgentID"] == "218"
    assert fields["ToUserName"] == CORP_ID
    assert fields["MsgType"] == "text"


def test_public_vector_as_url_check(crypto):
    assert "<Content><![CDATA[hello]]></Content>" in crypto.verify_url(SIGNATURE, TIMESTAMP, NONCE, ENCRYPT)


# -- round trips -------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(text=st.text(), receive_id=st.sampled_from([CORP_ID, "", "ding6ccabc44d2c8d38b"]))
def test_round_trip_any_unicode(text, receive_id):
    c = WeComCrypto(TOKEN, AES_KEY, receive_id)
    encrypt = c.encrypt(text, NONCE, TIMESTAMP)
    assert len(base64.b64decode(encrypt)) % 32 == 0          # 32-byte PKCS#7 blocks
    assert c.decrypt(c.signature(TIMESTAMP, NONCE, encrypt), TIMESTAMP, NONCE, encrypt) == text


def test_aligned_plaintext_gets_a_full_pad_block(crypto):
    # 16 + 4 + len(msg) + len(corp id, 18) = 64 when msg is 26 bytes: already aligned.
    encrypt = crypto.encrypt("x" * 26, random16=b"\0" * 16)
    assert len(base64.b64decode(encrypt)) == 96
    assert decrypt_forged(crypto, encrypt) == "x" * 26


def test_random16_makes_encryption_reproducible(crypto):
    assert crypto.encrypt("hi", random16=b"r" * 16) == crypto.encrypt("hi", random16=b"r" * 16)
    assert crypto.encrypt("hi") != crypto.encrypt("hi")


def test_encrypted_reply_xml_verifies_and_decrypts(crypto):
    fields = parse_xml(crypto.encrypted_reply_xml("<xml><Content>ok</Content></xml>", 1700000000, "n0nce"))
    assert fields["TimeStamp"] == "1700000000" and fields["Nonce"] == "n0nce"
    assert crypto.decrypt(fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"], fields["Encrypt"]) \
        == "<xml><Content>ok</Content></xml>"


def test_cdata_terminator_in_content_survives(crypto):
    xml_text = build_text_message_xml(CORP_ID, "zhangsan", "a]]>b<c>&", msg_id=1, agent_id=218)
    query, body = build_callback(crypto, xml_text, TIMESTAMP, NONCE)
    inner = crypto.decrypt_body(query["msg_signature"], query["timestamp"], query["nonce"], body)
    assert parse_xml(inner)["Content"] == "a]]>b<c>&"


# -- rejections --------------------------------------------------------------------------

def test_wrong_signature(crypto):
    assert code_of(crypto.decrypt, SIGNATURE.replace("4", "5"), TIMESTAMP, NONCE, ENCRYPT) == -40001
    assert code_of(crypto.decrypt, "", TIMESTAMP, NONCE, ENCRYPT) == -40001
    assert code_of(crypto.decrypt, SIGNATURE, "1409659814", NONCE, ENCRYPT) == -40001


def test_tampered_ciphertext_fails_signature(crypto):
    tampered = ("S" if ENCRYPT[0] != "S" else "T") + ENCRYPT[1:]
    assert code_of(crypto.decrypt, SIGNATURE, TIMESTAMP, NONCE, tampered) == -40001


def test_tampered_ciphertext_with_valid_signature_is_caught(crypto):
    # Flipping a bit in block 0 flips the same bit of plaintext byte 16: the length field.
    raw = bytearray(base64.b64decode(ENCRYPT))
    raw[0] ^= 0x80
    assert code_of(decrypt_forged, crypto, base64.b64encode(bytes(raw)).decode()) == -40008


def test_not_base64_or_not_whole_blocks(crypto):
    assert code_of(decrypt_forged, crypto, "not*base64!") == -40007
    assert code_of(decrypt_forged, crypto, base64.b64encode(b"x" * 20).decode()) == -40007


def test_wrong_receive_id(crypto):
    other = WeComCrypto(TOKEN, AES_KEY, "wwsomeothercorp")
    assert code_of(decrypt_forged, other, ENCRYPT) == -40005
    encrypt = other.encrypt("<xml/>")
    assert code_of(decrypt_forged, crypto, encrypt) == -40005


@pytest.mark.parametrize("pad", [0, 33, 255])
def test_bad_padding_byte(crypto, pad):
    msg = b"<xml/>"
    body = b"r" * 16 + struct.pack(">I", len(msg)) + msg + CORP_ID.encode()
    body += b"\0" * (-(len(body) + 1) % 32) + bytes([pad])
    assert code_of(decrypt_forged, crypto, raw_encrypt(body)) == -40008


def test_inconsistent_padding_bytes(crypto):
    msg = b"<xml/>"
    body = b"r" * 16 + struct.pack(">I", len(msg)) + msg + CORP_ID.encode()
    pad = 32 - len(body) % 32
    body += bytes([pad ^ 1]) + bytes([pad]) * (pad - 1)
    assert code_of(decrypt_forged, crypto, raw_encrypt(body)) == -40008


def test_length_field_past_buffer(crypto):
    body = b"r" * 16 + struct.pack(">I", 10_000) + b"<xml/>"
    body += bytes([32 - len(body) % 32]) * (32 - len(body) % 32)
    assert code_of(decrypt_forged, crypto, raw_encrypt(body)) == -40008


def test_plaintext_too_short(crypto):
    assert code_of(decrypt_forged, crypto, raw_encrypt(b"r" * 16 + bytes([16]) * 16)) == -40008


@pytest.mark.parametrize("key", [AES_KEY[:-1], AES_KEY + "A", "*" * 43, "", "A" * 42 + "="])
def test_bad_aes_key(key):
    assert code_of(WeComCrypto, TOKEN, key, CORP_ID) == -40004


def test_repr_hides_secrets(crypto):
    assert TOKEN not in repr(crypto) and AES_KEY not in repr(crypto)


# -- `+` in base64 over a real HTTP hop ------------------------------------------------------

def _encrypt_with_plus(crypto: WeComCrypto, text: str) -> tuple[str, bytes]:
    for i in range(1000):
        prefix = i.to_bytes(16, "big")
        if "+" in crypto.encrypt(text, random16=prefix):
            return text, prefix
    raise AssertionError("no ciphertext with '+' found")


async def test_plus_in_base64_survives_one_url_decode(crypto, aiohttp_client, monkeypatch):
    """The query is decoded exactly once by aiohttp; a '+' must stay a '+'."""
    text, prefix = _encrypt_with_plus(crypto, "echo-123")
    real_encrypt = crypto.encrypt
    monkeypatch.setattr(crypto, "encrypt", lambda p, *a, **k: real_encrypt(p, random16=prefix))

    async def handler(request: web.Request) -> web.Response:
        q = request.query
        try:
            if request.method == "GET":
                return web.Response(text=crypto.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]))
            inner = crypto.decrypt_body(q["msg_signature"], q["timestamp"], q["nonce"], await request.read())
            return web.Response(text=parse_xml(inner)["Content"])
        except WeComCryptoError as exc:
            return web.Response(status=403, text=str(exc.code))

    app = web.Application()
    app.router.add_route("*", "/cb", handler)
    client = await aiohttp_client(app)

    query = build_url_check(crypto, text, TIMESTAMP, NONCE)
    assert "+" in query["echostr"]
    resp = await client.get("/cb", params=query)
    assert resp.status == 200 and await resp.text() == "echo-123"

    # What a double decode (or '+' -> space) would hand the verifier: rejected, not garbled.
    broken = dict(query, echostr=query["echostr"].replace("+", " "))
    assert code_of(crypto.verify_url, broken["msg_signature"], TIMESTAMP, NONCE, broken["echostr"]) == -40001

    xml_text = build_text_message_xml(CORP_ID, "lisi", "plus+sign", msg_id=7, agent_id=218)
    q, body = build_callback(crypto, xml_text, TIMESTAMP, NONCE)
    resp = await client.post("/cb", params=q, data=body)
    assert resp.status == 200 and await resp.text() == "plus+sign"


# -- parse_xml ---------------------------------------------------------------------------------

def test_parse_xml_nested_and_repeated():
    doc = "<xml><A>1</A><B><C>x</C><C>y</C></B><D/></xml>"
    assert parse_xml(doc) == {"A": "1", "B": {"C": ["x", "y"]}, "D": ""}


@pytest.mark.parametrize("doc", [
    '<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>',
    '<?xml version="1.0"?><!doctype xml SYSTEM "file:///etc/passwd"><xml/>',
    '<xml><A>&lt;</A><!ENTITY b "x"></xml>',
    "<xml><A>unclosed</xml>",
    "not xml at all",
    "<xml>" + "<A>x</A>" * 100_000 + "</xml>",
])
def test_parse_xml_refuses(doc):
    assert code_of(parse_xml, doc) == -40002


def test_decrypt_body_without_encrypt(crypto):
    assert code_of(crypto.decrypt_body, SIGNATURE, TIMESTAMP, NONCE, "<xml><ToUserName>x</ToUserName></xml>") == -40002
