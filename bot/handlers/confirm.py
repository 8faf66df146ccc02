"""/confirm (确认): answer yes to a question the bot asked before changing the ledger.

``确认`` confirms the caller's only open question; ``确认 N`` names one when several are open.
Each question is confirmed once (a second 确认 says it was done and changes nothing) and only
before it expires (storage/confirmations.py). The action runs with the caller's current
permissions, as if they had typed it again with the question answered.
"""
from __future__ import annotations

from datetime import date

from bot.core.arguments import row_number
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import ALL, CALENDAR_KEEPERS, EDITORS, may_use
from bot.core.router import Router
from bot.handlers.calendar import store_confirmed as store_calendar
from bot.handlers.followup import reply_to_push
from bot.handlers.payments import book_paid
from bot.handlers.unapplied import apply_confirmed
from storage import confirmations

router = Router("confirm")


@router.command("confirm", aliases=("确认",), roles=ALL)
async def confirm_cmd(ctx, session, scope, args, person, clock, config, services, message) -> Reply:
    """Confirm what the bot asked about (a payment above the open balance, a likely duplicate)."""
    raw = args.strip().lstrip("#")
    if person.role == "rep" and (raw and not raw.isdigit()
                                 or not await confirmations.open_for(session, person.id, clock.now())):
        # a rep's reply that happens to start with the word 确认 ("确认 3 已付款") is a reply
        return await reply_to_push(ctx, message)
    if raw and row_number(raw) is None:
        raise UsageError("bad_confirmation", value=args.strip())
    now = clock.now()
    try:
        c = await confirmations.take(session, person_id=person.id, number=int(raw) if raw else None, now=now)
    except confirmations.ConfirmationError as e:
        raise UserError("confirmation_" + e.code, **e.data) from None
    if c.kind == "paid":
        if not may_use(person, EDITORS):
            raise UserError("forbidden", command="paid")
        reply = await book_paid(session, scope, c.payload["args"], person, clock, config, services, message,
                                accepted=frozenset(c.reasons), today=date.fromisoformat(c.payload["today"]))
        if reply.template == "payments/paid.md.j2":
            c.result = {"payment": reply.data["payment"].id}
        return reply
    if c.kind == "calendar":
        if not may_use(person, CALENDAR_KEEPERS):
            raise UserError("forbidden", command="calendar")
        return await store_calendar(session, c.payload, person, clock, services, message)
    if c.kind == "apply":
        if not may_use(person, EDITORS):
            raise UserError("forbidden", command="apply")
        return await apply_confirmed(session, scope, c, person, clock, message)
    raise UserError("confirmation_unknown", number=c.id)
