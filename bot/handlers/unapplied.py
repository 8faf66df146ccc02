"""/apply (/冲预收): finance applies a customer's unapplied cash (预收/未核销) to its open invoices.

``/apply <customer>`` shows what would be applied — each payment's money on account, oldest
first, to the open invoices in its currency, oldest due first (storage/unapplied.py) — and asks;
``确认`` applies exactly that, once. If the ledger changed in between (a payment, an import), the
confirmation is refused and nothing changes: ask again. Finance only; an application is undone
with its payment (/reverse).
"""
from __future__ import annotations

from decimal import Decimal

from bot.core.arguments import CustomerArg, customer_named
from bot.core.errors import UserError
from bot.core.messages import Reply
from bot.core.permissions import EDITORS
from bot.core.router import Router
from storage import confirmations
from storage import unapplied as unapplied_q


router = Router("unapplied")


def _plan_key(plan) -> list[list]:
    return [[p.id, r.invoice_no, str(a)] for p, r, a in plan]


@router.command("apply", aliases=("冲预收",), roles=EDITORS, args=CustomerArg())
async def apply_cmd(session, customer, person, clock, config) -> Reply:
    """Apply a customer's unapplied cash to its open invoices (asks before it does)."""
    now = clock.now()
    on_account = (await unapplied_q.by_customer(session, [customer.id])).get(customer.id, {})
    if not on_account:
        raise UserError("nothing_on_account", customer=customer.name)
    plan = await unapplied_q.plan_on_account(session, customer.id)
    if not plan:
        raise UserError("nothing_to_apply", customer=customer.name, amounts=on_account)
    c = await confirmations.ask(session, person_id=person.id, kind="apply",
                                payload={"customer": customer.code, "plan": _plan_key(plan)},
                                reasons=["apply_on_account"], now=now)
    return Reply("payments/apply_ask.md.j2", {"c": c, "customer": customer, "plan": plan, "on_account": on_account,
                                              "expires": c.expires_at.astimezone(config.tz)})


async def apply_confirmed(session, scope, c, person, clock, message) -> Reply:
    """The confirmed /apply: the same plan as asked, or nothing."""
    customer = await customer_named(session, scope, c.payload["customer"])
    plan = await unapplied_q.plan_on_account(session, customer.id)
    if _plan_key(plan) != c.payload["plan"]:
        raise UserError("apply_changed", customer=customer.name)
    done = await unapplied_q.apply_on_account(session, customer, on=clock.today(), actor=person.id,
                                              channel=message.platform, now=clock.now())
    c.result = {"applied": len(done)}
    left = (await unapplied_q.by_customer(session, [customer.id])).get(customer.id, {})
    return Reply("payments/applied.md.j2", {"customer": customer, "done": done, "left": left,
                                            "total": sum((a.amount for a in done), Decimal("0.00"))})



