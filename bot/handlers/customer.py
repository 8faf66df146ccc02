"""/customer (/客户): one customer at a glance — credit usage, open items, aging, the last
follow-ups, open promises and disputes, the statute-of-limitations date and a late-fee estimate.

A name is found the way people type it (code, full or short name, pinyin initials, a typo); a
customer outside the caller's scope is refused before any figure is read (bot/core/arguments.py). The rules behind the
figures are in ``storage/customer_card.py``.
"""
from __future__ import annotations

from bot.core.arguments import CustomerArg
from bot.core.messages import Reply
from bot.core.permissions import READERS
from bot.core.router import Router
from storage import freezes
from bot.letters import fee_tiers
from storage.customer_card import customer_card
from storage.payment_history import profiles_of

router = Router("customer")


@router.command("customer", aliases=("客户",), roles=READERS, reads_only=True, args=CustomerArg())
async def customer_cmd(session, customer, config, clock, services) -> Reply:
    """Credit, open items, aging, follow-ups, promises, disputes, statute date and late fees of a customer."""
    tiers = fee_tiers(config, customer)          # the customer's contract clause; none: no fee
    card = await customer_card(session, customer, clock.today(), bounds=config.aging.buckets,
                               fx_rates=config.company.fx_rates, base_currency=config.company.currency,
                               tiers=tiers, credit=config.credit, statute=config.statute,
                               work_calendar=services.calendar, tz=config.tz, cap_ratio=config.late_fees.cap_ratio)
    profile = (await profiles_of(session, {customer.id: customer.grade}, clock.today()))[customer.id]
    return Reply("customer/card.md.j2", {"card": card, "tiers": [{"from_day": d, "rate": str(r)} for d, r in tiers],
                                         "cap": config.late_fees.cap_ratio, "tz": config.tz,
                                         "profile": profile, "freeze": await freezes.freeze_of(session, customer)})
