"""Per-kind planners for ``storage/imports.py``: resolve rows against the ledger, decide
create / update / unchanged, then (only if no row failed) apply the writes with audit entries.

Planning never writes, which is what makes an import all-or-nothing without savepoints.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.import_files import Record, RowError
from storage import audit, people
from storage.bulk_writes import in_chunks
from storage.people import account_platform
from storage.models import AuditEntry, Contact, Customer, Person

ZERO = Decimal("0.00")


@dataclass
class Ctx:
    actor: str
    channel: str
    now: datetime
    today: date
    allow_customer_change: bool = False    # a re-import may move an invoice to another customer


@dataclass
class Plan:
    rec: Record
    action: str                                   # create | update | unchanged
    target: Any = None                            # the stored entity, for updates
    values: dict = field(default_factory=dict)    # desired attribute values
    changes: dict = field(default_factory=dict)   # attribute → (old, new)


class PlanRefused(Exception):
    """The ledger refused a write that planning let through; carries the row's error."""

    def __init__(self, error: RowError):
        super().__init__(error.code)
        self.error = error


class Index:
    """Find an entity by its key, else by its exact name (which must then be unique)."""

    def __init__(self, items: Iterable[Any], key: Callable[[Any], str], name: Callable[[Any], str]):
        self.by_key: dict[str, Any] = {}
        self.by_name: dict[str, list] = defaultdict(list)
        for item in items:
            self.add(item, key(item), name(item))

    def add(self, item: Any, key: str, name: str) -> None:
        self.by_key[key] = item
        self.by_name[name].append(item)

    def find(self, text: str) -> tuple[Any, str | None, dict]:
        """(item, None, {}) or (None, "unknown" | "ambiguous_name", params)."""
        if text in self.by_key:
            return self.by_key[text], None, {}
        hits = self.by_name.get(text, [])
        if len(hits) == 1:
            return hits[0], None, {}
        return None, ("ambiguous_name" if hits else "unknown"), ({"count": len(hits)} if hits else {})


def diff(obj: Any, desired: dict, current: Callable[[Any, str], Any] = getattr) -> dict:
    return {k: (current(obj, k), v) for k, v in desired.items() if current(obj, k) != v}


def blank(value: Any, default: Any) -> Any:
    return default if value is None else value


class Planner:
    entity = ""

    def __init__(self, session: AsyncSession, ctx: Ctx):
        self.s, self.ctx = session, ctx
        self.errors: list[RowError] = []

    def error(self, rec: Record, column: str, code: str, **params: Any) -> None:
        self.errors.append(RowError(rec.line, column, rec.raw.get(column, ""), code, params))

    def resolve(self, rec: Record, column: str, index: Index, text: str, unknown: str) -> Any:
        """What ``text`` names in ``index`` (its key, else its unique name); None after recording
        the row's error (``unknown``, or ambiguous_name)."""
        item, code, params = index.find(text)
        if code:
            self.error(rec, column, unknown if code == "unknown" else code, **params)
        return item

    @staticmethod
    def current(entity: Any, field: str) -> Any:
        """The stored value of ``field`` (an attribute, unless a planner says otherwise)."""
        return getattr(entity, field)

    def decide(self, rec: Record, existing: Any, desired: dict) -> Plan:
        if rec.duplicate_of is not None:
            return Plan(rec, "unchanged", existing, desired)
        if existing is None:
            return Plan(rec, "create", None, desired)
        changes = diff(existing, desired, self.current)
        return Plan(rec, "update" if changes else "unchanged", existing, desired, changes)

    def entry(self, p: Plan, entity_id: Any, **extra: Any) -> dict:
        """The audit entry for a created or updated entity, as a row for ``audit.record_many``."""
        detail = p.values if p.action == "create" else {k: list(v) for k, v in p.changes.items()}
        return audit.entry(at=self.ctx.now, actor=self.ctx.actor, channel=self.ctx.channel,
                           action=f"{self.entity}.{p.action}", entity=self.entity, entity_id=entity_id,
                           **{**detail, **extra})

    def log(self, p: Plan, entity_id: Any, **extra: Any) -> None:
        self.s.add(AuditEntry(**self.entry(p, entity_id, **extra)))

    async def plan(self, records: list[Record]) -> tuple[list[Plan], list[RowError]]:
        raise NotImplementedError

    async def apply(self, plans: list[Plan]) -> None:
        raise NotImplementedError


# ---- people ---------------------------------------------------------------------------------
# A "<platform>_userid" column is the person's account on that platform (person_accounts): its
# cell sets the account, an empty cell removes it (storage/people.py) — unless the row gives a
# mobile: then the account is the one found by that mobile after the import (bot/identities.py),
# and an empty cell keeps it rather than dropping it at every re-import.
_PERSON_DEFAULTS = {"name": "", "role": "rep", "team": "", "mobile": "", "email": ""}


class PeoplePlanner(Planner):
    entity = "person"

    @staticmethod
    def current(person: Person, field: str) -> Any:
        platform = account_platform(field)
        return person.account(platform) if platform else getattr(person, field)

    async def plan(self, records):
        stored = {p.id: p for p in (await self.s.execute(select(Person))).scalars().all()}
        # a supervisor may be named by id or name, and may appear later in the same file
        names = {pid: p.name for pid, p in stored.items()}
        names.update({r.values["id"]: r.values["name"] for r in records})
        index = Index(names, key=lambda pid: pid, name=lambda pid: names[pid])
        plans = []
        for rec in records:
            v = rec.values
            desired = {f: blank(v[f], d) for f, d in _PERSON_DEFAULTS.items() if f in v}
            by_mobile = bool(blank(v.get("mobile"), ""))
            desired.update({f: blank(v[f], None) for f in v
                            if account_platform(f) and not (by_mobile and blank(v[f], None) is None)})
            if "supervisor" in v:
                sup = None
                if v["supervisor"]:
                    sup = self.resolve(rec, "supervisor", index, v["supervisor"], "unknown_supervisor")
                    if sup is None:
                        continue
                desired["supervisor_id"] = sup
            plans.append(self.decide(rec, stored.get(v["id"]), desired))
        self._check_graph(stored, plans)
        return plans, self.errors

    def _check_graph(self, stored: dict[str, Person], plans: list[Plan]) -> None:
        """Reject supervisor loops and chat user ids shared by two people, judged on the final state."""
        final_sup = {pid: p.supervisor_id for pid, p in stored.items()}
        final_sup.update({p.rec.values["id"]: p.values["supervisor_id"] for p in plans if "supervisor_id" in p.values})
        for p in plans:
            pid, seen = p.rec.values["id"], set()
            cur = final_sup.get(pid)
            while cur is not None and cur not in seen:
                if cur == pid:
                    self.error(p.rec, "supervisor", "supervisor_cycle")
                    break
                seen.add(cur)
                cur = final_sup.get(cur)
        for col in sorted({f for p in plans for f in p.values if account_platform(f)}):
            final = {pid: self.current(person, col) for pid, person in stored.items()}
            final.update({p.rec.values["id"]: p.values[col] for p in plans if col in p.values})
            owners = defaultdict(set)
            for pid, uid in final.items():
                if uid:
                    owners[uid].add(pid)
            for p in plans:
                uid = p.values.get(col)
                if uid and len(owners[uid]) > 1:
                    self.error(p.rec, col, "duplicate_userid", other=sorted(owners[uid] - {p.rec.values["id"]}))

    async def apply(self, plans):
        # people first without supervisors, so a supervisor listed later exists before it is referenced
        moved: list[tuple[Person, str, str]] = []          # accounts to (re)create once the old ones are gone
        for p in plans:
            flat = {k: v for k, v in p.values.items() if k != "supervisor_id" and not account_platform(k)}
            if p.action == "create":
                person = Person(id=p.rec.values["id"], **{**_PERSON_DEFAULTS, **flat}, active=True, accounts=[])
                self.s.add(person)
                moved += [(person, account_platform(k), v) for k, v in p.values.items() if account_platform(k) and v]
            elif p.action == "update":
                for k, (_, new) in p.changes.items():
                    platform = account_platform(k)
                    if platform:
                        # removed now, added after the flush: a user id moving between two people
                        # in one file never exists twice, whatever order the rows are written in
                        people.remove_account(p.target, platform)
                        if new:
                            moved.append((p.target, platform, new))
                    elif k != "supervisor_id":
                        setattr(p.target, k, new)
        await self.s.flush()
        for person, platform, user_id in moved:
            people.add_account(person, platform, user_id)
        await self.s.flush()
        for p in plans:
            if p.action != "unchanged" and "supervisor_id" in p.values:
                person = p.target or await self.s.get(Person, p.rec.values["id"])
                person.supervisor_id = p.values["supervisor_id"]
            if p.action != "unchanged":
                self.log(p, p.rec.values["id"])


# ---- customers ------------------------------------------------------------------------------
_CUSTOMER_DEFAULTS = {"name": "", "grade": "B", "credit_limit": ZERO, "region": "", "cross_border": False,
                      "late_fee_rate": ""}
_CONTACT_FIELDS = {"contact_name": "name", "contact_mobile": "mobile", "contact_email": "email"}


class CustomersPlanner(Planner):
    entity = "customer"

    async def plan(self, records):
        people = Index((await self.s.execute(select(Person))).scalars().all(), lambda p: p.id, lambda p: p.name)
        stored = {c.code: c for c in await in_chunks(self.s, Customer, Customer.code,
                                                     [r.values["code"] for r in records])}
        self.contacts: dict[int, Contact] = {}
        for c in await in_chunks(self.s, Contact, Contact.customer_id, [c.id for c in stored.values()]):
            if c.customer_id not in self.contacts or c.id < self.contacts[c.customer_id].id:
                self.contacts[c.customer_id] = c          # the first contact is the primary one
        plans = []
        for rec in records:
            v = rec.values
            desired = {f: blank(v[f], d) for f, d in _CUSTOMER_DEFAULTS.items() if f in v}
            if "rep" in v:
                rep = None
                if v["rep"]:
                    rep = self.resolve(rec, "rep", people, v["rep"], "unknown_rep")
                    if rep is None:
                        continue
                desired["rep_id"] = rep.id if rep else None
            existing = stored.get(v["code"])
            plan = self.decide(rec, existing, desired)
            contact = {attr: blank(v[f], "") for f, attr in _CONTACT_FIELDS.items() if f in v}
            plan.values["contact"] = contact
            old = self.contacts.get(existing.id) if existing else None
            cchanges = diff(old, contact) if old else {k: ("", x) for k, x in contact.items() if x}
            if cchanges and plan.action != "create" and rec.duplicate_of is None:
                plan.action = "update"
                plan.changes.update({f"contact.{k}": x for k, x in cchanges.items()})
            plans.append(plan)
        return plans, self.errors

    async def apply(self, plans):
        for p in plans:
            contact = p.values.pop("contact", {})
            if p.action == "create":
                cust = Customer(code=p.rec.values["code"], **{**_CUSTOMER_DEFAULTS, **p.values})
                self.s.add(cust)
                await self.s.flush()
                p.values["contact"] = contact
            elif p.action == "update":
                cust = p.target
                for k, (_, new) in p.changes.items():
                    if not k.startswith("contact."):
                        setattr(cust, k, new)
            else:
                continue
            if any(contact.values()):
                old = self.contacts.get(cust.id)
                if old is None:
                    # reminders need a channel: email if we have one, else a text message
                    self.s.add(Contact(customer_id=cust.id, channel="email" if contact.get("email") else "sms",
                                       **{"name": "", "mobile": "", "email": "", **contact}))
                else:
                    for k, x in contact.items():
                        setattr(old, k, x)
            elif contact and (old := self.contacts.get(cust.id)) is not None:
                for k, x in contact.items():
                    setattr(old, k, x)
            self.log(p, cust.code)
