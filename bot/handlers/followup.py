"""The rep's side of the collection loop: replies to the morning push (free text, by item
number), and the commands /followup, /promise, /dispute, /resolve.

Every reply lands in the follow-up log with the raw text, the parse, the channel and the time;
a reply after the window is logged and marked late; a reply the bot cannot tie to an item is
kept as a note and answered with a hint. A promise opens (and supersedes) a promise to pay; a
dispute pauses reminders until /resolve.
"""
from __future__ import annotations

from datetime import date

from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import ALL, COLLECTORS
from bot.core.router import Router
from bot import claims as claims_flow
from bot.dates import DateError, parse_date
from bot.money import AmountError, parse_amount
from bot.replies import parse_reply, resolve_amount, split_reply
from storage import collection as coll
from storage.customers import find_customer, receivable_by_invoice
from storage.models import FollowUp, Push, PushItem, Receivable
from storage.scope import Scope

router = Router("followup")



async def _receivable(session, scope: Scope, invoice_no: str) -> Receivable:
    r = await receivable_by_invoice(session, invoice_no)
    if r is None:
        raise UserError("unknown_invoice", invoice=invoice_no)
    if not scope.allows_receivable(r):
        raise UserError("not_in_scope", what=invoice_no)
    return r


async def record_reply(ctx, text: str, *, channel: str) -> Reply:
    """Log a free-text reply against the caller's latest push."""
    s, person, now = ctx.session, ctx.person, ctx.clock.now()
    today = now.astimezone(ctx.config.tz).date()
    push = await coll.latest_push(s, person.id, now)
    if push is None:
        raise UserError("no_push")
    rows = await coll.push_items(s, push.id)
    late = now > push.window_closes_at
    understood, problems, claimed = [], [], []
    for segment in split_reply(text):
        parsed = parse_reply(segment, today, item_count=len(rows))
        if parsed.items is None:
            s.add(FollowUp(person_id=person.id, push_id=push.id, at=now, channel=channel, outcome="other",
                           text=segment, parse=parsed.to_json(), late=late))
            problems.append({"text": segment, "reason": "no_item"})
            continue
        seqs = range(1, len(rows) + 1) if parsed.items == "all" else parsed.items
        for seq in seqs:
            if not 1 <= seq <= len(rows):
                problems.append({"text": segment, "reason": "no_such_item", "seq": seq, "count": len(rows)})
                continue
            item, r, customer = rows[seq - 1]
            corrects = await coll.last_followup_for_item(s, item.id) if parsed.correction else None
            amount = resolve_amount(parsed, r.open_amount)
            fu = await coll.log_followup(s, receivable=r, person_id=person.id, at=now, channel=channel,
                                         outcome=parsed.outcome, text=segment, parse=parsed.to_json(),
                                         promised_date=parsed.promised_date, promised_amount=amount,
                                         push_item=item, late=late, corrects=corrects)
            if parsed.outcome == "paid_claimed" or parsed.paid_amount is not None:     # for finance (bot/claims.py)
                claimed.append(await claims_flow.note(s, receivable=r, amount=parsed.paid_amount, person_id=person.id,
                                                      at=now, channel=channel, followup_id=fu.id))
            elif corrects is not None:
                await claims_flow.withdraw(s, receivable=r, person_id=person.id, at=now)
            if parsed.promised_date and parsed.outcome in ("promised", "paid_claimed") and parsed.promised_date >= today:
                await coll.make_promise(s, receivable=r, promised_date=parsed.promised_date, amount=amount,
                                        person_id=person.id, at=now, channel=channel, followup=fu)
            if parsed.outcome == "dispute" and not r.disputed:
                await coll.open_dispute(s, receivable=r, reason=parsed.note or segment, person_id=person.id,
                                        at=now, channel=channel)
            understood.append({"seq": seq, "receivable": r, "customer": customer, "parsed": parsed,
                               "amount": amount, "correction": corrects is not None})
    ack = Reply("followup/ack.md.j2", {"understood": understood, "problems": problems, "late": late,
                                       "push": push, "count": len(rows)})
    if not claimed:
        return ack
    await claims_flow.report(s, claimed, rep=person, now=now, platforms=ctx.services.platforms)
    return [ack, Reply("payments/claims_noted.md.j2", {"claimed": claimed})]


async def record_card_click(ctx, card: dict, *, channel: str) -> Reply:
    """A button on a pushed item's card (WeCom): logged like a reply with that outcome."""
    kind, _, rest = str(card.get("key", "")).partition(":")
    item_id, _, outcome = rest.partition(":")
    if kind != "fu" or not item_id.isdigit() or outcome not in ("contacted", "promised", "dispute"):
        raise UserError("unknown_card")
    s, person, now = ctx.session, ctx.person, ctx.clock.now()
    item = await s.get(PushItem, int(item_id))
    push = await s.get(Push, item.push_id) if item else None
    if push is None or push.rep_id != person.id:
        raise UserError("unknown_card")
    r = await s.get(Receivable, item.receivable_id)
    late = now > push.window_closes_at
    await coll.log_followup(s, receivable=r, person_id=person.id, at=now, channel=channel, outcome=outcome,
                            text="", parse={"card": card.get("key")}, push_item=item, late=late)
    if outcome == "dispute" and not r.disputed:
        await coll.open_dispute(s, receivable=r, reason="", person_id=person.id, at=now, channel=channel)
    return Reply("followup/card_ack.md.j2", {"seq": item.seq, "r": r, "outcome": outcome, "late": late})


@router.text(roles=COLLECTORS)
async def reply_to_push(ctx, message) -> Reply:
    """Free text from a rep: a reply to the morning's overdue list (or a click on an item's card)."""
    if ctx.person.role != "rep":
        raise UserError("unknown_command", text=message.text.strip())
    if message.card_action:
        return await record_card_click(ctx, message.card_action, channel=message.platform)
    return await record_reply(ctx, message.text, channel=message.platform)


@router.command("followup", aliases=("跟进",), roles=COLLECTORS)
async def followup_cmd(ctx, session, scope, args, person, clock, message) -> Reply:
    """Log a follow-up on an invoice or a customer at any time."""
    target, _, text = args.partition(" ")
    if not target or not text.strip():
        raise UsageError("missing_argument")
    now = clock.now()
    today = now.astimezone(ctx.config.tz).date()
    r = await receivable_by_invoice(session, target)
    parsed = parse_reply(text, today, item_count=1)
    if r is not None:
        if not scope.allows_receivable(r):
            raise UserError("not_in_scope", what=target)
        amount = resolve_amount(parsed, r.open_amount)
        fu = await coll.log_followup(session, receivable=r, person_id=person.id, at=now, channel=message.platform,
                                     outcome=parsed.outcome, text=text, parse=parsed.to_json(),
                                     promised_date=parsed.promised_date, promised_amount=amount)
        if parsed.promised_date and parsed.outcome == "promised" and parsed.promised_date >= today:
            await coll.make_promise(session, receivable=r, promised_date=parsed.promised_date, amount=amount,
                                    person_id=person.id, at=now, channel=message.platform, followup=fu)
        logged = Reply("followup/logged.md.j2", {"what": r.invoice_no, "parsed": parsed, "amount": amount,
                                                  "currency": r.currency})
        if parsed.outcome == "paid_claimed" or parsed.paid_amount is not None:     # for finance (bot/claims.py)
            noted = [await claims_flow.note(session, receivable=r, amount=parsed.paid_amount, person_id=person.id,
                                            at=now, channel=message.platform, followup_id=fu.id)]
            await claims_flow.report(session, noted, rep=person, now=now, platforms=ctx.services.platforms)
            return [logged, Reply("payments/claims_noted.md.j2", {"claimed": noted})]
        return logged
    match = await find_customer(session, target, scope)
    if match.exact is None:
        if match.candidates:
            raise UserError("ambiguous_customer", query=target, candidates=[c.name for c in match.candidates])
        raise UserError("unknown_invoice_or_customer", query=target)
    c = match.exact
    if not scope.allows_customer(c):
        raise UserError("not_in_scope", what=target)
    session.add(FollowUp(customer_id=c.id, person_id=person.id, at=now, channel=message.platform,
                         outcome=parsed.outcome, text=text, parse=parsed.to_json()))
    return Reply("followup/logged.md.j2", {"what": c.name, "parsed": parsed, "amount": None})


@router.command("promise", aliases=("承诺",), roles=COLLECTORS)
async def promise_cmd(ctx, session, scope, args, person, clock, message) -> Reply:
    """Record a promise to pay: an invoice, a date and optionally an amount."""
    parts = args.split()
    if len(parts) < 2:
        raise UsageError("missing_argument")
    r = await _receivable(session, scope, parts[0])
    today: date = clock.today()
    try:
        when = parse_date(parts[1], today)
    except DateError:
        raise UsageError("bad_date", value=parts[1]) from None
    if when < today:
        raise UsageError("date_in_past", value=parts[1])
    amount = None
    if len(parts) > 2:
        try:
            amount = parse_amount("".join(parts[2:]))
        except AmountError:
            raise UsageError("bad_amount", value=" ".join(parts[2:])) from None
        if amount <= 0 or amount > r.open_amount:
            raise UsageError("amount_out_of_range", value=amount, open=r.open_amount, currency=r.currency)
    now = clock.now()
    fu = await coll.log_followup(session, receivable=r, person_id=person.id, at=now, channel=message.platform,
                                 outcome="promised", text=args, promised_date=when, promised_amount=amount)
    p = await coll.make_promise(session, receivable=r, promised_date=when, amount=amount, person_id=person.id,
                                at=now, channel=message.platform, followup=fu)
    return Reply("followup/promise.md.j2", {"r": r, "p": p})


@router.command("dispute", aliases=("异议",), roles=COLLECTORS)
async def dispute_cmd(session, scope, args, person, clock, message) -> Reply:
    """Mark an invoice disputed (reminders and escalations pause) with the reason."""
    invoice, _, reason = args.partition(" ")
    if not invoice or not reason.strip():
        raise UsageError("missing_argument")
    r = await _receivable(session, scope, invoice)
    if r.disputed:
        raise UserError("already_disputed", invoice=invoice)
    now = clock.now()
    await coll.open_dispute(session, receivable=r, reason=reason.strip(), person_id=person.id, at=now,
                            channel=message.platform)
    await coll.log_followup(session, receivable=r, person_id=person.id, at=now, channel=message.platform,
                            outcome="dispute", text=reason.strip())
    return Reply("followup/dispute.md.j2", {"r": r, "reason": reason.strip(), "resolved": False})


@router.command("resolve", aliases=("解决",), roles=COLLECTORS)
async def resolve_cmd(session, scope, args, person, clock, message) -> Reply:
    """Close an invoice's dispute: reminders and the escalation ladder resume."""
    invoice = args.strip()
    if not invoice:
        raise UsageError("missing_argument")
    r = await _receivable(session, scope, invoice)
    if not r.disputed:
        raise UserError("not_disputed", invoice=invoice)
    await coll.resolve_disputes(session, receivable=r, person_id=person.id, at=clock.now(), channel=message.platform)
    return Reply("followup/dispute.md.j2", {"r": r, "reason": "", "resolved": True})


__all__ = ["router", "record_reply", "ALL"]
