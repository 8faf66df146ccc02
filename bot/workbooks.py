"""The report workbooks (XLSX, openpyxl): what finance opens in Excel next to the chat message.

Figures are written as numbers (Decimal, exact to the cent) with a thousands format, so the
sheet sums and sorts; every header comes from ``templates/reports/xlsx.j2``.
"""
from __future__ import annotations

import io
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from bot.charts import bucket_label
from bot.render import environment
from domain.export_cells import is_risky
from storage.aging import AgingReport

MONEY = "#,##0.00"
# the KPI and commission sheets: money with its currency sign, percentages as the chat shows
# them (6.2 reads "6.2%"); still numbers, so the sheet sums and sorts
CURRENCY = '"¥"#,##0.00'
PERCENT = '0.0"%"'
# invoices listed on a 明细 sheet: past this a workbook takes minutes and gigabytes to write
# (openpyxl keeps every cell); the sheet then says so and where the whole list is
DETAIL_MAX_ROWS = 50_000
PCT = "0.0"


def labels():
    return environment().get_template("reports/xlsx.j2").module


class _SafeSheet:
    """A worksheet whose appended text is always text: openpyxl stores a string starting with
    ``=`` as a formula, so a customer named ``=HYPERLINK(...)`` would run in finance's Excel.
    Risky text (domain/export_cells.py) is stored as a string with Excel's quote prefix;
    numbers stay numbers."""

    def __init__(self, ws):
        object.__setattr__(self, "_ws", ws)

    def __getattr__(self, name):
        return getattr(self._ws, name)

    def __setattr__(self, name, value) -> None:      # ws.title = ... reaches the worksheet
        setattr(self._ws, name, value)

    def __getitem__(self, key):
        return self._ws[key]

    def append(self, values) -> None:
        values = list(values)
        self._ws.append(values)
        row = self._ws.max_row
        for col, v in enumerate(values, start=1):
            if is_risky(v):
                cell = self._ws.cell(row=row, column=col)
                cell.value = v
                cell.data_type = "s"
                cell.quotePrefix = True


def _sheet(wb: Workbook, title: str, header: list[str], first: bool = False):
    ws = _SafeSheet(wb.active if first else wb.create_sheet())
    ws.title = title
    if header:
        ws.append(header)
        for cell in ws[1]:
            cell.font = Font(bold=True)
    return ws


def _formats(ws, money_cols=(), pct_cols=()) -> None:
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if cell.column in money_cols:
                cell.number_format = MONEY
            elif cell.column in pct_cols:
                cell.number_format = PCT
    for i, col in enumerate(ws.columns, start=1):
        width = max(len(str(c.value or "")) for c in col)
        ws.column_dimensions[get_column_letter(i)].width = min(40, max(10, width * 2))


def _num(v) -> Decimal | None:
    return None if v is None else Decimal(v)


def _summary(wb, L, rows: list[tuple[str, object]]):
    ws = _sheet(wb, L.sheets["summary"], [], first=True)
    for k, v in rows:
        ws.append([L.summary[k], v])
    ws.column_dimensions["A"].width = 22
    ws.column_dimensions["B"].width = 22
    plain = {L.summary[k] for k in ("dso", "overdue_ratio", "over_90_share", "collection_rate")}
    for row in ws.iter_rows():
        if isinstance(row[1].value, Decimal):
            row[1].number_format = PCT if row[0].value in plain else MONEY
    return ws


def _aging_sheet(wb, L, report: AgingReport, previous: AgingReport) -> None:
    ws = _sheet(wb, L.sheets["aging"], list(L.aging))
    for b, p in zip(report.buckets, previous.buckets):
        ws.append([bucket_label(b.label), b.amount, b.count, b.share(report.total), p.amount, b.amount - p.amount])
    ws.append([L.summary["total"], report.total, report.count, Decimal("100.0") if report.total else Decimal("0.0"),
               previous.total, report.total - previous.total])
    _formats(ws, money_cols=(2, 5, 6), pct_cols=(4,))


def _customers_sheet(wb, L, top) -> None:
    ws = _sheet(wb, L.sheets["customers"], list(L.customers))
    for i, t in enumerate(top, start=1):
        ws.append([i, t.name, t.overdue, t.max_days])
    _formats(ws, money_cols=(3,))


def _detail_sheet(wb, L, report: AgingReport, lines) -> None:
    """明细: every invoice open on the report's date, as of that date; the lines add up to the
    report's total (storage/report_detail.py)."""
    ws = _sheet(wb, L.sheets["detail"], list(L.detail))
    cut = len(lines) > DETAIL_MAX_ROWS
    lines = lines[:DETAIL_MAX_ROWS]
    for x in lines:
        ws.append([x.customer_code, x.customer_name, x.invoice_no, x.contract_no, x.rep, x.issue_date, x.due_date,
                   x.currency, x.open_amount, x.base_amount, x.days_overdue,
                   bucket_label(_bucket(report, x.days_overdue))])
    for row in ws.iter_rows(min_row=2):
        for cell in (row[5], row[6]):
            cell.number_format = "yyyy-mm-dd"
    _formats(ws, money_cols=(9, 10))
    if cut:
        ws.append([L.detail_cut.format(n=DETAIL_MAX_ROWS, as_of=report.as_of.isoformat())])


def _kpi_sheet(wb, L, k, days: int) -> None:
    """考核: the month's KPI table per rep (storage/kpi.py, the figures /kpi shows), the scope's
    total last."""
    ws = _sheet(wb, L.sheets["kpi"], list(L.kpi))
    rows = [(r.name or L.unassigned, r) for r in k.reps] + [(L.kpi_total, k)]
    for name, r in rows:
        ws.append([name, _num(r.collection_rate), _num(r.timeliness), _num(r.overdue_ratio), _num(r.over_90_share),
                   r.due_in_month, r.collected, r.open, r.overdue, r.over_90, r.on_time, r.pushed])
    _formats(ws, pct_cols=(2, 3, 4, 5))
    for row in ws.iter_rows(min_row=2):
        for cell in row[1:5]:
            cell.number_format = PERCENT
        for cell in row[5:10]:
            cell.number_format = CURRENCY
    ws.append([])
    ws.append([L.kpi_note.format(days=days)])


def _commission_sheet(wb, L, m, tiers) -> None:
    """提成: per rep, the month's collections, the part of them in each tier, the commission and
    the tiers used (storage/commission.py, the figures /commission shows)."""
    heads = [L.tier_head(tiers, i) for i in range(len(tiers))]
    ws = _sheet(wb, L.sheets["commission"], [*L.commission, *heads])
    for r in m.reps:
        ws.append([r.name, r.collections, r.collected, r.commission, L.tiers_used(tiers, r.tiers_used), *r.by_tier])
    total = m.by_tier or [Decimal("0.00")] * len(tiers)
    ws.append([L.kpi_total, m.collections, m.collected, m.commission,
               L.tiers_used(tiers, [i for i, part in enumerate(total) if part > 0]), *total])
    _formats(ws)
    for row in ws.iter_rows(min_row=2):
        for cell in (row[2], row[3], *row[5:]):
            cell.number_format = CURRENCY
    ws.append([])
    ws.append([L.commission_period.format(start=m.month_start.isoformat(), end=m.as_of.isoformat())])


def _bucket(report: AgingReport, days: int) -> str:
    """The label of the report's bucket for an invoice this many days overdue."""
    if days <= 0:
        return report.buckets[0].label
    for b in report.buckets[1:-1]:
        if days <= int(b.label.split("-")[1]):
            return b.label
    return report.buckets[-1].label


def _save(wb: Workbook) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def weekly(company: str, report: AgingReport, last_week: AgingReport, teams: list[dict], top, lines=()) -> bytes:
    """Summary, aging by bucket against last week, aging by team, the top overdue customers, the
    invoices (明细)."""
    L = labels()
    wb = Workbook()
    _summary(wb, L, [("title_weekly", company), ("as_of", report.as_of.isoformat()), ("total", report.total),
                     ("count", report.count), ("overdue", report.overdue),
                     ("last", last_week.total), ("change", report.total - last_week.total)])
    _aging_sheet(wb, L, report, last_week)
    ws = _sheet(wb, L.sheets["teams"], [L.team_head, *[bucket_label(b.label) for b in report.buckets], *L.teams_tail])
    for t in teams:
        ws.append([t["name"] or L.no_team, *[b.amount for b in t["buckets"]], t["total"], t["overdue"]])
    _formats(ws, money_cols=tuple(range(2, len(report.buckets) + 4)))
    _customers_sheet(wb, L, top)
    _detail_sheet(wb, L, report, lines)
    return _save(wb)


def monthly(company: str, scope_label: str, report: AgingReport, last_month: AgingReport, k, top,
            lines=(), commission=None, tiers=(), timeliness_days: int = 30) -> bytes:
    """Summary KPIs, aging against last month-end, per-rep table, the KPI table (考核), the
    commission (提成, when given with its tiers), the top overdue customers, the invoices (明细)."""
    L = labels()
    wb = Workbook()
    _summary(wb, L, [("title_monthly", company), ("scope", scope_label), ("as_of", report.as_of.isoformat()),
                     ("total", report.total), ("count", report.count), ("overdue", report.overdue),
                     ("overdue_ratio", _num(k.overdue_ratio)), ("over_90_share", _num(k.over_90_share)),
                     ("collection_rate", _num(k.collection_rate)), ("collected", k.collected),
                     ("due_in_month", k.due_in_month), ("dso", _num(k.dso)),
                     ("last", last_month.total), ("change", report.total - last_month.total)])
    _aging_sheet(wb, L, report, last_month)
    ws = _sheet(wb, L.sheets["reps"], list(L.reps))
    for r in k.reps:
        ws.append([r.name or L.unassigned, r.open, r.overdue, r.due_in_month, r.collected, _num(r.collection_rate),
                   r.pushed, r.on_time, _num(r.timeliness)])
    _formats(ws, money_cols=(2, 3, 4, 5), pct_cols=(6, 9))
    _kpi_sheet(wb, L, k, timeliness_days)
    if commission is not None:
        _commission_sheet(wb, L, commission, tiers)
    _customers_sheet(wb, L, top)
    _detail_sheet(wb, L, report, lines)
    return _save(wb)
