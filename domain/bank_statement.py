"""Reading a bank statement (银行对账单/账户明细) as Chinese banks export it, before anything
touches the ledger.

CSV (UTF-8 or GBK), XLSX and the old XLS (python-calamine reads both workbook kinds) in the
layouts of the major banks: a title and the account above the header row, 合计 rows below the
data, amounts with thousands separators, one column per direction (借方/贷方, 支出/收入) or one
amount with a 借贷 flag or a sign. SWIFT MT940 through the ``mt-940`` library. The header and the
合计 rows are found by the finder every import shares (``domain.import_files.find_header`` and
``data_rows``) with this module's bank vocabulary (:data:`COLUMNS`).

The result is a list of :class:`BankLine` or, when any line cannot be read, the errors with
their line numbers: a statement is taken whole or not at all (the caller stores nothing).

Every line has an identity (:func:`identity`): the bank's serial when the layout has one, else
a hash of date, amount, direction, counterparty, account and memo (with a counter for identical
lines in one file), so the same statement read twice gives the same identities.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.dates import DateError
from domain.import_files import (ImportFileError, RowError, _encoding, _text, data_rows, find_header, parse_cell_date,
                                 parse_money)
from domain.money import AmountError

ZERO = Decimal("0.00")

# A header names a field when its normalised text is one of these; earlier names win when a
# layout has several (工商 has both 交易时间 and no 交易日期; 农业 has 交易日期 and a time column).
COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("交易日期", "记账日期", "入账日期", "交易日", "记账日", "日期", "交易时间", "transactiondate", "date"),
    "debit": ("借方发生额", "借方金额", "支出金额", "付款金额", "支出", "借方", "debit"),
    "credit": ("贷方发生额", "贷方金额", "收入金额", "收款金额", "收入", "贷方", "credit"),
    "amount": ("交易金额", "发生额", "金额", "amount"),
    "flag": ("借贷标志", "借贷方向", "借/贷", "借贷", "收支标志", "收/支", "方向"),
    "counterparty": ("对方户名", "对方单位名称", "对方单位", "对方账户名称", "对方账户名", "对方名称", "收/付方名称",
                     "对方户名称", "counterparty"),
    "payer_name": ("付款人名称", "付款方名称", "付款人户名", "付款人"),
    "payee_name": ("收款人名称", "收款方名称", "收款人户名", "收款人"),
    "account": ("对方账号", "对方账户", "对方帐号", "收/付方帐号", "收/付方账号", "对方账户账号"),
    "payer_account": ("付款人账号", "付款方账号", "付款人帐号"),
    "payee_account": ("收款人账号", "收款方账号", "收款人帐号"),
    "memo": ("摘要", "用途", "附言", "备注", "交易附言", "交易说明", "交易摘要", "业务摘要", "其它摘要", "其他摘要",
             "交易用途", "memo"),
    "ref": ("交易流水号", "流水号", "业务参考号", "交易参考号", "账户明细编号-交易流水号", "银行流水号", "凭证号", "reference"),
    "currency": ("币种", "货币", "币别", "currency"),
}
_LOOKUP = {name: (f, i) for f, names in COLUMNS.items() for i, name in enumerate(names)}
_BRACKETS = re.compile(r"[（(\[【][^）)\]】]*[）)\]】]")
FOOTER = re.compile(r"^\s*(本页)?(合计|总计|小计|累计|汇总|共计)")
DEBIT_FLAGS = {"借", "借方", "d", "dr", "debit", "支出", "支", "出", "付", "付款", "-"}
CREDIT_FLAGS = {"贷", "贷方", "c", "cr", "credit", "收入", "收", "入", "来账", "收款", "+"}


@dataclass
class BankLine:
    line: int                  # as the clerk sees it in Excel or an editor (an MT940: the entry's number)
    booked_on: date
    direction: str             # credit (money in) | debit (money out)
    amount: Decimal            # always positive
    payer: str                 # the counterparty's name (for a credit, who paid)
    account: str               # the counterparty's account number
    memo: str
    ref: str = ""              # the bank's serial, "" when the layout has none
    currency: str = "CNY"
    identity: str = ""         # filled by :func:`with_identities`


@dataclass
class Statement:
    lines: list[BankLine] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    layout: str = ""           # csv | xlsx | xls | mt940
    header_line: int = 0
    columns: dict[str, str] = field(default_factory=dict)    # field → header as written


def norm_header(h: Any) -> str:
    s = _BRACKETS.sub("", _text(h)).replace(" ", "").replace("\u3000", "").replace("：", "").replace(":", "")
    return s.lower()


def header_fields(headers: list[Any]) -> dict[str, int]:
    """Field → column index for a candidate header row; among several headers naming one field,
    the name earlier in :data:`COLUMNS` wins (memo keeps them all, see :func:`_memo_columns`)."""
    best: dict[str, tuple[int, int]] = {}
    for col, h in enumerate(headers):
        hit = _LOOKUP.get(norm_header(h))
        if hit is None:
            continue
        f, rank = hit
        if f not in best or rank < best[f][0]:
            best[f] = (rank, col)
    return {f: col for f, (rank, col) in best.items()}


def _is_bank_header(fields: dict[str, int]) -> bool:
    return "date" in fields and ("credit" in fields or "amount" in fields)


# ---- reading files --------------------------------------------------------------------------
def read_statement(path: str | Path, today: date) -> Statement:
    """Read a statement file; the file-level problem (unreadable, no header) is raised as
    :class:`ImportFileError`, line problems are in ``errors``."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix in (".sta", ".mt940", ".940", ".swi") or (suffix == ".txt" and _looks_mt940(p)):
            return _read_mt940(p)
        if suffix in (".xlsx", ".xlsm", ".xls"):
            rows, layout = _workbook_rows(p), suffix.lstrip(".")
        elif suffix in (".csv", ".tsv", ".txt", ""):
            rows, layout = _csv_rows(p), "csv"
        else:
            raise ImportFileError(RowError(0, "", p.name, "unsupported_bank_format", {"suffix": suffix}))
    except ImportFileError:
        raise
    except Exception as exc:    # a corrupt workbook, a missing file: one clear error, not a trace
        raise ImportFileError(RowError(0, "", p.name, "unreadable_file", {"detail": type(exc).__name__})) from exc
    return parse_rows(rows, layout, today)


def _looks_mt940(p: Path) -> bool:
    head = p.read_bytes()[:400].decode("latin-1")
    return ":20:" in head and (":60F:" in head or ":25:" in head)


def _csv_rows(p: Path) -> list[tuple[int, list]]:
    enc = _encoding(p)
    text = p.read_text(encoding=enc)
    sample = text[:8192]
    delim = "\t" if sample.count("\t") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    out, last = [], 0
    for cells in reader:
        out.append((last + 1, cells))
        last = reader.line_num
    return out


def _workbook_rows(p: Path) -> list[tuple[int, list]]:
    from python_calamine import CalamineWorkbook     # heavy import, only when a workbook arrives
    wb = CalamineWorkbook.from_path(str(p))
    sheet = wb.get_sheet_by_index(0)
    # skip_empty_area=False: row numbers stay those Excel shows, blank top rows included
    return [(i, list(cells)) for i, cells in enumerate(sheet.to_python(skip_empty_area=False), 1)]


def parse_rows(rows: list[tuple[int, list]], layout: str, today: date) -> Statement:
    """Find the header among the first rows, then read each data row; 合计 and note rows are passed over."""
    nonblank = ((n, cells) for n, cells in rows if any(_text(c) for c in cells))
    # the header below the title and account rows: the shared finder (domain/import_files.py),
    # with the bank vocabulary; a real header names at least three known columns
    first, _above, rest = find_header(nonblank, lambda h: norm_header(h) in _LOOKUP, min_known=3)
    if first is None or not _is_bank_header(header_fields(first[1])):
        raise ImportFileError(RowError(1, "", "", "no_bank_header"))
    header_line, headers = first
    fields = header_fields(headers)
    st = Statement(layout=layout, header_line=header_line,
                   columns={f: _text(headers[c]) for f, c in fields.items()})
    memo_cols = _memo_columns(headers)
    for n, cells in data_rows(rest):          # 合计/小计 and signature lines passed over
        if _is_footer(cells):                  # and the banks' own: 合计笔数：4, 汇总, 共计
            continue
        line, errors = _row(n, cells, fields, memo_cols, today)
        st.errors.extend(errors)
        if line is not None:
            st.lines.append(line)
    # an error names the column as the bank wrote it (贷方发生额, not credit)
    st.errors = [replace(e, header=st.columns.get(e.column, "")) for e in st.errors]
    if not st.errors:
        with_identities(st.lines)
    return st


def _memo_columns(headers: list[Any]) -> list[int]:
    return [c for c, h in enumerate(headers) if _LOOKUP.get(norm_header(h), ("",))[0] == "memo"]


def _is_footer(cells: list) -> bool:
    texts = [_text(c) for c in cells[:4]]
    return any(FOOTER.match(t) for t in texts if t)


def _cell(cells: list, fields: dict[str, int], f: str) -> Any:
    col = fields.get(f)
    return cells[col] if col is not None and col < len(cells) else None


def _money(v: Any) -> Decimal | None:
    if v is None or _text(v) in ("", "-", "--"):
        return None
    return parse_money(v)


def _row(n: int, cells: list, fields: dict[str, int], memo_cols: list[int], today: date) -> tuple[BankLine | None, list[RowError]]:
    errors: list[RowError] = []
    raw_date = _cell(cells, fields, "date")
    amounts: dict[str, Decimal | None] = {}
    for f in ("debit", "credit", "amount"):
        v = _cell(cells, fields, f)
        try:
            amounts[f] = _money(v)
        except AmountError:
            errors.append(RowError(n, f, _text(v), "bad_amount"))
    if errors:
        return None, errors
    if _text(raw_date) == "" and not any(amounts.values()):
        return None, []               # a note under the data ("以上信息仅供参考")
    try:
        booked = parse_cell_date(raw_date, today)
    except (DateError, ValueError, OverflowError):
        return None, [RowError(n, "date", _text(raw_date), "bad_date")]
    credit, debit, amount = amounts.get("credit"), amounts.get("debit"), amounts.get("amount")
    if credit and credit != ZERO:
        direction, value = "credit", credit
    elif debit and debit != ZERO:
        direction, value = "debit", debit
    elif amount and amount != ZERO:
        flag = _text(_cell(cells, fields, "flag")).lower()
        if flag in DEBIT_FLAGS:
            direction = "debit"
        elif flag in CREDIT_FLAGS:
            direction = "credit"
        elif flag == "" and "flag" not in fields:
            direction = "debit" if amount < 0 else "credit"
        else:
            return None, [RowError(n, "flag", flag, "bad_direction")]
        value = amount
    else:
        return None, []               # a zero line (a waived fee): nothing moved
    value = abs(value)
    if direction == "credit":
        payer = _text(_cell(cells, fields, "counterparty")) or _text(_cell(cells, fields, "payer_name"))
        account = _text(_cell(cells, fields, "account")) or _text(_cell(cells, fields, "payer_account"))
    else:
        payer = _text(_cell(cells, fields, "counterparty")) or _text(_cell(cells, fields, "payee_name"))
        account = _text(_cell(cells, fields, "account")) or _text(_cell(cells, fields, "payee_account"))
    memo_parts: list[str] = []
    for c in memo_cols:
        t = _text(cells[c]) if c < len(cells) else ""
        if t and t not in memo_parts:
            memo_parts.append(t)
    currency = _currency(_text(_cell(cells, fields, "currency")))
    return BankLine(line=n, booked_on=booked, direction=direction, amount=value, payer=payer,
                    account=account.replace(" ", ""), memo=" ".join(memo_parts),
                    ref=_text(_cell(cells, fields, "ref")), currency=currency), []


_CURRENCIES = {"人民币": "CNY", "rmb": "CNY", "cny": "CNY", "": "CNY", "美元": "USD", "usd": "USD", "港币": "HKD",
               "港元": "HKD", "hkd": "HKD", "欧元": "EUR", "eur": "EUR", "日元": "JPY", "jpy": "JPY"}


def _currency(s: str) -> str:
    return _CURRENCIES.get(s.lower(), s.upper()[:3] or "CNY")


# ---- MT940 ----------------------------------------------------------------------------------
_MT86 = re.compile(r"/(NAME|ORDP|ACCT|IBAN|REMI|EREF|BENM)/")


def _read_mt940(p: Path) -> Statement:
    import mt940     # the maintained parser of SWIFT MT940 (PyPI: mt-940)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("gb18030", errors="replace")
    try:
        transactions = mt940.models.Transactions()
        transactions.parse(text)
    except Exception as exc:
        raise ImportFileError(RowError(0, "", p.name, "unreadable_file", {"detail": type(exc).__name__})) from exc
    st = Statement(layout="mt940")
    default_currency = str(transactions.data.get("currency") or "CNY")
    for n, t in enumerate(transactions, 1):
        d = t.data
        amt = d.get("amount")
        if amt is None or d.get("date") is None:
            st.errors.append(RowError(n, "amount", "", "bad_amount"))
            continue
        value = Decimal(str(amt.amount))
        status = str(d.get("status") or "")
        direction = "debit" if status.startswith(("D", "RC")) or value < 0 else "credit"
        details = str(d.get("transaction_details") or "").replace("\n", "")
        parts = _structured_86(details)
        ref = str(d.get("bank_reference") or "") or str(d.get("customer_reference") or "")
        if ref.upper() == "NONREF":
            ref = ""
        st.lines.append(BankLine(line=n, booked_on=d["date"], direction=direction, amount=abs(value).quantize(Decimal("0.01")),
                                 payer=parts.get("NAME") or parts.get("ORDP") or parts.get("BENM", ""),
                                 account=parts.get("ACCT") or parts.get("IBAN", ""),
                                 memo=parts.get("REMI", details if not parts else ""),
                                 ref=ref, currency=str(getattr(amt, "currency", None) or default_currency)))
    if not st.errors:
        with_identities(st.lines)
    return st


def _structured_86(details: str) -> dict[str, str]:
    """``/NAME/恒达精密/ACCT/6222.../REMI/FP2026001`` → its parts; free text → {}."""
    pieces = _MT86.split(details)
    if len(pieces) < 3:
        return {}
    return {pieces[i]: pieces[i + 1].strip().rstrip("/") for i in range(1, len(pieces) - 1, 2)}


# ---- identity ---------------------------------------------------------------------------------
def identity(line: BankLine) -> str:
    """The bank's serial, else a hash of what the line says (without the line number, so a
    statement exported again with other rows around it gives the same identity)."""
    if line.ref:
        return line.ref
    blob = "|".join([line.booked_on.isoformat(), line.direction, f"{line.amount:.2f}", line.currency,
                     line.payer, line.account, line.memo])
    return "h:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def with_identities(lines: list[BankLine]) -> None:
    """Fill each line's identity; identical lines in one file (two equal transfers the same day
    without a serial) are told apart by their order: ``h:…#2``."""
    seen: dict[str, int] = {}
    for ln in lines:
        base = identity(ln)
        seen[base] = seen.get(base, 0) + 1
        ln.identity = base if seen[base] == 1 else f"{base}#{seen[base]}"
