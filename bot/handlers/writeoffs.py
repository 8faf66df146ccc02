"""/writeoffs (/核销台账): the write-off register in chat — what was written off, by whose
request and approvals, what has been recovered since, and what is waiting for approval; scoped
like /aging (a rep: their customers' invoices). The whole register: ``arbot export writeoffs``
and the dashboard."""
from __future__ import annotations

from bot.core.arguments import ScopeArg
from bot.core.messages import Reply
from bot.core.permissions import READERS
from bot.core.router import Router
from storage import writeoffs

router = Router("writeoffs")
MAX_LISTED = 15


@router.command("writeoffs", aliases=("核销台账",), roles=READERS, reads_only=True, args=ScopeArg())
async def writeoffs_cmd(session, narrowed, label) -> Reply:
    """The write-off register in the caller's scope: totals, pending requests, the latest write-offs."""
    reg = await writeoffs.register(session, narrowed)
    booked = [x for x in reg.lines if x.status == "approved"]
    return Reply("writeoffs/register.md.j2", {"label": label, "totals": reg.totals(), "pending": reg.pending,
                                              "booked": booked[:MAX_LISTED], "more": max(0, len(booked) - MAX_LISTED),
                                              "count": len(booked)})
