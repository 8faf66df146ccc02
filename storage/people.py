"""Finding people: by a chat account (who is talking), by name or id (who is meant).

A person's user ids on the chat platforms are rows of person_accounts; storage knows no platform
by name. In imports a column ``<platform>_userid`` carries a person's user id on that platform
(``ACCOUNT_SUFFIX``; the bot's import vocabulary names those columns from the platform registry).
"""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Person, PersonAccount

ACCOUNT_SUFFIX = "_userid"


def account_platform(field: str) -> str | None:
    """"<platform>_userid" → platform; None for any other field."""
    return field[:-len(ACCOUNT_SUFFIX)] if field.endswith(ACCOUNT_SUFFIX) and len(field) > len(ACCOUNT_SUFFIX) else None


def add_account(person: Person, platform: str, user_id: str) -> None:
    person.accounts.append(PersonAccount(platform=platform, user_id=user_id))


def remove_account(person: Person, platform: str) -> None:
    for a in [a for a in person.accounts if a.platform == platform]:
        person.accounts.remove(a)          # deleted at the next flush (delete-orphan)


async def by_account(session: AsyncSession, platform: str, user_id: str) -> Person | None:
    """The person who is ``user_id`` on ``platform``."""
    return (await session.execute(select(Person).join(PersonAccount)
                                  .where(PersonAccount.platform == platform, PersonAccount.user_id == user_id))
            ).scalar_one_or_none()


async def by_id(session: AsyncSession, person_id: str) -> Person | None:
    return await session.get(Person, person_id)


async def find(session: AsyncSession, ref: str) -> list[Person]:
    """A person by id or exact name (``@张三`` works too)."""
    ref = ref.strip().lstrip("@")
    rows = (await session.execute(select(Person).where(or_(Person.id == ref, Person.name == ref)))).scalars().all()
    return list(rows)


async def by_role(session: AsyncSession, *roles: str) -> list[Person]:
    return list((await session.execute(select(Person).where(Person.role.in_(roles), Person.active.is_(True))
                                        .order_by(Person.id))).scalars())


class Directory:
    """Everyone, read once: who a job notifies is looked up here, not queried per invoice (a
    company has hundreds or thousands of people, a ledger hundreds of thousands of invoices)."""

    def __init__(self, persons: list[Person]):
        self._by_id = {p.id: p for p in persons}
        self._by_role: dict[str, list[Person]] = {}
        for p in persons:
            if p.active:
                self._by_role.setdefault(p.role, []).append(p)

    @classmethod
    async def load(cls, session: AsyncSession) -> "Directory":
        return cls(list((await session.execute(select(Person).order_by(Person.id))).scalars()))

    def get(self, pid: str | None) -> Person | None:
        return self._by_id.get(pid) if pid else None

    def by_role(self, *roles: str) -> list[Person]:
        if len(roles) == 1:
            return list(self._by_role.get(roles[0], ()))
        return sorted((p for role in set(roles) for p in self._by_role.get(role, ())), key=lambda p: p.id)

    def supervisor_of(self, person: Person) -> Person | None:
        return self.get(person.supervisor_id)


async def supervisor_of(session: AsyncSession, person: Person) -> Person | None:
    if not person.supervisor_id:
        return None
    return await session.get(Person, person.supervisor_id)
