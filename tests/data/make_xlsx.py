"""Regenerate ``receivables.xlsx``, the Excel fixture for the import tests.

Run: ``.venv/bin/python tests/data/make_xlsx.py``. The workbook imitates a hand-kept ledger:
an instructions sheet first (the importer must pick the sheet named after the kind), real date
cells, a due date typed as a bare Excel serial number, amounts both as numbers and as text
(``12,345.60``, ``¥3.5万``), a blank row in the middle, and a full-width bracket plus a ``*``
required marker in the headers.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).parent

HEADERS = ["发票号", "合同编号", "客户名称", "开票日期", "到期日*", "应收金额（元）", "币种", "业务员", "付款条件"]
ROWS = [
    ["HX-2026-001", "HT-2026-001", "上海恒信机电有限公司", datetime(2026, 8, 31), datetime(2026, 9, 30),
     "12,345.60", "人民币", None, "月结30天"],
    ["HX-2026-002", "HT-2026-002", "上海恒信机电有限公司", datetime(2026, 9, 1), datetime(2026, 10, 31),
     86000, "RMB", None, "月结60天"],
    ["HX-2026-003", "HT-2026-003", "C001", date(2026, 10, 31), date(2026, 11, 30), 20000.0, "CNY", "E001",
     "月结30天"],
    [None] * 9,                                          # a blank line the clerk left in
    ["HR-2026-001", "HT-2026-011", "苏州华瑞电子科技有限公司", datetime(2026, 10, 15), 46361, 45600.5, None,
     "李娜", "月结45天"],                                  # 46361 = 2026-12-05 as an Excel serial
    ["YH-2026-001", "HT-2026-021", "C003", "2026/09/10", "2026年10月10日", "¥3.5万", "人民币", None,
     "预付30%，到货60%，质保金10%"],
    ["YH-2026-002", "HT-2026-022", "C003", datetime(2026, 10, 20), datetime(2026, 11, 20), 28000, "人民币",
     None, "月结30天"],
    ["HD-2026-001", "HT-2026-031", "深圳宏达进出口贸易有限公司", datetime(2026, 10, 8), datetime(2026, 12, 7),
     "15,800.00", "美元", None, "T/T 60 days"],
    ["HD-2026-002", "HT-2026-032", "C004", datetime(2026, 10, 2), datetime(2026, 12, 1), "3,200.00", "人民币",
     None, "月结60天"],
    ["HH-2026-001", "HT-2026-041", "香港辉煌照明有限公司", datetime(2026, 11, 16), datetime(2027, 1, 15), 120000,
     "美元", None, "T/T 60 days"],
]


def build(path: Path = HERE / "receivables.xlsx") -> Path:
    wb = Workbook()
    notes = wb.active
    notes.title = "说明"
    notes.append(["Fill in one invoice per row on the sheet 应收台账; columns marked * are required."])
    ws = wb.create_sheet("应收台账")
    ws.append(HEADERS)
    for row in ROWS:
        ws.append(row)
    for cells in ws.iter_rows(min_row=2, min_col=4, max_col=5):
        for cell in cells:
            if isinstance(cell.value, (date, datetime)):
                cell.number_format = "yyyy-mm-dd"
    # fixed document times so that regenerating gives the same content
    wb.properties.created = wb.properties.modified = datetime(2026, 11, 30, 9, 0, 0)
    wb.save(path)
    return path


if __name__ == "__main__":
    print(build())
