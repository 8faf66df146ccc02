"""How a send can fail, in the words the outbox needs to decide what to do next."""
from __future__ import annotations


class DeliveryError(Exception):
    """A send did not go through.

    retryable: the outbox should try again later (with backoff).
    retry_after: seconds the platform asked us to wait (rate limits), if known.
    code: the platform's errcode or HTTP status, for logs and /healthz.
    """

    retryable = True

    def __init__(self, reason: str, *, code: int | str | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.retry_after = retry_after


class TransientDeliveryError(DeliveryError):
    """HTTP 5xx, timeouts, connection resets: try again with backoff."""


class RateLimitedError(DeliveryError):
    """The platform said slow down (WeCom 45009/45033, DingTalk throttling)."""


class PermanentDeliveryError(DeliveryError):
    """Will never succeed as configured (WeCom 60020 IP not trusted, 93000 webhook invalid,
    81013 no valid recipient, DingTalk sign mismatch): dead-letter it and say so loudly."""

    retryable = False
