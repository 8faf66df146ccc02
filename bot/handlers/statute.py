"""/statute (/时效): one invoice's statute of limitations (诉讼时效) and what bears on it, and
recording the evidence that interrupts it.

``/statute <invoice>`` shows the last day, what the period runs from, the debtor's acts after a
lapse and the notices that did not count (and why). ``/statute <invoice> <evidence> [date]
[reference or note…]`` records an event with its proof — finance and legal only:

==================  ==================================================================
确认函 / 签认       a balance confirmation the customer signed (the debtor's acknowledgement)
书面确认 / 还款计划  another written acknowledgement of the debt by the customer
回复 / 回函          the customer's reply to a demand (proof it reached them)
挂号信 / EMS         a registered letter or EMS the customer signed for
起诉 / 仲裁          a lawsuit or arbitration filed, a payment order applied for
==================  ==================================================================

Whether a demand counts is ``[statute] notice_evidence``; the rules are domain/statute.py. The
date defaults to today and may not lie in the future.
"""
from __future__ import annotations

from bot.core.arguments import InvoiceArg, happened_on
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import READERS, STATUTE_RECORDERS
from bot.core.router import Router
from storage import statute as statute_q
from storage.models import Customer

router = Router("statute")

EVIDENCE_WORDS = {
    "确认函": "signed_confirmation", "签认": "signed_confirmation", "对账单": "signed_confirmation",
    "书面确认": "acknowledgement", "还款计划": "acknowledgement", "承诺函": "acknowledgement",
    "回复": "customer_reply", "回函": "customer_reply", "客户回复": "customer_reply",
    "挂号信": "registered_letter", "EMS": "registered_letter", "ems": "registered_letter",
    "起诉": "lawsuit", "仲裁": "lawsuit", "支付令": "lawsuit",
}


@router.command("statute", aliases=("时效",), roles=READERS, args=InvoiceArg(rest="none"))
async def statute_cmd(session, receivable, rest, person, clock, config, services, message) -> Reply:
    """An invoice's statute of limitations; with evidence, record what interrupts it."""
    r, today = receivable, clock.today()
    recorded = None
    if rest:
        words = rest.split()
        evidence = EVIDENCE_WORDS.get(words[0])
        if evidence is None:
            raise UsageError("bad_evidence", value=words[0])
        if person.role not in STATUTE_RECORDERS:
            raise UserError("statute_record_forbidden")
        on, tail = happened_on(words[1:], today)
        reference, note = (tail[0], " ".join(tail[1:])) if tail else ("", "")
        recorded = statute_q.record_evidence(session, receivable=r, evidence=evidence, on=on, reference=reference,
                                             note=note, actor=person.id, channel=message.platform, now=clock.now())
        await session.flush()
    customer = await session.get(Customer, r.customer_id)
    rk = (await statute_q.reckonings(session, [r], today=today, statute=config.statute,
                                     cross_border={customer.id: customer.cross_border},
                                     work_calendar=services.calendar, tz=config.tz))[r.id]
    return Reply("statute/statute.md.j2", {"r": r, "customer": customer, "rk": rk, "today": today,
                                           "years": statute_q.years_for(config.statute, customer.cross_border),
                                           "recorded": recorded, "counted": config.statute.notice_evidence})
