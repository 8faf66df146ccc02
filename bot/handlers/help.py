"""/help: the commands the caller may use, each with its usage (from bot/templates/usage/)."""
from __future__ import annotations

from bot.core.messages import Reply
from bot.core.router import Router
from bot.core.permissions import ALL, may_use

router = Router("help")


@router.command("help", aliases=("帮助", "?", "？"), roles=ALL, reads_only=True)
async def help_cmd(person, dispatcher) -> Reply:
    """List the commands this person may use."""
    # the dispatcher that routed /help knows every command (handlers/__init__.py composes it from
    # this very module, so asking that module would be a loop)
    names = [c.name for c in dispatcher.ordered if may_use(person, c.roles)]
    fb = dispatcher.fallback
    replies_ok = fb is not None and may_use(person, fb.fallback_roles) and person.role == "rep"
    return Reply("help/help.md.j2", {"person": person, "commands": names, "replies_ok": replies_ok})
