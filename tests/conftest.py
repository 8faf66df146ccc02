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


@pytest.fixture
def placeholder_pdfs(monkeypatch):
    """For tests about who hears what and when, not about a letter's pages: each PDF letter is a
    one-page placeholder instead of fpdf2 laying out the page with the CJK font embedded (about a
    second of CPU per letter; a morning of the ladder makes dozens). Everything else is as real:
    the font is still looked up (no CJK font still means the HTML fallback), the letter's HTML
    template is still rendered (a broken one still fails), the DOCX is the real one. What the
    PDF says and how it looks is asserted where it is read back: test_letters.py, test_email.py,
    test_statements.py, test_send_time_truth.py. In-process only (a served subprocess is real)."""
    from fpdf import FPDF

    from bot import documents

    def pdf(config, letter) -> bytes:
        documents.font_path(config)
        documents.html(config, letter)
        doc = FPDF(format="A4")
        doc.add_page()
        doc.set_font("helvetica", size=10)
        doc.cell(text=f"placeholder for {documents.file_stem(letter)}")
        return bytes(doc.output())

    monkeypatch.setattr(documents, "pdf", pdf)
