"""A customer message is true when it leaves.

A reminder, statement or letter to a customer is queued for the next allowed slot and may wait
days (a weekend, the frequency cap, the bot down, the channel failing). Just before the sender
delivers it, this check looks at the ledger as it stands then:

* **dropped, with the reason recorded** (``customer_messages.cancel_reason`` and an audit entry
  ``customer_message.drop``) when it is no longer true: the invoice is paid, written off or
  disputed, a promise to pay holds it, or a message announcing a due date ("将于11月30日到期")
  would arrive on or after that date (``past_due_date``); also when its contact is gone;
* **deferred** to the next allowed slot when it would leave outside working hours, or when the
  per-customer cap (``[conduct] max_messages`` per ``per_days``) is full with what went already —
  a backlog drained at once goes out one slot at a time, not four mails in one second;
* otherwise **rendered again** from the ledger of the day it leaves (amounts, days overdue, the
  letter attached) and released.

The sender (bot/outbox/sender.py) calls :meth:`SendTimeCheck.check` on the rows it claimed,
before it fits or delivers them; rows that are not customer messages pass untouched. It applies
to every customer channel: e-mail, SMS and the customers' group robots alike.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from bot import letters
from bot.core.messages import OutgoingMessage
from bot.jobs.reminders import compose
from storage import customer_messages as cms
from storage import reminders as rem
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

# messages that announce a due date still ahead: untrue from that date on
BEFORE_DUE = ("statement", "pre_due")
BEFORE_DUE_STEPS = ("pre_statement", "pre_due")


@dataclass
class Verdict:
    drop: str | None = None             # the reason it must not go
    later: datetime | None = None       # not now: the next allowed slot
    out: OutgoingMessage | None = None  # go, with this (re-rendered) message


class SendTimeCheck:
    def __init__(self, services):
        self.services = services

    async def check(self, rows: list[OutboxMessage]) -> dict[int, Verdict]:
        """A verdict for each claimed row that is a customer message (by outbox row id)."""
        mine = [r for r in rows if (r.extra or {}).get("customer_message") and "part" not in (r.extra or {})]
        if not mine:
            return {}
        services = self.services
        cfg, cal = services.config, services.calendar
        now = services.clock.now().astimezone(cfg.tz)
        today = now.date()
        decided: dict[int, tuple[str, object]] = {}
        async with services.db.reader() as s:
            found = await cms.by_keys(s, [r.extra["customer_message"] for r in mine])
            went: dict[int, list[date]] = defaultdict(list)      # released in this pass, by customer
            for row in mine:
                cm = found.get(row.extra["customer_message"])
                if cm is None:
                    continue
                decided[row.id] = await self._decide(s, row, cm, now, today, went, cfg, cal)
        out: dict[int, Verdict] = {}

        async def write(s) -> None:
            out.clear()
            for row in mine:
                if row.id not in decided:
                    continue
                cm = found[row.extra["customer_message"]]
                what, value = decided[row.id]
                if what == "drop":
                    await cms.drop(s, cm, value, now)
                    out[row.id] = Verdict(drop=value)
                elif what == "later":
                    await cms.defer(s, cm.id, value)
                    out[row.id] = Verdict(later=value)
                elif await cms.release(s, cm.id, now):
                    msg: OutgoingMessage = value
                    await cms.rewrite(s, row.id, text=msg.text, title=msg.title, target=msg.target, extra=msg.extra)
                    out[row.id] = Verdict(out=msg)
                else:   # cancelled between the read and this write
                    out[row.id] = Verdict(drop=cm.cancel_reason or "cancelled")
        await services.db.write(write)
        for row_id, v in out.items():
            if v.drop:
                log.info("customer message %s not sent: %s", row_id, v.drop)
        return out

    async def _decide(self, s, row: OutboxMessage, cm, now: datetime, today: date, went, cfg, cal):
        if cm.status == "cancelled":
            return "drop", cm.cancel_reason or "cancelled"
        r = await cms.receivable(s, cm.receivable_id)
        if r is not None:
            reason = await rem.blocking_reason(s, r, today, cfg.collection.promise_grace_days, cal)
            if reason:
                return "drop", reason
            spec = (row.extra or {}).get("compose") or {}
            if (spec.get("kind") in BEFORE_DUE or cm.step in BEFORE_DUE_STEPS) and today >= r.due_date:
                return "drop", "past_due_date"
        contact = await cms.contact(s, cm.contact_id)
        if contact is None:
            return "drop", "no_contact"
        # working hours, then the cap with what went already (and what this pass released)
        slot = rem.slot_within_cap(await cms.taken_days(s, cm.customer_id, now, cfg.conduct.per_days, cm.id)
                                   + went[cm.customer_id], now, cfg.conduct, cal)
        if slot > now:
            went[cm.customer_id].append(slot.date())     # the slot is held: the next one waits behind it
            return "later", slot
        went[cm.customer_id].append(today)
        return "go", await self._render(s, row, r, contact, today)

    async def _render(self, s, row: OutboxMessage, r, contact, today: date) -> OutgoingMessage:
        """The message made again from the ledger of ``today``; as queued when it carries no
        recipe (queued before the recipe was stored) or concerns no single invoice."""
        msg = OutgoingMessage(platform=row.platform, target_kind=row.target_kind, target=row.target,
                              text=row.text, format=row.format, title=row.title, extra=dict(row.extra or {}),
                              key=row.idem_key)
        spec = (row.extra or {}).get("compose")
        if not spec or r is None:
            return msg
        data = await letters.facts(s, self.services.config, r, today)
        fresh = compose(self.services.config, contact, data, key=row.extra["customer_message"], kind=spec["kind"],
                        template=spec["template"], letter_kind=spec.get("letter"))
        if fresh.platform != row.platform:
            # the contact moved to another channel since: this row's channel is the one claimed
            return msg
        return dataclasses.replace(fresh, key=row.idem_key)
