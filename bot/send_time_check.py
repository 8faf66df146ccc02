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

import asyncio
import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from bot import letters
from bot.core.messages import OutgoingMessage
from bot.jobs.reminders import _attachment, compose
from storage import balance_history
from storage import unapplied as unapplied_q
from storage import customer_messages as cms
from storage import reminders as rem
from storage.models import Contact, Customer, OutboxMessage, Receivable

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
            batch = await _Batch.read(s, list(found.values()), now, cfg, cal)
            went: dict[int, list[date]] = defaultdict(list)      # released in this pass, by customer
            for row in mine:
                cm = found.get(row.extra["customer_message"])
                if cm is None:
                    continue
                decided[row.id] = await self._decide(s, batch, row, cm, now, today, went, cfg, cal)
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

    async def _decide(self, s, batch: "_Batch", row: OutboxMessage, cm, now: datetime, today: date, went, cfg, cal):
        if cm.status == "cancelled":
            return "drop", cm.cancel_reason or "cancelled"
        r = batch.receivables.get(cm.receivable_id)
        if r is not None:
            reason = rem.ledger_block(r) or ("promise" if r.id in batch.promised else None)
            if reason:
                return "drop", reason
            spec = (row.extra or {}).get("compose") or {}
            if (spec.get("kind") in BEFORE_DUE or cm.step in BEFORE_DUE_STEPS) and today >= r.due_date:
                return "drop", "past_due_date"
        contact = batch.contacts.get(cm.contact_id)
        if contact is None:
            return "drop", "no_contact"
        # working hours, then the cap with what went already (and what this pass released)
        taken = cms.taken_days(batch.cap.get(cm.customer_id, []), now, cm.id) + went[cm.customer_id]
        slot = rem.slot_within_cap(taken, now, cfg.conduct, cal)
        if slot > now:
            went[cm.customer_id].append(slot.date())     # the slot is held: the next one waits behind it
            return "later", slot
        went[cm.customer_id].append(today)
        return "go", await self._render(s, batch, row, r, contact, today)

    async def _render(self, s, batch: "_Batch", row: OutboxMessage, r, contact, today: date) -> OutgoingMessage:
        """The message made again from the ledger of ``today``; as queued when it carries no
        recipe (queued before the recipe was stored) or concerns no single invoice."""
        msg = OutgoingMessage(platform=row.platform, target_kind=row.target_kind, target=row.target,
                              text=row.text, format=row.format, title=row.title, extra=dict(row.extra or {}),
                              key=row.idem_key)
        spec = (row.extra or {}).get("compose")
        if not spec or r is None:
            return msg
        config = self.services.config
        data = await batch.customer_facts(s, config, r.customer_id, today)
        tiers = letters.fee_tiers(config, data["customer"])      # the contract's clause; none: no fee
        cuts = (await balance_history.reductions(s, [r.id]))[r.id] if tiers else []
        data = {**data, "invoice": letters.invoice_facts(r, today, tiers, cuts, config.late_fees.cap_ratio)}
        fresh = compose(config, contact, data, key=row.extra["customer_message"], kind=spec["kind"],
                        template=spec["template"], letter_kind=spec.get("letter"))
        if fresh.platform != row.platform:
            # the contact moved to another channel since: this row's channel is the one claimed
            return msg
        if "attachment" in fresh.extra and spec.get("letter"):
            # the letter as of today, as a PDF made in a thread (about a second of font work)
            letter = letters.render_letter(spec["letter"], data)
            fresh.extra["attachment"] = await asyncio.to_thread(_attachment, config, letter)
        return dataclasses.replace(fresh, key=row.idem_key)


@dataclass
class _Batch:
    """What the check needs for a batch of messages, read in a few queries (one message at a
    time it was some 40 ms each on a busy machine, hours for a large backlog)."""
    receivables: dict[int, Receivable]
    promised: set[int]
    contacts: dict[int, Contact]
    cap: dict[int, list]
    _facts: dict[int, dict] = field(default_factory=dict)
    _customers: dict[int, Customer] | None = None
    _open: dict[int, list[Receivable]] | None = None
    _reasons: dict[int, str] | None = None
    _first: dict[int, Contact | None] | None = None

    @classmethod
    async def read(cls, s, messages: list, now: datetime, cfg, cal) -> "_Batch":
        live = [m for m in messages if m.status != "cancelled"]
        receivables = await cms.by_ids(s, Receivable, [m.receivable_id for m in live])
        promised = await rem.promised(s, sorted(receivables), now.date(), cfg.collection.promise_grace_days, cal)
        contacts = await cms.by_ids(s, Contact, [m.contact_id for m in live])
        cap = await cms.cap_rows(s, [m.customer_id for m in live], now, cfg.conduct.per_days)
        return cls(receivables, promised, contacts, cap)

    async def customer_facts(self, s, config, customer_id: int, today: date) -> dict:
        """``letters.customer_facts`` of a customer, worked out once a batch."""
        if customer_id not in self._facts:
            if self._customers is None:
                cids = sorted({r.customer_id for r in self.receivables.values()})
                self._customers = await cms.by_ids(s, Customer, cids)
                self._open = await cms.open_receivables(s, cids)
                self._reasons = await letters.dispute_reasons(
                    s, [r.id for rs in self._open.values() for r in rs if r.disputed])
                self._first = {cid: (listed[0] if listed else None)
                               for cid, (listed, _) in (await rem.contacts(s, cids)).items()}
            customer, open_rs = self._customers[customer_id], self._open.get(customer_id, [])
            # a late fee is charged on each day's balance: the payments of the overdue invoices
            cuts = await balance_history.reductions(s, [x.id for x in open_rs if x.due_date < today]) \
                if letters.fee_tiers(config, customer) else {}
            # the customer's money not yet applied: a balance confirmation states it (and the net)
            unapplied = (await unapplied_q.by_customer(s, [customer_id])).get(customer_id, {})
            self._facts[customer_id] = letters.customer_facts(
                config, customer, self._first.get(customer_id), open_rs, self._reasons, today, cuts,
                unapplied=unapplied)
        return self._facts[customer_id]
