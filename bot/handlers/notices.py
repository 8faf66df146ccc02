"""/notices (/通知): the caller's notifications of today that their digests did not list (issue
#15: a person's digests list at most ``[collection] digest_max_items`` a day, then "另有 N 条" points
here)."""
from __future__ import annotations

from bot import digests
from bot.core.messages import Reply
from bot.core.permissions import ALL
from bot.core.router import Router
from storage import digests as store

router = Router("notices")
MAX_LISTED = 40     # one reply stays readable; the rest are counted


@router.command("notices", aliases=("通知",), roles=ALL, reads_only=True)
async def notices_cmd(session, person, clock) -> Reply:
    """Today's notifications (ladder, reminders, credit, statute, promises) beyond what the digests listed."""
    day = clock.today()
    rest = await store.of_person(session, person.id, day, unlisted_only=True)
    blocks = [digests.render_block(b) for b in digests.blocks(rest[:MAX_LISTED])]
    return Reply("digest/notices.md.j2", {"day": day, "blocks": blocks, "count": len(rest), "rest_only": True,
                                          "more": max(0, len(rest) - MAX_LISTED)})
