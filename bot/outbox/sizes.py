"""Fitting a message to its platform: every outgoing message is at most what the channel declares
(``Capabilities.sizes``) for its target kind and format.

Where: the sender, just before delivery (``Sender._fit``), and the local chat for the replies that
travel in its HTTP answer. Not at enqueue: there are four ways into the outbox (``enqueue``,
``enqueue_many``, the ledger pass's ``pending_row``/``enqueue_rows`` executemany, rows queued
before an upgrade) and none of them holds the channel, whose capabilities are a function of its
config section; the sender holds exactly the channel that will deliver the row. A row too big is
split there once, durably: its parts become outbox rows of their own (``key:1``, ``key:2`` …,
written ON CONFLICT DO NOTHING in the same transaction that marks the original ``split``), so a
retry re-sends only the part that failed and a crash between the two re-splits into the same keys.

How:

* **Split at line boundaries.** Lines are packed greedily; every part after the first starts
  with the continuation head (``outbox/continued.j2``: "（续）第 2/3 部分").
* **A line longer than a whole part** is cut at a character boundary (never inside a UTF-8
  sequence: the text is cut as ``str``, measured as bytes).
* **Summarised where splitting makes no sense**: a message that would need more than
  ``MAX_PARTS`` parts keeps its first parts and ends with a pointer to the rest
  (``outbox/rest_omitted.j2``); a card's title, description and button labels are fields, not
  paragraphs, so they are cut to their declared limits with an ellipsis (``fit_card``).
"""
from __future__ import annotations

import dataclasses

from bot.core.channel import CARD_BUTTON, CARD_DESCRIPTION, CARD_TITLE, Capabilities, SizeLimit
from bot.core.messages import Card, OutgoingMessage
from bot.render import render
from storage.outbox_parts import MAX_PARTS

# what only the first part of a split message carries: the card, and whom it mentions
FIRST_PART_ONLY = frozenset({"card", "at_user_ids", "at_all", "mentioned_list", "mentioned_mobile_list"})




def head(part: int, parts: int, format: str) -> str:
    return render("outbox/continued.j2", part=part, parts=parts, format=format)


def cut(text: str, limit: SizeLimit) -> str:
    """The longest prefix of ``text`` that fits (binary search over characters: a cut is always
    between two characters, never inside one's UTF-8 bytes)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if limit.fits(text[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def summarise(text: str, limit: SizeLimit | None) -> str:
    """A field cut to its limit, with an ellipsis when something was cut."""
    if limit is None or limit.fits(text):
        return text
    mark = render("outbox/ellipsis.j2")
    return cut(text, SizeLimit(bytes=None if limit.bytes is None else max(0, limit.bytes - len(mark.encode())),
                               chars=None if limit.chars is None else max(0, limit.chars - len(mark)))) + mark


def fit_card(card: Card, caps: Capabilities, target_kind: str) -> Card:
    """A card whose title, description and button labels are within the declared field limits."""
    title = summarise(card.title, caps.size_limit(target_kind, CARD_TITLE))
    desc = summarise(card.description, caps.size_limit(target_kind, CARD_DESCRIPTION))
    button = caps.size_limit(target_kind, CARD_BUTTON)
    buttons = tuple(dataclasses.replace(b, label=summarise(b.label, button)) for b in card.buttons)
    if (title, desc, buttons) == (card.title, card.description, card.buttons):
        return card
    return dataclasses.replace(card, title=title, description=desc, buttons=buttons)


def split_text(text: str, limit: SizeLimit, format: str, max_parts: int = MAX_PARTS) -> list[str]:
    """``text`` as parts that each fit ``limit``, heads included; one part when it fits already."""
    if limit.fits(text):
        return [text]
    # room for the longest head this message can get (the part counts have at most 3 digits here)
    widest = head(max_parts * 100 - 1, max_parts * 100 - 1, format) + "\n"
    room = SizeLimit(bytes=None if limit.bytes is None else limit.bytes - len(widest.encode()),
                     chars=None if limit.chars is None else limit.chars - len(widest))
    if (room.bytes is not None and room.bytes < 16) or (room.chars is not None and room.chars < 8):
        return [cut(text, limit)]           # a limit too small for heads: the first part only
    bodies: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        while not room.fits(line):          # one line longer than a part on its own
            piece = cut(line, room)
            if current:
                bodies.append("\n".join(current))
                current = []
            bodies.append(piece)
            line = line[len(piece):]
        if room.fits("\n".join(current + [line])):
            current.append(line)
        else:
            bodies.append("\n".join(current))
            current = [line]
    if current:
        bodies.append("\n".join(current))
    bodies = [b.strip("\n") for b in bodies if b.strip()]
    if len(bodies) > max_parts:
        # keep the first parts; the last one says how much more there was and where to read it
        kept = bodies[:max_parts - 1]
        omitted = sum(len([ln for ln in b.split("\n") if ln.strip()]) for b in bodies[max_parts - 1:])
        last = render("outbox/rest_omitted.j2", lines=omitted)
        bodies = kept + [last if room.fits(last) else cut(last, room)]
    n = len(bodies)
    return [b if i == 0 else head(i + 1, n, format) + "\n" + b for i, b in enumerate(bodies)]


def fit(out: OutgoingMessage, caps: Capabilities) -> list[OutgoingMessage]:
    """The message as its platform takes it: one message (its card's fields fitted), or its parts
    in order. An image row, a card answer and a card shown instead of the body are not split."""
    card = out.card
    if card is not None:
        out = out.with_card(fit_card(card, caps, out.target_kind))
    limit = caps.size_limit(out.target_kind, out.format)
    if (limit is None or not out.text or "image_base64" in out.extra or out.answers is not None
            or (card is not None and caps.cards) or limit.fits(out.text)):
        return [out]
    texts = split_text(out.text, limit, out.format)
    if len(texts) == 1:
        return [dataclasses.replace(out, text=texts[0])]
    # the first part keeps the row's extra (a card shown beside the body, an at-list); the
    # continuation parts keep the rest (a session webhook's expiry…) without the card and the
    # mentions, so nobody is @-mentioned n times
    rest = {k: v for k, v in out.extra.items() if k not in FIRST_PART_ONLY}
    return [dataclasses.replace(out, text=t, extra=out.extra if i == 0 else rest) for i, t in enumerate(texts)]
