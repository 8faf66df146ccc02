"""Writes the bank statement fixtures of this folder, one per bank layout (tests/test_bank_import.py).

Run from the repository root: ``python tests/data/bank/make_fixtures.py`` (the .xls needs ``xlwt``,
which only this script uses: ``pip install --target /tmp/xlwt xlwt; PYTHONPATH=/tmp/xlwt ...``).
Every file carries the same four movements, written the way that bank writes them:

1. 2026-12-01 credit 11,300.00 from 深圳市恒达精密机械有限公司, memo naming invoice FP2026-0001
2. 2026-12-01 debit 2,000.00 to 某物流有限公司 (freight): kept, never applied
3. 2026-12-02 credit 8,000.00 from 上海东升贸易 (short name), memo 货款
4. 2026-12-02 credit 5,650.00 from 张伟 (a person), memo 恒达精密 FP2026-0003
"""
import csv
from pathlib import Path

import openpyxl

HERE = Path(__file__).parent
ACCT = "6222020200112233445"
LINES = [
    ("2026-12-01", "credit", "11,300.00", "深圳市恒达精密机械有限公司", "4000021309200012345", "货款 发票号FP2026-0001", "SN0001"),
    ("2026-12-01", "debit", "2,000.00", "某物流有限公司", "31001520313050001234", "运费", "SN0002"),
    ("2026-12-02", "credit", "8,000.00", "上海东升贸易", "31050161393600000777", "货款", "SN0003"),
    ("2026-12-02", "credit", "5,650.00", "张伟", "6217000010001234567", "恒达精密 FP2026-0003", "SN0004"),
]


def _split(direction, amount):
    return ("", amount) if direction == "credit" else (amount, "")


def icbc():      # 工商银行: GBK CSV, title and account rows, 借方/贷方发生额, 对方单位名称, 合计 below
    rows = [["中国工商银行账户历史明细（2026-12-01至2026-12-02）"], [f"账号：{ACCT}", "户名：本公司"], [],
            ["凭证号", "本方账号", "对方账号", "交易时间", "借/贷", "借方发生额", "贷方发生额", "对方行号", "摘要",
             "用途", "对方单位名称", "余额"]]
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        debit, credit = _split(dirn, amt)
        rows.append([sn, ACCT, acct, d.replace("-", "") + " 10:15:00", "贷" if dirn == "credit" else "借", debit,
                     credit, "", memo.split(" ")[0], " ".join(memo.split(" ")[1:]), payer, "100,000.00"])
    rows.append(["合计", "", "", "", "", "2,000.00", "24,950.00"])
    with (HERE / "icbc.csv").open("w", encoding="gbk", newline="") as f:
        csv.writer(f).writerows(rows)


def ccb():       # 建设银行: XLSX, 交易时间, headers with （支取）/（收入）, 账户明细编号-交易流水号
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["中国建设银行对公账户交易明细"])
    ws.append(["账号", ACCT, "币种", "人民币"])
    ws.append(["交易时间", "借方发生额（支取）", "贷方发生额（收入）", "余额", "币种", "对方户名", "对方账号",
               "对方开户机构", "记账日期", "摘要", "备注", "账户明细编号-交易流水号"])
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        debit, credit = _split(dirn, amt)
        ws.append([d + " 09:30:12", float(debit.replace(",", "")) if debit else None,
                   float(credit.replace(",", "")) if credit else None, 100000.0, "人民币", payer, acct, "建行深圳分行",
                   d.replace("-", ""), "转账", memo, "CCB" + sn])
    ws.append(["合计", 2000.0, 24950.0])
    wb.save(HERE / "ccb.xlsx")


def abc():       # 农业银行: old XLS, 收入金额/支出金额, 交易日期 + time, 交易附言
    import xlwt
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("明细")
    rows = [["中国农业银行账户明细"], [f"账户：{ACCT}"],
            ["交易日期", "交易时间", "收入金额", "支出金额", "本次余额", "对方账号", "对方户名", "交易用途", "交易附言"]]
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        debit, credit = _split(dirn, amt)
        rows.append([d.replace("-", ""), "101500", credit, debit, "100,000.00", acct, payer, "", memo])
    rows.append(["合计", "", "24,950.00", "2,000.00"])
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            ws.write(r, c, v)
    wb.save(str(HERE / "abc.xls"))


def boc():       # 中国银行: UTF-8 with BOM, one signed 交易金额, 付款人/收款人 columns, 交易流水号
    rows = [["中国银行交易流水明细清单"], [f"账号:{ACCT}"], [],
            ["交易日期", "交易时间", "交易类型", "交易金额", "交易后余额", "付款人账号", "付款人名称", "收款人账号",
             "收款人名称", "摘要", "用途", "交易流水号"]]
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        if dirn == "credit":
            rows.append([d.replace("-", ""), "10:15:00", "转账", amt, "100,000.00", acct, payer, ACCT, "本公司",
                         "", memo, "BOC" + sn])
        else:
            rows.append([d.replace("-", ""), "10:15:00", "转账", "-" + amt, "100,000.00", ACCT, "本公司", acct, payer,
                         "", memo, "BOC" + sn])
    rows.append(["合计笔数：4"])
    with (HERE / "boc.csv").open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)


def cmb():       # 招商银行: XLSX, 交易日, 借方金额/贷方金额, 收/付方名称, 流水号, 其它摘要
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["招商银行交易明细"])
    ws.append([f"账号：{ACCT}", "", "币种：人民币"])
    ws.append([])
    ws.append(["交易日", "交易时间", "起息日", "交易类型", "借方金额", "贷方金额", "余额", "摘要", "流水号", "业务名称",
               "用途", "收/付方分行名", "收/付方名称", "收/付方帐号"])
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        debit, credit = _split(dirn, amt)
        ws.append([d.replace("-", ""), "10:15:00", d.replace("-", ""), "汇入汇款", debit, credit, "100,000.00",
                   "转账", "CMB" + sn, "", memo, "", payer, acct])
    ws.append(["", "", "", "合计", "2,000.00", "24,950.00"])
    wb.save(HERE / "cmb.xlsx")


def bocom():     # 交通银行: tab-separated, 借贷标志 + 交易金额, 附言
    rows = [["交通银行账户交易明细查询"], [f"查询账号\t{ACCT}"],
            ["交易时间", "借贷标志", "交易金额", "余额", "对方账号", "对方户名", "摘要", "附言", "流水号"]]
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        rows.append([d + " 10:15:00", "贷" if dirn == "credit" else "借", amt, "100,000.00", acct, payer, "转账", memo,
                     "BCM" + sn])
    rows.append(["总计", "", "26,950.00"])
    with (HERE / "bocom.csv").open("w", encoding="gbk", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        for r in rows:
            w.writerow(r if len(r) > 1 else r[0].split("\t"))


def spdb():      # 浦发银行: UTF-8, 交易日期 yyyy/mm/dd, 借方金额/贷方金额, no serial (identity by hash)
    rows = [["上海浦东发展银行 账户明细"], [f"账号：{ACCT}", "户名：本公司"],
            ["交易日期", "交易时间", "借方金额", "贷方金额", "余额", "对方账号", "对方户名", "摘要", "附言"]]
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        debit, credit = _split(dirn, amt)
        rows.append([d.replace("-", "/"), "10:15:00", debit, credit, "100,000.00", acct, payer, "转账", memo])
    rows.append(["本页合计", "", "2,000.00", "24,950.00"])
    with (HERE / "spdb.csv").open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def mt940():     # SWIFT MT940 with a structured :86: (NAME/ACCT/REMI)
    entries = []
    for d, dirn, amt, payer, acct, memo, sn in LINES:
        ymd = d.replace("-", "")[2:]
        mark = "C" if dirn == "credit" else "D"
        entries.append(f":61:{ymd}{ymd[2:]}{mark}{amt.replace(',', '').replace('.', ',')}NTRF{sn}//MT{sn}\n"
                       f":86:/NAME/{payer}/ACCT/{acct}/REMI/{memo}\n")
    text = (":20:STMT20261202\n:25:" + ACCT + "\n:28C:1/1\n:60F:C261130CNY100000,00\n" + "".join(entries)
            + ":62F:C261202CNY122950,00\n")
    (HERE / "statement.sta").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    for make in (icbc, ccb, abc, boc, cmb, bocom, spdb, mt940):
        make()
