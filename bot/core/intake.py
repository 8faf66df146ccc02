"""What a platform's request becomes, and the one policy for requests the bot refuses.

Every chat platform's callback goes the same way (``bot/web/intake.py``):

  verify the headers/query → check content type (415) and size (413) → read → verify and parse
  the body → store (a redelivery finds its key taken) → acknowledge → handle in the background

An adapter supplies only the platform's parts, as an ``Endpoint``: ``verify`` (what can be
checked before the body is read: a header signature, the query parameters) and ``parse`` (the
body: decrypt, verify a signature that covers it, map it to ``IncomingMessage``s). Both raise a
``Rejected`` subclass, which the intake answers the same way on every platform:

  401 bad_signature          the signature or timestamp does not verify
  403 forbidden              verified, but meant for someone else (another corp's key)
  400 malformed              missing parameters, a body that does not parse, a message without sender
  413 too_large              a body over the app's limit (1 MB)
  415 unsupported_media_type a Content-Type the endpoint cannot read (none at all is read)

with a JSON body ``{"error": <one of the words above>, "reason": <what was wrong, no secrets>}``.
A storage fault stays 503 with Retry-After (bot/app.py's middleware): the platform delivers the
event again later, which is what it should do when the bot could not store it.

Nothing here imports a web framework; ``RawRequest`` is what the adapter sees of a request.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from bot.core.messages import IncomingMessage


class Rejected(Exception):
    """A request refused before anything was stored."""
    status = 400
    error = "malformed"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def body(self) -> dict[str, str]:
        return {"error": self.error, "reason": self.reason}


class BadSignature(Rejected):
    status, error = 401, "bad_signature"


class Forbidden(Rejected):
    status, error = 403, "forbidden"


class Malformed(Rejected):
    status, error = 400, "malformed"


class TooLarge(Rejected):
    status, error = 413, "too_large"


class UnsupportedMediaType(Rejected):
    status, error = 415, "unsupported_media_type"


@dataclass(frozen=True)
class RawRequest:
    method: str
    query: Mapping[str, str]      # decoded once by the web server: never unquote again ("+" stays "+")
    headers: Mapping[str, str]
    body: bytes = b""

    def params(self, *names: str) -> list[str]:
        """The named query parameters, all of them present and non-empty, or Malformed."""
        if any(not self.query.get(n) for n in names):
            raise Malformed("missing query parameter")
        return [self.query[n] for n in names]


@dataclass(frozen=True)
class Answer:
    """What the platform gets back when its request was taken (status 200)."""
    body: bytes = b""
    content_type: str = "text/plain"


EMPTY = Answer()
EMPTY_JSON = Answer(b"{}", "application/json")


@dataclass(frozen=True)
class Received:
    """What an adapter made of one verified request: the messages to store, each with whether it
    is to be handled (an event kept only for the record is not), and the answer to give."""
    messages: tuple[tuple[IncomingMessage, bool], ...] = ()
    answer: Answer = EMPTY


@dataclass(frozen=True)
class Endpoint:
    """One callback URL of a platform, as its adapter declares it."""
    method: str                                   # "GET" (a URL check) or "POST"
    path: str
    parse: Callable[[RawRequest], Received]
    verify: Callable[[RawRequest], None] | None = None
    content_types: frozenset[str] = frozenset()   # POST bodies: the media types that may be read
