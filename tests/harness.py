"""Drive the real bot the way a person would: HTTP on loopback to the local chat, a fixed
clock moved by hand, jobs run as the scheduler would run them, the outbox drained."""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import shutil
import tempfile
from datetime import datetime

from bot.app import STATE, create_app
from bot.clock import FixedClock
from bot.config import Config, LocalConfig
from bot.jobs.scheduler import run_job
from bot.services import Services
from storage.db import Database


# one folder per test process, made when a test first needs it and removed when the process
# exits (a run of the suite left thousands behind)
@functools.cache
def _reports_root() -> str:
    root = tempfile.mkdtemp(prefix="arbot-reports-")
    atexit.register(shutil.rmtree, root, True)
    return root


def config_for(db_url: str, **sections) -> Config:
    cfg = Config(local=LocalConfig(enabled=True))
    cfg = dataclasses.replace(cfg, database=dataclasses.replace(cfg.database, url=db_url))
    # report files and letter drafts go to a folder of the test's own, not ./var/reports
    sections = {**sections, "reports": {"dir": tempfile.mkdtemp(dir=_reports_root()),
                                        **sections.get("reports", {})}}
    for name, values in sections.items():
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)})
    return cfg


class Bot:
    def __init__(self, client, services: Services):
        self.client, self.services = client, services

    @classmethod
    async def start(cls, aiohttp_client, db: Database, now: datetime, **sections) -> "Bot":
        cfg = config_for(db.url, **sections)
        services = Services.build(cfg, clock=FixedClock(now, cfg.company.timezone), db=db)
        app = create_app(cfg, services, start_scheduler=False, start_sender=False)
        client = await aiohttp_client(app)
        return cls(client, services)

    @property
    def state(self):
        return self.client.app[STATE]

    @property
    def clock(self) -> FixedClock:
        return self.services.clock

    async def say(self, user: str, text: str, chat: str | None = None, msg_id: str | None = None) -> list[str]:
        body = {"user": user, "chat": chat, "text": text}
        if msg_id:
            body["id"] = msg_id
        resp = await self.client.post("/local/messages", json=body)
        assert resp.status == 200, await resp.text()
        return [r["text"] for r in (await resp.json())["replies"]]

    async def run(self, job: str, at: datetime | None = None, claim: bool = True) -> str:
        if at is not None:
            self.clock.set(at)
        summary = await run_job(self.services, job, self.clock.now(), claim_fire=claim)
        await self.state.sender.drain()
        return summary

    async def inbox(self, user: str | None = None, chat: str | None = None) -> list[str]:
        await self.state.sender.drain()
        q = {"user": user} if user else {"chat": chat}
        resp = await self.client.get("/local/inbox", params=q)
        assert resp.status == 200
        return [m["text"] for m in (await resp.json())["messages"]]


@contextlib.contextmanager
def root_logging_kept():
    """Around an in-process ``bot.cli.main``: it sets up logging (handlers on stderr, the level),
    which must not outlive the test that captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
