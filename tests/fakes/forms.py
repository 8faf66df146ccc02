"""multipart/form-data as the fake platforms read it: from the request's bytes (the fakes read the
body before any fault is applied, so aiohttp's own form reader finds the stream consumed)."""
from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP


def parse_form(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]] | None:
    """{field name: (file name or None, bytes)}; None when the body is not multipart at all."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        return None
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    if not msg.is_multipart():
        return None
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields
