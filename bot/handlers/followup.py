"""The rep's side of the collection loop: replies to the morning push (free text, by item
number), and the commands /followup, /promise, /dispute, /resolve.

Every reply lands in the follow-up log with the raw text, the parse, the channel and the time;
a reply after the window is logged and marked late; a reply the bot cannot tie to an item is
kept as a note and answered with a hint. A promise opens (and supersedes) a promise to pay; a
dispute pauses reminders until /resolve.
"""
from __future__ import annotations

import re
import uuid
from datetime import date

from sqlalchemy import select

from bot.core.arguments import InvoiceArg, TargetArg, row_number
from bot.core.errors import UsageError, UserError
from bot.core.messages import Card, Reply
from bot.core.permissions import ALL, COLLECTORS
from bot.core.router import Router
from bot.render import render
from bot import claims as claims_flow
from bot.handlers import cash
from domain.dates import DateError, half_width, parse_date, read_dates
from domain.money import AmountError, parse_amount
from domain.payment_plan import Plan, PlanError, read_plan, settle
from domain.workdays import WorkCalendar
from bot.replies import ParsedReply, parse_message, parse_reply, resolve_amount
from storage import collection as coll
from storage import followups
from storage import plans
from storage import replies as reply_log
from storage.models import Customer, Dispute, Promise, Push, PushItem, Receivable

router = Router("followup")



UNDO = re.compile(r"\s*(?:撤销|撤回|undo)\s*[。.!！]?\s*$", re.IGNORECASE)


async def record_reply(ctx, text: str, *, channel: str) -> Reply:
    """Log a free-text reply against the caller's latest push.

    Each item gets one follow-up with what was understood; a promise opens (and supersedes)
    a promise to pay, a dispute pauses reminders, a correction replaces the item's previous
    reading (its promise, its dispute). When the bot is unsure it records no guess: the text
    is kept as a note on the item (or on the push) and the rep gets one short question back
    (the questions in followup/ack.md.j2). ``撤销`` takes the last reply back."""
    s, person, now = ctx.session, ctx.person, ctx.clock.now()
    today = now.astimezone(ctx.config.tz).date()
    push = await coll.latest_push(s, person.id, now)
    if push is None:
        raise UserError("no_push")
    if UNDO.match(text or ""):
        return await _undo(ctx, push, channel=channel)
    rows = await coll.push_items(s, push.id)
    late = now > push.window_closes_at
    reply_id = uuid.uuid4().hex
    lines, questions = [], []
    unanswered = [item.seq for item, _, _ in rows if item.replied_at is None]
    for parsed in parse_message(text, today, item_count=len(rows), calendar=ctx.services.calendar):
        meta = {**parsed.to_json(), "reply": reply_id}
        if parsed.items is None or parsed.ask in ("no_item", "month_or_item"):
            await followups.log_followup(s, receivable=None, push_id=push.id, person_id=person.id, at=now,
                                         channel=channel, outcome="other", text=parsed.text, parse=meta, late=late)
            questions.append({"reason": parsed.ask or "no_item", "text": parsed.text, "count": len(rows),
                              "example": unanswered[0] if unanswered else 1,
                              "month": _leading_number(parsed.text)})
            continue
        seqs = range(1, len(rows) + 1) if parsed.items == "all" else parsed.items
        for seq in seqs:
            if not 1 <= seq <= len(rows):
                questions.append({"reason": "no_such_item", "text": parsed.text, "seq": seq, "count": len(rows)})
                continue
            line = await _record_item(ctx, parsed, rows[seq - 1], meta, push=push, late=late, channel=channel,
                                      today=today)
            lines.append(line)
            if line["question"]:
                questions.append(line["question"])
    ack = Reply("followup/ack.md.j2", {"lines": lines, "questions": questions, "late": late, "push": push,
                                       "count": len(rows)})
    claimed = [line["claim"] for line in lines if line.get("claim")]
    if not claimed:
        return ack
    await claims_flow.report(s, claimed, rep=person, now=now, platforms=ctx.services.platforms)
    return [ack, Reply("payments/claims_noted.md.j2", {"claimed": claimed})]


def _leading_number(text: str) -> int | None:
    m = re.match(r"\s*(\d{1,2})", text or "")
    return int(m[1]) if m else None


async def _record_item(ctx, parsed: ParsedReply, row, meta: dict, *, push, late: bool, channel: str,
                       today: date) -> dict:
    """One item of a reply: its follow-up, and the promise/dispute it opens, replaces or lifts."""
    s, person, now = ctx.session, ctx.person, ctx.clock.now()
    item, r, customer = row
    corrects = await followups.last_followup_for_item(s, item.id) if parsed.correction else None
    open_promise = (await coll.open_promises(s, [r.id])).get(r.id)
    when, approximate = parsed.promised_date, parsed.approximate
    if parsed.correction and parsed.outcome == "promised" and when is None and open_promise is not None:
        # 更正 16 是3万不是3000: only the amount changes, the promise keeps its date
        when = open_promise.promised_date
        approximate = bool(corrects and isinstance(corrects.parse, dict) and corrects.parse.get("approximate"))
    amount = resolve_amount(parsed, r.open_amount)
    outcome, question = parsed.outcome, None
    base = {"seq": item.seq, "invoice": r.invoice_no, "open": r.open_amount, "currency": r.currency,
            "text": parsed.text}
    # 12月20日付3万，1月20日付余款: a payment plan; its first instalment stands for it in the log
    plan, plan_error = None, None
    if outcome != "dispute":
        try:
            written = read_plan(parsed.note, today, ctx.services.calendar, strict=False)
            plan = settle(written, r.open_amount, today) if written is not None else None
        except PlanError as e:
            plan_error = e
    if plan is not None:
        outcome, (when, amount), approximate = "promised", plan.instalments[0], False
    # amounts above the open balance are never cut down to fit: the rep says which is meant
    if plan_error is not None:
        question = {**base, "reason": "plan", "code": plan_error.code, "data": {**plan_error.data,
                                                                                 "currency": r.currency}}
    elif plan is not None:
        pass
    elif amount is not None and amount > r.open_amount:
        question = {**base, "reason": "above_balance", "amount": amount}
    elif parsed.first_amount is not None and parsed.first_amount > r.open_amount:
        question = {**base, "reason": "above_balance", "amount": parsed.first_amount}
    elif parsed.paid_amount is not None and parsed.paid_amount > r.open_amount:
        question = {**base, "reason": "paid_above_balance", "amount": parsed.paid_amount}
    elif outcome == "promised" and when is None:
        question = {**base, "reason": "no_date"}
    if question and question["reason"] != "no_date":
        outcome, when, amount = "other", None, None        # kept as a note, nothing guessed
    promising = outcome in ("promised", "paid_claimed") and when is not None and when >= today
    effects: dict[str, list[int]] = {}
    fu = await followups.log_followup(s, receivable=r, person_id=person.id, at=now, channel=channel, outcome=outcome,
                                      text=parsed.text, parse=meta, promised_date=when if promising else None,
                                      promised_amount=amount if promising else None, push_item=item, push_id=push.id,
                                      late=late, corrects=corrects)
    claim = None
    if parsed.outcome == "paid_claimed" or parsed.paid_amount is not None:     # for finance (bot/claims.py)
        claim = await claims_flow.note(s, receivable=r, amount=parsed.paid_amount, person_id=person.id,
                                       at=now, channel=channel, followup_id=fu.id)
    elif corrects is not None:
        await claims_flow.withdraw(s, receivable=r, person_id=person.id, at=now)
    if promising:
        effects["superseded"] = [p.id for p in await _open_promises(s, r.id)]
        if plan is not None:
            made = await plans.make_plan(s, receivable=r, plan=plan, person_id=person.id, at=now, channel=channel,
                                         followup=fu)
        else:
            made = [await coll.make_promise(s, receivable=r, promised_date=when, amount=amount, person_id=person.id,
                                            at=now, channel=channel, followup=fu)]
        effects["promises"] = [p.id for p in made]
    elif corrects is not None and not question:
        # the corrected reading promised something this one does not: that promise goes
        withdrawn = [p for p in await _open_promises(s, r.id) if p.followup_id == corrects.id]
        for p in withdrawn:
            p.status, p.closed_at = "superseded", now
        effects["superseded"] = [p.id for p in withdrawn]
    lifted = False
    if r.disputed and (parsed.lifts_dispute or (corrects is not None and corrects.outcome == "dispute"
                                                and outcome != "dispute" and not question)):
        effects["disputes_lifted"] = list((await s.execute(select(Dispute.id).where(
            Dispute.receivable_id == r.id, Dispute.resolved_at.is_(None)))).scalars())
        await coll.resolve_disputes(s, receivable=r, person_id=person.id, at=now, channel=channel)
        lifted = True
    opened = False
    if outcome == "dispute" and not r.disputed:
        d = await coll.open_dispute(s, receivable=r, reason=parsed.note or parsed.text, person_id=person.id,
                                    at=now, channel=channel)
        effects["disputes_opened"] = [d.id]
        opened = True
    fu.parse = {**meta, "effects": {k: v for k, v in effects.items() if v}}
    return {"seq": item.seq, "receivable": r, "customer": customer, "parsed": parsed, "outcome": outcome,
            "promised_date": when if promising else None, "approximate": approximate and promising,
            "amount": amount if promising else None, "correction": corrects is not None or parsed.correction,
            "dispute_opened": opened, "dispute_lifted": lifted, "question": question, "claim": claim,
            "plan": plan if promising else None}


async def _open_promises(s, receivable_id: int) -> list[Promise]:
    return list((await s.execute(select(Promise).where(Promise.receivable_id == receivable_id,
                                                       Promise.status == "open"))).scalars())


async def _undo(ctx, push, *, channel: str) -> Reply:
    s, person, now = ctx.session, ctx.person, ctx.clock.now()
    followups = await reply_log.last_reply(s, person_id=person.id, push_id=push.id)
    if not followups:
        return Reply("followup/undo.md.j2", {"undone": [], "settled": False})
    if await reply_log.settled_promises(s, followups):
        return Reply("followup/undo.md.j2", {"undone": [], "settled": True})
    seqs = {}
    for fu in followups:
        if fu.push_item_id is not None:
            item = await s.get(PushItem, fu.push_item_id)
            seqs[fu.id] = item.seq if item else None
    undone = [{"seq": seqs.get(fu.id), "text": fu.text, "outcome": fu.outcome} for fu in followups]
    await reply_log.undo_reply(s, followups, person_id=person.id, at=now, channel=channel)
    return Reply("followup/undo.md.j2", {"undone": undone, "settled": False})


async def record_card_click(ctx, card: dict, *, channel: str) -> Reply:
    """A button on a pushed item's card (where the platform shows cards): logged like a reply
    with that outcome."""
    kind, _, rest = str(card.get("key", "")).partition(":")
    item_id, _, outcome = rest.partition(":")
    outcome, _, when = outcome.partition(":")
    if kind != "fu" or row_number(item_id) is None or outcome not in ("contacted", "promised", "dispute") \
            or when and (outcome != "promised" or when not in CARD_PROMISE_DAYS):
        raise UserError("unknown_card")
    s, person, now = ctx.session, ctx.person, ctx.clock.now()
    today = now.astimezone(ctx.config.tz).date()
    promised = _promise_date(CARD_PROMISE_DAYS[when], today, ctx.services.calendar) if when else None
    if promised is not None and promised < today:       # 本周五 clicked on a Saturday
        raise UserError("card_promise_passed", when=CARD_PROMISE_DAYS[when])
    item = await s.get(PushItem, row_number(item_id))
    push = await s.get(Push, item.push_id) if item else None
    if push is None or push.rep_id != person.id:
        raise UserError("unknown_card")
    r = await s.get(Receivable, item.receivable_id)
    late = now > push.window_closes_at
    fu = await followups.log_followup(s, receivable=r, person_id=person.id, at=now, channel=channel, outcome=outcome,
                                      text="", parse={"card": card.get("key")}, push_item=item, late=late,
                                      promised_date=promised)
    if promised is not None:
        await coll.make_promise(s, receivable=r, promised_date=promised, amount=None, person_id=person.id, at=now,
                                channel=channel, followup=fu)
    if outcome == "dispute" and not r.disputed:
        await coll.open_dispute(s, receivable=r, reason="", person_id=person.id, at=now, channel=channel)
    customer = await s.get(Customer, r.customer_id)
    # the card as it should look now: what was recorded, and no buttons to click a second time
    answered = Card(id=str(card.get("task_id") or ""),
                    title=render("push/card_title.j2", seq=item.seq, item={"customer": customer, "receivable": r}),
                    description=render("followup/card_answered.j2", outcome=outcome, late=late, promised=promised))
    return Reply("followup/card_ack.md.j2", {"seq": item.seq, "r": r, "outcome": outcome, "late": late,
                                             "promised": promised}, card=answered)


# the promise buttons' words, read like a typed reply's date (``_promise_date``)
CARD_PROMISE_DAYS = {"fri": "本周五", "nextfri": "下周五", "monthend": "月底"}


@router.text(roles=COLLECTORS)
async def reply_to_push(ctx, message) -> Reply:
    """Free text from a rep: a reply to the morning's overdue list (or a click on an item's card)."""
    if message.card_action and str(message.card_action.get("key", "")).startswith("bank:"):
        return await cash.card_click(ctx, message.card_action)       # a bank receipt's suggestion (认领)
    if ctx.person.role != "rep":
        raise UserError("unknown_command", text=message.text.strip())
    if message.card_action:
        return await record_card_click(ctx, message.card_action, channel=message.platform)
    return await record_reply(ctx, message.text, channel=message.platform)


@router.command("followup", aliases=("跟进",), roles=COLLECTORS, args=TargetArg())
async def followup_cmd(ctx, session, customer, receivable, rest, person, clock, message) -> Reply:
    """Log a follow-up on an invoice or a customer at any time."""
    text, r = rest, receivable
    now = clock.now()
    today = now.astimezone(ctx.config.tz).date()
    parsed = parse_reply(text, today, item_count=1, calendar=ctx.services.calendar)
    plan = _read_plan(text, r, today, ctx.services.calendar, strict=False) if r is not None else None
    if plan is not None:                          # /followup FP… 答应12月20日付3万，1月20日付余款
        fu = await followups.log_followup(session, receivable=r, person_id=person.id, at=now, channel=message.platform,
                                          outcome="promised", text=text, parse=parsed.to_json(),
                                          promised_date=plan.instalments[0][0], promised_amount=plan.instalments[0][1])
        await plans.make_plan(session, receivable=r, plan=plan, person_id=person.id, at=now,
                              channel=message.platform, followup=fu)
        return Reply("followup/plan.md.j2", {"r": r, "plan": plan})
    if r is not None:
        amount = resolve_amount(parsed, r.open_amount)
        if amount is not None and amount > r.open_amount:       # never cut down to fit
            raise UsageError("amount_out_of_range", value=amount, open=r.open_amount, currency=r.currency)
        fu = await followups.log_followup(session, receivable=r, person_id=person.id, at=now, channel=message.platform,
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
    await followups.log_followup(session, receivable=None, customer_id=customer.id, person_id=person.id, at=now,
                                 channel=message.platform, outcome=parsed.outcome, text=text, parse=parsed.to_json())
    return Reply("followup/logged.md.j2", {"what": customer.name, "parsed": parsed, "amount": None})


def _promise_date(word: str, today: date, calendar: WorkCalendar) -> date:
    """A date as people promise it: absolute (12月20日), or one relative expression that is the
    whole word (下周五, 月底, 明天). The bad-date answer itself suggests 下周五, so it must work."""
    try:
        return parse_date(word, today)
    except DateError:
        pass
    found = read_dates(word, today, calendar)
    if len(found) == 1 and found[0].span == (0, len(half_width(word))):
        return found[0].date
    raise UsageError("bad_date", value=word)


def _read_plan(text: str, r: Receivable, today: date, calendar: WorkCalendar, *, strict: bool) -> Plan | None:
    """The payment plan ``text`` writes for invoice ``r`` (None: not a plan). A plan that breaks
    a rule raises the UsageError that says which (followup/_plan.j2)."""
    try:
        written = read_plan(text, today, calendar, strict=strict)
        return settle(written, r.open_amount, today) if written is not None else None
    except PlanError as e:
        raise UsageError(e.code, currency=r.currency, **e.data) from None


@router.command("promise", aliases=("承诺",), roles=COLLECTORS, args=InvoiceArg())
async def promise_cmd(session, receivable, rest, args, person, clock, message, services) -> Reply:
    """Record a promise to pay: an invoice, a date and optionally an amount."""
    r, parts = receivable, rest.split()          # the date, then the amount's words
    today: date = clock.today()
    plan = _read_plan(rest, r, today, services.calendar, strict=True)
    if plan is not None:                         # 12月20日 3万，1月20日 余款: a payment plan
        now = clock.now()
        fu = await followups.log_followup(session, receivable=r, person_id=person.id, at=now,
                                          channel=message.platform, outcome="promised", text=args,
                                          promised_date=plan.instalments[0][0],
                                          promised_amount=plan.instalments[0][1])
        await plans.make_plan(session, receivable=r, plan=plan, person_id=person.id, at=now,
                              channel=message.platform, followup=fu)
        return Reply("followup/plan.md.j2", {"r": r, "plan": plan})
    when = _promise_date(parts[0], today, services.calendar)
    if when < today:
        raise UsageError("date_in_past", value=parts[0])
    amount = None
    if len(parts) > 1:
        try:
            amount = parse_amount("".join(parts[1:]))
        except AmountError:
            raise UsageError("bad_amount", value=" ".join(parts[1:])) from None
        if amount <= 0 or amount > r.open_amount:
            raise UsageError("amount_out_of_range", value=amount, open=r.open_amount, currency=r.currency)
    now = clock.now()
    fu = await followups.log_followup(session, receivable=r, person_id=person.id, at=now, channel=message.platform,
                                      outcome="promised", text=args, promised_date=when, promised_amount=amount)
    p = await coll.make_promise(session, receivable=r, promised_date=when, amount=amount, person_id=person.id,
                                at=now, channel=message.platform, followup=fu)
    return Reply("followup/promise.md.j2", {"r": r, "p": p})


@router.command("dispute", aliases=("异议",), roles=COLLECTORS, args=InvoiceArg())
async def dispute_cmd(session, receivable, rest, person, clock, message) -> Reply:
    """Mark an invoice disputed (reminders and escalations pause) with the reason."""
    r, reason = receivable, rest
    if r.disputed:
        raise UserError("already_disputed", invoice=r.invoice_no)
    now = clock.now()
    await coll.open_dispute(session, receivable=r, reason=reason.strip(), person_id=person.id, at=now,
                            channel=message.platform)
    await followups.log_followup(session, receivable=r, person_id=person.id, at=now, channel=message.platform,
                                 outcome="dispute", text=reason.strip())
    return Reply("followup/dispute.md.j2", {"r": r, "reason": reason.strip(), "resolved": False})


@router.command("resolve", aliases=("解决",), roles=COLLECTORS, args=InvoiceArg(rest=None))
async def resolve_cmd(session, receivable, person, clock, message) -> Reply:
    """Close an invoice's dispute: reminders and the escalation ladder resume."""
    r = receivable
    if not r.disputed:
        raise UserError("not_disputed", invoice=r.invoice_no)
    await coll.resolve_disputes(session, receivable=r, person_id=person.id, at=clock.now(), channel=message.platform)
    return Reply("followup/dispute.md.j2", {"r": r, "reason": "", "resolved": True})


__all__ = ["router", "record_reply", "ALL"]
