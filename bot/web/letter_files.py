"""Letters made on demand behind signed links (``/letter`` in chat): ``/letters/<name>?t=…``.

The link names the customer, the kind and the format and carries its own expiry; the document
is made when the link is opened, in a thread (a PDF takes about a second of font work), from
the ledger as it stands that day.
"""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from urllib.parse import quote

from aiohttp import web

from bot import documents, letters
from bot.web import signing
from storage.models import Customer

TYPES = {"docx": documents.DOCX_MIME, "pdf": documents.PDF_MIME}
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _name(kind: str, customer: Customer, ext: str) -> str:
    code = _SAFE.sub("-", customer.code).strip("-")[:40] or str(customer.id)
    return f"{kind}-{code}.{ext}"


def link(config, kind: str, customer: Customer, ext: str, person_id: str, now: datetime) -> str:
    token = signing.sign(config, "letter", {"k": kind, "c": customer.id, "x": ext, "p": person_id},
                         now + timedelta(days=config.reports.link_days))
    return f"{signing.base_url(config)}/letters/{quote(_name(kind, customer, ext))}?t={token}"


def install(app: web.Application, state) -> None:
    config, clock = state.config, state.services.clock

    async def download(request: web.Request) -> web.StreamResponse:
        try:
            p = signing.verify(config, "letter", request.query.get("t", ""), clock.now())
        except signing.BadToken:
            raise web.HTTPForbidden(text="link invalid or expired") from None
        kind, cid, ext = p.get("k"), p.get("c"), p.get("x")
        if kind not in letters.KINDS or ext not in TYPES or not isinstance(cid, int) or isinstance(cid, bool):
            raise web.HTTPForbidden(text="link invalid or expired")
        async with state.db.reader() as s:
            customer = await s.get(Customer, cid)
            if customer is None or request.match_info["name"] != _name(kind, customer, ext):
                raise web.HTTPNotFound(text="no such letter")
            letter = await letters.customer_letter(s, config, kind, customer, clock.today())
        make = documents.docx if ext == "docx" else documents.pdf
        try:
            body = await asyncio.to_thread(make, config, letter)
        except documents.DocumentError as e:
            return web.json_response({"error": "document_unavailable", "reason": str(e)}, status=503)
        filename = quote(f"{letter.title}-{customer.name}.{ext}")
        return web.Response(body=body, headers={
            "Content-Type": TYPES[ext], "Cache-Control": "private, no-store",
            "Content-Disposition": f"attachment; filename=\"{_name(kind, customer, ext)}\"; filename*=UTF-8''{filename}"})

    app.add_routes([web.get("/letters/{name}", download)])
