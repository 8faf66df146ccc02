"""Planners for the money side of imports: receivables (invoices) and payments (bank receipts).

Receivable updates keep the ledger invariant ``open = amount − Σ allocations − Σ approved
write-offs``; payments go through :func:`storage.ledger.record_payment`, so imported money is
allocated exactly like money recorded in chat (named invoice first, then oldest due first).

Receivables are written in bulk: planning reads the customers and people as column rows, asks
which invoice numbers exist (one column, 5,000 keys a query) and loads entities only for those;
the apply step inserts every new invoice in one driver ``executemany`` (``insert_rows``: the
values the column types would write), rebuilding the table's secondary indexes afterwards when
the load is large next to the table (``indexes_rebuilt``). Audit: one ``receivable.create``
entry per new invoice below ``audit.BATCH_MIN`` new invoices, else ``receivable.create_many``
entries listing them (storage/audit.py). Updates keep the ORM path (they are few, and they need
the balance rules) and one ``receivable.update`` entry each.
"""
from __future__ import annotations

from sqlalchemy import select

from domain.import_files import RowError
from storage import audit, bills
from storage.bills import kind_of
from storage.bulk_writes import existing_keys, in_chunks, indexes_rebuilt, insert_rows, money_sums
from storage.import_plans import ZERO, Index, Plan, Planner, PlanRefused, blank
from storage.ledger import LedgerError, record_payment, refresh_status
from storage.models import AcceptanceBill, Allocation, Customer, Payment, Person, Receivable, WriteOff


async def _customer_index(session) -> Index:
    return Index((await session.execute(select(Customer))).scalars().all(), lambda c: c.code, lambda c: c.name)


_OPTIONAL_TEXT = ("contract_no", "terms")


def _label(customer) -> str:
    """How a report names a customer: code and name."""
    return f"{customer.code} {customer.name}" if customer is not None else "?"


class ReceivablesPlanner(Planner):
    entity = "receivable"

    async def plan(self, records):
        # rows, not entities: 20,000 customers load in milliseconds this way; only id and rep_id are used
        customers = Index((await self.s.execute(select(Customer.id, Customer.code, Customer.name, Customer.rep_id))).all(),
                          lambda c: c.code, lambda c: c.name)
        people = Index((await self.s.execute(select(Person.id, Person.name))).all(), lambda p: p.id, lambda p: p.name)
        # which invoices exist, as one column (a new file's keys mostly do not): entities only for those
        found = await existing_keys(self.s, Receivable.invoice_no, (r.values["invoice_no"] for r in records))
        stored = {r.invoice_no: r for r in await in_chunks(self.s, Receivable, Receivable.invoice_no, found)}
        ids = [r.id for r in stored.values()]
        allocated = await money_sums(self.s, Allocation.amount, Allocation.receivable_id, ids)
        written = await money_sums(self.s, WriteOff.amount, WriteOff.receivable_id, ids, WriteOff.status == "approved")
        plans = []
        by_code, by_id = customers.by_key, people.by_key
        customers_by_id = {c.id: c for c in by_code.values()}
        for rec in records:
            v = rec.values
            # a code / an id is the common case: one dict look-up before the general resolve
            cust = by_code.get(v["customer"]) or self.resolve(rec, "customer", customers, v["customer"],
                                                               "unknown_customer")
            if cust is None:
                continue
            existing = stored.get(v["invoice_no"])
            desired = {"customer_id": cust.id, "issue_date": v["issue_date"], "due_date": v["due_date"],
                       "amount": v["amount"]}
            for f in _OPTIONAL_TEXT:
                if f in v:
                    desired[f] = blank(v[f], "")
            if "currency" in v:
                desired["currency"] = v["currency"] or "CNY"
            if v.get("rep"):
                rep = by_id.get(v["rep"]) or self.resolve(rec, "rep", people, v["rep"], "unknown_rep")
                if rep is None:
                    continue
                desired["rep_id"] = rep.id
            elif "rep" in v or existing is None:
                desired["rep_id"] = cust.rep_id          # the customer's rep owns the invoice
                if cust.rep_id is not None and cust.rep_id not in by_id:
                    # only a ledger written without foreign keys has this; the bulk write below
                    # relies on planning for them (storage/imports.py), so refuse it here
                    self.error(rec, "rep", "unknown_rep")
                    continue
            if existing is None and rec.duplicate_of is None:
                plans.append(Plan(rec, "create", None, desired))        # what decide() gives, minus a call
                continue
            if existing is not None and existing.customer_id != cust.id and not self.ctx.allow_customer_change:
                # an invoice does not change hands by a re-import: a typo, or a file of another company
                before = customers_by_id.get(existing.customer_id)
                self.error(rec, "customer", "customer_changed", stored=_label(before), new=_label(cust))
                continue
            plan = self.decide(rec, existing, desired)
            if plan.action == "update" and not self._check_update(plan, allocated.get(existing.id, ZERO),
                                                                  written.get(existing.id, ZERO)):
                continue
            plans.append(plan)
        return plans, self.errors

    def _check_update(self, plan: Plan, allocated, written) -> bool:
        """An update must not leave a negative balance nor move paid money to another customer."""
        for f in ("customer_id", "currency"):
            if f in plan.changes and allocated > ZERO:
                self.error(plan.rec, "customer" if f == "customer_id" else f, "has_payments", field=f)
                return False
        if "amount" in plan.changes:
            settled = allocated + written
            if plan.values["amount"] < settled:
                self.error(plan.rec, "amount", "amount_below_settled", settled=str(settled))
                return False
            plan.values["_settled"] = settled
        return True

    async def apply(self, plans):
        entries, created = [], []
        for p in plans:
            settled = p.values.pop("_settled", None)
            if p.action == "create":
                created.append(p)
            elif p.action == "update":
                r = p.target
                for k, (_, new) in p.changes.items():
                    setattr(r, k, new)
                if settled is not None:
                    r.open_amount = r.amount - settled
                    refresh_status(r)
                extra = {"open_amount": r.open_amount} if settled is not None else {}
                entries.append(self.entry(p, p.rec.values["invoice_no"], **extra))
        # a new invoice: the file's values, the defaults for the columns it leaves out, fully open
        rows = [(p.rec.values["invoice_no"], v["customer_id"], v["rep_id"], v["issue_date"], v["due_date"],
                 v["amount"], v.get("currency", "CNY"), v.get("contract_no", ""), v.get("terms", ""),
                 v["amount"], "open", False, self.ctx.now) for p in created for v in (p.values,)]
        if len(rows) >= audit.BATCH_MIN:
            entries += audit.batch_entries(at=self.ctx.now, actor=self.ctx.actor, channel=self.ctx.channel,
                                           entity=self.entity, columns=_CREATED_COLUMNS,
                                           rows=[r[:len(_CREATED_COLUMNS)] for r in rows])
        else:
            entries += [self.entry(p, p.rec.values["invoice_no"]) for p in created]
        async with indexes_rebuilt(self.s, Receivable.__table__, len(rows)):
            await insert_rows(self.s, Receivable.__table__, _INSERT_COLUMNS, rows)
        await audit.record_many(self.s, entries)


# what a receivable.create_many entry lists per created invoice: every value the file decided
_CREATED_COLUMNS = ("invoice_no", "customer_id", "rep_id", "issue_date", "due_date", "amount", "currency",
                    "contract_no", "terms")
_INSERT_COLUMNS = (*_CREATED_COLUMNS, "open_amount", "status", "disputed", "created_at")


_PAYMENT_FIELDS = ("customer_id", "amount", "paid_on", "invoice_no", "currency")


class PaymentsPlanner(Planner):
    entity = "payment"

    async def plan(self, records):
        customers = await _customer_index(self.s)
        stored = {p.reference: p for p in await in_chunks(self.s, Payment, Payment.reference,
                                                          [r.values["reference"] for r in records])}
        known_bills = {b.bill_no for b in await in_chunks(self.s, AcceptanceBill, AcceptanceBill.bill_no,
                                                          [r.values["bill_no"] for r in records
                                                           if r.values.get("bill_no")])}
        bill_lines: dict[str, int] = {}
        named = {r.invoice_no: r for r in await in_chunks(self.s, Receivable, Receivable.invoice_no,
                                                          [r.values["invoice_no"] for r in records
                                                           if r.values.get("invoice_no")])}
        plans = []
        for rec in records:
            v = rec.values
            cust = self.resolve(rec, "customer", customers, v["customer"], "unknown_customer")
            if cust is None:
                continue
            desired = {"customer_id": cust.id, "amount": v["amount"], "paid_on": v["paid_on"],
                       "invoice_no": v.get("invoice_no") or "", "currency": v.get("currency") or "CNY"}
            if desired["invoice_no"]:
                inv = named.get(desired["invoice_no"])
                if inv is None:
                    self.error(rec, "invoice_no", "unknown_invoice")
                    continue
                if inv.customer_id != cust.id:
                    self.error(rec, "invoice_no", "invoice_other_customer")
                    continue
            plan = self.decide(rec, stored.get(v["reference"]), desired)
            if plan.action == "update":
                # a booked payment is never edited by an import: a different row is a typo or a clash
                self.error(rec, "reference", "reference_conflict", fields=sorted(plan.changes))
                continue
            bill = self._bill(rec, plan, known_bills, bill_lines)
            if bill is False:
                continue
            plan.values["_customer"], plan.values["_bill"] = cust, bill
            plans.append(plan)
        return plans, self.errors

    def _bill(self, rec, plan: Plan, known: set[str], lines: dict[str, int]) -> dict | None | bool:
        """The acceptance bill a row was paid with (票据号, 票据种类, 承兑人, 到期日), checked as
        /承兑 checks it: None when the row names no bill, False after recording the row's error.
        A row with a bill number, a kind or a maturity is a bill, and needs all four; the 承兑人 /
        付款行 column alone is a transfer's paying bank, not a bill."""
        v = rec.values
        if not (v.get("bill_no") or v.get("bill_kind") or v.get("maturity")):
            return None
        missing = [f for f in ("bill_no", "bill_kind", "acceptor", "maturity") if not v.get(f)]
        if missing:
            self.error(rec, missing[0], "bill_incomplete", missing=missing)
            return False
        kind = kind_of(v["bill_kind"])
        if kind is None:
            self.error(rec, "bill_kind", "bad_bill_kind")
            return False
        if plan.values["currency"] != "CNY":
            self.error(rec, "currency", "bill_currency", base="CNY")
            return False
        no = v["bill_no"]
        if no in lines and rec.duplicate_of is None:
            self.error(rec, "bill_no", "bill_repeated", first_line=lines[no])
            return False
        lines.setdefault(no, rec.line)
        if plan.action == "create" and no in known:
            self.error(rec, "bill_no", "bill_exists")
            return False
        if v["maturity"] <= v["paid_on"]:
            self.error(rec, "maturity", "bill_matured")
            return False
        return {"bill_no": no, "kind": kind, "acceptor": v["acceptor"], "maturity": v["maturity"]}

    async def apply(self, plans):
        # book in the order the money arrived: bank exports are often newest first
        for p in sorted((p for p in plans if p.action == "create"), key=lambda p: (p.values["paid_on"], p.rec.line)):
            bill = p.values.get("_bill")
            if bill is not None:
                try:
                    await bills.receive(self.s, customer=p.values["_customer"], amount=p.values["amount"],
                                        received_on=p.values["paid_on"], invoice_no=p.values["invoice_no"],
                                        reference=p.rec.values["reference"], actor=self.ctx.actor,
                                        channel=self.ctx.channel, now=self.ctx.now, **bill)
                except (bills.BillError, LedgerError) as exc:
                    code = exc.code if isinstance(exc, bills.BillError) else "ledger_refused"
                    raise PlanRefused(RowError(p.rec.line, "bill_no", p.rec.raw.get("bill_no", ""), code,
                                               {"detail": str(exc)})) from exc
                continue
            try:
                await record_payment(self.s, customer=p.values["_customer"], amount=p.values["amount"],
                                     paid_on=p.values["paid_on"], reference=p.rec.values["reference"],
                                     invoice_no=p.values["invoice_no"], currency=p.values["currency"],
                                     actor=self.ctx.actor, channel=self.ctx.channel, now=self.ctx.now)
            except LedgerError as exc:
                raise PlanRefused(RowError(p.rec.line, "reference", p.rec.raw.get("reference", ""),
                                           "ledger_refused", {"detail": str(exc)})) from exc
