"""DingTalk signatures, callback crypto and robot payload parsing, against the published vectors."""
from __future__ import annotations

import base64
import struct
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings, strategies as st

from bot.channels.dingtalk_crypto import (DingCallbackCrypto, DingTalkAuthError, DingTalkCryptoError,
                                          custom_robot_url, incoming_from_robot_payload, robot_sign,
                                          verify_robot_request)

TOKEN, AES_KEY, OWNER = "mryue", "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7", "ding6ccabc44d2c8d38b"
SIG, TS, NONCE = "03044561471240d4a14bb09372dfcfd4fd0e40cb", "1608001896814", "WL4PK6yA"
ENC = ("0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+"
       "HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3")


# ---------------------------------------------------------------- robot HMAC signature
def test_robot_sign_vector():
    assert robot_sign("this is secret", "1577262236757") == "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="


def test_verify_robot_request_accepts_vector():
    verify_robot_request("1577262236757", "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=", "this is secret",
                         now_ms=1577262236757 + 59 * 60 * 1000)


@pytest.mark.parametrize("ts,sign,reason", [
    ("1577262236757", "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQX=", "mismatch"),   # forged
    ("1577262236758", "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=", "mismatch"),   # ts changed
    ("abc", "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=", "integer"),
    ("-1577262236757", "x", "integer"),
    ("1.5e12", "x", "integer"),
    ("", "x", "missing"),
    (None, None, "missing"),
])
def test_verify_robot_request_rejects(ts, sign, reason):
    with pytest.raises(DingTalkAuthError) as ei:
        verify_robot_request(ts, sign, "this is secret", now_ms=1577262236757)
    assert reason in ei.value.reason
    assert "this is secret" not in str(ei.value)


@pytest.mark.parametrize("skew_ms", [3600 * 1000 + 1, -(3600 * 1000 + 1), 10 * 3600 * 1000])
def test_verify_robot_request_rejects_stale(skew_ms):
    ts = "1577262236757"
    with pytest.raises(DingTalkAuthError, match="window"):
        verify_robot_request(ts, robot_sign("this is secret", ts), "this is secret", now_ms=int(ts) + skew_ms)


@given(secret=st.text(min_size=1, max_size=40), ts=st.integers(min_value=10**12, max_value=2 * 10**12))
def test_robot_sign_round_trip(secret, ts):
    verify_robot_request(str(ts), robot_sign(secret, str(ts)), secret, now_ms=ts)
    with pytest.raises(DingTalkAuthError):
        verify_robot_request(str(ts), robot_sign(secret + "x", str(ts)), secret, now_ms=ts)


def test_custom_robot_url_encodes_sign_once():
    url = custom_robot_url("https://oapi.dingtalk.com/robot/send?access_token=abc", "this is secret",
                           "1577262236757")
    assert "sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D" in url
    q = parse_qs(urlsplit(url).query)
    assert q["access_token"] == ["abc"] and q["timestamp"] == ["1577262236757"]
    assert q["sign"] == ["hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="]


# ---------------------------------------------------------------- callback AES
def test_callback_crypto_vector():
    c = DingCallbackCrypto(TOKEN, AES_KEY, OWNER)
    assert c.signature(TS, NONCE, ENC) == SIG
    assert c.decrypt(SIG, TS, NONCE, ENC) == '{"EventType":"check_url"}'


def test_success_reply_decrypts_to_success():
    c = DingCallbackCrypto(TOKEN, AES_KEY, OWNER)
    reply = c.success_reply("1608001896999", "nonce123")
    assert set(reply) == {"msg_signature", "encrypt", "timeStamp", "nonce"}
    assert reply["timeStamp"] == "1608001896999" and reply["nonce"] == "nonce123"
    assert c.decrypt(reply["msg_signature"], reply["timeStamp"], reply["nonce"], reply["encrypt"]) == "success"


@settings(max_examples=60)
@given(text=st.text(max_size=300), ts=st.integers(0, 10**13).map(str), nonce=st.text("abcXYZ019", min_size=1, max_size=12))
def test_callback_round_trip(text, ts, nonce):
    c = DingCallbackCrypto(TOKEN, AES_KEY, OWNER)
    m = c.encrypted_map(text, ts, nonce)
    assert len(base64.b64decode(m["encrypt"])) % 32 == 0
    assert c.decrypt(m["msg_signature"], ts, nonce, m["encrypt"]) == text


def test_callback_rejects_tampering():
    c = DingCallbackCrypto(TOKEN, AES_KEY, OWNER)
    with pytest.raises(DingTalkCryptoError, match="signature"):
        c.decrypt(SIG, TS, NONCE, ENC[:-4] + "AAAA")              # body changed, old signature
    with pytest.raises(DingTalkCryptoError, match="signature"):
        c.decrypt("0" * 40, TS, NONCE, ENC)
    with pytest.raises(DingTalkCryptoError, match="signature"):
        c.decrypt(SIG, str(int(TS) + 1), NONCE, ENC)
    # re-signed but with a corrupted ciphertext: padding or owner key check must catch it
    raw = bytearray(base64.b64decode(ENC))
    raw[-1] ^= 0x55
    forged = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(DingTalkCryptoError):
        c.decrypt(c.signature(TS, NONCE, forged), TS, NONCE, forged)
    with pytest.raises(DingTalkCryptoError, match="cannot be decrypted"):   # not base64 / not whole blocks
        c.decrypt(c.signature(TS, NONCE, "abc"), TS, NONCE, "abc")


def test_callback_rejects_wrong_owner_key():
    other = DingCallbackCrypto(TOKEN, AES_KEY, "dingSOMEONEELSE000000")
    m = other.encrypted_map('{"EventType":"user_add_org"}', TS, NONCE)
    mine = DingCallbackCrypto(TOKEN, AES_KEY, OWNER)
    with pytest.raises(DingTalkCryptoError, match="owner key"):
        mine.decrypt(m["msg_signature"], TS, NONCE, m["encrypt"])
    with pytest.raises(DingTalkCryptoError, match="owner key"):
        # a prefix of the real owner key must not pass either
        DingCallbackCrypto(TOKEN, AES_KEY, OWNER[:-1]).decrypt(SIG, TS, NONCE, ENC)


def test_callback_rejects_bad_length_field():
    c = DingCallbackCrypto(TOKEN, AES_KEY, OWNER)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    key = base64.b64decode(AES_KEY + "=")
    body = b"r" * 16 + struct.pack(">I", 10_000) + b"{}" + OWNER.encode()
    pad = 32 - len(body) % 32
    body += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    forged = base64.b64encode(enc.update(body) + enc.finalize()).decode()
    with pytest.raises(DingTalkCryptoError, match="length"):
        c.decrypt(c.signature(TS, NONCE, forged), TS, NONCE, forged)


def test_bad_aes_key_rejected():
    with pytest.raises(ValueError):
        DingCallbackCrypto(TOKEN, "short", OWNER)


# ---------------------------------------------------------------- payload -> IncomingMessage
def _payload(**over):
    body = {
        "msgtype": "text", "text": {"content": " hello "}, "msgId": "msgA1", "createAt": 1690000000000,
        "conversationType": "1", "conversationId": "cidP2P", "senderId": "$:LWCP_v1:$x",
        "senderNick": "Han Meimei", "senderStaffId": "staff42", "senderCorpId": "dingcorp",
        "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=s1",
        "sessionWebhookExpiredTime": 1690003600000, "chatbotUserId": "$:LWCP_v1:$bot", "robotCode": "rc",
    }
    body.update(over)
    return body


def test_payload_one_to_one():
    m = incoming_from_robot_payload(_payload())
    assert (m.platform, m.platform_user_id, m.text, m.message_id) == ("dingtalk", "staff42", "hello", "msgA1")
    assert m.chat_id is None and not m.is_group and m.mentioned_bot
    assert m.sender_name == "Han Meimei"
    assert m.reply_route["session_webhook"].endswith("session=s1")
    assert m.reply_route["expires_ms"] == 1690003600000


def test_payload_group_mention_stripped():
    body = _payload(conversationType="2", conversationId="cidGROUP", isInAtList=True,
                    text={"content": "@ARBot  overdue ACME "}, atUsers=[{"dingtalkId": "$:LWCP_v1:$bot"}])
    m = incoming_from_robot_payload(body)
    assert m.chat_id == "cidGROUP" and m.is_group and m.mentioned_bot
    assert m.text == "overdue ACME"
    # with the configured name, a trailing mention goes too; other people's mentions stay
    body["text"] = {"content": "remind @Zhang about ACME @ARBot"}
    assert incoming_from_robot_payload(body, bot_names=["ARBot"]).text == "remind @Zhang about ACME"


def test_payload_non_text_is_ok_but_empty():
    m = incoming_from_robot_payload(_payload(msgtype="picture", text=None, content={"downloadCode": "x"}))
    assert m.text == ""


@pytest.mark.parametrize("over,reason", [
    ({"msgId": None}, "msgId"),
    ({"msgtype": "text", "text": None}, "text"),
    ({"conversationType": "2", "conversationId": None}, "conversationId"),
    ({"conversationType": "9"}, "conversationType"),
    ({"senderStaffId": None, "senderId": None}, "senderStaffId"),
])
def test_payload_malformed(over, reason):
    with pytest.raises(ValueError, match=reason):
        incoming_from_robot_payload(_payload(**over))
