"""The platform-neutral shapes of what comes in and what goes out.

A channel adapter turns a platform's request into an ``IncomingMessage`` and turns an
``OutgoingMessage`` into the platform's send call. Nothing here knows any platform.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Format = Literal["text", "markdown"]


@dataclass(frozen=True)
class IncomingMessage:
    platform: str                 # "local" | "wecom" | "dingtalk"
    platform_user_id: str         # the sender as the platform names them (WeCom UserID, DingTalk staffId, local person id)
    text: str                     # with any @mention of the bot already stripped
    message_id: str               # platform message id, the deduplication key within the platform
    chat_id: str | None = None    # group/conversation id; None for a 1:1 chat
    mentioned_bot: bool = True    # in groups the bot only answers when @-mentioned
    sender_name: str = ""
    # where a reply must go if not through the channel's default route (e.g. DingTalk sessionWebhook)
    reply_route: dict[str, Any] = field(default_factory=dict)
    # a button click on an interactive card: {"task_id", "key", "response_code"}
    card_action: dict[str, Any] | None = None

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


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message for one destination, as stored in the outbox.

    target_kind:
      "user"   a person, by platform user id (WeCom app message / DingTalk oToMessages / local inbox)
      "group"  a group chat the bot is in (DingTalk groupMessages / local group inbox)
      "robot"  a send-only group robot webhook, by its configured name
      "session" a DingTalk sessionWebhook URL (a reply to a message, valid until it expires)
      "email" / "sms"  customer contacts (issue 6)
    """
    platform: str
    target_kind: str
    target: str
    text: str
    format: Format = "markdown"
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)   # card, image (base64), at-list...
