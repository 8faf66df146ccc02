"""People bound to their chat accounts by their mobile number.

people.csv may give a person's mobile instead of their user id on a platform. The platform's
user-by-mobile API (``Platform.mobile_lookup``, declared by each channel module) says who that
is; the user id found is stored in person_accounts like an imported one. This happens

* right after a people import (``arbot import people``): each person with a mobile and no account
  on an enabled platform is looked up, and those who could not be bound are listed in the report
  (not a member, the user id already someone else's, the platform unreachable). The import itself
  stands: binding is a second step, not a condition;
* at first contact: a message from a user id nobody has triggers the same lookup for the people
  still unbound on that platform (a few at a time, each at most once an hour per process), and
  the message is then handled knowing its sender.

The lookups are network calls, so they run outside any transaction; what they found is written
in one short write that re-checks that the user id is still free and the person still unbound.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import select

from bot.core.channel import Platform, registry
from storage import people
from storage.db import Database
from storage.models import Person

log = logging.getLogger(__name__)

FIRST_CONTACT_LOOKUPS = 20       # lookups one unknown sender may cause
RETRY_AFTER_S = 3600             # a person not found is looked up again at first contact after this
LOOKUPS_AT_ONCE = 5              # a few at a time: these APIs have their own per-app limits
GIVE_UP_AFTER = 3                # failed lookups on a platform none has worked on: the rest are not tried


@dataclass(frozen=True)
class Unbound:
    """A person who could not be bound on a platform, and why: ``not_member`` (no member has
    that mobile), ``taken`` (the user id found belongs to someone else here), ``error`` (the
    platform could not be asked: ``detail`` says what happened)."""
    person_id: str
    name: str
    platform: str
    mobile: str
    reason: str
    detail: str = ""

    @property
    def masked_mobile(self) -> str:
        return self.mobile[:3] + "****" + self.mobile[-4:] if len(self.mobile) >= 8 else "****"


@dataclass
class Binding:
    bound: list[tuple[str, str, str]] = field(default_factory=list)     # (person id, platform, user id)
    unbound: list[Unbound] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"bound": [{"person": p, "platform": pl, "user_id": u} for p, pl, u in self.bound],
                "unbound": [{"person": u.person_id, "name": u.name, "platform": u.platform,
                             "mobile": u.masked_mobile, "reason": u.reason, "detail": u.detail}
                            for u in self.unbound]}


def normalize_mobile(mobile: str) -> str:
    """A mainland number as the platforms take it: digits only, without +86 / 0086."""
    digits = re.sub(r"[^\d+]", "", mobile or "")
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix):]
    return digits


def lookup_platforms(config) -> list[Platform]:
    import bot.channels.adapters  # noqa: F401  (registers every platform: the CLI has no app)
    return [p for p in registry.enabled(config) if p.identity == "account" and p.mobile_lookup is not None]


async def bind_by_mobile(db: Database, config, *, only: str | None = None, person_ids: set[str] | None = None,
                         skip: set[tuple[str, str]] = frozenset(), limit: int | None = None) -> Binding:
    """Look up every active person with a mobile and no account on an enabled platform (``only``:
    that platform; ``person_ids``: those people) and bind those found."""
    result = Binding()
    platforms = [p for p in lookup_platforms(config) if only is None or p.name == only]
    if not platforms:
        return result
    async with db.reader() as r:
        persons = list((await r.execute(select(Person).where(Person.mobile != "", Person.active.is_(True))
                                        .order_by(Person.id))).scalars())
    pending = [(person, p) for p in platforms for person in persons
               if person.account(p.name) is None and (person_ids is None or person.id in person_ids)
               and (person.id, p.name) not in skip and normalize_mobile(person.mobile)]
    if limit is not None:
        pending = pending[:limit]
    if not pending:
        return result
    found: list[tuple[Person, str, str]] = []
    failed: dict[str, list[str]] = {}          # platform → the reasons its lookups failed, until one works
    working: set[str] = set()
    gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def look(person: Person, p: Platform, lookup) -> Unbound | tuple[Person, str, str]:
        mobile = normalize_mobile(person.mobile)
        reasons = failed.setdefault(p.name, [])
        async with gate:
            if p.name not in working and len(reasons) >= GIVE_UP_AFTER:
                # a platform that cannot be asked (wrong secret, no permission, unreachable) is not
                # asked a thousand times more: each call could wait for its whole timeout
                return Unbound(person.id, person.name, p.name, mobile, "error", reasons[-1])
            try:
                user_id = await lookup(mobile)
            except Exception as e:          # the platform could not tell: reported, tried again later
                reasons.append(str(getattr(e, "reason", "") or type(e).__name__)[:200])
                return Unbound(person.id, person.name, p.name, mobile, "error", reasons[-1])
        working.add(p.name)
        if user_id is None:
            return Unbound(person.id, person.name, p.name, mobile, "not_member")
        return person, p.name, user_id

    async with aiohttp.ClientSession() as http:
        lookups = {p.name: p.mobile_lookup(p.section(config), http) for p in platforms}   # type: ignore[misc]
        for outcome in await asyncio.gather(*(look(person, p, lookups[p.name]) for person, p in pending)):
            if isinstance(outcome, Unbound):
                result.unbound.append(outcome)
            else:
                found.append(outcome)
    if found:
        async def write(s) -> tuple[list[tuple[str, str, str]], list[Unbound]]:
            bound, taken = [], []
            for person, platform, user_id in found:
                owner = await people.by_account(s, platform, user_id)
                if owner is not None and owner.id != person.id:
                    taken.append(Unbound(person.id, person.name, platform, normalize_mobile(person.mobile), "taken",
                                         owner.id))
                    continue
                current = await s.get(Person, person.id)
                if current is None or current.account(platform) is not None:
                    continue              # removed, or bound meanwhile (another instance, an import)
                people.add_account(current, platform, user_id)
                await s.flush()
                bound.append((person.id, platform, user_id))
            return bound, taken
        result.bound, taken = await db.write(write)
        result.unbound += taken
    log.info("identities: %d bound by mobile, %d not", len(result.bound), len(result.unbound))
    return result


class FirstContact:
    """Binds people by mobile when a user id nobody has speaks to the bot (``InboundProcessor``)."""

    def __init__(self, db: Database, config, clock=time.monotonic):
        self.db, self.config, self.clock = db, config, clock
        self.platforms = {p.name for p in lookup_platforms(config)}
        self._known: set[tuple[str, str]] = set()
        self._tried: dict[tuple[str, str], float] = {}      # (person id, platform) → when not found

    async def __call__(self, platform: str, user_id: str) -> None:
        if platform not in self.platforms or not user_id or (platform, user_id) in self._known:
            return
        async with self.db.reader() as r:
            if await people.by_account(r, platform, user_id) is not None:
                self._known.add((platform, user_id))
                return
        now = self.clock()
        skip = {k for k, at in self._tried.items() if now - at < RETRY_AFTER_S}
        binding = await bind_by_mobile(self.db, self.config, only=platform, skip=skip, limit=FIRST_CONTACT_LOOKUPS)
        for u in binding.unbound:
            self._tried[(u.person_id, u.platform)] = now
