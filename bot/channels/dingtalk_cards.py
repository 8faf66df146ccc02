"""DingTalk interactive cards (互动卡片): what a neutral ``Card`` becomes, and what a click means.

A card is an instance of a card template built once in DingTalk's card builder (docs/dingtalk.md,
"Cards"); arbot fills its variables (``cardParamMap``, string values only) and DingTalk draws it.
The template's contract, the only thing the two sides share:

  title        the card's title
  description  its text (markdown)
  buttons      a JSON array of {"label", "key"}: one button per item, whose 回传请求 (callback
               request) carries the param ``key`` = the item's key
  answered     "true" once the card was clicked: the template hides the buttons and shows
               ``description``, which is then the outcome

A click comes back (over the Stream socket, topic ``/v1.0/card/instances/callback``, or by HTTP
to the registered callback URL) as ``{outTrackId, userId, userIdType, corpId, type:
"actionCallback", content: "<JSON: {cardPrivateData: {actionIds, params}}>"}``: the card's
``outTrackId`` is the click's ``task_id``, ``params.key`` its button.

Over HTTP each click is signed: header ``x-ddpaas-signature-timestamp`` and
``x-ddpaas-signature`` = base64(HMAC-SHA256(key=apiSecret, msg=timestamp)), the apiSecret being
the one arbot registered with the route. *uncertain*: this scheme comes from community code (two
independent projects agree), not from a page in the store; see docs/dingtalk.md.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from bot.core.messages import Card, IncomingMessage

CARD_PATH = "/dingtalk/card"
SIGNATURE_TIMESTAMP_HEADER = "x-ddpaas-signature-timestamp"
SIGNATURE_HEADER = "x-ddpaas-signature"
# the same freshness window as robot callbacks: a captured click cannot be replayed later
MAX_CLOCK_SKEW_MS = 60 * 60 * 1000
MAX_KEY = 200            # inbound_events.event_key width


def card_params(card: Card, *, answered: bool = False) -> dict[str, str]:
    """The template's variables for ``card``: strings only, as cardParamMap takes them."""
    buttons = [] if answered else [{"label": b.label, "key": b.key} for b in card.buttons]
    return {"title": card.title, "description": card.description,
            "buttons": json.dumps(buttons, ensure_ascii=False), "answered": "true" if answered else "false"}


def out_track_id(card: Card, row_key: str) -> str:
    """The card instance's id at DingTalk: the card's own id plus a digest of its outbox row's
    key, so two databases (a rehearsal, production) sending to one organisation never collide
    and a row retried is the same card."""
    if not row_key:
        return card.id
    return f"{card.id}-{hashlib.sha256(row_key.encode()).hexdigest()[:16]}"


def card_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_card_request(timestamp: str | None, signature: str | None, secret: str, now_ms: int) -> str | None:
    """None when the click's signature headers verify; otherwise the reason (no secrets)."""
    if not timestamp or not signature:
        return "missing signature headers"
    if not timestamp.isdigit():
        return "timestamp is not a number"
    ts = int(timestamp)
    if ts < 10**11:            # seconds, not milliseconds: which one DingTalk sends is not documented
        ts *= 1000
    if abs(now_ms - ts) > MAX_CLOCK_SKEW_MS:
        return "timestamp outside the allowed window"
    if not secret or not hmac.compare_digest(card_sign(secret, timestamp), signature):
        return "signature does not match"
    return None


def _key(*parts: Any) -> str:
    key = ":".join(str(p) for p in parts)
    return key if len(key) <= MAX_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _object(value: Any) -> dict[str, Any]:
    """A field that DingTalk sends as a JSON string (or, leniently, as an object)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def click_from_callback(payload: Any) -> IncomingMessage | None:
    """A card callback as the click it is; None for one that is not a click on one of arbot's
    buttons (another component, another kind of callback). ValueError when it names no user."""
    if not isinstance(payload, dict):
        raise ValueError("card callback is not an object")
    user = payload.get("userId")
    if not isinstance(user, str) or not user:
        raise ValueError("card callback without userId")
    if payload.get("userIdType") not in (None, 1, "1"):
        # arbot delivers with userIdType 1 (userId): a unionId cannot be matched to a person
        raise ValueError("card callback names the user by unionId")
    track = payload.get("outTrackId")
    if payload.get("type") not in (None, "actionCallback") or not isinstance(track, str) or not track:
        return None
    data = _object(payload.get("content")) or _object(payload.get("value"))
    private = data.get("cardPrivateData") if isinstance(data.get("cardPrivateData"), dict) else {}
    params = private.get("params") if isinstance(private.get("params"), dict) else {}
    key = params.get("key")
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        return None
    click = {"task_id": track, "key": key, "response_code": ""}
    # one click per person, card and button, however often DingTalk delivers it (as on WeCom)
    return IncomingMessage(platform="dingtalk", platform_user_id=user, text="", message_id=_key("card", track, user, key),
                           card_action=click)
