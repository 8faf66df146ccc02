"""Writes the ERP export fixtures in this folder, laid out as the systems export them: a title
(often merged across the sheet) and the query's conditions above the header, one line per item
(a multi-line invoice repeats its number), a 合计 row and the clerk's signature line below.

    pip install xlwt openpyxl          # xlwt writes the genuine Excel 97–2003 .xls (BIFF8)
    python tests/data/erp/make_erp_files.py

The files are committed; this script says how they were made. Their customers and reps are
those of tests/data/customers_gbk.csv and people.csv. tests/test_erp_files.py states, invoice by
invoice, what they hold and checks the aging they produce against its own computation.
"""
from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent


def u8_xls() -> None:
    """用友 U8 销售发票列表 (detail), exported as .xls: real date cells, numbers as numbers."""
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("销售发票列表")
    day = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    money = xlwt.easyxf(num_format_str="#,##0.00")
    header = ["发票号", "开票日期", "客户编码", "客户简称", "业务员", "存货名称", "数量", "币种",
              "原币金额", "原币税额", "原币价税合计", "本币价税合计", "到期日"]
    ws.write_merge(0, 0, 0, len(header) - 1, "销售发票列表")
    ws.write(1, 0, "开票日期：2026-07-01 至 2026-11-30    币种：人民币")
    for c, h in enumerate(header):
        ws.write(3, c, h)
    rows = [
        ("U8-2607001", date(2026, 7, 5), "C001", "恒信机电", "张伟", "LED筒灯", 200, "人民币",
         10000.00, 1300.00, 11300.00, 11300.00, date(2026, 8, 4)),
        ("U8-2607001", date(2026, 7, 5), "C001", "恒信机电", "张伟", "LED面板灯", 50, "人民币",
         5000.00, 650.00, 5650.00, 5650.00, date(2026, 8, 4)),
        ("U8-2608015", date(2026, 8, 20), "C002", "华瑞电子", "李娜", "驱动电源", 1000, "人民币",
         8849.56, 1150.44, 10000.00, 10000.00, date(2026, 10, 19)),
        ("U8-2610003", date(2026, 10, 10), "C005", "明光灯饰", "", "灯带", 300, "人民币",
         2654.87, 345.13, 3000.00, 3000.00, date(2026, 12, 9)),
    ]
    r = 4
    for row in rows:
        for c, v in enumerate(row):
            style = day if isinstance(v, date) else money if isinstance(v, float) else None
            ws.write(r, c, v, style) if style else ws.write(r, c, v)
        r += 1
    ws.write(r, 0, "合计")
    for c, v in ((6, 1550), (8, 26504.43), (9, 3445.57), (10, 29950.00), (11, 29950.00)):
        ws.write(r, c, v)
    ws.write(r + 2, 0, "制表人：陈静")
    ws.write(r + 2, 4, "打印日期：2026-12-01")
    wb.save(str(HERE / "U8_销售发票列表.xls"))


def k3_xlsx() -> None:
    """金蝶 K3 WISE 销售发票序时簿: a merged title; dates as K3 prints them, 26-9-1."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "销售发票序时簿"
    header = ["日期", "发票号码", "购货单位", "收款日期", "币别", "产品名称", "价税合计", "本位币价税合计", "业务员", "部门"]
    ws.append(["销售发票序时簿"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
    ws.append([])
    ws.append(header)
    ws.append(["26-9-1", "ZP26090011", "广州粤海照明器材有限公司", "26-10-1", "人民币", "吸顶灯", 23400, 23400, "刘洋", "华南组"])
    ws.append(["26-9-1", "ZP26090011", "广州粤海照明器材有限公司", "26-10-1", "人民币", "射灯", 1600, 1600, "刘洋", "华南组"])
    ws.append(["26-6-15", "ZP26060002", "深圳宏达进出口贸易有限公司", "26-7-15", "人民币", "投光灯", 48000, 48000, "刘洋", "华南组"])
    ws.append(["合计", None, None, None, None, None, 73000, 73000, None, None])
    wb.save(HERE / "K3_销售发票序时簿.xlsx")


def kingdee_cloud_xlsx() -> None:
    """金蝶云星空 应收单列表, header fields repeated on every entry line."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "应收单"
    header = ["单据编号", "业务日期", "到期日", "客户", "币别", "物料名称", "计价数量", "含税单价", "价税合计",
              "价税合计本位币", "销售员", "收款条件", "单据状态"]
    ws.append(["应收单"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
    ws.append(["组织：华东照明有限公司", None, None, None, None, None, None, None, None, None, None, "期间：2026年第11期"])
    ws.append(header)
    ws.append(["AR00000101", date(2026, 9, 15), date(2026, 10, 15), "上海恒信机电有限公司", "人民币", "轨道灯",
               100, 200, 20000, 20000, "张伟", "月结30天", "已审核"])
    ws.append(["AR00000102", date(2026, 11, 1), date(2026, 12, 31), "香港辉煌照明有限公司", "人民币", "水晶吊灯",
               2, 6172.8, 12345.6, 12345.6, "李娜", "月结60天", "已审核"])
    ws.append(["AR00000102", date(2026, 11, 1), date(2026, 12, 31), "香港辉煌照明有限公司", "人民币", "安装辅料",
               1, 654.4, 654.4, 654.4, "李娜", "月结60天", "已审核"])
    ws.append(["AR00000103", date(2026, 8, 1), date(2026, 8, 31), "苏州华瑞电子科技有限公司", "人民币", "灯具配件",
               500, 15, 7500, 7500, "李娜", "月结30天", "已审核"])
    ws.append(["合计", None, None, None, None, None, 603, None, 40500, 40500])
    wb.save(HERE / "金蝶云星空_应收单列表.xlsx")


def yonsuite_csv() -> None:
    """YonSuite 应收单 exported as CSV (UTF-8 with BOM), amounts with thousands separators."""
    with (HERE / "YonSuite_应收单.csv").open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["应收单列表"])
        w.writerow(["导出时间：2026-12-01 10:00:00"])
        w.writerow(["单据编号", "单据日期", "客户编码", "客户名称", "币种", "原币金额", "本币金额", "到期日", "业务员", "部门", "备注"])
        w.writerow(["YS-AR-0001", "2026-10-20", "C004", "深圳宏达进出口贸易有限公司", "人民币", "8,000.00", "8,000.00",
                    "2026-11-19", "刘洋", "华南组", ""])
        w.writerow(["YS-AR-0002", "2026-11-05", "C003", "广州粤海照明器材有限公司", "人民币", "4,321.09", "4,321.09",
                    "2026-11-20", "", "", "样品补差"])
        w.writerow(["YS-AR-0003", "2026-09-30", "C006", "香港辉煌照明有限公司", "人民币", "60,000.00", "60,000.00",
                    "2026-10-30", "李娜", "华东一组", ""])
        w.writerow(["合计", "", "", "", "", "72,321.09", "72,321.09", "", "", "", ""])


if __name__ == "__main__":
    u8_xls()
    k3_xlsx()
    kingdee_cloud_xlsx()
    yonsuite_csv()
