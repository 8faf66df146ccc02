"""/letter (/函件): a customer's letters as documents — 付款提醒函, 账款确认函, 律师函底稿, 对账单 —
each as Word (DOCX, to edit and stamp) and PDF, by signed download links.

The links are made at once; a document is made when its link is opened, from the ledger as it
stands that day (bot/web/letter_files.py), so the reply costs nothing and a letter opened next
week is next week's. Private chat only: the links open the customer's figures to whoever holds them.
"""
from __future__ import annotations

from bot.core.arguments import CustomerArg
from bot.core.messages import Reply
from bot.core.permissions import COLLECTORS
from bot.core.router import Router
from bot.letters import KINDS
from bot.web.letter_files import link

router = Router("letters")


@router.command("letter", aliases=("函件",), roles=COLLECTORS, group_ok=False, reads_only=True, args=CustomerArg())
async def letter_cmd(person, customer, config, clock) -> Reply:
    """Signed links to the customer's letters (DOCX and PDF), valid [reports] link_days days."""
    now = clock.now()
    links = {kind: {ext: link(config, kind, customer, ext, person.id, now) for ext in ("docx", "pdf")}
             for kind in KINDS}
    return Reply("letters/links.md.j2", {"customer": customer, "links": links, "days": config.reports.link_days})
