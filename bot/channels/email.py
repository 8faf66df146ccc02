"""Customer e-mail over SMTP (aiosmtplib).

UTF-8 throughout: the subject and display names are RFC 2047 encoded (``=?utf-8?b?...?=``), the
body is ``multipart/alternative`` (plain text + HTML), and the letter, if any, is attached as an
HTML file with an RFC 2231 encoded Chinese file name.

Failures map to the outbox's vocabulary: 5xx replies and refused recipients are permanent,
4xx replies, timeouts and dropped connections are transient.
"""
from __future__ import annotations

import base64
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

import aiosmtplib

from bot.channels.errors import PermanentDeliveryError, TransientDeliveryError
from bot.core.channel import Capabilities
from bot.core.messages import IncomingMessage, OutgoingMessage


def _address(display: str, addr: str) -> Address:
    user, _, domain = addr.partition("@")
    return Address(display_name=display or "", username=user, domain=domain)


class EmailChannel:
    platform = "email"
    capabilities = Capabilities(targets=frozenset({"email"}))   # send-only, to customer contacts

    def __init__(self, config, *, company_name: str = "", clock=None):
        self.config, self.company_name, self.clock = config, company_name, clock

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        raise NotImplementedError("e-mail is send-only")

    def build(self, out: OutgoingMessage) -> EmailMessage:
        cfg = self.config
        msg = EmailMessage(policy=SMTP)
        msg["From"] = _address(cfg.from_name or self.company_name, cfg.from_addr)
        msg["To"] = _address(str(out.extra.get("to_name") or ""), out.target)
        msg["Subject"] = out.title
        if self.clock is not None:
            msg["Date"] = format_datetime(self.clock.now())
        msg["Message-ID"] = make_msgid(domain=cfg.from_addr.partition("@")[2] or None)
        msg.set_content(out.text, subtype="plain", charset="utf-8", cte="base64")
        html = out.extra.get("html")
        if html:
            msg.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
        att = out.extra.get("attachment")
        if att:
            maintype, _, subtype = (att.get("mime") or "text/html").partition("/")
            content = att["content"]
            if att.get("base64"):
                msg.add_attachment(base64.b64decode(content), maintype=maintype, subtype=subtype,
                                   filename=att["filename"])
            elif maintype == "text":
                msg.add_attachment(content, subtype=subtype, charset="utf-8", cte="base64", filename=att["filename"])
            else:
                msg.add_attachment(content.encode("utf-8"), maintype=maintype, subtype=subtype,
                                   filename=att["filename"])
        return msg

    async def deliver(self, out: OutgoingMessage) -> None:
        if "@" not in out.target:
            raise PermanentDeliveryError(f"not an e-mail address: {out.target!r}", code="address")
        cfg = self.config
        msg = self.build(out)
        try:
            await aiosmtplib.send(msg, hostname=cfg.host, port=cfg.port, username=cfg.username or None,
                                  password=cfg.password or None, start_tls=cfg.starttls, use_tls=cfg.use_tls,
                                  timeout=cfg.timeout_seconds)
        except aiosmtplib.SMTPRecipientsRefused as e:
            raise PermanentDeliveryError(f"recipient refused: {out.target}", code=_first_code(e)) from None
        except aiosmtplib.SMTPAuthenticationError as e:
            raise PermanentDeliveryError("SMTP login failed: check [smtp] username/password", code=e.code) from None
        except aiosmtplib.SMTPResponseException as e:
            cls = PermanentDeliveryError if 500 <= e.code < 600 else TransientDeliveryError
            raise cls(f"SMTP {e.code}: {e.message}", code=e.code) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            raise TransientDeliveryError(f"SMTP {type(e).__name__}: {e}", code="smtp") from None


def _first_code(e: aiosmtplib.SMTPRecipientsRefused):
    for r in getattr(e, "recipients", []) or []:
        return getattr(r, "code", None)
    return None
