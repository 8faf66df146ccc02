"""The ledger (应收账款台账) and the bot's own bookkeeping, as SQLAlchemy 2 models.

Relationships are ``lazy="raise_on_sql"`` so no query hides behind an attribute access;
query functions in ``storage/*.py`` load what they need explicitly.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import Money, UTCDateTime

ROLES = ("rep", "supervisor", "finance", "legal", "manager", "auditor", "admin")
GRADES = ("A", "B", "C")
CUSTOMER_STATUSES = ("active", "frozen", "blacklisted")
# open → partially_paid → paid; disputed pauses reminders; in_legal; written_off stays recoverable
RECEIVABLE_STATUSES = ("open", "partially_paid", "paid", "disputed", "promised", "in_legal", "written_off")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, Decimal: Money}


class Person(Base):
    __tablename__ = "people"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)        # 员工编号
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    supervisor_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"), index=True)
    team: Mapped[str] = mapped_column(String(100), default="", index=True)
    mobile: Mapped[str] = mapped_column(String(32), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Loaded with the person, in one batched query per load (selectin), never on attribute access:
    # a person is read almost always to be addressed, and a job addresses thousands at once.
    accounts: Mapped[list[PersonAccount]] = relationship(lazy="selectin", cascade="all, delete-orphan",
                                                         order_by="PersonAccount.platform")

    def account(self, platform: str) -> str | None:
        """This person's user id on ``platform``, if they have one there."""
        return next((a.user_id for a in self.accounts if a.platform == platform), None)


class PersonAccount(Base):
    """Who a person is on one chat platform: how an incoming message is tied to a person, and
    where a person is reached. A user id belongs to one person; a person has at most one per
    platform. Platforms are the registry's names (bot/core/channel.py); storage knows none."""
    __tablename__ = "person_accounts"
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    __table_args__ = (UniqueConstraint("person_id", "platform", name="uq_person_accounts_person_platform"),)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)           # 客户编码
    name: Mapped[str] = mapped_column(String(200), index=True)
    grade: Mapped[str] = mapped_column(String(1), default="B")
    credit_limit: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    rep_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"), index=True)
    region: Mapped[str] = mapped_column(String(100), default="", index=True)
    cross_border: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="active")
    broken_promises: Mapped[int] = mapped_column(Integer, default=0)   # counts against standing
    # the contract's late-fee clause (domain/late_fees.py): "" none, "standard", or a daily rate
    late_fee_rate: Mapped[str] = mapped_column(String(20), default="", server_default="")
    contacts: Mapped[list[Contact]] = relationship(back_populates="customer", lazy="raise_on_sql",
                                                   order_by="Contact.id")


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    mobile: Mapped[str] = mapped_column(String(32), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    # email | sms | "<platform>_group" (a group robot of that platform, named by channel_target)
    channel: Mapped[str] = mapped_column(String(20), default="email")
    channel_target: Mapped[str] = mapped_column(String(200), default="")  # robot name for group channels
    customer: Mapped[Customer] = relationship(back_populates="contacts", lazy="raise_on_sql")


class Receivable(Base):
    __tablename__ = "receivables"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_no: Mapped[str] = mapped_column(String(64), unique=True)     # 发票号 / 送货单号
    contract_no: Mapped[str] = mapped_column(String(64), default="")
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    rep_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"), index=True)
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal]
    # amount − allocations − write-offs; kept in the same transaction as every change so that
    # "now" questions (aging, overdue lists) need no joins. Checked by property tests.
    open_amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    terms: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="open")
    disputed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_receivables_open_due", "open_amount", "due_date"),
        # /aging: open cents per due date and currency from the index alone (storage/aging.py);
        # partial, so paid invoices (a growing share of an old ledger) cost nothing
        Index("ix_receivables_open_aging", "due_date", "currency", "open_amount",
              sqlite_where=text("open_amount > 0"), postgresql_where=text("open_amount > 0")),
        Index("ix_receivables_issue_date", "issue_date"),     # max(issue_date): is an "as of" date settled?
        # /aging's top overdue customers: open cents per customer and currency from the index alone
        Index("ix_receivables_open_customer", "customer_id", "currency", "due_date", "open_amount", "status",
              sqlite_where=text("open_amount > 0"), postgresql_where=text("open_amount > 0")),
    )


class AgingTotal(Base):
    """Open cents and count per due date and currency over the receivables with open_amount > 0:
    what company-wide /aging reads instead of scanning the ledger (storage/aging.py). Written only
    by the database triggers on receivables (migration 0004), in the transaction of every change,
    whichever writer made it (ORM, Core executemany, raw SQL). Rows that reach 0/0 are deleted."""
    __tablename__ = "aging_totals"
    due_date: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    open_cents: Mapped[int] = mapped_column(BigInteger)
    open_count: Mapped[int] = mapped_column(Integer)
    __table_args__ = {"sqlite_with_rowid": False}      # clustered on the key the triggers look up


class AgingDelta(Base):
    """PostgreSQL only (empty on SQLite): the changes to aging_totals a transaction has made and
    not yet applied. Its row triggers append here (per transaction id, so transactions never wait
    on each other) and a deferred trigger applies them to aging_totals at commit, in key order —
    so concurrent payments and imports cannot deadlock on the shared per-day rows (migration 0004)."""
    __tablename__ = "aging_deltas"
    txid: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    due_date: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    open_cents: Mapped[int] = mapped_column(BigInteger)
    open_count: Mapped[int] = mapped_column(Integer)


class Payment(Base):
    """Money the customer no longer owes: a receipt (``kind`` receipt), or a credit note (红字发票,
    ``kind`` credit_note) — a negative invoice numbered ``reference``, linked to the invoice it
    corrects (``invoice_no``) and allocated to it like a receipt, so balances and aging as of any
    date follow it; collection figures count receipts only."""
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), default="receipt", server_default="receipt")
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    amount: Mapped[Decimal]
    unallocated: Mapped[Decimal]                # on account (预收) when more was paid than owed
    paid_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(100), unique=True)  # bank serial 流水号
    invoice_no: Mapped[str] = mapped_column(String(64), default="")  # the invoice the payer named, if any
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    recorded_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime | None]
    # a receipt in another currency than the invoices it pays: what came in, and the rate used
    # (CNY per unit of the foreign currency) to book ``amount`` in ``currency``
    received_amount: Mapped[Decimal | None]
    received_currency: Mapped[str | None] = mapped_column(String(3))
    fx_rate: Mapped[str | None] = mapped_column(String(20))        # exact decimal text
    # reversed (冲销): its allocations are removed, the row stays with who, when and why
    reversed_at: Mapped[datetime | None]
    reversed_by: Mapped[str | None] = mapped_column(String(64))
    reversal_reason: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (
        # unapplied cash (storage/unapplied.py): only the payments with money on account
        Index("ix_payments_on_account", "customer_id", "currency", "paid_on", "unallocated",
              sqlite_where=text("unallocated > 0"), postgresql_where=text("unallocated > 0")),
    )


class StatuteEvidence(Base):
    """An event that bears on an invoice's statute of limitations (诉讼时效), recorded with its
    proof: the customer signed a balance confirmation or another written acknowledgement, replied
    to a demand, signed for a registered letter, or a lawsuit was filed (domain/statute.py decides
    what each one does). Payments and the bot's own messages are read from their own tables."""
    __tablename__ = "statute_evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"), index=True)
    happened_on: Mapped[date] = mapped_column(Date)                       # the day it happened
    evidence: Mapped[str] = mapped_column(String(30))                    # domain.statute.EVIDENCE
    reference: Mapped[str] = mapped_column(String(200), default="")      # tracking no., document…
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]


class Confirmation(Base):
    """A question the bot asked before changing the ledger (a payment above the open balance, a
    likely duplicate): the action waits here until its person confirms it, once, before it expires."""
    __tablename__ = "confirmations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))                       # paid
    payload: Mapped[dict] = mapped_column(JSON, default=dict)            # what to do, as typed and resolved
    reasons: Mapped[list] = mapped_column(JSON, default=list)            # over_balance | duplicate
    asked_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="open")     # open | done | superseded
    done_at: Mapped[datetime | None]
    result: Mapped[dict] = mapped_column(JSON, default=dict)             # e.g. {"payment": id}


class PaymentClaim(Base):
    """A rep reported that the customer paid (称已付款): for finance to confirm against the bank.
    Closed by the payment finance records on the invoice, or dismissed by finance."""
    __tablename__ = "payment_claims"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"), index=True)
    followup_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id"))
    amount: Mapped[Decimal | None]                     # as the rep wrote it; None: "paid", no figure
    open_then: Mapped[Decimal]                         # the invoice's open balance when claimed
    claimed_by: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)   # open | closed | dismissed | withdrawn
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(Text, default="")


class Allocation(Base):
    __tablename__ = "allocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"), index=True)
    amount: Mapped[Decimal]
    applied_on: Mapped[date] = mapped_column(Date, index=True)   # = payment.paid_on, so aging "as of" needs no join


class WriteOff(Base):
    __tablename__ = "write_offs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"), index=True)
    amount: Mapped[Decimal]
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")   # pending | approved | rejected
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    approvals: Mapped[dict] = mapped_column(JSON, default=dict)          # role → person id
    approvers_needed: Mapped[list] = mapped_column(JSON, default=list)   # person ids
    written_off_on: Mapped[date | None] = mapped_column(Date, index=True)
    recovered_amount: Mapped[Decimal] = mapped_column(default=Decimal("0"))  # 核销后仍保留追偿权


class Dispute(Base):
    __tablename__ = "disputes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime]
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]


class Promise(Base):
    __tablename__ = "promises"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"), index=True)
    promised_date: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(20), default="open")   # open | kept | broken | superseded
    made_by: Mapped[str] = mapped_column(String(64))
    made_at: Mapped[datetime]
    followup_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id"))
    closed_at: Mapped[datetime | None]


class FollowUp(Base):
    """催收记录: one line of the follow-up log."""
    __tablename__ = "followups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receivable_id: Mapped[int | None] = mapped_column(ForeignKey("receivables.id"), index=True)
    # both None: a reply the bot could not tie to an item, kept as a note on the push
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    push_id: Mapped[int | None] = mapped_column(ForeignKey("pushes.id"), index=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(20))           # the platform it came on | card | import
    counterpart: Mapped[str] = mapped_column(String(100), default="")
    outcome: Mapped[str] = mapped_column(String(20), default="other")
    text: Mapped[str] = mapped_column(Text, default="")
    parse: Mapped[dict] = mapped_column(JSON, default=dict)
    promised_date: Mapped[date | None] = mapped_column(Date)
    promised_amount: Mapped[Decimal | None]
    push_item_id: Mapped[int | None] = mapped_column(ForeignKey("push_items.id"), index=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id"))


class Push(Base):
    """One morning's overdue list to one rep; it opens the reply window."""
    __tablename__ = "pushes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rep_id: Mapped[str] = mapped_column(ForeignKey("people.id"), index=True)
    for_date: Mapped[date] = mapped_column(Date)
    sent_at: Mapped[datetime]
    window_closes_at: Mapped[datetime] = mapped_column(index=True)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (UniqueConstraint("rep_id", "for_date"),)


class PushItem(Base):
    __tablename__ = "push_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # no single-column indexes: the unique (push_id, seq) serves look-ups by push, and nothing
    # looks items up by receivable; each index slowed the push's bulk insert (migration 0005)
    push_id: Mapped[int] = mapped_column(ForeignKey("pushes.id"))
    seq: Mapped[int] = mapped_column(Integer)                 # the number the rep refers to
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"))
    open_amount: Mapped[Decimal]
    days_overdue: Mapped[int] = mapped_column(Integer)
    replied_at: Mapped[datetime | None]
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (UniqueConstraint("push_id", "seq"),)


class LadderStep(Base):
    """An escalation or reminder step of an invoice: each fires once. ``status``: fired; skipped
    (passed before the ladder met the invoice, never sent); held (deferred by a promise to pay,
    fires if the promise is broken)."""
    __tablename__ = "ladder_steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receivable_id: Mapped[int] = mapped_column(ForeignKey("receivables.id"), index=True)
    step: Mapped[str] = mapped_column(String(64))
    fired_at: Mapped[datetime]          # when it fired, was skipped or held
    status: Mapped[str] = mapped_column(String(12), default="fired", server_default="fired")
    __table_args__ = (UniqueConstraint("receivable_id", "step"),)


class AuditEntry(Base):
    """Append-only: who changed what, when, from which channel."""
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(50))
    entity: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class OutboxMessage(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idem_key: Mapped[str] = mapped_column(String(200), unique=True)
    platform: Mapped[str] = mapped_column(String(20))
    target_kind: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(10), default="markdown")
    title: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="pending")   # pending | sent | dead | split (into key:1…)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # higher goes first: an answer to a person's own message (1) is claimed before notifications
    # (0) and may use the per-member minute's reserved room (bot/outbox/rate_limits.py)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      Index("ix_outbox_claim", "status", "priority", "next_attempt_at"))


class InboundEvent(Base):
    """Every verified incoming event, stored before it is acknowledged; the key deduplicates."""
    __tablename__ = "inbound_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    event_key: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime]
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    # received → handled; a failed try puts it back as retry (attempts, next_attempt_at) until
    # handled, or dead after bot.inbound.MAX_ATTEMPTS (an operator's dead letter)
    status: Mapped[str] = mapped_column(String(10), default="received")
    handled_at: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    __table_args__ = (UniqueConstraint("platform", "event_key"),
                      Index("ix_inbound_events_status_next", "status", "next_attempt_at"))


class JobRun(Base):
    """One fire of a scheduled job; the unique key makes each fire run once across instances."""
    __tablename__ = "job_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(50))
    fire_key: Mapped[str] = mapped_column(String(50))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(10), default="running")   # running | ok | failed | stopped (for a shutdown: taken again at the next start)
    summary: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (UniqueConstraint("job", "fire_key"),)


class CustomerMessage(Base):
    """A message to a customer contact (reminder, statement, letter): the record behind the
    per-customer frequency cap, the send-time check and the statute's written notices."""
    __tablename__ = "customer_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    receivable_id: Mapped[int | None] = mapped_column(ForeignKey("receivables.id"), index=True)
    step: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), default="reminder")    # reminder | statement | letter
    channel: Mapped[str] = mapped_column(String(20))                     # the contact's channel (Contact.channel)
    outbox_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="queued")    # queued | sent | cancelled
    cancel_reason: Mapped[str] = mapped_column(String(50), default="")
    queued_at: Mapped[datetime]
    send_at: Mapped[datetime] = mapped_column(index=True)                # the slot it was queued for
    sent_at: Mapped[datetime | None]


class DigestItem(Base):
    """One notification to one person, decided by a job (a ladder step of an invoice, a statute
    warning, a broken promise...): written in the transaction that records the step, and sent as
    a line of that person's digest (bot/digests.py). ``digest_key`` is the outbox key of the
    digest that carried it (NULL: not sent yet), set in the transaction that queues the digest,
    so a fire stopped half-way and run again neither loses an item nor sends one twice."""
    __tablename__ = "digest_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_key: Mapped[str] = mapped_column(String(200), unique=True)     # the item's identity (per person)
    job: Mapped[str] = mapped_column(String(40))
    fire: Mapped[str] = mapped_column(String(20))                        # the fire that decided it (job_runs.fire_key)
    person_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))                        # step / section: d30, pre_due, statute, red...
    rank: Mapped[int] = mapped_column(Integer, default=0)                # order of the kinds within a customer
    customer_key: Mapped[str] = mapped_column(String(100), default="")   # groups lines (a customer's code)
    customer_name: Mapped[str] = mapped_column(String(200), default="")
    label: Mapped[str] = mapped_column(String(200), default="")          # the kind's heading (第30天 · 主管上门)
    subject: Mapped[str] = mapped_column(String(100), default="")        # the invoice (or customer) it is about
    currency: Mapped[str | None] = mapped_column(String(3))
    amount: Mapped[Decimal | None]
    line: Mapped[str] = mapped_column(Text)                              # the rendered line (markdown)
    created_at: Mapped[datetime]
    not_before: Mapped[datetime]                                         # staff hours: the digest waits till then
    day: Mapped[date] = mapped_column(Date)                              # the business day (the per-morning cap)
    digest_key: Mapped[str | None] = mapped_column(String(200))
    listed: Mapped[bool] = mapped_column(Boolean, default=False)         # a line of the digest, not in "另有 N 条"
    __table_args__ = (Index("ix_digest_items_person_day", "person_id", "day"),
                      Index("ix_digest_items_open", "job", "digest_key"))


class CreditAlert(Base):
    """A crossing of a credit threshold (yellow, red) or a key-account flag (key): open until cleared."""
    __tablename__ = "credit_alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    level: Mapped[str] = mapped_column(String(10))                       # yellow | red | key
    balance: Mapped[Decimal | None]                                      # open balance (CNY) at the crossing
    crossed_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]


class Setting(Base):
    """A value the bot makes once and every process on this database shares (the link-signing
    secret when none is configured: a link made by `arbot jobs run` must open in the server)."""
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ImportRun(Base):
    """One streamed import that writes in chunks (storage/import_runs.py): while ``active`` it
    is under way or being undone, and at most one run can be (a unique column, NULL otherwise);
    ``owner`` (host, pid, process start) and ``heartbeat_at`` tell a later start whether the
    process that runs it is still alive."""
    __tablename__ = "import_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), index=True)    # running | done | undoing | undone
    active: Mapped[bool | None] = mapped_column(Boolean, unique=True)
    owner: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    rows: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)          # chunks committed so far
    error: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class ImportRunChunk(Base):
    """What one committed chunk of a run changed, enough to take it back: the ids it inserted
    (as ranges), the audit entries it wrote, and each updated row's columns as [old, new].
    Deleted with the run's last step, so only an unfinished run has any."""
    __tablename__ = "import_run_chunks"
    run_id: Mapped[int] = mapped_column(ForeignKey("import_runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    changes: Mapped[dict] = mapped_column(JSON, default=dict)


class RateSlot(Base):
    """One message counted against a platform's per-minute limit for one destination
    (storage/rate_slots.py): shared by every instance that sends, so that together they keep it."""
    __tablename__ = "rate_slots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    limit_key: Mapped[str] = mapped_column(String(300))
    at: Mapped[float] = mapped_column(Float)        # wall-clock epoch seconds the platform counts it at
    __table_args__ = (Index("ix_rate_slots_key_at", "limit_key", "at"),)


class BankStatement(Base):
    """One bank statement file read by ``arbot import bank`` (all its lines in one transaction)."""
    __tablename__ = "bank_statements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(100), default="")     # our account, as --account named it
    file_name: Mapped[str] = mapped_column(String(255))
    layout: Mapped[str] = mapped_column(String(10))                    # csv | xlsx | xls | mt940
    imported_by: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime]
    lines: Mapped[int] = mapped_column(Integer, default=0)             # lines new to the database
    summary: Mapped[dict] = mapped_column(JSON, default=dict)


class BankLine(Base):
    """One line of a bank statement, stored once (``identity``: the bank's serial, else a hash of
    what it says). A credit is applied (``payment_id``), left unclaimed for people to claim
    (回款认领), or claimed by a rep and waiting for finance; a debit is kept and never applied.
    Unmatched money stays here, not on a customer, until someone says whose it is."""
    __tablename__ = "bank_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)          # the number people claim by
    identity: Mapped[str] = mapped_column(String(120), unique=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("bank_statements.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    account: Mapped[str] = mapped_column(String(100), default="")
    booked_on: Mapped[date] = mapped_column(Date, index=True)
    direction: Mapped[str] = mapped_column(String(6))                    # credit | debit
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    payer: Mapped[str] = mapped_column(String(200), default="")
    payer_account: Mapped[str] = mapped_column(String(64), default="")
    memo: Mapped[str] = mapped_column(Text, default="")
    bank_ref: Mapped[str] = mapped_column(String(100), default="")
    # applied | unclaimed | claimed (a rep's claim, for finance) | ignored (debit, bank interest)
    status: Mapped[str] = mapped_column(String(10), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    confidence: Mapped[str] = mapped_column(String(6), default="0")     # 0..1, as text (no floats in money rows)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    suggestions: Mapped[list] = mapped_column(JSON, default=list)
    anomalies: Mapped[list] = mapped_column(JSON, default=list)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    claim_customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    claim_invoices: Mapped[list] = mapped_column(JSON, default=list)
    confirmed_by: Mapped[str | None] = mapped_column(String(64))
    confirmed_at: Mapped[datetime | None]


class BankAlias(Base):
    """A payer name or account number confirmed to be a customer's (a confirmed 认领, or finance's
    own): the next statement's line from it is that customer's without asking."""
    __tablename__ = "bank_aliases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))                         # name | account
    value: Mapped[str] = mapped_column(String(200))                      # normalised name / account number
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    learned_from: Mapped[int | None] = mapped_column(ForeignKey("bank_lines.id"))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("kind", "value"),)


class AcceptanceBill(Base):
    """A bank or commercial acceptance bill (银行/商业承兑汇票) a customer paid with: booked as a
    payment when received (it settles the invoices), then watched to maturity (a reminder before
    it) until it is collected, endorsed on (背书转让) or discounted (贴现)."""
    __tablename__ = "acceptance_bills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bill_no: Mapped[str] = mapped_column(String(64), unique=True)        # 票据号码
    kind: Mapped[str] = mapped_column(String(10))                         # bank | commercial
    acceptor: Mapped[str] = mapped_column(String(200))                    # 承兑人 (the bank, or the company)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    received_on: Mapped[date] = mapped_column(Date)
    maturity: Mapped[date] = mapped_column(Date, index=True)             # 到期日
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    # held → collected (托收 at maturity) | endorsed (背书转让) | discounted (贴现)
    status: Mapped[str] = mapped_column(String(10), default="held", index=True)
    endorsed_to: Mapped[str] = mapped_column(String(200), default="")
    disposed_on: Mapped[date | None] = mapped_column(Date)
    discount_interest: Mapped[Decimal | None]                             # 贴现利息, when discounted
    reminded_on: Mapped[date | None] = mapped_column(Date)               # the maturity reminder went out
    recorded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class HolidaySchedule(Base):
    """A year's holidays and make-up working days as read from the State Council's notice
    (domain/holiday_notice.py), imported by finance; one row a year, replaced by a re-import.
    The notice text is kept as the evidence of what was read."""
    __tablename__ = "holiday_schedules"
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    schedule: Mapped[dict] = mapped_column(JSON)          # domain.holiday_notice.HolidaySchedule.to_json()
    notice: Mapped[str] = mapped_column(Text)
    imported_by: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime]


class Statement(Base):
    """A monthly statement (对账单) sent to a customer contact, and the contact's answer on the
    confirmation page: what was shown (``balances``, ``lines``: the exact figures, frozen when the
    statement was made) and, once answered, who answered, when, from where and how. A confirmed
    statement is the debtor's written acknowledgement of those invoices (诉讼时效中断的证据)."""
    __tablename__ = "statements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    period: Mapped[str] = mapped_column(String(7))                       # 2026-11: the month it closes
    as_of: Mapped[date] = mapped_column(Date)                            # the balances are as of this day
    balances: Mapped[dict] = mapped_column(JSON, default=dict)           # currency → "12345.60"
    lines: Mapped[list] = mapped_column(JSON, default=list)              # [{invoice_no, contract_no, due_date, amount, open_amount, currency}]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="sent")     # sent | confirmed | disputed
    answered_at: Mapped[datetime | None]
    answered_by: Mapped[str] = mapped_column(String(100), default="")    # the name the accountant typed
    answered_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    answer: Mapped[dict] = mapped_column(JSON, default=dict)             # {disputed: [{invoice_no, reason}], note}
    __table_args__ = (UniqueConstraint("customer_id", "contact_id", "period"),)
