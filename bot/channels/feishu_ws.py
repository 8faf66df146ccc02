"""Feishu long connection (长连接): events over an outbound WebSocket, no public URL needed.

Why not lark-oapi's ``lark_oapi.ws.Client`` (read in lark-oapi 1.7.5, ``lark_oapi/ws/client.py``):

* it grabs an event loop when the module is imported and ``start()`` blocks in
  ``loop.run_until_complete(...)`` forever: inside the bot's running aiohttp loop that is
  "This event loop is already running";
* it asks for the endpoint with the synchronous ``requests.post`` (a blocked loop);
* its event handlers are synchronous, so a handler cannot ``await`` storing the event before
  the frame is acknowledged (the bot's rule: store, then acknowledge);
* it has no ``stop()``, and logs every payload (what people wrote) at DEBUG;
* importing the package takes ~5 s.

So this is the protocol written on aiohttp's WebSocket client, following that source:

* ``POST {api_base}/callback/ws/endpoint {"AppID", "AppSecret"}`` → ``{code, data: {URL,
  ClientConfig: {PingInterval, ReconnectInterval, ReconnectNonce, ReconnectCount}}}``; the URL's
  query names ``device_id`` and ``service_id``.
* Frames are protobuf ``pbbp2.Frame`` (SeqID=1, LogID=2, service=3, method=4, headers=5
  {key=1, value=2}, payload_encoding=6, payload_type=7, payload=8, LogIDNew=9); method 0 is a
  control frame (header ``type`` ping / pong), 1 a data frame (``type`` event / card,
  ``message_id``, ``sum``/``seq`` for a payload split over frames, ``trace_id``).
* Every data frame is answered with the same frame whose payload is
  ``{"code": 200|500, "headers": {}, "data": null}`` plus a ``biz_rt`` header; a ping (control,
  ``type`` ping, ``service`` = service_id) goes every PingInterval seconds.

The codec is ~40 lines of varint code; tests/fakes/feishu_server.py speaks to it with the SDK's
own generated ``Frame`` class, so the two are checked against each other.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import aiohttp

log = logging.getLogger(__name__)

CONTROL, DATA = 0, 1
ENDPOINT_PATH = "/callback/ws/endpoint"


# -- pbbp2.Frame ------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _field(num: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        tag, i = _read_varint(buf, i)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            size, i = _read_varint(buf, i)
            value, i = buf[i:i + size], i + size
            if len(value) != size:
                raise ValueError("truncated field")
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield num, value


@dataclass
class Frame:
    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload: bytes = b""

    def header(self, key: str, default: str = "") -> str:
        return next((v for k, v in self.headers if k == key), default)

    def encode(self) -> bytes:
        out = _field(1, self.seq_id) + _field(2, self.log_id) + _field(3, self.service) + _field(4, self.method)
        for k, v in self.headers:
            out += _field(5, _field(1, k.encode()) + _field(2, v.encode()))
        if self.payload:
            out += _field(8, self.payload)
        return out

    @classmethod
    def decode(cls, buf: bytes) -> "Frame":
        f = cls()
        for num, value in _fields(buf):
            if num == 1:
                f.seq_id = value
            elif num == 2:
                f.log_id = value
            elif num == 3:
                f.service = value - (1 << 64) if value >= 1 << 63 else value
            elif num == 4:
                f.method = value
            elif num == 5 and isinstance(value, bytes):
                kv = dict(_fields(value))
                f.headers.append((bytes(kv.get(1, b"")).decode(), bytes(kv.get(2, b"")).decode()))
            elif num == 8 and isinstance(value, bytes):
                f.payload = bytes(value)
        return f


# -- the connection ---------------------------------------------------------------------------

class LongConnection:
    """A self-healing long connection. ``await run()`` until ``stop()``.

    ``on_event(payload)`` stores one schema-2.0 event (or card callback); the frame is
    acknowledged with code 200 when it returns and 500 when it raised (Feishu delivers it again).
    ``status`` (for /healthz, under ``long_connection``): connected, connects, reconnects,
    last_frame_at, failures, last_error (never a secret)."""

    def __init__(self, session: aiohttp.ClientSession, api_base: str, app_id: str, app_secret: str,
                 on_event: Callable[[dict], Awaitable[None]], *, backoff_base: float = 1.0,
                 backoff_cap: float = 120.0, ping_interval: float = 120.0, rng=random.random):
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self.on_event = on_event
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.ping_interval = ping_interval
        self.rng = rng
        self.status: dict[str, Any] = {"connected": False, "connects": 0, "reconnects": 0, "last_frame_at": None,
                                       "failures": 0, "last_error": None}
        self._stop = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._parts: dict[str, list[bytes | None]] = {}
        self._tasks: set[asyncio.Task] = set()

    def __repr__(self) -> str:
        return f"LongConnection(api_base={self.api_base!r}, app_id={self.app_id!r})"

    async def run(self) -> None:
        failures, first = 0, True
        while not self._stop.is_set():
            if not first:
                self.status["reconnects"] += 1
            first, healthy = False, False
            try:
                url, service = await self._endpoint()
                healthy = await self._serve(url, service)
            except asyncio.CancelledError:
                raise
            except Exception as exc:           # network, HTTP, protocol: try again later
                self.status["last_error"] = f"{type(exc).__name__}: {exc}"[:300].replace(self._secret or "\0", "***")
                log.warning("feishu long connection: %s", self.status["last_error"])
            finally:
                self.status["connected"] = False
                self._ws = None
            if self._stop.is_set():
                break
            failures = 0 if healthy else failures + 1
            delay = 0.0 if healthy else min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1)) * (
                0.5 + self.rng() / 2)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        self._stop.set()
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()

    async def _endpoint(self) -> tuple[str, int]:
        async with self.session.post(f"{self.api_base}{ENDPOINT_PATH}", json={"AppID": self.app_id,
                                                                              "AppSecret": self._secret},
                                     headers={"locale": "zh"}, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            body = await resp.json(content_type=None)
        if resp.status != 200 or not isinstance(body, dict) or body.get("code") != 0:
            code = body.get("code") if isinstance(body, dict) else None
            raise ConnectionError(f"endpoint refused: HTTP {resp.status}, code {code}")
        data = body.get("data") or {}
        conf = data.get("ClientConfig") or {}
        if conf.get("PingInterval"):
            self.ping_interval = float(conf["PingInterval"])
        url = str(data.get("URL") or "")
        query = parse_qs(urlsplit(url).query)
        return url, int((query.get("service_id") or ["0"])[0])

    async def _serve(self, url: str, service: int) -> bool:
        """One connection until it closes; True if it worked (reconnect at once)."""
        got_frames = False
        async with self.session.ws_connect(url, heartbeat=None, autoping=True) as ws:
            self._ws = ws
            self.status["connected"] = True
            self.status["connects"] += 1
            pinger = asyncio.create_task(self._ping(ws, service))
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        continue
                    got_frames = True
                    self.status["last_frame_at"] = time.time()
                    try:
                        frame = Frame.decode(msg.data)
                    except ValueError:
                        log.warning("feishu long connection: a frame that does not decode")
                        continue
                    if frame.method == DATA:
                        task = asyncio.create_task(self._data(ws, frame))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    elif frame.header("type") == "pong" and frame.payload:
                        try:
                            interval = json.loads(frame.payload).get("PingInterval")
                            self.ping_interval = float(interval) if interval else self.ping_interval
                        except (ValueError, AttributeError):
                            pass
            finally:
                pinger.cancel()
        return got_frames

    async def _ping(self, ws, service: int) -> None:
        while not ws.closed:
            await ws.send_bytes(Frame(service=service, method=CONTROL, headers=[("type", "ping")]).encode())
            await asyncio.sleep(self.ping_interval)

    async def _data(self, ws, frame: Frame) -> None:
        total, seq, mid = int(frame.header("sum", "1") or 1), int(frame.header("seq", "0") or 0), frame.header("message_id")
        payload: bytes | None = frame.payload
        if total > 1:                          # a payload split over several frames
            parts = self._parts.setdefault(mid, [None] * total)
            if 0 <= seq < total:
                parts[seq] = frame.payload
            if any(p is None for p in parts):
                return
            payload = b"".join(p or b"" for p in self._parts.pop(mid))
        started, code = time.monotonic(), 200
        try:
            if frame.header("type") in ("event", "card"):
                data = json.loads(payload or b"{}")
                if isinstance(data, dict):
                    await self.on_event(data)
        except Exception as exc:               # not stored: ask Feishu for it again
            code = 500
            self.status["failures"] += 1
            log.warning("feishu long connection: event %s not stored (%s)", mid, type(exc).__name__)
        ack = Frame(seq_id=frame.seq_id, log_id=frame.log_id, service=frame.service, method=frame.method,
                    headers=[*frame.headers, ("biz_rt", str(int((time.monotonic() - started) * 1000)))],
                    payload=json.dumps({"code": code, "headers": {}, "data": None}).encode())
        if not ws.closed:
            await ws.send_bytes(ack.encode())
