"""An app's access token, kept until shortly before it expires and fetched single-flight.

WeCom, DingTalk and Feishu each hand out a token that lives about two hours, and each limits how
often it may be asked for: the token is reused until a margin before its lifetime ends, a fetch
happens once however many sends are waiting for it, and a token the platform rejects is replaced
once — and only if nobody replaced it meanwhile, so fifty sends that see the same rejection cause
one fetch, not fifty.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

# Refresh this long before the platform says the token expires (the vendors' SDKs use 5 minutes),
# capped to half of a short lifetime so a test token of a few seconds is still reused.
REFRESH_MARGIN = 300.0


class TokenCache:
    """``fetch`` asks the platform and returns ``(token, lifetime in seconds)``; ``clock`` is a
    monotonic-like reading in seconds (the adapter's, so a test can move it)."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]], clock: Callable[[], float]):
        self._fetch = fetch
        self._clock = clock
        self._token: str | None = None
        self._deadline = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0          # observable for tests and /healthz

    @property
    def current(self) -> str | None:
        """The token held now, if any (adapters scrub it from error texts)."""
        return self._token

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._deadline

    async def get(self) -> str:
        if self._fresh():
            return self._token          # type: ignore[return-value]
        async with self._lock:
            if self._fresh():           # whoever held the lock before us has probably refreshed
                return self._token      # type: ignore[return-value]
            return await self._refill()

    async def replace(self, rejected: str) -> str:
        """A fresh token after ``rejected`` was refused — unless another caller already replaced it."""
        async with self._lock:
            if self._fresh() and self._token != rejected:
                return self._token      # type: ignore[return-value]
            self._token = None
            return await self._refill()

    def drop(self, rejected: str) -> None:
        """Forget ``rejected`` so the next :meth:`get` fetches; a newer token is kept."""
        if self._token == rejected:
            self._token = None

    async def _refill(self) -> str:
        self.fetches += 1
        token, lifetime = await self._fetch()
        self._token = token
        self._deadline = self._clock() + lifetime - min(REFRESH_MARGIN, lifetime / 2)
        return token
