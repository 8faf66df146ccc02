"""The platform-neutral shapes of what comes in and what goes out.

A channel adapter turns a platform's request into an ``IncomingMessage`` and turns an
``OutgoingMessage`` into the platform's send call. Nothing here knows any platform.

An outgoing message is made of neutral parts: a title, a body (markdown or text), optionally a
``Card`` (buttons whose clicks come back) or an image. Jobs and handlers build the parts; each
channel decides how its platform shows them (an interactive card, markdown, the local chat's
text). The body is always complete on its own: a platform that shows no cards or images
sends the body, so a part is an addition, never the only place something is said.
"""
from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Format = Literal["text", "markdown"]
# the most of what a person wrote that the bot stores and reads: a follow-up is a few sentences;
# a longer text is cut here by the channel and answered with errors/too_long.md.j2, not handled
MAX_INCOMING_CHARS = 4000


def capped(text: str) -> tuple[str, int]:
    """(text as stored, its length as sent when it was cut; 0 when it was not)."""
    return (text, 0) if len(text) <= MAX_INCOMING_CHARS else (text[:MAX_INCOMING_CHARS], len(text))


@dataclass(frozen=True)
class IncomingMessage:
    platform: str                 # a registered platform's name (bot/core/channel.py)
    platform_user_id: str         # the sender as the platform names them (a user id, or a person id for the local chat)
    text: str                     # with any @mention of the bot already stripped
    message_id: str               # platform message id, the deduplication key within the platform
    chat_id: str | None = None    # group/conversation id; None for a 1:1 chat
    mentioned_bot: bool = True    # in groups the bot only answers when @-mentioned
    sender_name: str = ""
    # where a reply must go if not through the channel's default route (a session webhook, say)
    reply_route: dict[str, Any] = field(default_factory=dict)
    # a button click on an interactive card: {"task_id", "key", "response_code"}
    card_action: dict[str, Any] | None = None
    # the text's length as sent when it was longer than MAX_INCOMING_CHARS (``text`` is then its
    # beginning only, and the bot answers that it was too long instead of acting on half of it)
    cut_from: int = 0

    @property
    def is_group(self) -> bool:
        return self.chat_id is not None


@dataclass(frozen=True)
class Reply:
    """What a handler returns: a template and its data, rendered later by the pipeline."""
    template: str
    data: dict[str, Any] = field(default_factory=dict)
    format: Format = "markdown"
    # a picture drawn only for a platform that shows it (the aging chart: ~0.2 s of plotting),
    # away from the event loop
    image: Callable[[], bytes] | None = None
    # for a reply to a card click: the clicked card as it should look now (the outcome, no
    # buttons), so that the same card cannot be clicked twice. Queued as its own outbox row
    # that the channel delivers by updating the clicked card (``OutgoingMessage.answers``).
    card: Card | None = None


@dataclass(frozen=True)
class Button:
    label: str
    key: str             # comes back as ``card_action["key"]`` when the button is clicked


@dataclass(frozen=True)
class Card:
    """Buttons about one thing, whose clicks come back to the bot (on platforms that show them:
    ``Capabilities.cards``). ``id`` is unique per card; a click names it (``card_action["task_id"]``)."""
    id: str
    title: str
    description: str = ""
    buttons: tuple[Button, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description,
                "buttons": [{"label": b.label, "key": b.key} for b in self.buttons]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Card":
        return cls(id=str(d["id"]), title=str(d.get("title") or ""), description=str(d.get("description") or ""),
                   buttons=tuple(Button(str(b["label"]), str(b["key"])) for b in d.get("buttons") or ()))


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message for one destination, as stored in the outbox.

    target_kind (which ones a platform delivers to: ``Capabilities.targets``):
      "user"   a person, by platform user id (or person id in the local chat)
      "group"  a group chat the bot is in
      "robot"  a send-only group robot webhook, by its configured name
      "session" a reply webhook that came with a message (valid until it expires)
      "email" / "sms"  customer contacts (issue 6)

    Neutral parts beside the body travel in ``extra`` (it is stored as JSON): ``card`` (see
    ``Card``) and ``image_base64`` (a PNG). Use ``with_card`` / ``with_image`` to add them.
    ``answers`` (``answering(click)``): the row does not send anything new, it replaces the card
    whose click it names with its ``card`` (the card answered: the outcome, no buttons).
    """
    platform: str
    target_kind: str
    target: str
    text: str
    format: Format = "markdown"
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)   # card, image (base64), at-list...
    # the outbox row's idempotency key, when read back for delivery: a platform that de-duplicates
    # sends by a key of its own (a message uuid) derives it from this one
    key: str = ""

    @property
    def card(self) -> Card | None:
        d = self.extra.get("card")
        return Card.from_dict(d) if isinstance(d, dict) else None

    @property
    def image_png(self) -> bytes | None:
        data = self.extra.get("image_base64")
        return base64.b64decode(data) if data else None

    def with_card(self, card: Card) -> "OutgoingMessage":
        return dataclasses.replace(self, extra={**self.extra, "card": card.to_dict()})

    def with_image(self, png: bytes) -> "OutgoingMessage":
        return dataclasses.replace(self, extra={**self.extra, "image_base64": base64.b64encode(png).decode()})

    @property
    def answers(self) -> dict[str, Any] | None:
        """The card click (``IncomingMessage.card_action``) whose card this row replaces."""
        d = self.extra.get("answers")
        return d if isinstance(d, dict) else None

    def answering(self, click: dict[str, Any]) -> "OutgoingMessage":
        return dataclasses.replace(self, extra={**self.extra, "answers": dict(click)})
