"""A job's pass over the open ledger in the shape SQLite needs: read without the write lock,
decide in memory, write in short steps.

The reminder and ladder jobs decide something for each open invoice. Done one invoice at a time
in the write transaction (look up its steps, its promise, its contact, its people, its
customer's other invoices; flush; next) the first run over a 20,000-invoice ledger took four to
six minutes and held the write lock for all of it. Here:

* **Read** a chunk of customers at a time in a reader session (no lock): their open invoices,
  the steps already recorded, live promises, contacts, the messages that count against each
  customer's cap, open disputes' reasons. People are read once for the whole pass.
* **Decide** in memory, invoice by invoice, giving the event loop a turn after each one.
* **Write** what was decided with a few executemany statements in the job's session and commit
  (:meth:`LedgerPass.write`), every :data:`WRITE_ROWS` rows or so, so a person's write waits at
  most one such step. Before writing, the invoices that get a customer message are checked again
  in the write transaction: one disputed, paid or promised since the read gets no message.

Every unit is idempotent for the fire (steps insert-or-ignore, outbox keys), so a pass stopped
between writes is finished by running the fire again.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Callable

from sqlalchemy import func, select

from bot import digests, letters, notify, outbox
from bot.core.messages import OutgoingMessage
from bot.jobs.context import JobContext
from storage import audit, balance_history
from storage import digests as digest_store
from storage import reminders as rem
from storage import unapplied as unapplied_q
from storage.models import Contact, CreditAlert, Customer, Person, Receivable
from storage.people import Directory

CUSTOMERS_PER_READ = 200
# ... and at most about this many of their open invoices: a read is loaded into ORM objects on the
# event loop in one piece, and 200 customers held ~10,000 invoices at 1M receivables (a stall of
# most of a second that every chat message in line waited behind)
INVOICES_PER_READ = 1_000
WRITE_ROWS = 2_000          # rows decided before they are written (a write step of ~0.1 s)


@dataclass
class CustomerView:
    """One customer as the pass read it."""
    customer: Customer
    first_contact: Contact | None      # the one letters name
    contact: Contact | None            # the first with a usable channel: where reminders go
    open_rs: list[Receivable]          # open invoices, by due date
    reasons: dict[int, str]            # open disputes' reasons
    taken: list[date]                  # days of its messages that count against the cap
    unapplied: dict = field(default_factory=dict)   # its unapplied cash per currency (a letter's balance)
    cuts: dict = field(default_factory=dict)   # what lowered its overdue invoices' balances (late-fee clause only)
    _facts: dict | None = None

    def facts(self, ctx: JobContext, r: Receivable) -> dict:
        """``letters.facts`` for one of its invoices (the customer part worked out once)."""
        if self._facts is None:
            self._facts = letters.customer_facts(ctx.config, self.customer, self.first_contact, self.open_rs,
                                                 self.reasons, ctx.today, self.cuts, unapplied=self.unapplied)
        tiers = letters.fee_tiers(ctx.config, self.customer)
        return {**self._facts, "invoice": letters.invoice_facts(r, ctx.today, tiers, self.cuts.get(r.id, ()),
                                                                ctx.config.late_fees.cap_ratio)}


@dataclass
class Chunk:
    rows: list[tuple[Receivable, CustomerView]]
    recorded: dict[int, dict[str, str]]      # invoice → step → fired | skipped | held
    promised: set[int]                       # invoices a live promise holds


@dataclass
class _Pending:
    steps: list[dict] = field(default_factory=list)
    held_fired: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    outbox: list[dict] = field(default_factory=list)
    digests: list[dict] = field(default_factory=list)
    customer_messages: list[dict] = field(default_factory=list)
    frozen: list[int] = field(default_factory=list)
    alerts: list[tuple[CreditAlert, Callable[[CreditAlert], None] | None]] = field(default_factory=list)
    cleared: list[int] = field(default_factory=list)
    work: list[Callable[[], None]] = field(default_factory=list)
    covers: dict[str, list[int]] = field(default_factory=dict)   # a letter's outbox key → the invoices it lists

    def size(self) -> int:
        # an alert is an ORM insert that fetches its id, ~1 ms each: weighed 3, a credit_watch
        # write step of ~650 alerts held the write gate up to 0.8 s at 200k (gate log, bench load)
        return (100 * len(self.work) + len(self.steps) + len(self.held_fired) + len(self.audit) + len(self.outbox) + len(self.digests)
                + len(self.customer_messages) + len(self.frozen) + 10 * len(self.alerts) + len(self.cleared))


class LedgerPass:
    def __init__(self, ctx: JobContext, people: Directory, job: str = ""):
        self.ctx = ctx
        self.people = people
        self.job = job or ctx.job
        self.documents: set[str] = set()      # document keys queued in this run (one per customer)
        self.pending = _Pending()
        self.staff_slot = (rem.next_slot(ctx.at, ctx.config.conduct, ctx.services.calendar)
                           if ctx.config.conduct.staff_hours else ctx.at)

    @classmethod
    async def start(cls, ctx: JobContext, job: str) -> "LedgerPass":
        """``job``: the job's name, which its digests carry (the runner's name for it)."""
        async with ctx.reader() as r:
            return cls(ctx, await Directory.load(r), job)

    # -- reading ---------------------------------------------------------------------------

    async def chunks(self, *, due_before: date | None = None, due_on_or_after: date | None = None):
        """The open invoices due in the range with their customers, a chunk of customers at a
        time, each chunk in due-date order."""
        ctx = self.ctx
        wanted = rem.open_select(due_before=due_before, due_on_or_after=due_on_or_after) \
            .with_only_columns(Receivable.customer_id).distinct()
        # a read takes every open invoice of its customers, in range or not
        sizes = rem.open_select().with_only_columns(Receivable.customer_id, func.count()) \
            .where(Receivable.customer_id.in_(wanted)).group_by(Receivable.customer_id)
        async with ctx.reader() as r:
            open_counts = sorted((cid, n) for cid, n in await r.execute(sizes))
        for ids in _reads(open_counts):
            async with ctx.reader() as r:
                chunk = await self._read(r, ids, due_before, due_on_or_after)
            yield chunk

    async def _read(self, r, customer_ids: list[int], due_before, due_on_or_after) -> Chunk:
        ctx = self.ctx
        customers = {c.id: c for c in (await r.execute(select(Customer).where(Customer.id.in_(customer_ids)))).scalars()}
        open_rs = (await r.execute(rem.open_select().where(Receivable.customer_id.in_(customer_ids))
                                   .order_by(Receivable.due_date, Receivable.id))).scalars().all()
        by_customer: dict[int, list[Receivable]] = {cid: [] for cid in customer_ids}
        for x in open_rs:
            by_customer[x.customer_id].append(x)
        contacts = await rem.contacts(r, customer_ids)
        taken = await rem.message_days(r, customer_ids, ctx.at, ctx.config.conduct)
        reasons = await letters.dispute_reasons(r, [x.id for x in open_rs if x.disputed])
        on_account = await unapplied_q.by_customer(r, customer_ids)
        # a late fee is computed on the daily balance, so it needs the payments of the overdue
        # invoices, read only for customers whose contract has a clause
        charged = {cid for cid, c in customers.items() if letters.fee_tiers(ctx.config, c)}
        cuts = await balance_history.reductions(r, [x.id for x in open_rs if x.customer_id in charged
                                                    and x.due_date < ctx.today]) if charged else {}
        views = {}
        for cid, c in customers.items():
            listed, usable = contacts.get(cid, ([], None))
            views[cid] = CustomerView(c, listed[0] if listed else None, usable, by_customer[cid], reasons,
                                      taken.get(cid, []), on_account.get(cid, {}), cuts)
        rows = [(x, views[x.customer_id]) for x in open_rs
                if (due_before is None or x.due_date < due_before)
                and (due_on_or_after is None or x.due_date >= due_on_or_after)]
        ids = [x.id for x, _ in rows]
        return Chunk(rows, await rem.fired_steps(r, ids),
                     await rem.promised(r, ids, ctx.today, ctx.config.collection.promise_grace_days,
                                        ctx.services.calendar))

    # -- deciding ---------------------------------------------------------------------------

    def step(self, r: Receivable, step: str, status: str = "fired", *, was_held: bool = False, **detail) -> None:
        """Record a step of an invoice, with its audit entry (``rem.fire_step`` for this pass)."""
        at = self.ctx.at
        if was_held:
            self.pending.held_fired.append({"receivable_id": r.id, "step": step, "fired_at": at})
        else:
            self.pending.steps.append(rem.step_row(r.id, step, at, status))
        self.audit(action=rem.STEP_ACTIONS[status], entity="receivable", entity_id=r.invoice_no, step=step, **detail)

    def audit(self, **entry) -> None:
        self.pending.audit.append(audit.entry(at=self.ctx.at, actor="bot", channel="job", **entry))

    def freeze(self, c: Customer, *, quiet: bool = False, **detail) -> bool:
        """New orders paused for the customer (once; unfreezing is a person's decision). Audited
        as customer.freeze unless ``quiet`` (the caller's own entry says so)."""
        if c.status != "active":
            return False
        c.status = "frozen"
        self.pending.frozen.append(c.id)
        if not quiet:
            self.audit(action="customer.freeze", entity="customer", entity_id=c.code, **detail)
        return True

    def new_alert(self, alert: CreditAlert, then: Callable[[CreditAlert], None] | None = None) -> None:
        """A credit alert to open; ``then(alert)`` runs once it has its id (messages keyed by it)."""
        self.pending.alerts.append((alert, then))

    def clear_alert(self, alert_id: int) -> None:
        self.pending.cleared.append(alert_id)

    def people_for(self, roles, r: Receivable | None, c: Customer) -> list[Person]:
        """Who of ``roles`` hears about this invoice (or customer): its rep, the rep's
        supervisor, the director, or everyone active in a role; each person once."""
        d, cfg = self.people, self.ctx.config
        rep = d.get((r.rep_id if r is not None else None) or c.rep_id)
        out: dict[str, Person] = {}
        for role in roles:
            if role == "rep":
                found = [rep]
            elif role == "supervisor":
                found = [d.supervisor_of(rep)] if rep else []
            elif role == "director":
                pid = cfg.policy.director or cfg.permissions.sales_director
                found = [d.get(pid)] if pid else d.by_role("manager")
            else:
                found = d.by_role(role)
            for p in found:
                if p is not None and p.active and p.id not in out:
                    out[p.id] = p
        return list(out.values())

    def rep_of(self, r: Receivable, c: Customer) -> Person | None:
        return self.people.get(r.rep_id or c.rep_id)

    def to_staff(self, persons: list[Person], *, key: str, kind: str, rank: int, label: str, customer: Customer,
                 subject: str, line: str, amount=None, currency: str | None = None) -> None:
        """Tell ``persons`` about an invoice (or a customer): a line of each one's digest of this
        run (bot/digests.py), written with the step it belongs to; :meth:`send_digests` sends them."""
        self.pending.digests.extend(digests.items(
            self.ctx, persons, key=key, kind=kind, rank=rank, label=label, customer=customer, subject=subject,
            amount=amount, currency=currency, line=line, job=self.job, not_before=self.staff_slot))

    async def send_digests(self) -> int:
        """Write what is pending, then queue each person's digest of this run."""
        await self.write()
        return await digests.send(self.ctx, self.job)

    def document_to_staff(self, persons: list[Person], text: str, *, key: str, title: str) -> None:
        """A document for staff to review (a letter draft): a message of its own, since it is used
        as it stands; the digest line says it was made."""
        for p in persons:
            addr = notify.address(p, self.ctx.services.platforms)
            if addr is None:
                continue
            out = OutgoingMessage(platform=addr[0], target_kind="user", target=addr[1], text=text, title=title)
            self.pending.outbox.append(outbox.pending_row(out, f"{key}:{p.id}", self.ctx.at, self.staff_slot))

    def later(self, work: Callable[[], None]) -> None:
        """Blocking work (a letter's PDF: seconds of font subsetting) done in a thread before
        the next write, outside any write transaction, so the event loop keeps answering chat."""
        self.pending.work.append(work)

    def customer_slot(self, view: CustomerView) -> datetime:
        ctx = self.ctx
        return rem.slot_within_cap(view.taken, ctx.at, ctx.config.conduct, ctx.services.calendar)

    def to_customer(self, view: CustomerView, r: Receivable, out: OutgoingMessage, *, key: str, step: str,
                    kind: str, slot: datetime, covers: list[int] = ()) -> None:
        """Queue a message to the customer's contact at ``slot`` (from :meth:`customer_slot`);
        ``covers``: the invoices its letter lists besides ``r``."""
        now = self.ctx.at
        if covers:
            self.pending.covers[key] = list(covers)
        self.pending.outbox.append(outbox.pending_row(out, key, now, slot))
        self.pending.customer_messages.append(rem.customer_message_row(
            customer_id=view.customer.id, contact=view.contact, receivable_id=r.id, step=step, kind=kind,
            outbox_key=key, now=now, send_at=max(slot, now)))
        view.taken.append(slot.date())

    # -- writing ----------------------------------------------------------------------------

    async def maybe_write(self) -> None:
        """Give the event loop a turn; write and commit once enough is decided."""
        if self.pending.size() >= WRITE_ROWS:
            await self.write()
        else:
            await self.ctx.checkpoint()

    async def write(self) -> None:
        """Write what was decided in the job's session and commit (a short write step)."""
        ctx, p, s = self.ctx, self.pending, self.ctx.session
        for work in p.work:
            # a stop asked for between two letters is honoured now, not after all of them (each
            # is about a second of font work): nothing of this step is written yet, and the next
            # start decides it again
            await ctx.checkpoint()
            await asyncio.to_thread(work)
        if p.customer_messages:
            blocked = await rem.blocked_now(s, sorted({m["receivable_id"] for m in p.customer_messages}), ctx.today,
                                            ctx.config.collection.promise_grace_days, ctx.services.calendar)
            if blocked:
                dropped = {m["outbox_key"] for m in p.customer_messages if m["receivable_id"] in blocked}
                p.customer_messages = [m for m in p.customer_messages if m["outbox_key"] not in dropped]
                p.outbox = [o for o in p.outbox if o["idem_key"] not in dropped]
        if p.covers:
            # a letter lists the customer's other overdue invoices as they were read: one disputed
            # or settled since must not be demanded, so that letter is not sent (better none than
            # a wrong one; the staff's digest still has the step)
            ids = sorted({i for c in p.covers.values() for i in c})
            changed: set[int] = set()
            for i in range(0, len(ids), 500):
                changed |= {r.id for r in (await s.execute(select(
                    Receivable.id, Receivable.status, Receivable.open_amount, Receivable.disputed)
                    .where(Receivable.id.in_(ids[i:i + 500])))).all() if rem.ledger_block(r)}
            stale = {k for k, c in p.covers.items() if changed & set(c)}
            if stale:
                p.customer_messages = [m for m in p.customer_messages if m["outbox_key"] not in stale]
                p.outbox = [o for o in p.outbox if o["idem_key"] not in stale]
        if p.alerts:
            s.add_all([a for a, _ in p.alerts])
            await s.flush()
            for a, then in p.alerts:
                if then is not None:
                    then(a)
        await rem.clear_alerts(s, p.cleared, ctx.at)
        await rem.record_steps(s, p.steps, p.held_fired)
        await audit.record_many(s, p.audit)
        await outbox.enqueue_rows(s, p.outbox)
        await digest_store.record(s, p.digests)
        await rem.record_customer_messages(s, p.customer_messages)
        await rem.freeze(s, p.frozen)
        self.pending = _Pending()
        await ctx.checkpoint(force=True)


def _reads(open_counts: list[tuple[int, int]]) -> list[list[int]]:
    """Customer ids (with their open invoice counts, in id order) cut into reads of at most
    ``CUSTOMERS_PER_READ`` customers and about ``INVOICES_PER_READ`` invoices; a customer with
    more invoices than that is a read of its own."""
    reads: list[list[int]] = []
    size = 0
    for cid, n in open_counts:
        if not reads or len(reads[-1]) >= CUSTOMERS_PER_READ or size and size + n > INVOICES_PER_READ:
            reads.append([])
            size = 0
        reads[-1].append(cid)
        size += n
    return reads
