"""Take the local chat screenshots docs/channels.md shows (docs/img/local-*.png).

    .venv/bin/python docs/screenshots.py

It runs the demo the way ``make run`` does (``arbot serve --demo``, rehearsed at a fixed working
morning so the pictures do not change with the day), on a free loopback port and a throw-away
database, and drives Debian's Chromium headless (tests/browser.py: never a downloaded browser):
a rep's morning push, the rep answering two items in one message, the general manager's
``/aging`` in the managers' group with its chart.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
AT = "2026-11-23T10:00"          # a Monday, the morning after the push
SIZE = {"width": 1100, "height": 820}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp: Path, port: int) -> subprocess.Popen:
    config = tmp / "arbot.toml"
    config.write_text((ROOT / "config.demo.toml").read_text(encoding="utf-8")
                      .replace("sqlite+aiosqlite:///./arbot-demo.db", f"sqlite+aiosqlite:///{tmp}/demo.db")
                      + f"\n[server]\nport = {port}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ARBOT_CONFIG", None)
    # a relative path: the sidebar shows the command with it, and a temporary path reads oddly there
    proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", config.name, "serve", "--demo", "--at", AT],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("the demo did not start within 3 minutes")


async def shoot(url: str) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from playwright.async_api import async_playwright

    from tests.browser import ARGS, CANDIDATES
    executable = next((p for p in CANDIDATES if os.path.exists(p)), None)
    if executable is None:
        raise SystemExit("install Debian's chromium package first")
    OUT.mkdir(parents=True, exist_ok=True)
    shots = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(locale="zh-CN", timezone_id="Asia/Shanghai", viewport=SIZE)
            await page.goto(url)
            await page.wait_for_selector("#person option", state="attached")
            rep = await page.eval_on_selector("#person", "s => [...s.options].find(o => o.text.includes('业务员')).value")
            await page.select_option("#person", rep)
            first = page.locator(".msg.push").first
            await first.wait_for()
            await first.evaluate("e => e.scrollIntoView({block: 'start'})")   # the morning's list, from its top
            shots.append(OUT / "local-push.png")
            await page.screenshot(path=str(shots[-1]))
            await page.locator("#text").click()
            await page.keyboard.type("1 已电话联系王总，答应下周五前付一半")
            await page.keyboard.press("Shift+Enter")
            await page.keyboard.type("2 客户说发票抬头错了，要重开")
            await page.keyboard.press("Enter")
            await page.locator(".msg.bot").first.wait_for()
            shots.append(OUT / "local-reply.png")
            await page.screenshot(path=str(shots[-1]))
            await page.select_option("#person", "gm")
            await page.fill("#chat", "mgmt")
            await page.locator("#chat").dispatch_event("change")
            await page.locator("#text").click()
            await page.keyboard.type("/aging")
            await page.keyboard.press("Enter")
            chart = page.locator(".msg.bot img").first
            await chart.wait_for(timeout=30_000)
            await page.set_viewport_size({"width": SIZE["width"], "height": 1250})
            await chart.evaluate("e => new Promise(r => { const go = () => { e.scrollIntoView({block: 'end'}); r(); };"
                                 " if (e.complete) go(); else e.onload = go; })")
            shots.append(OUT / "local-aging.png")
            await page.screenshot(path=str(shots[-1]))
        finally:
            await browser.close()
    return shots


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = serve(Path(tmp), port)
        try:
            for shot in asyncio.run(shoot(f"http://127.0.0.1:{port}/")):
                print(shot.relative_to(ROOT))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
