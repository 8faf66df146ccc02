"""Helpers for tests that run the real bot as separate processes: a config file, a served
instance on a free loopback port, a FakeWeCom on its own thread (so it outlives any one test's
event loop), and "start these commands at the same instant"."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"     # the public test vector's key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_checkout(e: dict) -> dict:
    """``e`` with this checkout first on PYTHONPATH: a child process runs the code under test,
    not whatever an installed copy of the package holds (a git worktree beside the install)."""
    return {**e, "PYTHONPATH": str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")}


def env() -> dict:
    e = with_checkout(dict(os.environ))
    for k in list(e):
        if k.startswith("ARBOT_"):
            del e[k]
    return e


def write_config(path: Path, db_url: str, port: int, *, wecom_url: str | None = None, corp_id: str = "",
                 poll: float = 0.2) -> Path:
    lines = [f'[server]\nhost = "127.0.0.1"\nport = {port}\n', f'[database]\nurl = "{db_url}"\n',
             "[local]\nenabled = true\n", f"[outbox]\npoll_seconds = {poll}\nbackoff_base_seconds = 0.2\n"]
    if wecom_url:
        lines.append(f'[wecom]\nenabled = true\ncorp_id = "{corp_id}"\nagent_id = "1000002"\n'
                     f'secret = "fake-app-secret"\ntoken = "QDG6eK"\nencoding_aes_key = "{AES_KEY}"\n'
                     f'api_base = "{wecom_url}"\n')
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Served:
    """``python -m bot --config … serve`` in a child process, waited for until /healthz answers.

    ``args``: more arguments for ``serve`` (``--at …``); ``any_health``: ready when /healthz answers
    at all (a 503 from a database that cannot be written is an answer); ``log=None``: the output is
    read through a pipe into ``lines`` (a file-size limit on the child must not cut its log);
    ``preexec_fn`` runs in the child before exec (e.g. ignore SIGXFSZ)."""

    def __init__(self, config: Path, port: int, log: Path | None, *, args: tuple = (), any_health: bool = False,
                 preexec_fn=None, timeout: float = 60):
        self.port, self.log = port, log
        self.lines: list[str] = []
        self._log = log.open("wb") if log is not None else None
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), "serve", *args], cwd=ROOT,
                                     env=env(), stdout=self._log if log is not None else subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        self._reader = None
        if log is None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bot exited: {self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError:
                if any_health:
                    return
                time.sleep(0.2)
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"bot did not answer /healthz within {timeout:.0f} s")

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", errors="replace"))

    def output(self) -> str:
        if self.log is not None:
            return self.log.read_text(errors="replace")
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 20) -> float | None:
        """SIGTERM; seconds until it exited (None: it did not within ``timeout`` and was killed)."""
        took = 0.0
        if self.proc.poll() is None:
            t = time.monotonic()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
                took = time.monotonic() - t
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                took = None
        if self._reader is not None:
            self._reader.join(5)
        if self._log is not None:
            self._log.close()
        return took


def run_together(cmds: list[list[str]], timeout: float = 120, delay: float = 1.5) -> list[subprocess.CompletedProcess]:
    """Start the commands so their real work begins at the same wall-clock instant: each gets
    ARBOT_TEST_START (epoch seconds) and is expected to sleep until then after its imports."""
    start = time.time() + delay
    e = env()
    e["ARBOT_TEST_START"] = repr(start)
    procs = [subprocess.Popen(c, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    out = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            so, se = p.communicate()
        out.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
    return out


class ThreadedFakeWeCom:
    """A FakeWeCom served from its own thread and event loop."""

    def __init__(self, **kwargs):
        from tests.fakes.wecom_server import FakeWeCom
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeWeCom(**kwargs)
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def call(self, fn, *args):
        """Run ``fn(fake, *args)`` on the fake's loop (reads of its lists stay consistent)."""
        async def go():
            return fn(self.fake, *args)
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
