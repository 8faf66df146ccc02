"""DingTalk Stream mode: receive robot messages over an outbound WebSocket (no public URL).

Protocol: ``POST {api_base}/v1.0/gateway/connections/open`` returns a WebSocket ``endpoint`` and a
single-use ``ticket``; every frame the gateway sends must be ACKed with its ``messageId``.

Decisions (documented because they trade reliability against duplicates):

* **Bot messages (CALLBACK) are not re-sent by DingTalk**, whatever we ACK. So ``on_callback`` must
  *persist* the raw message (cheap insert, dedupe by msgId) and return; real work happens later.
  We ACK after it returns: code 200 on success, code 500 if it raised. The 500 cannot bring the
  message back, but it is the truth, and the failure is counted in ``status`` for /healthz.
* **Events are re-sent** until ACKed OK, so a failing ``on_event`` is ACKed with code 500 /
  status ``LATER`` and DingTalk will deliver it again (handlers must be idempotent).
* Callbacks and events run in their own tasks so a slow handler never delays ping answers or other frames.
* **Liveness**: any frame (including WebSocket pongs) resets a watchdog. After ``ping_timeout/2``
  of silence we send a WebSocket ping; after ``ping_timeout`` we declare the socket a zombie (it
  looks open but delivers nothing) and reconnect with a fresh ticket.
* **Reconnects**: after a connection that received frames (disconnect frame, zombie, close) we
  reconnect at once; consecutive failures back off exponentially, capped, with jitter in
  [50%, 100%] of the step so a fleet of bots does not reconnect in lockstep.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
from typing import Any, Awaitable, Callable
from urllib.parse import quote_plus

import aiohttp

log = logging.getLogger(__name__)

BOT_MESSAGE_TOPIC = "/v1.0/im/bot/messages/get"
CARD_CALLBACK_TOPIC = "/v1.0/card/instances/callback"     # clicks on interactive cards (互动卡片)


class StreamOpenError(Exception):
    """connections/open failed (message carries the HTTP status only, never the secret)."""


class StreamClient:
    """A self-healing DingTalk Stream connection. ``await run()`` until ``stop()``.

    ``status`` (for /healthz): connected, last_frame_at (wall-clock epoch seconds of the last
    frame or pong), reconnects (connection attempts after the first), connects (sockets opened),
    zombies (sockets dropped by the watchdog), callback_failures, last_error (no secrets).
    ``on_event(headers, data)`` is optional; without it events are ACKed OK and ignored.
    ``on_card(data)``, optional: card clicks (CALLBACK topic ``CARD_CALLBACK_TOPIC``), subscribed
    only when given and handled like bot messages (stored before the ACK).
    """

    def __init__(self, session: aiohttp.ClientSession, api_base: str, client_id: str, client_secret: str,
                 on_callback: Callable[[dict], Awaitable[None]], *,
                 on_event: Callable[[dict, dict], Awaitable[None]] | None = None,
                 on_card: Callable[[dict], Awaitable[None]] | None = None,
                 ping_timeout: float = 90.0, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 open_timeout: float = 10.0, close_timeout: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random, ua: str = "arbot/0.1", local_ip: str = ""):
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.on_callback = on_callback
        self.on_event = on_event
        self.on_card = on_card
        self.ping_timeout = ping_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.clock = clock
        self.rng = rng
        self.ua = ua
        self.local_ip = local_ip
        self.status: dict[str, Any] = {
            "connected": False, "last_frame_at": None, "reconnects": 0, "connects": 0,
            "last_error": None, "callback_failures": 0, "zombies": 0,
        }
        self.backoff_delays: collections.deque[float] = collections.deque(maxlen=100)
        self._stop = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    # ----------------------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        """Connect and serve until ``stop()``; never raises for network trouble."""
        failures = 0
        first = True
        while not self._stop.is_set():
            if not first:
                self.status["reconnects"] += 1
            first = False
            healthy = False
            try:
                endpoint, ticket = await self._open()
                healthy = await self._serve(endpoint, ticket)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network, HTTP, protocol: all mean "try again later"
                self.status["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("dingtalk stream: %s", self.status["last_error"])
            finally:
                self.status["connected"] = False
                self._ws = None
            if self._stop.is_set():
                break
            if healthy:
                failures = 0
                continue  # the link worked: reconnect at once
            failures += 1
            delay = self.backoff_delay(failures)
            self.backoff_delays.append(delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        await self._drain_tasks()

    async def stop(self) -> None:
        """Ask ``run()`` to return: wakes any backoff sleep and closes the socket."""
        self._stop.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    def backoff_delay(self, failures: int) -> float:
        """Step ``base * 2^(failures-1)`` capped at ``backoff_cap``, times a jitter in [0.5, 1]."""
        step = min(self.backoff_cap, self.backoff_base * (2 ** min(failures - 1, 30)))
        return step * (0.5 + 0.5 * self.rng())

    def _ws_timeout(self) -> Any:
        # A zombie peer never answers our close frame: bound the close handshake, or a dead
        # socket would hold up the reconnect for aiohttp's default 10 s.
        if hasattr(aiohttp, "ClientWSTimeout"):  # aiohttp >= 3.10
            return aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.close_timeout)
        return self.close_timeout

    async def _drain_tasks(self) -> None:
        # Let in-flight callbacks finish persisting: cancelling one could lose a bot message.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    # ----------------------------------------------------------------------------- connection
    async def _open(self) -> tuple[str, str]:
        body = {
            "clientId": self.client_id, "clientSecret": self._client_secret,
            "subscriptions": [{"type": "CALLBACK", "topic": BOT_MESSAGE_TOPIC},
                              *([{"type": "CALLBACK", "topic": CARD_CALLBACK_TOPIC}] if self.on_card else []),
                              {"type": "EVENT", "topic": "*"}],
            "ua": self.ua, "localIp": self.local_ip,
        }
        timeout = aiohttp.ClientTimeout(total=self.open_timeout)
        try:
            async with self.session.post(f"{self.api_base}/v1.0/gateway/connections/open",
                                         json=body, timeout=timeout) as resp:
                if resp.status != 200:
                    raise StreamOpenError(f"connections/open HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise StreamOpenError(f"connections/open failed: {type(exc).__name__}") from None
        except asyncio.TimeoutError:
            raise StreamOpenError("connections/open timed out") from None
        if not isinstance(data, dict) or not data.get("endpoint") or not data.get("ticket"):
            raise StreamOpenError("connections/open answer lacks endpoint/ticket")
        return data["endpoint"], data["ticket"]

    async def _serve(self, endpoint: str, ticket: str) -> bool:
        """Run one WebSocket session. Returns True if at least one frame arrived (link healthy)."""
        if self._stop.is_set():  # stop() arrived while connections/open was in flight
            return False
        sep = "&" if "?" in endpoint else "?"
        url = f"{endpoint}{sep}ticket={quote_plus(ticket)}"
        try:
            ws = await asyncio.wait_for(
                self.session.ws_connect(url, autoping=False, timeout=self._ws_timeout()), self.open_timeout)
        except aiohttp.ClientError as exc:
            raise StreamOpenError(f"websocket connect failed: {type(exc).__name__}") from None
        except asyncio.TimeoutError:
            raise StreamOpenError("websocket connect timed out") from None
        self._ws = ws
        self.status["connected"] = True
        self.status["connects"] += 1
        got_frame = False
        try:
            last = self.clock()
            probed = False
            while not self._stop.is_set():
                now = self.clock()
                if now - last >= self.ping_timeout:
                    self.status["zombies"] += 1
                    self.status["last_error"] = f"no frame for {self.ping_timeout:g}s: zombie socket"
                    log.warning("dingtalk stream: %s, reconnecting", self.status["last_error"])
                    return got_frame
                if not probed and now - last >= self.ping_timeout / 2:
                    probed = True  # a live server answers with a pong, which counts as a frame
                    try:
                        await ws.ping()
                    except (ConnectionError, RuntimeError):
                        return got_frame
                    continue
                horizon = self.ping_timeout if probed else self.ping_timeout / 2
                try:
                    msg = await asyncio.wait_for(ws.receive(), last + horizon - now)
                except asyncio.TimeoutError:
                    continue
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    if not self._stop.is_set():
                        self.status["last_error"] = f"websocket {msg.type.name.lower()}"
                    return got_frame
                last, probed, got_frame = self.clock(), False, True
                self.status["last_frame_at"] = time.time()
                if msg.type == aiohttp.WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    if await self._handle_frame(ws, msg.data) == "disconnect":
                        return True
            return got_frame
        finally:
            if not ws.closed:
                await ws.close()

    # ----------------------------------------------------------------------------- frames
    async def _ack(self, ws: aiohttp.ClientWebSocketResponse, message_id: Any, code: int,
                   message: str, data: str) -> None:
        ack = {"code": code, "headers": {"messageId": message_id, "contentType": "application/json"},
               "message": message, "data": data}
        try:
            async with self._send_lock:
                await ws.send_str(json.dumps(ack))
        except (ConnectionError, RuntimeError) as exc:
            # the socket died under us; CALLBACKs are lost to DingTalk anyway, EVENTs come again
            log.info("dingtalk stream: ACK not sent (%s)", type(exc).__name__)

    async def _handle_frame(self, ws: aiohttp.ClientWebSocketResponse, raw: str | bytes) -> str | None:
        try:
            frame = json.loads(raw)
            headers = frame.get("headers") or {}
        except (ValueError, AttributeError):
            log.warning("dingtalk stream: unparsable frame dropped")
            return None
        ftype, topic, mid = frame.get("type"), headers.get("topic"), headers.get("messageId")
        data = frame.get("data") or "{}"
        if ftype == "SYSTEM":
            # ping: echo the data (it carries "opaque") so the gateway sees the round trip
            await self._ack(ws, mid, 200, "OK", data if isinstance(data, str) else json.dumps(data))
            return "disconnect" if topic == "disconnect" else None
        try:
            payload = json.loads(data) if isinstance(data, str) else data
        except ValueError:
            await self._ack(ws, mid, 400, "bad data", "{}")
            return None
        if ftype == "CALLBACK":
            handler = {BOT_MESSAGE_TOPIC: self.on_callback, CARD_CALLBACK_TOPIC: self.on_card}.get(topic)
            if handler is None:
                await self._ack(ws, mid, 404, "not implemented", "{}")
                return None
            self._spawn(self._run_callback(ws, mid, payload, handler))
        elif ftype == "EVENT":
            self._spawn(self._run_event(ws, mid, headers, payload))
        else:
            await self._ack(ws, mid, 404, "unknown frame type", "{}")
        return None

    def _spawn(self, coro: Awaitable[None]) -> None:
        # handlers run beside the reader so a slow one cannot stall pings or trip the watchdog
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_callback(self, ws: aiohttp.ClientWebSocketResponse, mid: Any, payload: Any,
                            handler: Callable[[Any], Awaitable[None]]) -> None:
        try:
            await handler(payload)
        except Exception as exc:
            self.status["callback_failures"] += 1
            self.status["last_error"] = f"callback failed: {type(exc).__name__}"
            log.exception("dingtalk stream: callback frame %s not persisted", mid)
            await self._ack(ws, mid, 500, "handler failed", json.dumps({"response": None}))
            return
        await self._ack(ws, mid, 200, "OK", json.dumps({"response": None}))

    async def _run_event(self, ws: aiohttp.ClientWebSocketResponse, mid: Any, headers: dict, payload: Any) -> None:
        if self.on_event is not None:
            try:
                await self.on_event(headers, payload)
            except Exception as exc:
                log.exception("dingtalk stream: event %s failed, asking for redelivery", headers.get("eventId"))
                await self._ack(ws, mid, 500, "LATER",
                                json.dumps({"status": "LATER", "message": type(exc).__name__}))
                return
        await self._ack(ws, mid, 200, "OK", json.dumps({"status": "SUCCESS", "message": "OK"}))
