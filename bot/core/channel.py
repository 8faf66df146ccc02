"""The channel contract: what a chat platform can do, declared by its channel, and the registry
of platforms.

The core asks a platform's ``Capabilities`` instead of knowing its name: how big a message may
be, whether it shows images or button cards, whether replies travel in the HTTP answer, which
destinations count against a rate limit. A platform is one module in ``bot/channels/`` that
registers a ``Platform`` (its name, its capabilities, how to install it on the web app, the
people.csv headers that name its user ids) plus its section in ``bot/config.py``; nothing
outside ``bot/channels/`` names a platform (docs/channels.md).

No web framework here: ``Platform.install`` is typed loosely on purpose, the aiohttp side lives
in the channel modules and ``bot/web/intake.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Literal, Protocol

from bot.core.messages import IncomingMessage, OutgoingMessage
from domain import import_vocab

Identity = Literal["account", "person"]
# ``lookup(mobile) -> user id | None`` (None: no member has that mobile); raises when it cannot tell
MobileLookup = Callable[[str], Awaitable[str | None]]
# the "formats" of a card's fields in ``Capabilities.sizes``: a channel that shows cards declares
# what its platform takes in each (the sender cuts a longer field with an ellipsis)
CARD_TITLE, CARD_DESCRIPTION, CARD_BUTTON = "card.title", "card.description", "card.button"


@dataclass(frozen=True)
class SizeLimit:
    """The most a platform takes in one message. Some count UTF-8 bytes (a CJK character is 3),
    others characters. ``None``: no known limit of that kind."""
    bytes: int | None = None
    chars: int | None = None

    def fits(self, text: str) -> bool:
        return ((self.bytes is None or len(text.encode("utf-8")) <= self.bytes)
                and (self.chars is None or len(text) <= self.chars))

    def as_bytes(self) -> int | None:
        """The limit in UTF-8 bytes, for the push's packing: a character is at least one byte, so
        text of N bytes is never more than N characters."""
        limits = [n for n in (self.bytes, self.chars) if n is not None]
        return min(limits) if limits else None


@dataclass(frozen=True)
class Capabilities:
    """What a platform can do. Declared by its channel, read by the core, never probed.

    targets        the destination kinds it delivers to ("user", "group", "robot", "session"...)
    sizes          {(target kind, format): SizeLimit}; a pair not listed has no known limit.
                   Formats: "text", "markdown", and a card's fields (CARD_TITLE...). The sender
                   fits every message to these before delivery (bot/outbox/sizes.py)
    images         target kinds that take an image message (the aging chart)
    cards          shows button cards whose clicks come back as ``IncomingMessage.card_action``
    cards_per_push how many item cards the morning push may add per rep (each is one more
                   message against the per-member rate limit; 0: none)
    synchronous_replies  replies travel in the HTTP answer to the request (the local chat), so
                   they are not queued in the outbox
    rate_limits    {target kind: limit name}: the destinations that count against a per-minute
                   limit, and which one ("robot", "member": the numbers are in ``[outbox]``)
    """
    targets: frozenset[str] = frozenset({"user"})
    sizes: tuple[tuple[tuple[str, str], SizeLimit], ...] = ()
    images: frozenset[str] = frozenset()
    cards: bool = False
    cards_per_push: int = 0
    synchronous_replies: bool = False
    rate_limits: tuple[tuple[str, str], ...] = ()

    def size_limit(self, target_kind: str, format: str) -> SizeLimit | None:
        return dict(self.sizes).get((target_kind, format))

    def max_bytes(self, target_kind: str, format: str) -> int | None:
        limit = self.size_limit(target_kind, format)
        return None if limit is None else limit.as_bytes()

    def takes_image(self, target_kind: str) -> bool:
        return target_kind in self.images

    def rate_limit(self, target_kind: str) -> str | None:
        """The name of the per-minute limit a message to this kind of destination counts against."""
        return dict(self.rate_limits).get(target_kind)


NO_CAPABILITIES = Capabilities(targets=frozenset())


class Channel(Protocol):
    """What the outbox and the inbound processor need from a platform's adapter."""
    platform: str
    capabilities: Capabilities

    def reply_route(self, msg: IncomingMessage) -> tuple[str, str] | tuple[str, str, dict[str, Any]]:
        """(target kind, target) a reply to ``msg`` goes to, optionally with a third item: what the
        channel needs at delivery to honour that route's rules (stored in the outbox row's
        ``extra``), such as when a reply address expires and who to reach instead."""

    async def deliver(self, out: OutgoingMessage) -> None:
        """Send one outbox message; raise a ``bot.channels.errors.DeliveryError`` when it did not go."""


@dataclass(frozen=True)
class Platform:
    """A chat platform as the registry knows it.

    name            the platform's name in messages, outbox rows, person_accounts and its config section
    capabilities    the channel's capabilities from its config section (``[name]``)
    install         ``install(app, state) -> Channel``: routes, client sessions, background clients
    identity        "account": people are known by their user id here (person_accounts);
                    "person": the platform speaks as a person id directly (the local chat)
    account_headers more people.csv headers for the column holding a person's user id here (its
                    canonical header and import field is ``<name>_userid``: see ``account_field``)
    enabled         whether the configuration switches it on (default: ``[name] enabled``)
    mobile_lookup   ``mobile_lookup(section, http_session) -> MobileLookup``: the platform's
                    user-by-mobile API, so that people.csv may give a mobile instead of a user id
                    (bot/identities.py); None: the platform has none
    """
    name: str
    capabilities: Callable[[Any], Capabilities]
    install: Callable[[Any, Any], Channel]
    identity: Identity = "account"
    account_headers: tuple[str, ...] = ()
    enabled: Callable[[Any], bool] | None = None
    mobile_lookup: Callable[[Any, Any], MobileLookup] | None = None

    def section(self, config: Any) -> Any:
        return getattr(config, self.name, None)

    def is_enabled(self, config: Any) -> bool:
        if self.enabled is not None:
            return self.enabled(config)
        return bool(getattr(self.section(config), "enabled", False))

    def capabilities_for(self, config: Any) -> Capabilities:
        return self.capabilities(self.section(config))

    @property
    def account_field(self) -> str | None:
        """The import field, and canonical people.csv header, that carries a person's user id
        here; ``storage.people.ACCOUNT_SUFFIX`` is how storage tells such fields apart."""
        return f"{self.name}_userid" if self.identity == "account" else None


@dataclass
class Registry:
    """The platforms, in order of preference for reaching a person (the order they registered)."""
    _platforms: dict[str, Platform] = field(default_factory=dict)

    def register(self, platform: Platform) -> Platform:
        if platform.name in self._platforms and self._platforms[platform.name] is not platform:
            raise ValueError(f"platform {platform.name!r} registered twice")
        self._platforms[platform.name] = platform
        if platform.account_field:
            import_vocab.add_account_column(platform.account_field, platform.account_headers)
        return platform

    def __iter__(self) -> Iterator[Platform]:
        return iter(self._platforms.values())

    def get(self, name: str) -> Platform | None:
        return self._platforms.get(name)

    def enabled(self, config: Any) -> list[Platform]:
        return [p for p in self if p.is_enabled(config)]

    def capabilities(self, name: str, config: Any) -> Capabilities:
        """A platform's capabilities; none for a name no channel registered (e-mail, SMS, tests)."""
        p = self.get(name)
        return p.capabilities_for(config) if p is not None else NO_CAPABILITIES

    def with_accounts(self) -> list[Platform]:
        """Platforms on which people are known by a user id of their own (person_accounts)."""
        return [p for p in self if p.identity == "account"]


registry = Registry()


def register(platform: Platform) -> Platform:
    """Called by each channel module when it is imported (``bot/channels/adapters.py`` imports them)."""
    return registry.register(platform)
