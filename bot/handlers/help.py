"""/help: the commands the caller may use, each with its usage (from bot/templates/usage/)."""
from __future__ import annotations

from bot.core.messages import Reply
from bot.core.router import Router
from bot.core.permissions import ALL, may_use

router = Router("help")


@router.command("help", aliases=("帮助", "?", "？"), roles=ALL, reads_only=True)
async def help_cmd(person, services, ctx) -> Reply:
    """List the commands this person may use."""
    from bot.handlers import routers
    names = [c.name for r in routers() for c in r.commands if may_use(person, c.roles)]
    replies_ok = any(r.fallback and may_use(person, r.fallback_roles) for r in routers()) and person.role == "rep"
    return Reply("help/help.md.j2", {"person": person, "commands": names, "replies_ok": replies_ok})
