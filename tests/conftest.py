"""Shared fixtures: a real, migrated SQLite file per test (what production runs by default), a
real PostgreSQL server for the whole session, fixed clocks, and the bot's app on loopback."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import text

import bot.channels.adapters  # noqa: F401  (the platforms add their people.csv columns, as at the bot's start)
from storage.db import Database
from tests.pg import PostgresServer

SHANGHAI = "Asia/Shanghai"


@pytest.fixture
async def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/t.db")
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer()
    if not server.available:
        pytest.skip("NO POSTGRESQL BINARIES (initdb/pg_ctl) ON THIS MACHINE: PostgreSQL tests cannot run")
    url = server.start()
    yield url
    server.stop()


async def fresh_pg_database(admin_url: str) -> str:
    """A new empty database on the session's server, so tests do not see each other's rows."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = Database(admin_url)
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db(request, tmp_path):
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/t.db"
    else:
        url = await fresh_pg_database(request.getfixturevalue("pg_server"))
    database = Database(url)
    await database.migrate()
    yield database
    await database.close()


def at(s: str) -> datetime:
    """'2026-11-23 09:00' in Shanghai time."""
    from zoneinfo import ZoneInfo
    return datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(SHANGHAI))
