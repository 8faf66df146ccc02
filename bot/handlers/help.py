"""/help: the commands the caller may use, one line each; ``/help 命令`` shows one command's usage
(from bot/templates/usage/). The index fits one chat message on every platform (the smallest
markdown limit is 2,048 bytes): finance may use some thirty commands, and their usages together are several KB."""
from __future__ import annotations

from bot.core.errors import UserError
from bot.core.messages import Reply
from bot.core.permissions import ALL, may_use
from bot.core.router import Router

router = Router("help")


@router.command("help", aliases=("帮助", "?", "？"), roles=ALL, reads_only=True)
async def help_cmd(person, dispatcher, args) -> Reply:
    """List the commands this person may use; with a command's name, how to write it."""
    # the dispatcher that routed /help knows every command (handlers/__init__.py composes it from
    # this very module, so asking that module would be a loop)
    allowed = [c for c in dispatcher.ordered if may_use(person, c.roles)]
    wanted = args.strip().lstrip("/／")
    if wanted:
        cmd = dispatcher.commands.get(wanted.lower())
        if cmd is None or cmd not in allowed:
            raise UserError("help_unknown", value=wanted)
        return Reply("help/command.md.j2", {"name": cmd.name})
    fb = dispatcher.fallback
    replies_ok = fb is not None and may_use(person, fb.fallback_roles) and person.role == "rep"
    listed = [c for c in allowed if c.name != "help"]       # the index ends by saying how to use /help
    return Reply("help/help.md.j2", {"person": person, "asking": [c.name for c in listed if c.reads_only],
                                     "doing": [c.name for c in listed if not c.reads_only],
                                     "replies_ok": replies_ok})
