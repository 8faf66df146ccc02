"""Customer channels (e-mail, SMS) for the outbox, behind a send-time guard.

``install_customer_channels(state)`` registers the channels for platforms "email" and "sms"
when ``[smtp] host`` / ``[sms] provider`` are set. WeCom and DingTalk customer groups need
nothing here: they are group robots (target_kind "robot") on the existing channels.

The guard re-checks, just before a customer message leaves, that its reason still holds (see
``storage/reminders.py``): the transactional cancel normally stops such a message first, so a
refusal here means something changed the ledger behind the ORM's back; the message is
dead-lettered with code "cancelled" so that it shows. After a delivery it records ``sent_at``
(a delivered written notice restarts the statute of limitations).
"""
from __future__ import annotations

import logging

from bot.channels.errors import PermanentDeliveryError
from bot.core.messages import IncomingMessage, OutgoingMessage
from storage import reminders as rem

log = logging.getLogger(__name__)


class GuardedCustomerChannel:
    def __init__(self, inner, services):
        self.inner, self.services = inner, services
        self.platform = inner.platform
        self.capabilities = inner.capabilities

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        return self.inner.reply_route(msg)

    async def deliver(self, out: OutgoingMessage) -> None:
        key = out.extra.get("customer_message")
        if key:
            now = self.services.clock.now()
            async with self.services.db.session() as s, s.begin():
                reason = await rem.vanished_reason(s, key, now.astimezone(self.services.config.tz).date(),
                                                   self.services.config.collection.promise_grace_days,
                                                   self.services.calendar)
                if reason:
                    await rem.mark_message(s, key, cancelled=reason)
            if reason:
                log.warning("customer message %s not sent: %s (cancelled at send time)", key, reason)
                raise PermanentDeliveryError(f"cancelled at send time: {reason}", code="cancelled")
        await self.inner.deliver(out)
        if key:
            async with self.services.db.session() as s, s.begin():
                await rem.mark_message(s, key, sent_at=self.services.clock.now())


def install_customer_channels(state, *, email=None, sms=None) -> None:
    """Register the customer channels (``email``/``sms`` override the configured transports, e.g. in tests)."""
    cfg, services = state.config, state.services
    if email is None and cfg.smtp.enabled:
        from bot.channels.email import EmailChannel
        email = EmailChannel(cfg.smtp, company_name=cfg.company.name, clock=services.clock)
    if sms is None and cfg.sms.enabled:
        from bot.channels.sms import SmsChannel
        sms = SmsChannel(cfg.sms, clock=services.clock)
    for channel in (email, sms):
        if channel is not None:
            state.channels[channel.platform] = GuardedCustomerChannel(channel, services)
            state.channel_health.add(channel.platform)
