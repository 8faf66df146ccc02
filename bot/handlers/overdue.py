"""/overdue (/逾期): the caller's overdue list right now (a rep: their own; others: their scope)."""
from __future__ import annotations

from decimal import Decimal

from bot.core.arguments import ScopeArg
from bot.core.messages import Reply
from bot.core.permissions import READERS
from bot.core.router import Router
from storage import collection as coll

router = Router("overdue")
MAX_LISTED = 30


@router.command("overdue", aliases=("逾期",), roles=READERS, reads_only=True, args=ScopeArg())
async def overdue_cmd(session, narrowed, label, clock) -> Reply:
    """The open, past-due invoices in the caller's scope, oldest first, with promises and disputes."""
    items = await coll.overdue_items(session, clock.today(), narrowed)
    items.sort(key=lambda i: -i.days_overdue)
    # per currency: a US$ invoice is never added 1:1 to yuan
    total: dict[str, Decimal] = {}
    for i in items:
        total[i.receivable.currency] = total.get(i.receivable.currency, Decimal("0.00")) + i.receivable.open_amount
    total = dict(sorted(total.items(), key=lambda kv: (kv[0] != "CNY", kv[0])))
    return Reply("followup/overdue.md.j2", {"items": items[:MAX_LISTED], "count": len(items), "total": total,
                                            "label": label, "today": clock.today(), "more": max(0, len(items) - MAX_LISTED)})
