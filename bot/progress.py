"""A progress bar for the command line's long work (a receivables import of a million rows):
drawn with tqdm on stderr, only when a person is watching a terminal. When stdout is not a TTY
(a pipe, a file, cron, a test) there is no bar, so nothing but the report reaches the output.

``ImportProgress`` is the ``progress(phase, done, total)`` callback that
``storage.imports.import_file`` calls: "check" counts the bytes read of the file (a workbook
gives no total), "write" the rows written. Each phase gets its own bar; its label comes from
``cli/import_progress.txt.j2``.
"""
from __future__ import annotations

import sys
from typing import IO, Any

from bot.render import render


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is an open terminal (a closed or odd stream counts as not)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (ValueError, OSError):
        return False


def wants_bar(stdout: Any = None, stderr: Any = None) -> bool:
    """A bar only when stdout is a terminal (and stderr, where the bar is drawn, too)."""
    return is_terminal(sys.stdout if stdout is None else stdout) and \
        is_terminal(sys.stderr if stderr is None else stderr)


class ImportProgress:
    """``progress(phase, done, total)`` drawn as one tqdm bar per phase on ``file``."""

    def __init__(self, file: IO[str]):
        self.file = file
        self.phase: str | None = None
        self.bar: Any = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            from tqdm import tqdm      # only when a bar is drawn
            self.close()
            self.phase = phase
            in_bytes = phase == "check"
            self.bar = tqdm(total=total or None, desc=render("cli/import_progress.txt.j2", phase=phase),
                            unit="B" if in_bytes else render("cli/import_progress.txt.j2", phase="unit"),
                            unit_scale=in_bytes, unit_divisor=1024 if in_bytes else 1000, file=self.file,
                            leave=False, dynamic_ncols=True, mininterval=0.2)
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def import_progress(stdout: Any = None, stderr: Any = None) -> ImportProgress | None:
    """The import's progress callback for this terminal, or None (no bar) when it is not one."""
    if not wants_bar(stdout, stderr):
        return None
    return ImportProgress(sys.stderr if stderr is None else stderr)
