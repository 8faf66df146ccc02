"""The write-off register (坏账核销台账): every write-off request with who asked, who approved,
what was booked and when, and what has been recovered since (核销后仍保留追偿权).

A booked write-off is a ``WriteOff`` row with a positive amount, status ``approved``; a recovery
is a negative approved row on the same invoice (``storage.ledger.record_recovery``), and the
written-off row counts it in ``recovered_amount``: net loss = amount − recovered. Session first,
pure queries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select

from storage.models import Customer, Person, Receivable, WriteOff
from storage.scope import Scope

ZERO = Decimal("0.00")


@dataclass
class Recovery:
    on: date
    amount: Decimal


@dataclass
class RegisterLine:
    id: int
    status: str                        # pending | approved | rejected
    invoice_no: str
    customer_code: str
    customer_name: str
    rep_id: str
    currency: str
    amount: Decimal
    recovered: Decimal
    reason: str
    requested_by: str                  # a name (the id when the person is gone)
    requested_at: datetime
    approvals: dict[str, str]          # role → name, in the order given
    waiting: list[str]                 # names still to approve (pending requests)
    written_off_on: date | None
    recoveries: list[Recovery] = field(default_factory=list)

    @property
    def net_loss(self) -> Decimal:
        return self.amount - self.recovered if self.status == "approved" else ZERO


@dataclass
class Register:
    lines: list[RegisterLine]

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per currency: written off, recovered, net loss (booked write-offs only)."""
        out: dict[str, dict[str, Decimal]] = {}
        for x in self.lines:
            if x.status != "approved":
                continue
            t = out.setdefault(x.currency, {"amount": ZERO, "recovered": ZERO, "net": ZERO})
            t["amount"] += x.amount
            t["recovered"] += x.recovered
            t["net"] += x.net_loss
        return out

    @property
    def pending(self) -> list[RegisterLine]:
        return [x for x in self.lines if x.status == "pending"]


async def register(session, scope: Scope = Scope(), *, since: date | None = None,
                   status: str | None = None) -> Register:
    """The register in the caller's scope (a rep: their customers' invoices), newest first;
    ``since``: requested or booked on or after that day."""
    stmt = (select(WriteOff, Receivable, Customer).join(Receivable, Receivable.id == WriteOff.receivable_id)
            .join(Customer, Customer.id == Receivable.customer_id).where(WriteOff.amount > 0))
    stmt = scope.apply(stmt, joined_customer=True)
    if status is not None:
        stmt = stmt.where(WriteOff.status == status)
    rows = (await session.execute(stmt.order_by(WriteOff.requested_at.desc(), WriteOff.id.desc()))).all()
    if since is not None:
        rows = [(w, r, c) for w, r, c in rows
                if w.requested_at.date() >= since or (w.written_off_on is not None and w.written_off_on >= since)]
    ids = {pid for w, _, _ in rows for pid in [w.requested_by, *(w.approvals or {}).values(), *(w.approvers_needed or [])]}
    names = dict((await session.execute(select(Person.id, Person.name).where(Person.id.in_(sorted(ids)))))
                 .all()) if ids else {}
    recoveries: dict[int, list[Recovery]] = {}
    rids = sorted({r.id for _, r, _ in rows})
    for i in range(0, len(rids), 500):
        for rid, on, amount in (await session.execute(
                select(WriteOff.receivable_id, WriteOff.written_off_on, WriteOff.amount)
                .where(WriteOff.receivable_id.in_(rids[i:i + 500]), WriteOff.amount < 0, WriteOff.status == "approved")
                .order_by(WriteOff.written_off_on, WriteOff.id))).all():
            recoveries.setdefault(rid, []).append(Recovery(on, -amount))
    lines = []
    for w, r, c in rows:
        approvals = {role: names.get(pid, pid) for role, pid in (w.approvals or {}).items()}
        done = set((w.approvals or {}).values())
        waiting = [names.get(pid, pid) for pid in (w.approvers_needed or []) if pid not in done] \
            if w.status == "pending" else []
        lines.append(RegisterLine(w.id, w.status, r.invoice_no, c.code, c.name, r.rep_id or "", r.currency, w.amount,
                                  w.recovered_amount or ZERO, w.reason or "", names.get(w.requested_by, w.requested_by),
                                  w.requested_at, approvals, waiting, w.written_off_on,
                                  recoveries.get(r.id, []) if w.status == "approved" else []))
    return Register(lines)


def as_rows(reg: Register, tz) -> list[dict]:
    """The register as flat rows (CSV/JSON export), one per write-off; amounts as exact text."""
    out = []
    for x in reg.lines:
        out.append({"id": x.id, "status": x.status, "invoice_no": x.invoice_no, "customer_code": x.customer_code,
                    "customer_name": x.customer_name, "currency": x.currency, "amount": str(x.amount),
                    "recovered": str(x.recovered), "net_loss": str(x.net_loss), "reason": x.reason,
                    "requested_by": x.requested_by, "requested_at": x.requested_at.astimezone(tz).isoformat(),
                    "approved_by": "; ".join(f"{role}:{name}" for role, name in x.approvals.items()),
                    "waiting_for": "; ".join(x.waiting),
                    "written_off_on": x.written_off_on.isoformat() if x.written_off_on else "",
                    "recoveries": "; ".join(f"{r.on.isoformat()} {r.amount}" for r in x.recoveries)})
    return out
