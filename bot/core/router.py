"""Commands: one ``Router`` per feature module, composed explicitly in bot/handlers/__init__.py.

A command is written ``/aging 华东``, ``aging 华东`` or by a Chinese alias ``/账龄 华东``.
Handlers declare what they need by parameter name and get exactly that (see ``INJECTABLE``);
a command's argument filter (``args=``, bot/core/arguments.py) resolves its words before the
handler runs and adds what it found (``customer``, ``receivable``, ``narrowed`` ...) to those names.
Each command names the roles that may use it; ``bot.core.permissions`` is the one place that
checks it, before the handler runs.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Awaitable, Callable

INJECTABLE = {"ctx", "message", "args", "session", "person", "scope", "clock", "config", "services", "dispatcher"}


@dataclass
class Command:
    name: str
    handler: Callable[..., Awaitable]
    roles: frozenset[str]
    aliases: tuple[str, ...] = ()
    group_ok: bool = True          # may be used in group chats
    wants: tuple[str, ...] = ()    # parameter names the handler asked for
    reads_only: bool = False       # a question that changes nothing: answered from a read-only snapshot
    arguments: Callable[..., Awaitable[dict]] | None = None   # the argument filter: ctx → names for the handler

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.handler) or ""


@dataclass
class Router:
    name: str
    commands: list[Command] = field(default_factory=list)
    fallback: Callable[..., Awaitable] | None = None      # free text that is not a command (push replies)
    fallback_roles: frozenset[str] = frozenset()
    fallback_wants: tuple[str, ...] = ()

    def command(self, name: str, *, roles, aliases: tuple[str, ...] = (), group_ok: bool = True,
                reads_only: bool = False, args=None):
        def deco(fn):
            wants = tuple(inspect.signature(fn).parameters)
            bad = set(wants) - INJECTABLE - set(getattr(args, "provides", ()))
            if bad:
                raise TypeError(f"{fn.__qualname__}: cannot inject {sorted(bad)}")
            self.commands.append(Command(name, fn, frozenset(roles), tuple(aliases), group_ok, wants, reads_only,
                                         args))
            return fn
        return deco

    def text(self, *, roles):
        """Register the handler for free text (only one router may have one)."""
        def deco(fn):
            self.fallback = fn
            self.fallback_roles = frozenset(roles)
            self.fallback_wants = tuple(inspect.signature(fn).parameters)
            return fn
        return deco


class Dispatcher:
    def __init__(self, routers: list[Router]):
        self.commands: dict[str, Command] = {}
        self.ordered: list[Command] = []
        self.fallback: Router | None = None
        for r in routers:
            for c in r.commands:
                for key in (c.name, *c.aliases):
                    if key.lower() in self.commands:
                        raise ValueError(f"command {key!r} registered twice")
                    self.commands[key.lower()] = c
                self.ordered.append(c)
            if r.fallback is not None:
                if self.fallback is not None:
                    raise ValueError("two routers handle free text")
                self.fallback = r

    def match(self, text: str) -> tuple[Command | None, str, str]:
        """→ (command or None, the word the user typed, the rest). A leading slash is optional,
        but a bare word only counts when it is a known command (so free text stays free)."""
        stripped = text.strip()
        slash = stripped.startswith(("/", "／"))
        body = stripped[1:] if slash else stripped
        word, _, rest = body.partition(" ")
        if not _ and "\n" in word:
            word, _, rest = body.partition("\n")
        cmd = self.commands.get(word.lower())
        if cmd is None and slash:
            # with a slash, a Chinese alias may be glued to its argument: "/账龄华东"
            for key, c in self.commands.items():
                if not key.isascii() and body.startswith(key):
                    return c, key, body[len(key):].strip()
        if cmd is None:
            # without a slash only a whole word counts, so a rep's reply "客户说发票抬头错了"
            # is free text, not /客户
            return None, "", stripped
        return cmd, word, rest.strip()
