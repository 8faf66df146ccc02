"""The one intake path for every platform's callbacks, on aiohttp (the policy: bot/core/intake.py).

verify (headers/query) → content type (415) → size (413) → read → parse (the adapter's, which
verifies a signature over the body) → store, deduplicated → acknowledge → handle in the
background. The adapter says only what is the platform's; everything else, including how a
refused request is answered and counted, is here once.
"""
from __future__ import annotations

import dataclasses
import logging

from aiohttp import hdrs, web

from bot.core.intake import Endpoint, Malformed, RawRequest, Rejected, TooLarge, UnsupportedMediaType

log = logging.getLogger(__name__)


def refusal(e: Rejected) -> web.Response:
    """The answer to a refused request, the same on every platform."""
    return web.json_response(e.body(), status=e.status)


async def read(request: web.Request, ep: Endpoint) -> RawRequest:
    """The request as the adapter sees it, after the checks that need no platform knowledge."""
    raw = RawRequest(request.method, request.query, request.headers)
    if ep.verify is not None:
        ep.verify(raw)                 # before reading a byte of the body: a forged request costs nothing
    if request.method != "POST":
        return raw
    # A request that names no type is read: the signature, not a header, proves the sender.
    if ep.content_types and hdrs.CONTENT_TYPE in request.headers and request.content_type not in ep.content_types:
        raise UnsupportedMediaType(f"content type must be one of {', '.join(sorted(ep.content_types))}")
    if request.content_length is not None and request.content_length > request.client_max_size:
        raise TooLarge(f"body over {request.client_max_size} bytes")
    try:
        body = await request.read()    # enforces client_max_size for chunked bodies too
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"body over {request.client_max_size} bytes") from None
    return dataclasses.replace(raw, body=body)


def route(state, platform: str, ep: Endpoint) -> web.RouteDef:
    """The aiohttp route for one of a platform's endpoints. ``state``: bot.app.State."""

    async def handler(request: web.Request) -> web.Response:
        try:
            try:
                received = ep.parse(await read(request, ep))
            except RecursionError:
                # a parser that recursed on a hostile body (JSON nested thousands deep): refused
                # like any other malformed body, never a 500
                raise Malformed("body nested too deeply") from None
        except Rejected as e:
            state.channel_health.refused(platform, e)
            log.warning("%s %s refused: %s %s", platform, request.path, e.status, e.error)
            return refusal(e)
        state.channel_health.verified(platform)
        for msg, handle in received.messages:
            # a storage fault raises: 503 from the app's middleware, the platform delivers again
            await state.inbound.receive(msg, handle=handle)
        return web.Response(body=received.answer.body, content_type=received.answer.content_type)

    return web.route(ep.method, ep.path, handler)


def routes(state, platform: str, endpoints: list[Endpoint]) -> list[web.RouteDef]:
    return [route(state, platform, ep) for ep in endpoints]
