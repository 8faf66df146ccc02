"""Alembic environment. Runs on the connection handed in by ``storage.db.Database.migrate``
(so migrations share the app's async engine), or on ``ARBOT_DATABASE_URL`` when run from the
alembic command line for autogenerate."""
from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import normalize_url
from storage.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    async def _main() -> None:
        engine = create_async_engine(normalize_url(os.environ.get("ARBOT_DATABASE_URL", "sqlite:///./arbot.db")))
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()
    asyncio.run(_main())
