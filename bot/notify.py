"""Addressing people: a notification to a person goes to the first enabled platform on which
we know them, in the registry's order of preference (the local web chat, in demo/dev mode, last:
it knows everyone by person id)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot import outbox
from bot.core.channel import registry
from bot.core.messages import Card, OutgoingMessage
from bot.render import environment
from storage.models import Person


def address(person: Person, platforms: tuple[str, ...]) -> tuple[str, str] | None:
    """(platform, user id) of the first of ``platforms`` that knows ``person``."""
    for name in platforms:
        platform = registry.get(name)
        if platform is not None and platform.identity == "person":
            return name, person.id
        user_id = person.account(name)
        if user_id:
            return name, user_id
    return None


async def to_person(session: AsyncSession, person: Person, text: str, *, key: str, now: datetime,
                    platforms: tuple[str, ...], title: str = "", format: str = "markdown",
                    extra: dict | None = None) -> bool:
    """Queue a message to a person. The key is the message's identity: the same key twice sends once."""
    m = for_person(person, text, key=key, platforms=platforms, title=title, format=format, extra=extra)
    if m is None:
        return False
    return await outbox.enqueue(session, m[0], m[1], now)


def for_person(person: Person, text: str, *, key: str, platforms: tuple[str, ...], title: str = "",
               format: str = "markdown", extra: dict | None = None,
               card: Card | None = None) -> tuple[OutgoingMessage, str] | None:
    """The (message, outbox key) ``to_person`` would queue, for ``outbox.enqueue_many``; None when
    the person is on none of the platforms."""
    addr = address(person, platforms)
    if addr is None:
        return None
    platform, target = addr
    out = OutgoingMessage(platform=platform, target_kind="user", target=target, text=text, format=format,
                          title=title_of(title), extra=extra or {})
    return (out.with_card(card) if card is not None else out), f"{key}:{person.id}"


def title_of(key: str) -> str:
    """Jobs name a message's kind ("overdue", "credit"...); the words come from _fmt.j2."""
    return str(environment().globals["fmt"].title(key)) if key else ""


async def to_chat(session: AsyncSession, platform: str, target_kind: str, target: str, text: str, *,
                  key: str, now: datetime, title: str = "", extra: dict | None = None,
                  image_png: bytes | None = None) -> bool:
    out = OutgoingMessage(platform=platform, target_kind=target_kind, target=target, text=text,
                          title=title, extra=extra or {})
    return await outbox.enqueue(session, out.with_image(image_png) if image_png is not None else out, key, now)
