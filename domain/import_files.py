"""Reading and checking import files (CSV or Excel) before anything touches the ledger.

Two steps, neither uses the database:

* :func:`open_table` streams a file as a header row and data rows, each row with the line
  number the clerk sees in Excel or a text editor, so an error can point at "line 7"; only the
  current row is in memory (a CSV is decoded as it is read, a workbook read in openpyxl's
  read-only mode). :func:`read_table` is the same as lists, for the small kinds.
* :class:`RowChecker` maps the headers to fields (English or the usual Chinese headers) and
  parses one row's cells (amounts, dates, roles, ...), reporting problems as :class:`RowError`;
  :func:`validate` runs it over a whole table and also finds rows that repeat a key.

Problems are codes with parameters, not sentences: a template renders them in the user's
language. Codes (``RowError.code``) produced here:

``unreadable_file``, ``bad_encoding``, ``unsupported_format``, ``no_header``,
``missing_column`` (once, on the header's line), ``duplicate_column`` (params: ``other``, ``first``,
``second``: two columns for one field), ``required``, ``bad_amount``, ``too_many_decimals``,
``amount_too_large`` (params: ``max``), ``negative_amount``, ``zero_amount``, ``bad_date`` (params:
``order`` when the date order decided), ``due_before_issue``, ``unknown_role``, ``unknown_grade``,
``bad_bool``, ``unknown_currency``, ``bad_late_fee``, ``duplicate_key`` (params: ``first_line``),
``credit_note_without_original`` (a negative amount in a receivables file without the invoice it
corrects; params: ``has_column``). Amounts read ``(500.00)`` and ``-2,000.00`` as negatives: a
receivables file takes them as credit notes (红字发票), every other amount column refuses them.
The database step (``storage/imports.py``) adds the codes that need the ledger.

Files as ERP systems export them (用友 U8, 金蝶 K3, 金蝶云星空, YonSuite): the header is looked for
below title rows (:func:`find_header`), 合计/小计 rows and signature lines are skipped
(:func:`data_rows`), the vocabulary knows their column titles with a preference among synonyms
(``domain/import_vocab.PREFER``), and the lines of one invoice are added up (:func:`validate`;
the streamed import does the same in ``storage/import_stream.py``). ``.xls`` and modest ``.xlsx``
are read with python-calamine, large ``.xlsx`` with openpyxl in read-only mode.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterator

from domain.dates import DateError, half_width, parse_date
from domain.import_vocab import (ACCOUNT_COLUMNS, FIELDS, KEYS, KINDS, SHEET_NAMES, bool_of, currency_of, grade_of,
                                 header_field, header_rank, norm_header, role_of)
from domain.late_fees import TermsError, parse_terms
from domain.money import AmountError, parse_amount

__all__ = ["RowError", "Record", "Parsed", "ImportFileError", "Table", "open_table", "read_table",
           "map_headers", "RowChecker", "validate", "KINDS", "find_header", "data_rows", "is_total_row",
           "is_footer_row"]

CENT = Decimal("0.01")
EXCEL_EPOCH = date(1899, 12, 30)   # Excel's day 0 (it counts a non-existent 1900-02-29)


@dataclass(frozen=True)
class RowError:
    """One problem in one cell: ``line`` as the user sees it (1 = header), ``column`` the field."""
    line: int
    column: str
    value: str
    code: str
    params: dict = field(default_factory=dict, compare=False, hash=False)
    header: str = field(default="", compare=False)   # the column's header as written in the file

    def to_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "header": self.header, "value": self.value,
                "code": self.code, "params": dict(self.params)}


@dataclass
class Record:
    """One valid data row: parsed values for the columns present in the file, and the raw text
    (kept for error messages of the database step)."""
    line: int
    values: dict[str, Any]
    raw: dict[str, str]
    duplicate_of: int | None = None    # an identical earlier row in the same file: nothing to do
    merged: int = 0                    # later lines of the same invoice added into this one


@dataclass
class Parsed:
    kind: str
    rows: int                          # data rows in the file (empty rows not counted)
    records: list[Record]
    errors: list[RowError]
    columns: list[str]                 # fields present in the header
    ignored: list[str]                 # headers we did not recognise (left alone, e.g. 备注)
    header_names: dict[str, str] = field(default_factory=dict)   # field → header as written
    merged_lines: int = 0              # lines added into an earlier line of the same invoice

    def with_headers(self, errors: list[RowError]) -> list[RowError]:
        """Errors with ``header`` filled in, so a message can say 到期日 rather than due_date."""
        return [replace(e, header=self.header_names.get(e.column, e.header)) for e in errors]


class ImportFileError(Exception):
    """The file as a whole cannot be read; carries the one RowError that says why."""

    def __init__(self, error: RowError):
        super().__init__(error.code)
        self.error = error


# ---- reading ---------------------------------------------------------------------------------
class Table:
    """An open import file: ``headers``, then ``rows`` — an iterator of ``(line, cells)`` with
    empty rows skipped — read as it is consumed. ``bytes_read``/``size`` say how far a CSV has
    been read (a progress bar's measure); a workbook reports ``size`` 0. Close it (or use it as
    a context manager) to release the file."""

    def __init__(self, headers: list[str], rows: Iterator[tuple[int, list]], closer: Callable[[], None],
                 counter: "_CountingReader | None" = None, size: int = 0):
        self.headers, self.rows, self._closer, self._counter, self.size = headers, rows, closer, counter, size
        self.header_line = 1                 # the header's line in the file
        self.title_lines: list[int] = []     # title rows above the header, skipped
        self.total_lines: list[int] = []     # 合计/小计 rows and signature lines, skipped (filled as read)

    @property
    def bytes_read(self) -> int:
        return self._counter.count if self._counter is not None else 0

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> "Table":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- where the table starts and ends ----------------------------------------------------------
# ERP exports (用友 U8, 金蝶 K3, 金蝶云星空, YonSuite) put a title, the company and the period
# above the header — often one merged cell across the sheet — and 合计/小计 rows among or below
# the data. These helpers are shared by every reader of such files (bank statements too).
HEADER_SCAN = 30          # rows looked at for the header before giving up
_TOTAL = re.compile(r"(?:本页|本月|本年|本期|全部|累计)?(?:合计|小计|总计|累计)(?:\s*[:：(（\[【].*)?"
                    r"|total|subtotal|grand\s*total|sum", re.IGNORECASE)
# a last line with the clerk's or printer's stamp: 制表人：张三  打印日期：2026-03-05
_FOOTER = re.compile(r"(?:制表|制单|审核|复核|打印|导出|记账|主管|财务主管)(?:人|日期|时间)?\s*[:：]")

_SKIP_HINT = re.compile(r"计|[Tt][Oo][Tt][Aa][Ll]|制表|制单|审核|复核|打印|导出|记账|主管")


def is_total_row(cells: list) -> bool:
    """Is this a 合计/小计/总计 row (or a ``Total`` row)? Any text cell saying so counts: the word
    sits in the first column, the customer column or wherever the exporter put it; a customer or
    an invoice number that merely *contains* 合计 is not one (the word must stand alone, or be
    followed by a colon or a bracket: 合计：, 小计(华东区))."""
    for c in cells:
        if type(c) is str:
            t = c.strip().replace(" ", "").replace("\u3000", "")
            if t and _TOTAL.fullmatch(t):
                return True
    return False


def is_footer_row(cells: list) -> bool:
    """A signature line below the data (制表人：…, 打印日期：…) with nothing else on the row
    that could be an amount: the whole row's text starts with such a label."""
    texts = [_text(c) for c in cells]
    filled = [t for t in texts if t]
    return bool(filled) and all(isinstance(c, str) or c is None for c in cells) and \
        bool(_FOOTER.match(filled[0].replace(" ", "")))


def find_header(rows: Iterator[tuple[int, list]], is_header: Callable[[str], bool], *,
                scan: int = HEADER_SCAN, min_known: int = 2) -> tuple[tuple[int, list] | None, list[int],
                                                                       Iterator[tuple[int, list]]]:
    """Find the header among the first ``scan`` non-blank rows: the first row with at least
    ``min_known`` cells that ``is_header`` recognises (a title row, the company, the period have
    none or one). Returns ``(header row or None, line numbers of the rows above it, the rows
    after it)`` — still a stream. With no such row the first row is taken as the header (so
    the usual "missing column" report names what is missing).

    ``rows`` must already be free of blank rows. Use it for any kind of ERP or bank file:
    ``is_header`` is the caller's vocabulary (``lambda h: header_field("payments", h) is not None``)."""
    buffered: list[tuple[int, list]] = []
    for item in rows:
        buffered.append(item)
        known = sum(1 for c in item[1] if (t := _text(c)) and is_header(t))
        if known >= min_known:
            above = [line for line, _ in buffered[:-1]]
            return item, above, rows
        if len(buffered) >= scan:
            break
    if not buffered:
        return None, [], rows
    first, rest = buffered[0], buffered[1:]
    return first, [], _chain(rest, rows)


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def data_rows(rows: Iterator[tuple[int, list]], skipped: list[int] | None = None) -> Iterator[tuple[int, list]]:
    """The rows below the header without 合计/小计 rows and signature lines; their line numbers
    go to ``skipped`` when given (a report can say what was left out)."""
    hint = _SKIP_HINT.search
    for line, cells in rows:
        # one search over the row's text first: a million data rows pass it without a closer look
        try:
            joined = "".join(cells)
        except TypeError:           # Excel cells: numbers, dates, None
            joined = "".join(c for c in cells if type(c) is str)
        if hint(joined) and (is_total_row(cells) or is_footer_row(cells)):
            if skipped is not None:
                skipped.append(line)
            continue
        yield line, cells


def open_table(path: str | Path, kind: str | None = None) -> Table:
    """Open a CSV/TSV or XLSX file for streaming; raises :class:`ImportFileError` when the file
    cannot be read at all (a cell-level problem is the validator's business, not this)."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".xls" or (suffix in (".xlsx", ".xlsm") and p.stat().st_size <= CALAMINE_MAX_BYTES):
            rows, counter, size = _open_calamine(p, kind), None, 0
            closer = rows.close
        elif suffix in (".xlsx", ".xlsm"):
            rows, closer, counter, size = _open_xlsx(p, kind), None, None, 0
            closer = rows.close
        elif suffix in (".csv", ".tsv", ".txt", ""):
            rows, closer, counter = _open_csv(p)
            size = p.stat().st_size
        else:
            raise ImportFileError(RowError(0, "", p.name, "unsupported_format", {"suffix": suffix}))
        rows = ((line, cells) for line, cells in rows if _nonblank(cells))
        if kind in KINDS:
            known = lambda h: header_field(kind, h) is not None   # noqa: E731
        else:
            known = lambda h: any(header_field(k, h) is not None for k in KINDS)   # noqa: E731
        try:
            first, above, rows = find_header(rows, known)
        except BaseException:
            closer()
            raise
    except ImportFileError:
        raise
    except Exception as exc:   # a corrupt workbook, a missing file: one clear error, not a trace
        raise ImportFileError(RowError(0, "", p.name, "unreadable_file", {"detail": type(exc).__name__})) from exc
    if first is None:
        closer()
        raise ImportFileError(RowError(1, "", p.name, "no_header"))
    table = Table([_text(h) for h in first[1]], rows, closer, counter, size)
    table.header_line, table.title_lines = first[0], above
    table.rows = _guarded(data_rows(rows, table.total_lines), p.name)
    return table


def _guarded(rows: Iterator[tuple[int, list]], name: str) -> Iterator[tuple[int, list]]:
    """A file that breaks half-way (a truncated workbook) is the same one clear error."""
    try:
        yield from rows
    except ImportFileError:
        raise
    except Exception as exc:
        raise ImportFileError(RowError(0, "", name, "unreadable_file", {"detail": type(exc).__name__})) from exc


def read_table(path: str | Path, kind: str | None = None) -> tuple[list[str], list[tuple[int, list]]]:
    """Headers and data rows ``(line, cells)`` of a CSV/TSV or XLSX file, as lists; empty rows
    skipped. Raises :class:`ImportFileError` when the file cannot be read at all."""
    with open_table(path, kind) as table:
        return table.headers, list(table.rows)


def _nonblank(cells: list) -> bool:
    """Has the row any cell with something in it? A CSV row is all text: one join and one strip
    (a cell of spaces alone is blank either way) instead of a call per cell."""
    try:
        return bool("".join(cells).strip())
    except TypeError:            # Excel cells: numbers, dates, None
        return any(_text(c) for c in cells)


_SNIFF = 1 << 16          # bytes looked at before deciding an encoding from the start alone


def _encoding(path: Path) -> str:
    """UTF-8 (BOM or not) is tried first because a GBK decode of UTF-8 bytes rarely fails
    outright but yields mojibake; GB18030 is the superset of GBK that Excel on Chinese
    Windows writes. UTF-16 (Excel's "Unicode text") is recognised by its BOM.

    The whole file is checked, block by block with an incremental decoder (a GBK character may
    first appear on the millionth line), so a file is read once more here, never held whole."""
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "utf-16"
        f.seek(0)
        for enc in ("utf-8", "gb18030"):
            decoder = codecs.getincrementaldecoder(enc)()
            try:
                while block := f.read(1 << 20):
                    decoder.decode(block)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                f.seek(0)
                continue
            return "utf-8-sig" if enc == "utf-8" and head.startswith(b"\xef\xbb\xbf") else enc
    raise ImportFileError(RowError(0, "", "", "bad_encoding"))


class _CountingReader(io.RawIOBase):
    """A binary file that counts the bytes handed out: how far the CSV reader has got."""

    def __init__(self, f):
        self._f, self.count = f, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        self.count += n or 0
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;").delimiter
    except csv.Error:
        first = sample.splitlines()[0] if sample else ""
        counts = {d: first.count(d) for d in ",\t;"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _open_csv(path: Path) -> tuple[Iterator[tuple[int, list]], Callable[[], None], _CountingReader]:
    enc = _encoding(path)
    with path.open("r", encoding=enc, newline="") as f:
        sample = f.read(8192)
    counter = _CountingReader(path.open("rb", buffering=0))
    text = io.TextIOWrapper(io.BufferedReader(counter, 1 << 16), encoding=enc, newline="")

    def rows() -> Iterator[tuple[int, list]]:
        reader = csv.reader(text, delimiter=_delimiter(sample))
        last = 0
        for cells in reader:
            # a quoted cell may span lines: a record starts on the line after the previous one ended
            yield last + 1, cells
            last = reader.line_num
    return rows(), text.close, counter


# Workbooks up to this size are read with calamine (Rust; .xls too, which openpyxl cannot read),
# several times faster than openpyxl but holding the whole sheet; larger .xlsx stream through
# openpyxl's read-only mode in bounded memory.
CALAMINE_MAX_BYTES = 20 << 20


def _open_calamine(path: Path, kind: str | None) -> Iterator[tuple[int, list]]:
    """Rows of an .xls (Excel 97–2003, what many 用友/金蝶 installations still export) or a
    modest .xlsx. calamine gives '' for an empty cell, floats for numbers, dates as dates, and
    leaves out the empty columns on the left (consistently for every row)."""
    from python_calamine import CalamineWorkbook   # only when a workbook arrives

    wb = CalamineWorkbook.from_path(str(path))
    try:
        names = wb.sheet_names
        wanted = {norm_header(n) for n in SHEET_NAMES.get(kind or "", ())}
        index = next((i for i, n in enumerate(names) if norm_header(n) in wanted), 0)
        sheet = wb.get_sheet_by_index(index)
        # iter_rows starts at the sheet's first row, so the count is Excel's line number
        for i, cells in enumerate(sheet.iter_rows(), 1):
            yield i, cells
    finally:
        wb.close()


def _open_xlsx(path: Path, kind: str | None) -> Iterator[tuple[int, list]]:
    from openpyxl import load_workbook   # heavy import, only when a workbook arrives

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        ws = wb.worksheets[0]
        wanted = {norm_header(n) for n in SHEET_NAMES.get(kind or "", ())}
        for sheet in wb.worksheets:
            if norm_header(sheet.title) in wanted:
                ws = sheet
                break
        # exporters often write a wrong <dimension>; forget it and read what is really there
        ws.reset_dimensions()
        for i, cells in enumerate(ws.iter_rows(min_row=1, values_only=True), 1):
            yield i, list(cells)
    finally:
        wb.close()


# ---- cell values -----------------------------------------------------------------------------
def _text(v: Any) -> str:
    """A cell as text; Excel stores 13800138000 and invoice 20260001 as numbers."""
    if type(v) is str:               # every CSV cell: the common case first
        return v.strip()
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, datetime) and v.time() == datetime.min.time():
        return v.date().isoformat()
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    return str(v).strip()


def parse_money(v: Any) -> Decimal:
    """Amount cell → Decimal yuan: numbers from Excel, text like ``12,345.60``/``¥1.2万``."""
    if isinstance(v, bool):
        raise AmountError("not an amount")
    if isinstance(v, Decimal):
        return v.quantize(CENT, rounding=ROUND_HALF_UP)
    if isinstance(v, int):
        return Decimal(v).quantize(CENT)
    if isinstance(v, float):
        # repr() is the shortest text that round-trips, i.e. what Excel displays; never Decimal(float)
        try:
            return Decimal(repr(v)).quantize(CENT, rounding=ROUND_HALF_UP)
        except InvalidOperation as exc:
            raise AmountError("not an amount") from exc
    return parse_amount(str(v))


_YEAR = re.compile(r"\d{4}|[零〇一二三四五六七八九]{4}")
_TIME_TAIL = re.compile(r"[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")


DATE_ORDERS = ("ymd", "mdy", "dmy")
_NUMERIC_DATE = re.compile(r"(\d{1,4})([-/.])(\d{1,2})\2(\d{1,4})")


def _numeric_date(m: re.Match, order: str) -> date:
    """``2026/3/5``, ``26-3-5``, ``3/5/2026``, ``5.3.26``: a four-digit year says where the year is
    (first: year-month-day, always; last: month and day in the configured order, month first
    unless ``dmy``); with two-digit parts only, the configured order decides everything."""
    a, b, c = m.group(1), m.group(3), m.group(4)
    if len(a) == 4 and len(c) <= 2:
        return date(int(a), int(b), int(c))
    if len(c) == 4 and len(a) <= 2:
        return date(int(c), int(b), int(a)) if order == "dmy" else date(int(c), int(a), int(b))
    if len(a) <= 2 and len(c) <= 2:
        if order == "ymd":
            return date(2000 + int(a), int(b), int(c))
        if order == "mdy":
            return date(2000 + int(c), int(a), int(b))
        return date(2000 + int(c), int(b), int(a))
    raise DateError(f"not a date: {m.group(0)!r}")


def parse_cell_date(v: Any, today: date, order: str = "ymd") -> date:
    """Date cell → date. Excel gives datetime/date; a bare number is an Excel serial day; text
    in figures is read by :func:`_numeric_date` with ``order`` (``[import] date_order``)."""
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _serial(v)
    s = _text(v)
    s = _TIME_TAIL.sub("", s)                      # "2026-12-05 00:00:00" from CSV exports
    if re.fullmatch(r"\d{8}", s):                  # 20261205, the ERP export form
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    elif re.fullmatch(r"\d{5}(?:\.0+)?", s):       # a serial that lost its cell format
        return _serial(float(s))
    m = _NUMERIC_DATE.fullmatch(half_width(s).strip())
    if m:
        return _numeric_date(m, order)
    d = parse_date(s, today)
    # a ledger date without a year would be guessed relative to today: refuse rather than guess
    if not _YEAR.search(s):
        raise DateError(f"date without a year: {s!r}")
    return d


def _serial(n: float) -> date:
    if not 1 <= n < 2958466:                        # Excel's own range, up to 9999-12-31
        raise DateError(f"not an Excel date serial: {n}")
    return EXCEL_EPOCH + timedelta(days=int(n))


# ---- validation ------------------------------------------------------------------------------
def map_headers(kind: str, headers: list[str]) -> tuple[dict[str, int], list[str]]:
    """Field → column index, and the headers not used (unknown ones, and the less preferred of
    two columns for one field: 本币金额 beside 价税合计). See :func:`header_clashes` for two
    columns of equal standing."""
    mapping, ignored, _ = _map_headers(kind, headers)
    return mapping, ignored


def header_clashes(kind: str, headers: list[str]) -> list[tuple[str, int, int]]:
    """``(field, first column, second column)`` for each field named by two columns of equal
    standing — the same header twice, or synonyms such as 到期日 and 到期日期: which one holds
    the truth cannot be guessed."""
    return _map_headers(kind, headers)[2]


def _map_headers(kind: str, headers: list[str]) -> tuple[dict[str, int], list[str], list[tuple[str, int, int]]]:
    if kind == "people" and not ACCOUNT_COLUMNS:
        # the chat platforms add their user-id columns when they register; reading people.csv
        # before that would quietly drop every account, so say so instead
        raise RuntimeError("no chat platform has registered its people.csv column yet "
                           "(import bot.channels.adapters first)")
    best: dict[str, tuple[int, int]] = {}           # field → (tier, column)
    ignored: list[str] = []
    clashes: list[tuple[str, int, int]] = []
    ranked: list[tuple[int, str, int]] = []
    for i, h in enumerate(headers):
        if not h:
            continue
        got = header_rank(kind, h)
        if got is None:
            ignored.append(h)
            continue
        f, tier = got
        ranked.append((i, f, tier))
        if f not in best or tier < best[f][0]:
            best[f] = (tier, i)
    for i, f, tier in ranked:
        top_tier, top = best[f]
        if i == top:
            continue
        if tier == top_tier:
            clashes.append((f, top, i))
        else:
            ignored.append(headers[i])
    return {f: i for f, (_, i) in sorted(best.items(), key=lambda x: x[1][1])}, ignored, clashes


# Fast paths for the forms ERP exports write (2026-11-23, 12345.60): the same values the general
# parsers give for these texts, without their regex tours; anything else takes the general path.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PLAIN_AMOUNT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,2})?")


# An invoice of ten billion yuan is a typo (a pasted bank account, a unit mix-up), and figures
# beyond it overflow the aging totals (integer cents): refused, line by line.
MAX_AMOUNT = Decimal("10000000000")
_MAX_TEXT = "10,000,000,000"
_FLOAT_NOISE = Decimal("0.000001")   # 1234.5600000000002 is Excel's binary float for 1234.56
_SUB_CENT = re.compile(r"[(（]?[-+−]?[¥￥$]?(\d+)\.(\d{3,})([万亿wk千百]?)(?:元|块)?[)）]?")
_UNIT = {"": 1, "万": 10 ** 4, "亿": 10 ** 8, "w": 10 ** 4, "k": 1000, "千": 1000, "百": 100}


def _fraction_of_a_cent(v: Any) -> bool:
    """Does the cell hold a fraction of a cent (``12345.605``)? A ledger figure is never
    rounded silently: the ERP's own figure is to be fixed. Excel's float noise is not one."""
    if isinstance(v, float):
        try:
            d = Decimal(repr(v))
        except InvalidOperation:
            return False
        return abs(d - d.quantize(CENT, rounding=ROUND_HALF_UP)) >= _FLOAT_NOISE
    if not isinstance(v, str) or "." not in v:
        return False
    m = _SUB_CENT.fullmatch(half_width(v).replace(",", "").replace(" ", "").lower())
    if m is None:
        return False
    d = Decimal(f"{m.group(1)}.{m.group(2)}") * _UNIT[m.group(3)]
    return d != d.quantize(CENT)


def _parse_value(typ: str, v: Any, today: date, order: str = "ymd") -> tuple[Any, str | None, dict]:
    """(value, error code or None, params) for one non-empty cell of the given type."""
    if typ == "text":
        return _text(v), None, {}
    if type(v) is str:
        t = v.strip()
        if typ == "date" and _ISO_DATE.fullmatch(t):
            try:
                return date.fromisoformat(t), None, {}
            except ValueError:
                pass                 # 2026-13-01: the general path says why
        elif typ in ("amount", "money", "signed") and _PLAIN_AMOUNT.fullmatch(t):
            d = Decimal(t).quantize(CENT)
            if d == 0 and typ in ("amount", "signed"):
                return None, "zero_amount", {}
            if d >= MAX_AMOUNT:
                return None, "amount_too_large", {"max": _MAX_TEXT}
            return d, None, {}
    if typ in ("amount", "money", "signed"):
        if _fraction_of_a_cent(v):
            return None, "too_many_decimals", {}
        try:
            d = parse_money(v)
        except AmountError:
            return None, "bad_amount", {}
        if abs(d) >= MAX_AMOUNT:
            return None, "amount_too_large", {"max": _MAX_TEXT}
        if d < 0 and typ != "signed":
            return None, "negative_amount", {}
        if d == 0 and typ in ("amount", "signed"):
            return None, "zero_amount", {}
        return d, None, {}
    if typ == "date":
        try:
            return parse_cell_date(v, today, order), None, {}
        except (DateError, ValueError, OverflowError):
            # a year-last or two-digit date: say in which order it was read
            m = _NUMERIC_DATE.fullmatch(half_width(_TIME_TAIL.sub("", v.strip())).strip()) if type(v) is str else None
            return None, "bad_date", ({"order": order} if m and len(m.group(1)) < 4 else {})
    if typ == "bool":
        b = v if isinstance(v, bool) else bool_of(_text(v))
        return (b, None, {}) if b is not None else (None, "bad_bool", {})
    if typ == "late_fee":
        # the contract's late-fee clause, stored as written by domain/late_fees.parse_terms
        try:
            terms = parse_terms(_text(v))
        except TermsError:
            return None, "bad_late_fee", {}
        return ("" if terms is None else str(terms)), None, {}
    parser, code = {"role": (role_of, "unknown_role"), "grade": (grade_of, "unknown_grade"),
                    "currency": (currency_of, "unknown_currency")}[typ]
    got = parser(_text(v))
    return (got, None, {}) if got is not None else (None, code, {})


# Cells of these types repeat a lot (a file has a few hundred distinct dates, a handful of
# currencies): their parse depends only on the text (and ``today``), so it is memoised per file
# for text cells (only ``str`` cells: ``True == 1`` must not share an entry).
_MEMO_TYPES = frozenset({"date", "currency", "role", "grade", "bool"})
_MEMO_MAX = 100_000      # distinct texts remembered per column; beyond that, parse each time


def _column_letter(i: int) -> str:
    """Column index → Excel's letters (0 → A, 27 → AB): how a clerk finds a column."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


class RowChecker:
    """Parses the rows of one file, one at a time: the header mapping is worked out once.

    ``errors`` holds the file-level problems (``missing_column``, once, on line 1); when there
    are any, ``usable`` is False and every row would repeat the same complaint."""

    def __init__(self, kind: str, headers: list[str], *, today: date, header_line: int = 1,
                 date_order: str = "ymd"):
        if kind not in KINDS:
            raise ValueError(f"unknown import kind {kind!r}")
        if date_order not in DATE_ORDERS:
            raise ValueError(f"unknown date order {date_order!r}")
        self.date_order = date_order
        spec = FIELDS[kind]
        self.kind, self.today = kind, today
        self.mapping, self.ignored, clashes = _map_headers(kind, headers)
        self.errors = [RowError(header_line, f, "", "missing_column")
                       for f, t in spec.items() if t.endswith("!") and f not in self.mapping]
        # the same column twice (金额, 金额) or two synonyms of equal standing: refused, not guessed
        self.errors += [RowError(header_line, f, "", "duplicate_column",
                                 {"other": headers[i], "first": _column_letter(i), "second": _column_letter(j)},
                                 header=headers[j]) for f, i, j in clashes]
        self.header_names = {f: headers[i] for f, i in self.mapping.items()}
        self.key = KEYS[kind]
        # per column: (field, index, type, required, memo of text → parse result or None)
        self.columns = [(f, col, spec[f].rstrip("!"), spec[f].endswith("!"),
                         {} if spec[f].rstrip("!") in _MEMO_TYPES else None) for f, col in self.mapping.items()]

    @property
    def usable(self) -> bool:
        return not self.errors

    def check(self, line: int, cells: list) -> tuple[Record | None, list[RowError]]:
        """(the row's Record, []) or (None, its errors)."""
        values: dict[str, Any] = {}
        raw: dict[str, str] = {}
        row_errors: list[RowError] = []
        width = len(cells)
        today = self.today
        for f, col, typ, required, memo in self.columns:
            cell = cells[col] if col < width else None
            text = cell.strip() if type(cell) is str else _text(cell)
            raw[f] = text
            if text == "":
                if required:
                    row_errors.append(RowError(line, f, "", "required"))
                else:
                    values[f] = False if typ == "bool" else None   # present but blank: the default
                continue
            if typ == "text":
                values[f] = text
                continue
            got = memo.get(cell) if memo is not None and type(cell) is str else None
            if got is None:
                got = _parse_value(typ, cell, today, self.date_order)
                if memo is not None and type(cell) is str and len(memo) < _MEMO_MAX:
                    memo[cell] = got
            value, code, params = got
            if code:
                row_errors.append(RowError(line, f, text, code, dict(params)))
            else:
                values[f] = value
        if self.kind == "receivables" and values.get("issue_date") and values.get("due_date") \
                and values["due_date"] < values["issue_date"]:
            row_errors.append(RowError(line, "due_date", raw["due_date"], "due_before_issue",
                                       {"issue_date": values["issue_date"].isoformat()}))
        if self.kind == "receivables" and values.get("amount") is not None and values["amount"] < 0 \
                and not values.get("original_invoice"):
            # a negative invoice is a credit note (红字发票): it must say which invoice it corrects
            row_errors.append(RowError(line, "amount", raw["amount"], "credit_note_without_original",
                                       {"has_column": "original_invoice" in self.mapping}))
        if row_errors:
            return None, row_errors
        return Record(line, values, raw), []


def row_fingerprint(cells: list) -> int:
    """A 64-bit hash of a whole row as text: two rows alike in every cell (a row pasted twice)
    are one row, while two lines of one invoice differ somewhere (the goods, the quantity)."""
    try:
        return hash(tuple(cells)) & 0xFFFF_FFFF_FFFF_FFFF
    except TypeError:                # a cell type that does not hash: compare the text
        return hash(tuple(_text(c) for c in cells)) & 0xFFFF_FFFF_FFFF_FFFF


def invoice_fingerprint(values: dict) -> int:
    """What the lines of one invoice share: everything but the amount (customer, dates, currency,
    rep, contract, terms)."""
    return hash(tuple(v for k, v in values.items() if k != "amount")) & 0xFFFF_FFFF_FFFF_FFFF


def total_error(rec: Record) -> RowError | None:
    """A multi-line invoice whose lines add up to nothing or less (a discount line larger than
    the goods), or to ten billion and more: refused on its first line, as a single line would be."""
    amount = rec.values["amount"]
    if amount >= MAX_AMOUNT:
        return RowError(rec.line, "amount", str(amount), "amount_too_large", {"max": _MAX_TEXT})
    if amount > 0:
        return None
    return RowError(rec.line, "amount", str(amount), "zero_amount" if amount == 0 else "negative_amount",
                    {"lines": rec.merged + 1})


def validate(kind: str, headers: list[str], rows: list[tuple[int, list]], *, today: date,
             header_line: int = 1, date_order: str = "ymd") -> Parsed:
    """Map headers and parse every row; rows with any error are left out of ``records``.

    A key repeated: the same row again is nothing to do (``duplicate_of``); for receivables,
    another line of the same invoice (ERP exports write one line per item: same number,
    customer, dates and currency) adds its amount to the invoice's first line; anything else
    under one key is a ``duplicate_key`` error."""
    checker = RowChecker(kind, headers, today=today, header_line=header_line, date_order=date_order)
    parsed = Parsed(kind, len(rows), [], list(checker.errors), list(checker.mapping), checker.ignored,
                    checker.header_names)
    if not checker.usable:
        return parsed          # every row would repeat the same complaint
    key, errors = checker.key, parsed.errors
    lines_of_invoices = kind == "receivables"
    seen: dict[str, tuple[Record, set[int]]] = {}     # key → its first record, fingerprints of its lines
    for line, cells in rows:
        rec, row_errors = checker.check(line, cells)
        if rec is None:
            errors.extend(row_errors)
            continue
        values = rec.values
        first = seen.get(values[key])
        if first is not None:
            first_rec, lines = first
            if lines_of_invoices:
                row_fp = row_fingerprint(cells)
                if row_fp in lines:            # a line seen before (a row, or a file, pasted twice)
                    rec.duplicate_of = first_rec.line
                elif invoice_fingerprint(values) == invoice_fingerprint(first_rec.values):
                    lines.add(row_fp)
                    first_rec.values["amount"] += values["amount"]
                    first_rec.merged += 1
                    parsed.merged_lines += 1
                    continue
                else:
                    errors.append(RowError(line, key, rec.raw[key], "duplicate_key", {"first_line": first_rec.line}))
                    continue
            elif first_rec.values != values:
                errors.append(RowError(line, key, rec.raw[key], "duplicate_key", {"first_line": first_rec.line}))
                continue
            else:
                rec.duplicate_of = first_rec.line
        else:
            seen[values[key]] = (rec, {row_fingerprint(cells)} if lines_of_invoices else set())
        parsed.records.append(rec)
    if parsed.merged_lines:
        for rec in parsed.records:
            if rec.merged and (err := total_error(rec)):
                errors.append(err)
        bad = {e.line for e in errors}
        parsed.records = [r for r in parsed.records if r.line not in bad]
    return parsed
