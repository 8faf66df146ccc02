"""Which part of the ledger a question covers. The permission layer builds one from the
caller's role (a rep: their own customers; a supervisor: their team); the command's own
arguments narrow it further. Storage queries apply it with ``apply``."""
from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Select

from storage.models import Customer, Person, Receivable


@dataclass(frozen=True)
class Scope:
    rep_ids: frozenset[str] | None = None      # None: every rep
    team: str | None = None
    region: str | None = None
    customer_ids: frozenset[int] | None = None

    @classmethod
    def everything(cls) -> "Scope":
        return cls()

    def narrow(self, **kw) -> "Scope":
        """Narrow, never widen: an argument cannot reach outside the caller's own scope."""
        new = replace(self, **{k: v for k, v in kw.items() if k not in ("rep_ids", "customer_ids")})
        if kw.get("rep_ids") is not None:
            reps = frozenset(kw["rep_ids"])
            new = replace(new, rep_ids=reps if self.rep_ids is None else reps & self.rep_ids)
        if kw.get("customer_ids") is not None:
            cids = frozenset(kw["customer_ids"])
            new = replace(new, customer_ids=cids if self.customer_ids is None else cids & self.customer_ids)
        return new

    def apply(self, stmt: Select, *, joined_customer: bool = False, joined_person: bool = False) -> Select:
        """Filter a select over receivables (joining customers/people only when needed)."""
        if self.rep_ids is not None:
            stmt = stmt.where(Receivable.rep_id.in_(sorted(self.rep_ids)))
        if self.customer_ids is not None:
            stmt = stmt.where(Receivable.customer_id.in_(sorted(self.customer_ids)))
        if self.region is not None:
            if not joined_customer:
                stmt = stmt.join(Customer, Customer.id == Receivable.customer_id)
            stmt = stmt.where(Customer.region == self.region)
        if self.team is not None:
            if not joined_person:
                stmt = stmt.join(Person, Person.id == Receivable.rep_id)
            stmt = stmt.where(Person.team == self.team)
        return stmt

    def allows_receivable(self, r: Receivable) -> bool:
        """An invoice is in scope by its rep and customer (team/region narrowing is for reports)."""
        return (self.rep_ids is None or r.rep_id in self.rep_ids) and \
               (self.customer_ids is None or r.customer_id in self.customer_ids)

    def allows_customer(self, customer: Customer) -> bool:
        if self.customer_ids is not None and customer.id not in self.customer_ids:
            return False
        if self.rep_ids is not None and customer.rep_id not in self.rep_ids:
            return False
        if self.region is not None and customer.region != self.region:
            return False
        return True
