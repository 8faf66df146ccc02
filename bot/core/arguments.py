"""Argument filters: a command names what its words stand for — a customer, an invoice, an
invoice or a customer, a part of the ledger — and the router resolves them before the handler
runs, handing it the result by name (``customer``, ``receivable``, ``narrowed``/``label``,
``rest``), the way aiogram hands a filter's result to a handler.

Resolving is the same everywhere: the exact code or name, else a short list of candidates asked
back (``ambiguous_*``), else an error saying what was not found (the pipeline adds the command's
usage, which shows how to write it); then ``bot.core.permissions`` decides whether the caller may
see what was named. The functions below are also what /paid uses, whose target ends where its
amount begins, and /confirm, which replays a /paid.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sqlalchemy import select

from bot.core.errors import UsageError, UserError
from bot.core.permissions import may_narrow_to, may_see_customer, may_see_receivable
from domain.dates import DateError, parse_date
from storage import people
from storage.customers import find_customer, receivable_by_invoice
from storage.models import Customer, Person, Receivable
from storage.scope import Scope

Rest = Literal["none", "required"]
MAX_ROW_ID = 2 ** 63 - 1        # the largest integer SQLite and PostgreSQL's BIGINT hold


def row_number(text: str) -> int | None:
    """A number typed or clicked to name a row (a write-off, a payment, a pushed item): None
    when it is not plain ASCII digits or is larger than any row's id can be (20 digits raised
    OverflowError in the database driver; "²" passes ``isdigit`` and fails ``int``)."""
    if not (text.isascii() and text.isdigit()):
        return None
    n = int(text)
    return n if n <= MAX_ROW_ID else None


def happened_on(words: list[str], today: date) -> tuple[date, list[str]]:
    """The day something happened, as the first of ``words`` when it reads as a date (today
    otherwise), and the words after it. A day after today is refused: a note issued, a letter
    signed for, cannot be tomorrow's."""
    on, tail = today, list(words)
    if tail:
        try:
            on, tail = parse_date(tail[0], today), tail[1:]
        except DateError:
            pass
    if on > today:
        raise UsageError("date_in_future", value=on)
    return on, tail


async def customer_named(session, scope: Scope, query: str, *, unknown: str = "unknown_customer") -> Customer:
    """The one customer ``query`` names that the caller may see, or a UserError. Candidates come
    from the caller's scope only, so "did you mean" never shows another rep's customers."""
    match = await find_customer(session, query, scope)
    if match.exact is None:
        if match.candidates:
            raise UserError("ambiguous_customer", query=query, candidates=[c.name for c in match.candidates])
        raise UserError(unknown, query=query)
    if not may_see_customer(scope, match.exact):
        raise UserError("not_in_scope", what=query)
    return match.exact


async def invoice_named(session, scope: Scope, invoice_no: str) -> Receivable:
    """The invoice numbered ``invoice_no`` that the caller may see, or a UserError."""
    r = await receivable_by_invoice(session, invoice_no)
    if r is None:
        raise UserError("unknown_invoice", invoice=invoice_no)
    if not may_see_receivable(scope, r):
        raise UserError("not_in_scope", what=invoice_no)
    return r


async def target_named(session, scope: Scope, text: str) -> tuple[Customer, Receivable | None]:
    """An invoice number, else a customer: (its customer, the invoice or None)."""
    r = await receivable_by_invoice(session, text)
    if r is not None:
        if not may_see_receivable(scope, r):
            raise UserError("not_in_scope", what=text)
        return await session.get(Customer, r.customer_id), r
    return await customer_named(session, scope, text, unknown="unknown_invoice_or_customer"), None


async def scope_named(session, scope: Scope, arg: str) -> tuple[Scope, str]:
    """A team or region (华东), a person (@张伟) or a customer, as the narrower part of the
    caller's scope a report covers, and its label for the heading ("" and the caller's own
    scope when nothing is named)."""
    arg = arg.strip()
    if not arg:
        return scope, ""
    if arg.startswith(("@", "＠")):
        p = await person_named(session, arg[1:])
        if not await may_narrow_to(session, scope, rep_id=p.id):
            raise UserError("not_in_scope", what=arg)
        return scope.narrow(rep_ids={p.id}), p.name
    teams = set((await session.execute(select(Person.team).distinct())).scalars())
    if arg in teams:
        if not await may_narrow_to(session, scope, team=arg):
            raise UserError("not_in_scope", what=arg)
        return scope.narrow(team=arg), arg
    regions = set((await session.execute(select(Customer.region).distinct())).scalars())
    if arg in regions:
        if not await may_narrow_to(session, scope, region=arg):
            raise UserError("not_in_scope", what=arg)
        return scope.narrow(region=arg), arg
    c = await customer_named(session, scope, arg, unknown="unknown_scope")
    return scope.narrow(customer_ids={c.id}), c.name


async def person_named(session, name: str) -> Person:
    """The one person ``name`` (an id or a name) names; two people of that name are asked back
    by id rather than one of them picked."""
    found = await people.find(session, name)
    if not found:
        raise UserError("unknown_person_arg", name=name)
    if len(found) > 1:
        raise UserError("ambiguous_person", name=name, candidates=[(p.name, p.id) for p in found])
    return found[0]


def _split(args: str, rest: Rest | None) -> tuple[str, str]:
    """The first word and the rest (any whitespace between); with ``rest=None`` the whole text
    is the one argument. A missing word is a usage error before anything is looked up."""
    if rest is None:
        first, tail = args.strip(), ""
    else:
        first, tail = (args.split(maxsplit=1) + ["", ""])[:2]
    if not first or rest == "required" and not tail.strip():
        raise UsageError("missing_argument")
    return first, tail.strip()


@dataclass(frozen=True)
class CustomerArg:
    """The whole argument names a customer → ``customer``."""
    provides = ("customer",)

    async def __call__(self, ctx) -> dict[str, Any]:
        query, _ = _split(ctx.args, None)
        return {"customer": await customer_named(ctx.session, ctx.scope, query)}


@dataclass(frozen=True)
class InvoiceArg:
    """The first word is an invoice number → ``receivable``, the words after it → ``rest``
    (``rest="required"``: they must be there; ``rest=None``: the whole argument is the number)."""
    rest: Rest | None = "required"
    provides = ("receivable", "rest")

    async def __call__(self, ctx) -> dict[str, Any]:
        number, rest = _split(ctx.args, self.rest)
        return {"receivable": await invoice_named(ctx.session, ctx.scope, number), "rest": rest}


@dataclass(frozen=True)
class TargetArg:
    """The first word is an invoice number or a customer → ``customer``, ``receivable`` (None
    for a customer), the words after it → ``rest``."""
    rest: Rest = "required"
    provides = ("customer", "receivable", "rest")

    async def __call__(self, ctx) -> dict[str, Any]:
        first, rest = _split(ctx.args, self.rest)
        customer, receivable = await target_named(ctx.session, ctx.scope, first)
        return {"customer": customer, "receivable": receivable, "rest": rest}


@dataclass(frozen=True)
class ScopeArg:
    """An optional team, region, @person or customer → ``narrowed`` (the caller's scope, narrowed
    to it) and ``label`` (its name for the heading, "" when none is named)."""
    provides = ("narrowed", "label")

    async def __call__(self, ctx) -> dict[str, Any]:
        narrowed, label = await scope_named(ctx.session, ctx.scope, ctx.args)
        return {"narrowed": narrowed, "label": label}


EXPORT_WORDS = ("xlsx", "excel", "导出")


class ExportScopeArg(ScopeArg):
    """:class:`ScopeArg`, with an optional word asking for the workbook instead of the chat
    reply — ``xlsx``, ``excel`` or ``导出``, first or last (``/kpi xlsx``, ``/kpi 华东 导出``) —
    → ``export``."""
    provides = ("narrowed", "label", "export")

    async def __call__(self, ctx) -> dict[str, Any]:
        words = ctx.args.split()
        export = bool(words) and (words[0].lower() in EXPORT_WORDS or words[-1].lower() in EXPORT_WORDS)
        if export:
            words = words[1:] if words[0].lower() in EXPORT_WORDS else words[:-1]
        narrowed, label = await scope_named(ctx.session, ctx.scope, " ".join(words) if export else ctx.args)
        return {"narrowed": narrowed, "label": label, "export": export}
