"""Finding people: by platform id (who is talking), by name or id (who is meant)."""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Person


async def by_platform_id(session: AsyncSession, platform: str, user_id: str) -> Person | None:
    if platform == "wecom":
        cond = Person.wecom_userid == user_id
    elif platform == "dingtalk":
        cond = Person.dingtalk_userid == user_id
    else:  # the local web chat speaks as a person id directly
        cond = Person.id == user_id
    return (await session.execute(select(Person).where(cond))).scalar_one_or_none()


async def find(session: AsyncSession, ref: str) -> list[Person]:
    """A person by id or exact name (``@张三`` works too)."""
    ref = ref.strip().lstrip("@")
    rows = (await session.execute(select(Person).where(or_(Person.id == ref, Person.name == ref)))).scalars().all()
    return list(rows)


async def by_role(session: AsyncSession, *roles: str) -> list[Person]:
    return list((await session.execute(select(Person).where(Person.role.in_(roles), Person.active.is_(True))
                                        .order_by(Person.id))).scalars())


async def supervisor_of(session: AsyncSession, person: Person) -> Person | None:
    if not person.supervisor_id:
        return None
    return await session.get(Person, person.supervisor_id)
