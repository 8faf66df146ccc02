"""`arbot …` run in the test's own process (no interpreter start-up: a second a call instead of
ten under load), its output read with pytest's capfd. ``main`` sets up logging for a shell; the
test's logging is put back afterwards."""
from __future__ import annotations

import logging
from pathlib import Path


def config_file(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "arbot.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n{extra}', encoding="utf-8")
    return path


def arbot(config: Path, *args: str) -> int:
    from bot.cli import main
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(["--config", str(config), *args])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
