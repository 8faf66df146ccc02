"""Customer channels against real servers on loopback: an e-mail reminder through a real SMTP
server (aiosmtpd), and SMS against a small fake SMS gateway that checks the HMAC signature."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
from datetime import date
from decimal import Decimal
from email import message_from_bytes
from email.policy import default

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bot.channels.errors import PermanentDeliveryError, RateLimitedError, TransientDeliveryError
from bot.channels.sms import SmsChannel
from bot.core.messages import OutgoingMessage
from bot.policy import SmsConfig
from storage.models import Contact, Customer, CustomerMessage, Person, Receivable
from tests.conftest import at
from tests.harness import Bot
from tests.ledger_fixture import accounts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, box
    controller.stop()


async def _ledger(db, channel="email", target="ap@hengxin.example.com"):
    async with db.session() as s, s.begin():
        s.add(Person(id="sup1", name="王主管", role="supervisor", accounts=accounts(wecom="wx_sup1")))
        await s.flush()
        s.add(Person(id="rep1", name="张伟", role="rep", supervisor_id="sup1", accounts=accounts(wecom="wx_rep1")))
        await s.flush()
        c = Customer(code="C1", name="上海恒信机电有限公司", grade="B", credit_limit=Decimal("500000"), rep_id="rep1")
        s.add(c)
        await s.flush()
        s.add(Contact(customer_id=c.id, name="陈会计", channel=channel, email=target if channel == "email" else "",
                      mobile=target if channel == "sms" else ""))
        s.add(Receivable(invoice_no="INV-9", contract_no="HT-2026-009", customer_id=c.id, rep_id="rep1",
                         issue_date=date(2026, 10, 14), due_date=date(2026, 11, 13), amount=Decimal("20000.00"),
                         open_amount=Decimal("20000.00"), created_at=at("2026-10-14 10:00")))


async def test_email_reminder_arrives_at_a_real_smtp_server(aiohttp_client, db, smtp_server):
    controller, box = smtp_server
    await _ledger(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-20 09:30"),
                          smtp={"host": "127.0.0.1", "port": controller.port, "from_addr": "ar@shili.example.com"})
    assert "email" in bot.state.channels

    # d7 on Friday 11/20: the ladder writes to the customer's contact by e-mail
    assert "1 ladder step(s) fired" in await bot.run("escalations", at("2026-11-20 09:30"))
    [env] = box.envelopes
    assert env.mail_from == "ar@shili.example.com" and env.rcpt_tos == ["ap@hengxin.example.com"]
    raw = env.original_content
    msg = message_from_bytes(raw, policy=default)
    # the Chinese subject travels RFC 2047-encoded in UTF-8 and decodes back exactly
    assert b"Subject: =?utf-8?" in raw
    assert msg["Subject"] == "【示例公司】付款提醒函：发票INV-9"
    assert msg["From"].addresses[0].display_name == "示例公司"
    assert msg["To"].addresses[0].display_name == "陈会计"
    assert msg.get_content_type() == "multipart/mixed"
    plain = msg.get_body(("plain",))
    assert plain.get_content_charset() == "utf-8"
    text = plain.get_content()
    assert "上海恒信机电有限公司 陈会计：您好！" in text
    assert "贵司合同HT-2026-009项下发票INV-9已于2026-11-13到期，目前尚有¥20,000.00未付（逾期7天）" in text
    html = msg.get_body(("html",))
    assert html.get_content_charset() == "utf-8" and "<p>" in html.get_content() and "逾期7天" in html.get_content()
    # the letter is a PDF with its Chinese font inside (the customer's reader needs none)
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "付款提醒函.pdf" and att.get_content_type() == "application/pdf"
    pdf = att.get_content()
    assert pdf.startswith(b"%PDF-") and b"/FontFile2" in pdf and b"WenQuanYi" in pdf
    assert "滞纳金" not in text            # the contract of this customer has no late-fee clause

    async with db.session() as s:
        cm = (await s.execute(select(CustomerMessage))).scalar_one()
        assert (cm.status, cm.channel, cm.kind) == ("sent", "email", "letter")
        assert cm.sent_at is not None      # accepted by the server (not proof of delivery: see storage/statute.py)


async def test_customer_email_is_checked_at_send_time(aiohttp_client, db, smtp_server):
    """A reason that vanished behind the ORM's back (raw SQL) is still caught when sending."""
    controller, box = smtp_server
    await _ledger(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-20 20:00"),
                          smtp={"host": "127.0.0.1", "port": controller.port, "from_addr": "ar@shili.example.com"})
    await bot.run("escalations", at("2026-11-20 20:00"))          # queued for Monday 09:00
    async with db.session() as s, s.begin():
        from sqlalchemy import update
        await s.execute(update(Receivable).values(disputed=True))    # bypasses the ORM hook
    bot.clock.set(at("2026-11-23 09:30"))
    await bot.state.sender.drain()
    assert box.envelopes == []
    async with db.session() as s:
        cm = (await s.execute(select(CustomerMessage))).scalar_one()
        assert (cm.status, cm.cancel_reason) == ("cancelled", "disputed")


# -- SMS ---------------------------------------------------------------------------------------

APP_KEY = "k3y-for-tests"


def fake_sms_gateway(received: list):
    async def send(request: web.Request) -> web.Response:
        body = await request.read()
        expected = hmac.new(APP_KEY.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Signature", ""), expected):
            return web.json_response({"errcode": 1001, "errmsg": "invalid signature"})
        data = json.loads(body.decode("utf-8"))
        received.append(data)
        phone = data["phone"]
        if phone.endswith("01"):
            return web.json_response({"errcode": 2001, "errmsg": "invalid mobile"})
        if phone.endswith("03"):
            return web.json_response({"errcode": 3001, "errmsg": "too frequent", "retry_after": 30})
        if phone.endswith("05"):
            return web.Response(status=503, text="busy")
        return web.json_response({"errcode": 0, "errmsg": "ok", "msg_id": "m-1"})

    app = web.Application()
    app.add_routes([web.post("/sms/send", send)])
    return app


def _sms(phone: str) -> OutgoingMessage:
    return OutgoingMessage(platform="sms", target_kind="sms", target=phone, text="（预览）", format="text",
                           extra={"customer_message": "ladder:INV-9:d7", "sms_template": "overdue",
                                  "sms_params": {"customer": "上海恒信机电有限公司", "invoice": "INV-9",
                                                 "amount": "20,000.00", "days": "7"}})


async def test_sms_is_signed_and_errors_map_to_delivery_errors(aiohttp_server):
    received: list = []
    server = await aiohttp_server(fake_sms_gateway(received), host="127.0.0.1")
    cfg = SmsConfig(api_base=str(server.make_url("")).rstrip("/"), app_id="app-1", app_key=APP_KEY,
                    sign_name="示例公司", templates={"overdue": "SMS_OVERDUE_1"})
    channel = SmsChannel(cfg)

    await channel.deliver(_sms("13900000000"))
    [body] = received
    assert body["app_id"] == "app-1" and body["phone"] == "13900000000"
    assert body["sign_name"] == "示例公司" and body["template_id"] == "SMS_OVERDUE_1"
    assert body["params"] == {"customer": "上海恒信机电有限公司", "invoice": "INV-9", "amount": "20,000.00", "days": "7"}

    with pytest.raises(PermanentDeliveryError) as e:
        await channel.deliver(_sms("13900000001"))
    assert e.value.code == 2001
    with pytest.raises(RateLimitedError) as e:
        await channel.deliver(_sms("13900000003"))
    assert e.value.retry_after == 30
    with pytest.raises(TransientDeliveryError):
        await channel.deliver(_sms("13900000005"))
    # a wrong key: the gateway rejects the signature, which will never succeed
    wrong = SmsChannel(dataclasses.replace(cfg, app_key="wrong"))
    with pytest.raises(PermanentDeliveryError) as e:
        await wrong.deliver(_sms("13900000000"))
    assert e.value.code == 1001
    # no template for the kind: permanent, before any request
    with pytest.raises(PermanentDeliveryError):
        await SmsChannel(dataclasses.replace(cfg, templates={})).deliver(_sms("13900000000"))
    assert len(received) == 4


async def test_sms_reminder_end_to_end(aiohttp_client, aiohttp_server, db):
    received: list = []
    server = await aiohttp_server(fake_sms_gateway(received), host="127.0.0.1")
    await _ledger(db, channel="sms", target="13900000000")
    bot = await Bot.start(aiohttp_client, db, at("2026-11-20 09:30"),
                          sms={"api_base": str(server.make_url("")).rstrip("/"), "app_id": "app-1",
                               "app_key": APP_KEY, "sign_name": "示例公司",
                               "templates": {"overdue": "SMS_OVERDUE_1"}})
    await bot.run("escalations", at("2026-11-20 09:30"))
    [body] = received
    assert body["template_id"] == "SMS_OVERDUE_1" and body["params"]["invoice"] == "INV-9"
    assert body["params"]["days"] == "7" and body["params"]["amount"] == "20,000.00"
