"""Customer channels (e-mail, SMS) for the outbox, behind a send-time guard.

``install_customer_channels(state)`` registers the channels for platforms "email" and "sms"
when ``[smtp] host`` / ``[sms] provider`` are set. WeCom and DingTalk customer groups need
nothing here: they are group robots (target_kind "robot") on the existing channels.

Whether a customer message may still go, and what it says, is decided just before the sender
delivers it (bot/send_time_check.py). After a delivery this wrapper records ``sent_at`` (what the
bot knows of a send; it is not proof of delivery for the statute: storage/statute.py).
"""
from __future__ import annotations

from bot.core.messages import IncomingMessage, OutgoingMessage
from storage import reminders as rem


class GuardedCustomerChannel:
    def __init__(self, inner, services):
        self.inner, self.services = inner, services
        self.platform = inner.platform
        self.capabilities = inner.capabilities

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str]:
        return self.inner.reply_route(msg)

    async def deliver(self, out: OutgoingMessage) -> None:
        await self.inner.deliver(out)
        key = out.extra.get("customer_message")
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
