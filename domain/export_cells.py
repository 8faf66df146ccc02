"""Cells for the spreadsheets the bot writes (CSV and XLSX): text that a spreadsheet would run
as a formula is written as text.

Excel, WPS and LibreOffice run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, once a
tab or carriage return is trimmed, what follows it) as a formula. Names, follow-up notes and
invoice numbers come from people — a rep's ``/followup =HYPERLINK("http://…","点此")`` would
become a live link in finance's report (CSV injection). Such text gets a leading apostrophe
in a CSV (the widely used neutralisation: the spreadsheet shows the text) and, in a workbook,
is stored as a string with Excel's "quote prefix" (shown as typed, still text when edited).

A real number stays a number: a negative balance is ``-1234.50``, not text.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

__all__ = ["RISKY_START", "is_risky", "csv_cell", "csv_row"]

RISKY_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def is_risky(value: Any) -> bool:
    """Would a spreadsheet read this text as a formula? Plain numbers in text (``-1234.50``,
    what ``str(Decimal)`` writes) are numbers, not formulas."""
    return isinstance(value, str) and value.startswith(RISKY_START) and not _NUMBER.fullmatch(value)


def csv_cell(value: Any) -> Any:
    """One CSV cell: risky text with a leading apostrophe; numbers and other text unchanged."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value
    if is_risky(value):
        return "'" + value
    return value


def csv_row(values) -> list:
    return [csv_cell(v) for v in values]
