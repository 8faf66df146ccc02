"""/unfreeze (/解冻): finance lifts a customer's credit freeze (暂停新订单), with a reason; the
freeze it ends and who lifted it go to the audit log. Freezes come from the ladder and the credit
watch (storage/freezes.py) and are shown on /customer."""
from __future__ import annotations

from typing import Any

from bot.core.arguments import customer_named
from bot.core.errors import UsageError, UserError
from bot.core.messages import Reply
from bot.core.permissions import EDITORS
from bot.core.router import Router
from storage import freezes
from storage.customers import find_customer

router = Router("freeze")


class CustomerAndReason:
    """The customer (its whole name, or the first word) → ``customer``, a reason after it → ``rest``."""
    provides = ("customer", "rest")

    async def __call__(self, ctx) -> dict[str, Any]:
        text = " ".join(ctx.args.split())
        if not text:
            raise UsageError("missing_argument")
        whole = (await find_customer(ctx.session, text, ctx.scope)).exact
        first, _, rest = text.partition(" ")
        if rest and not (whole is not None and text in (whole.name, whole.code)):
            # "C2 已补签担保函": a customer, then the reason (a name with spaces is taken whole)
            try:
                return {"customer": await customer_named(ctx.session, ctx.scope, first), "rest": rest}
            except UserError:
                pass
        return {"customer": await customer_named(ctx.session, ctx.scope, text), "rest": ""}


@router.command("unfreeze", aliases=("解冻", "解除冻结"), roles=EDITORS, args=CustomerAndReason())
async def unfreeze_cmd(session, customer, rest, person, clock, message) -> Reply:
    """Lift a customer's credit freeze (new orders allowed again); audited with the reason."""
    was = await freezes.unfreeze(session, customer, actor=person.id, channel=message.platform, now=clock.now(),
                                 reason=rest)
    if was is None:
        raise UserError("not_frozen", customer=customer.name)
    return Reply("customer/unfrozen.md.j2", {"customer": customer, "was": was, "reason": rest})
