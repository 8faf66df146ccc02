"""Headless Chromium for the browser tests, from Debian's ``chromium`` package (never
``playwright install``: no browser downloads from anywhere but the system's package manager).

``chromium_path()`` finds /usr/bin/chromium (or chromium-browser); when it is missing and we are
root with apt-get, it installs Debian's package once per session; otherwise the test is skipped
with a loud reason saying what to install.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache

import pytest

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _find() -> str | None:
    for path in CANDIDATES:
        if os.path.exists(path) and os.access(path, os.X_OK):
            return path
    return None


@lru_cache(maxsize=1)
def _install_once() -> str:
    """'' on success, else why it could not be installed."""
    if os.geteuid() != 0:
        return "not root, cannot apt-get install chromium"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                ["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if cmd[1] == "install" and p.returncode == 0:
            return ""
    return f"apt-get install chromium failed: {p.stderr.strip()[-300:]}"


def chromium_path() -> str:
    path = _find()
    if path is None:
        why = _install_once()
        path = _find()
        if path is None:
            pytest.skip("!!! BROWSER TEST SKIPPED: NO CHROMIUM (/usr/bin/chromium) AND IT COULD NOT BE INSTALLED "
                        f"({why or 'installed, but not found'}). Install Debian's `chromium` package. !!!")
    return path


def playwright_or_skip():
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("!!! BROWSER TEST SKIPPED: THE `playwright` PYTHON PACKAGE IS MISSING "
                    "(pip install -e '.[test]'; do not run `playwright install`) !!!")
    return async_playwright
