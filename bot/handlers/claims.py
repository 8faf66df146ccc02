"""/claims (/到账待核实): the payment claims (称已付款) still waiting for finance.

Everyone sees the claims in their scope (a rep: their own customers'); finance closes one by
booking the payment with /paid, or dismisses it when the bank shows no such receipt:
``/claims 驳回 <编号> <原因>`` (finance only, bot.core.permissions.EDITORS).
"""
from __future__ import annotations

from bot.core.arguments import row_number
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import EDITORS, READERS, may_use
from bot.core.router import Router
from storage import claims as claims_q
from storage.models import PaymentClaim, Receivable

router = Router("claims")


@router.command("claims", aliases=("到账待核实",), roles=READERS)
async def claims_cmd(session, scope, args, person, clock, message) -> Reply:
    """The open payment claims in your scope; finance may dismiss one (驳回)."""
    words = args.split(maxsplit=2)
    if words and words[0] in ("驳回", "dismiss"):
        if not may_use(person, EDITORS):
            raise UserError("forbidden", command="claims")
        if len(words) < 3 or not words[1].lstrip("#").isdigit():
            raise UsageError("missing_argument")
        number = row_number(words[1].lstrip("#"))
        claim = await session.get(PaymentClaim, number) if number is not None else None
        if claim is None:
            raise UserError("unknown_claim", id=words[1])
        if claim.status != "open":
            raise UserError("claim_closed", id=claim.id)
        r = await session.get(Receivable, claim.receivable_id)
        await claims_q.dismiss(session, claim, actor=person.id, note=words[2], now=clock.now(),
                               channel=message.platform)
        return Reply("payments/claim_dismissed.md.j2", {"claim": claim, "r": r})
    if words:
        raise UsageError("too_many_arguments", extra=args.strip())
    rows = await claims_q.open_claims(session, scope)
    return Reply("payments/claims.md.j2", {"rows": rows, "finance": may_use(person, EDITORS)})
