"""Signed tokens for links the bot hands out: one-time dashboard logins, session cookies and
report downloads.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256(key, payload))``. The key is
derived per purpose from the secret, so a download token can never be replayed as a session.

The secret is ``[web] secret`` (``ARBOT_WEB_SECRET``) when set; otherwise one is generated once
and kept in the database's ``settings`` table (:func:`load_secret`, at every start-up of the
server and the command line), so every process on that database signs alike: a monthly report's
link made by ``arbot jobs run`` opens in the server, and links survive a restart. Only a process
that never loaded it falls back to a random per-process secret, with a warning. The secret is
never logged.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from datetime import datetime, timedelta
from functools import lru_cache

log = logging.getLogger(__name__)


class BadToken(Exception):
    """Forged, malformed, for another purpose, or expired."""


SETTING = "web.link_secret"
# database URL → the secret stored there (sign/verify are handed the configuration only, and a
# process may open more than one database: tests do)
_stored: dict[str, bytes] = {}


def _database(config) -> str:
    from storage.db import normalize_url
    return normalize_url(config.database.url)


async def load_secret(db, config, now: datetime) -> None:
    """Without ``[web] secret``: the database's shared secret, made by the first process to ask."""
    if config.web.secret:
        return
    from storage.db import is_storage_fault, is_transient
    from storage.settings import get_or_create
    try:
        value = await get_or_create(db, SETTING, lambda: secrets.token_urlsafe(32), now)
    except Exception as e:
        # a full disk or a lock that will not clear must not keep the bot from starting: it signs
        # with a per-process secret until the next start (and says so, see _process_secret)
        if not (is_storage_fault(e) or is_transient(e)):
            raise
        log.warning("web: could not read or store the shared link secret (%s)", type(e).__name__)
        return
    _stored[_database(config)] = value.encode()


@lru_cache(maxsize=1)
def _process_secret() -> bytes:
    log.warning("web: no [web] secret (ARBOT_WEB_SECRET) and none loaded from the database; using a "
                "random per-process secret — links made elsewhere are refused, and all stop at a restart")
    return secrets.token_bytes(32)


def _key(config, purpose: str) -> bytes:
    if config.web.secret:
        secret = config.web.secret.encode()
    else:
        secret = _stored.get(_database(config)) or _process_secret()
    return hmac.new(secret, b"arbot:" + purpose.encode(), hashlib.sha256).digest()


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign(config, purpose: str, payload: dict, expires: datetime) -> str:
    body = _b64(json.dumps({**payload, "exp": int(expires.timestamp())}, separators=(",", ":"),
                           ensure_ascii=False).encode())
    mac = hmac.new(_key(config, purpose), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(config, purpose: str, token: str, now: datetime) -> dict:
    """The payload of a good token; BadToken otherwise (the reason is for logs, not for users)."""
    try:
        body, mac = token.split(".")
        given = _unb64(mac)
    except (ValueError, AttributeError, TypeError):
        raise BadToken("malformed") from None
    want = hmac.new(_key(config, purpose), body.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(given, want):
        raise BadToken("bad signature")
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise BadToken("malformed") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        raise BadToken("malformed")
    if now.timestamp() >= payload["exp"]:
        raise BadToken("expired")
    return payload


def base_url(config) -> str:
    """How people reach the bot: [server] public_url, else the listening address (dev only)."""
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    return f"http://{config.server.host}:{config.server.port}"


def login_link(config, person_id: str, now: datetime) -> tuple[str, datetime]:
    """A one-time dashboard login link for a person, and when it expires."""
    expires = now + timedelta(minutes=config.web.link_minutes)
    token = sign(config, "login", {"p": person_id, "j": secrets.token_urlsafe(12)}, expires)
    return f"{base_url(config)}/dashboard/login?t={token}", expires
