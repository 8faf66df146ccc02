"""认领 (/claim): bank receipts nobody is sure of, claimed in chat (回款认领).

``认领`` lists the lines waiting (a rep: those that look like their customers', and their own
claims); ``认领 <编号> <客户或发票号> [发票号…]`` claims one — finance's claim books it at once,
anyone else's waits for finance's ``认领 确认 <编号>`` (or ``认领 驳回 <编号> <原因>``). A booked
claim teaches the payer's account number and name (storage/bank.py), so the next receipt from
them is applied without asking. Who may do what: bot/core/permissions.py.
"""
from __future__ import annotations

from sqlalchemy import select

from bot import cash, notify
from bot.core.arguments import invoice_named, target_named
from bot.core.errors import UsageError, UserError
from bot.core.messages import Button, Card, Reply
from bot.core.permissions import COLLECTORS, EDITORS, READERS, may_see_customer, may_use
from bot.core.router import Router
from bot.render import render
from storage import bank
from storage.models import BankLine, Customer, Person

router = Router("cash")


@router.command("claim", aliases=("认领", "回款认领"), roles=READERS)
async def claim_cmd(session, scope, args, person, clock, message, services) -> Reply:
    """List the bank receipts waiting to be claimed; claim one; finance confirms or rejects."""
    words = args.split()
    if not words:
        return await _list(session, scope, person)
    if words[0] in ("确认", "confirm", "驳回", "reject"):
        if not may_use(person, EDITORS):
            raise UserError("forbidden", command="claim")
        if len(words) < 2:
            raise UsageError("missing_argument")
        line = await _line(session, words[1])
        try:
            if words[0] in ("确认", "confirm"):
                result = await bank.confirm(session, line, actor=person.id, now=clock.now(), channel=message.platform)
            else:
                await bank.reject(session, line, actor=person.id, note=" ".join(words[2:]), now=clock.now(),
                                  channel=message.platform)
                await _tell_claimer(session, services, line, applied=False, note=" ".join(words[2:]), now=clock.now())
                return Reply("bank/rejected.md.j2", {"line": line})
        except bank.ClaimError as e:
            raise UserError(e.code, **e.data) from e
        customer = await session.get(Customer, line.customer_id)
        await _tell_claimer(session, services, line, applied=True, customer=customer, now=clock.now())
        return Reply("bank/claimed.md.j2", {"result": result, "customer": customer})
    if not may_use(person, COLLECTORS):
        raise UserError("forbidden", command="claim")
    line = await _line(session, words[0])
    if len(words) < 2:
        return await _one(session, scope, line)
    customer, first = await target_named(session, scope, words[1])
    invoices = [first] if first is not None else []
    for no in words[2:]:
        r = await invoice_named(session, scope, no)
        if r not in invoices:
            invoices.append(r)
    return await _claim(session, services, scope, person, line, customer, invoices, clock.now(), message.platform,
                        what=words[1])


async def card_click(ctx, card: dict) -> Reply:
    """A button on a bank line's card: a suggestion's (``bank:<line>:<customer code>``) claims the
    line for that customer with the invoices the suggestion named, like the typed ``认领``;
    finance's ``bank:confirm:<line>`` / ``bank:reject:<line>`` answer a rep's claim."""
    _, first, second = (str(card.get("key", "")).split(":", 2) + ["", ""])[:3]
    s = ctx.session
    if first in ("confirm", "reject") and second.isdigit():
        verb = "确认" if first == "confirm" else "驳回"
        return await claim_cmd(session=s, scope=ctx.scope, args=f"{verb} {second}", person=ctx.person,
                               clock=ctx.clock, message=ctx.message, services=ctx.services)
    n, code = first, second
    if not n.isdigit() or not code or not may_use(ctx.person, COLLECTORS):
        raise UserError("unknown_card")
    line = await _line(s, n)
    customer = (await s.execute(select(Customer).where(Customer.code == code))).scalar_one_or_none()
    if customer is None:
        raise UserError("unknown_card")
    sugg = next((x for x in line.suggestions or [] if x.get("customer") == code), {})
    invoices = []
    for no in sugg.get("invoices", []):
        r = await invoice_named(s, ctx.scope, no)
        if r.open_amount > 0:
            invoices.append(r)
    return await _claim(s, ctx.services, ctx.scope, ctx.person, line, customer, invoices, ctx.clock.now(),
                        ctx.message.platform, what=code)


async def _one(session, scope, line: BankLine) -> Reply:
    """One line, with a button per suggestion the caller may claim for (where cards are shown)."""
    customers = {c.code: c for c in (await session.execute(select(Customer).where(
        Customer.code.in_([x.get("customer") for x in line.suggestions or []])))).scalars()}
    mine = [x for x in line.suggestions or [] if x.get("customer") in customers
            and may_see_customer(scope, customers[x["customer"]])]
    if scope.rep_ids is not None and not mine and line.claimed_by is None:
        raise UserError("unknown_bank_line", id=line.id)     # not one of theirs: as if it were not there
    card = Card(id=f"bank-{line.id}", title=render("bank/card_title.j2", line=line).strip(),
                buttons=tuple(Button(label=render("bank/card_button.j2", s=x).strip(),
                                     key=f"bank:{line.id}:{x['customer']}") for x in mine[:3])) \
        if mine and line.status == "unclaimed" else None
    return Reply("bank/one.md.j2", {"line": line, "suggestions": mine}, card=card)


async def _claim(session, services, scope, person, line, customer, invoices, now, channel, *, what: str) -> Reply:
    if not may_see_customer(scope, customer):
        raise UserError("not_in_scope", what=what)
    finance = may_use(person, EDITORS)
    try:
        result = await bank.claim(session, line, customer=customer, invoices=invoices, actor=person.id,
                                  finance=finance, now=now, channel=channel)
    except bank.ClaimError as e:
        raise UserError(e.code, **e.data) from e
    if not result.applied:
        await cash.notify_claim(session, services, line, claimer=person, customer=customer, now=now)
    return Reply("bank/claimed.md.j2", {"result": result, "customer": customer})


async def _line(session, word: str) -> BankLine:
    n = word.lstrip("#第").rstrip("笔")
    if not n.isdigit():
        raise UsageError("missing_argument")
    line = await session.get(BankLine, int(n))
    if line is None:
        raise UserError("unknown_bank_line", id=n)
    return line


async def _list(session, scope, person) -> Reply:
    rows = await bank.open_lines(session, scope)
    ids = {ln.claim_customer_id for ln in rows if ln.claim_customer_id}
    names = {c.id: c.name for c in (await session.execute(select(Customer).where(Customer.id.in_(ids)))).scalars()} \
        if ids else {}
    claimers_ids = {ln.claimed_by for ln in rows if ln.claimed_by}
    claimers = {p.id: p.name for p in (await session.execute(select(Person).where(Person.id.in_(claimers_ids)))).scalars()} \
        if claimers_ids else {}
    return Reply("bank/list.md.j2", {"rows": rows, "names": names, "claimers": claimers,
                                     "finance": may_use(person, EDITORS)})


async def _tell_claimer(session, services, line: BankLine, *, applied: bool, now, customer=None, note: str = "") -> None:
    """The rep who claimed hears what finance decided."""
    if not line.claimed_by:
        return
    claimer = await session.get(Person, line.claimed_by)
    if claimer is None or claimer.role in EDITORS:
        return
    text = render("bank/claim_outcome.md.j2", line=line, applied=applied, customer=customer, note=note)
    await notify.to_person(session, claimer, text, key=f"bankclaim-outcome:{line.id}:{int(now.timestamp())}", now=now,
                           platforms=services.platforms, title="bank")
