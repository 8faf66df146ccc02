"""A small ledger the bank statement fixtures (tests/data/bank/) were written against.

  customer                              rep    invoice        due         open
  HD  深圳市恒达精密机械有限公司           rep1   FP2026-0001    2026-10-31  11,300.00
                                               FP2026-0002    2026-11-10   3,000.00
                                               FP2026-0003    2026-11-20   6,000.00
  HE  东莞恒达精密电子有限公司             rep2   HE-0001        2026-11-15   9,999.00   (a near namesake)
  DS  上海东升贸易有限责任公司             rep2   DS-0001        2026-11-01   5,000.00
                                               DS-0002        2026-11-05   3,000.00
                                               DS-0003        2026-11-25   7,000.00

What each fixture's four lines should become:
  1  11,300.00 from 深圳市恒达精密机械有限公司, memo FP2026-0001 → applied to HD, FP2026-0001
  2   2,000.00 debit                                               → ignored
  3   8,000.00 from 上海东升贸易 (no legal form)                     → applied to DS, DS-0001 + DS-0002 (exact set)
  4   5,650.00 from 张伟 (a person), memo 恒达精密 FP2026-0003 (open 6,000) → unclaimed, HD suggested
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from storage.models import Customer, Person, Receivable
from tests.ledger_fixture import PEOPLE, accounts

NOW = datetime(2026, 12, 3, 1, 0, tzinfo=timezone.utc)      # 09:00 in Shanghai
TODAY = date(2026, 12, 3)
D = Decimal

CUSTOMERS = [("HD", "深圳市恒达精密机械有限公司", "rep1"), ("HE", "东莞恒达精密电子有限公司", "rep2"),
             ("DS", "上海东升贸易有限责任公司", "rep2")]
INVOICES = [("FP2026-0001", "HD", date(2026, 10, 31), "11300.00"), ("FP2026-0002", "HD", date(2026, 11, 10), "3000.00"),
            ("FP2026-0003", "HD", date(2026, 11, 20), "6000.00"), ("HE-0001", "HE", date(2026, 11, 15), "9999.00"),
            ("DS-0001", "DS", date(2026, 11, 1), "5000.00"), ("DS-0002", "DS", date(2026, 11, 5), "3000.00"),
            ("DS-0003", "DS", date(2026, 11, 25), "7000.00")]


async def build(session) -> dict[str, Customer]:
    for pid, name, role, sup, team, wx, dt in PEOPLE:
        session.add(Person(id=pid, name=name, role=role, supervisor_id=sup, team=team, email=f"{pid}@example.com",
                           accounts=accounts(wecom=wx, dingtalk=dt)))
        await session.flush()
    customers = {}
    for code, name, rep in CUSTOMERS:
        c = Customer(code=code, name=name, grade="B", credit_limit=D("100000"), rep_id=rep, region="华东")
        session.add(c)
        await session.flush()
        customers[code] = c
    for no, code, due, amount in INVOICES:
        c = customers[code]
        session.add(Receivable(invoice_no=no, contract_no="", customer_id=c.id, rep_id=c.rep_id,
                               issue_date=date(2026, 10, 1), due_date=due, amount=D(amount), open_amount=D(amount),
                               currency="CNY", created_at=NOW))
    await session.flush()
    return customers
