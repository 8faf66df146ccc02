"""/dashboard (/看板): a one-time link to the web dashboard, scoped like the caller's commands.

Private chat only: a login link posted in a group could be used by anyone in it.
"""
from __future__ import annotations

from bot.core.messages import Reply
from bot.core.permissions import ALL
from bot.core.router import Router
from bot.web.signing import login_link

router = Router("dashboard")


@router.command("dashboard", aliases=("看板",), roles=ALL, group_ok=False, reads_only=True)
async def dashboard_cmd(person, config, clock) -> Reply:
    """A signed link to the web dashboard, valid once and for [web] link_minutes."""
    url, expires = login_link(config, person.id, clock.now())
    return Reply("dashboard/link.md.j2", {"person": person, "url": url, "minutes": config.web.link_minutes,
                                          "expires": expires.astimezone(config.tz)})
