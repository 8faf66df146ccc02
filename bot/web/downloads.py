"""Report files (XLSX, chart PNG) and letters (DOCX, PDF) under ``[reports] dir``, served by signed, expiring links.

A link names one file and carries its own expiry (``[reports] link_days``); it needs no login
because it is sent to the people the report is for, in their chat. Names are checked against a
strict pattern, so a link can never reach outside the reports directory.
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from bot.web import signing

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.(xlsx|png|docx|pdf)$")
TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "png": "image/png",
         "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",   # letters (bot/documents.py)
         "pdf": "application/pdf"}


def reports_dir(config) -> Path:
    return Path(config.reports.dir)


def save(config, name: str, data: bytes) -> Path:
    """Write atomically: a reader never sees half a file, a re-run replaces it whole."""
    if not NAME.match(name):
        raise ValueError(f"bad report file name {name!r}")
    d = reports_dir(config)
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    tmp = d / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def download_url(config, name: str, now: datetime) -> str:
    token = signing.sign(config, "download", {"f": name}, now + timedelta(days=config.reports.link_days))
    return f"{signing.base_url(config)}/reports/{quote(name)}?t={token}"


def install(app: web.Application, state) -> None:
    async def download(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            payload = signing.verify(state.config, "download", request.query.get("t", ""), state.services.clock.now())
        except signing.BadToken:
            raise web.HTTPForbidden(text="link invalid or expired") from None
        if payload.get("f") != name or not NAME.match(name):
            raise web.HTTPForbidden(text="link invalid or expired")
        path = reports_dir(state.config) / name
        if not path.is_file():
            raise web.HTTPNotFound(text="report file no longer exists")
        ext = name.rsplit(".", 1)[1]
        return web.FileResponse(path, headers={"Content-Type": TYPES[ext], "Cache-Control": "private, no-store",
                                               "Content-Disposition": f'inline; filename="{name}"'})

    app.add_routes([web.get("/reports/{name}", download)])
