"""No platform is named outside bot/channels/ (docs/channels.md): adding a platform is a module
there plus a configuration section, never an edit to the jobs, the core or storage.

The check is the grep from issue #14, run as is. The allow-list is what may name a platform
anyway, and it is meant to stay this short: the configuration's sections, and the migrations
(history: they name the columns they once made or moved).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ALLOWED = (
    "bot/config.py:",                     # [wecom] / [dingtalk] sections: configuration
    "storage/migrations/versions/",       # history
)


@pytest.mark.skipif(shutil.which("grep") is None, reason="needs grep")
def test_no_platform_name_outside_the_channels():
    out = subprocess.run('grep -rniE "wecom|dingtalk|feishu" bot storage --include=*.py | grep -v "bot/channels/"',
                         shell=True, cwd=ROOT, capture_output=True, text=True).stdout
    stray = [line for line in out.splitlines() if not line.startswith(ALLOWED)]
    assert stray == [], "platform names outside bot/channels/:\n" + "\n".join(stray)
