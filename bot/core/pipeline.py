"""The way every incoming message goes: (verified and deduplicated by the channel) → resolve
the person → route → permission → handler → render. Replies are rendered from templates.

The handler runs inside one transaction together with the rendering of its replies and the
outbox rows that carry them, so a reply is never sent for a change that did not commit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.channel import registry
from bot.core.errors import UserError
from bot.core.messages import MAX_INCOMING_CHARS, Card, IncomingMessage, Reply
from bot.core.permissions import may_use, scope_for
from bot.core.router import Command, Dispatcher
from bot.render import render
from storage import people

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    text: str
    format: str = "markdown"
    image: Callable[[], bytes] | None = None     # drawn by the intake for a platform that shows it
    card: Card | None = None                     # a clicked card as answered (Reply.card)


@dataclass
class Context:
    """What a handler may ask for by name."""
    message: IncomingMessage
    session: AsyncSession
    services: Any                  # bot.services.Services: config, clock, calendar, platforms
    person: Any = None
    scope: Any = None
    args: str = ""
    command: Command | None = None
    dispatcher: Dispatcher | None = None     # every command (for /help)
    extra: dict = field(default_factory=dict)

    @property
    def clock(self):
        return self.services.clock

    @property
    def config(self):
        return self.services.config


class Pipeline:
    def __init__(self, dispatcher: Dispatcher, services: Any):
        self.dispatcher = dispatcher
        self.services = services

    def reads_only(self, msg: IncomingMessage) -> bool:
        """Does this message ask a question that changes nothing (``/aging``, ``/customer``)? Then it
        is answered from a read-only snapshot, beside the writers instead of in their line."""
        if msg.card_action:
            return False
        command, _, _ = self.dispatcher.match(msg.text)
        return command is not None and command.reads_only

    async def handle(self, session: AsyncSession, msg: IncomingMessage) -> list[Rendered]:
        """Handle one message in the caller's transaction; return the rendered replies."""
        if msg.is_group and not msg.mentioned_bot:
            return []                      # in groups the bot speaks only when spoken to
        person = await self._sender(session, msg)
        if person is None or not person.active:
            return [Rendered(render("errors/unknown_person.md.j2", platform=msg.platform,
                                    user_id=msg.platform_user_id))]
        if msg.cut_from:
            # never act on the first 4,000 characters of something longer: say so, plainly
            return [Rendered(render("errors/too_long.md.j2", length=msg.cut_from, limit=MAX_INCOMING_CHARS))]
        ctx = Context(message=msg, session=session, services=self.services, person=person,
                      dispatcher=self.dispatcher)
        ctx.scope = await scope_for(session, person)
        command, word, args = self.dispatcher.match(msg.text)
        ctx.args, ctx.command = args, command
        if command is None:
            fb = self.dispatcher.fallback
            if card := msg.card_action:
                ctx.extra["card"] = card
            if fb is None or not msg.text.strip() and not msg.card_action:
                return [self._error("unknown_command", ctx, text=msg.text.strip())]
            if not may_use(person, fb.fallback_roles):
                return [self._error("unknown_command", ctx, text=msg.text.strip())]
            return await self._call(ctx, fb.fallback, fb.fallback_wants)
        if not may_use(person, command.roles):
            return [self._error("forbidden", ctx, command=command.name)]
        if msg.is_group and not command.group_ok:
            return [self._error("private_only", ctx, command=command.name)]
        return await self._call(ctx, command.handler, command.wants, command.arguments)

    @staticmethod
    async def _sender(session: AsyncSession, msg: IncomingMessage):
        """Who sent ``msg``: by their account on the platform, or by person id on a platform that
        speaks as one (the local chat)."""
        platform = registry.get(msg.platform)
        if platform is not None and platform.identity == "person":
            return await people.by_id(session, msg.platform_user_id)
        return await people.by_account(session, msg.platform, msg.platform_user_id)

    async def _call(self, ctx: Context, fn, wants, arguments=None) -> list[Rendered]:
        savepoint = await ctx.session.begin_nested()
        try:
            # the argument filter runs after the role check and answers like the handler would
            found = await arguments(ctx) if arguments is not None else {}
            kwargs = {name: found[name] if name in found else self._inject(ctx, name) for name in wants}
            result = await fn(**kwargs)
        except UserError as e:
            # bad input changes nothing: undo whatever the handler wrote before it noticed
            await savepoint.rollback()
            return [self._error(e.code, ctx, **e.data)]
        await savepoint.commit()
        replies = result if isinstance(result, list) else [result] if result is not None else []
        return [self._render(r) for r in replies]

    @staticmethod
    def _inject(ctx: Context, name: str):
        return {"ctx": ctx, "message": ctx.message, "args": ctx.args, "session": ctx.session,
                "person": ctx.person, "scope": ctx.scope, "clock": ctx.services.clock,
                "config": ctx.services.config, "services": ctx.services, "dispatcher": ctx.dispatcher}[name]

    @staticmethod
    def _render(r: Reply) -> Rendered:
        return Rendered(render(r.template, **r.data), r.format, r.image, r.card)

    def _error(self, code: str, ctx: Context, **data) -> Rendered:
        cmd = data.pop("command", None) or (ctx.command.name if ctx.command else None)
        usage = render(f"usage/{cmd}.md.j2") if cmd and _has_usage(cmd) else ""
        return Rendered(render("errors/error.md.j2", code=code, data=data, command=cmd, usage=usage,
                               person=ctx.person))


def _has_usage(cmd: str) -> bool:
    from bot.render import environment
    try:
        environment().get_template(f"usage/{cmd}.md.j2")
        return True
    except Exception:
        return False
