"""A small company whose every figure can be computed by hand (see the table in each test).

Today is Monday 2026-11-23 (a working day). Open balances on that day:

  invoice  customer  rep   due         amount      paid/wo    open       days  bucket
  INV-A1   C1 恒信   rep1  2026-11-30  10,000.00   -          10,000.00  -7    not_due
  INV-A2   C1 恒信   rep1  2026-11-13  20,000.00   5,000 pd   15,000.00  10    1-30
  INV-A3   C1 恒信   rep1  2026-09-24  30,000.00   -          30,000.00  60    31-60
  INV-B1   C2 明达   rep1  2026-08-25   8,000.50   disputed    8,000.50  90    61-90
  INV-B2   C2 明达   rep1  2026-05-01  12,345.67   -          12,345.67  206   90+
  INV-C1   C3 顺发   rep2  2026-10-24   5,000.00   -           5,000.00  30    1-30
  INV-C2   C3 顺发   rep2  2026-07-01  40,000.00   written off     0.00  -     (excluded)
  INV-D1   C4 Harbor rep2  2026-11-03  USD 1,000   -        7,100.00 CNY 20   1-30 (at 7.10)

  totals: not_due 10,000.00 (1) · 1-30 27,100.00 (3) · 31-60 30,000.00 (1) · 61-90 8,000.50 (1)
          · 90+ 12,345.67 (1) · total 87,446.17 (7)
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from storage import collection, ledger
from storage.models import Contact, Customer, Person, PersonAccount, Receivable, WriteOff

TODAY = date(2026, 11, 23)
D = Decimal

PEOPLE = [
    # id, name, role, supervisor, team, wecom, dingtalk
    ("gm", "周总", "manager", None, "", "wx_gm", "dt_gm"),
    ("sup1", "王主管", "supervisor", None, "华东", "wx_sup1", "dt_sup1"),
    ("sup2", "赵主管", "supervisor", None, "华南", "wx_sup2", "dt_sup2"),
    ("rep1", "张伟", "rep", "sup1", "华东", "wx_rep1", "dt_rep1"),
    ("rep2", "李娜", "rep", "sup2", "华南", "wx_rep2", "dt_rep2"),
    ("fin1", "钱会计", "finance", None, "", "wx_fin1", "dt_fin1"),
    ("legal1", "孙律师", "legal", None, "", "wx_legal1", "dt_legal1"),
    ("aud1", "吴审计", "auditor", None, "", "wx_aud1", "dt_aud1"),
    ("admin", "管理员", "admin", None, "", "wx_admin", "dt_admin"),
]

CUSTOMERS = [
    # code, name, grade, limit, rep, region, cross_border
    ("C1", "上海恒信机电有限公司", "A", "500000", "rep1", "华东", False),
    ("C2", "苏州明达电子科技有限公司", "B", "200000", "rep1", "华东", False),
    ("C3", "广州顺发贸易有限公司", "C", "100000", "rep2", "华南", False),
    ("C4", "Harbor Lighting Ltd", "B", "100000", "rep2", "华南", True),
]

RECEIVABLES = [
    # invoice, customer, issue, due, amount, currency
    ("INV-A1", "C1", date(2026, 10, 31), date(2026, 11, 30), "10000.00", "CNY"),
    ("INV-A2", "C1", date(2026, 10, 14), date(2026, 11, 13), "20000.00", "CNY"),
    ("INV-A3", "C1", date(2026, 8, 25), date(2026, 9, 24), "30000.00", "CNY"),
    ("INV-B1", "C2", date(2026, 7, 26), date(2026, 8, 25), "8000.50", "CNY"),
    ("INV-B2", "C2", date(2026, 4, 1), date(2026, 5, 1), "12345.67", "CNY"),
    ("INV-C1", "C3", date(2026, 9, 24), date(2026, 10, 24), "5000.00", "CNY"),
    ("INV-C2", "C3", date(2026, 6, 1), date(2026, 7, 1), "40000.00", "CNY"),
    ("INV-D1", "C4", date(2026, 10, 4), date(2026, 11, 3), "1000.00", "USD"),
]

FX = {"USD": "7.10"}


def accounts(**user_ids: str | None) -> list[PersonAccount]:
    """A person's chat accounts, by platform: ``accounts(wecom="wx_gm", dingtalk=None)``."""
    return [PersonAccount(platform=platform, user_id=uid) for platform, uid in user_ids.items() if uid]


async def build(session, now: datetime) -> dict[str, Customer]:
    for pid, name, role, sup, team, wx, dt in PEOPLE:
        session.add(Person(id=pid, name=name, role=role, supervisor_id=sup, team=team, email=f"{pid}@example.com",
                           accounts=accounts(wecom=wx, dingtalk=dt)))
        await session.flush()
    customers = {}
    for code, name, grade, limit, rep, region, xb in CUSTOMERS:
        c = Customer(code=code, name=name, grade=grade, credit_limit=D(limit), rep_id=rep, region=region,
                     cross_border=xb)
        session.add(c)
        await session.flush()
        session.add(Contact(customer_id=c.id, name="联系人" + code, email=f"ap-{code.lower()}@example.com",
                            mobile="13800000000", channel="email"))
        customers[code] = c
    rs = {}
    for inv, code, issue, due, amount, cur in RECEIVABLES:
        c = customers[code]
        r = Receivable(invoice_no=inv, contract_no="HT-" + inv, customer_id=c.id, rep_id=c.rep_id, issue_date=issue,
                       due_date=due, amount=D(amount), open_amount=D(amount), currency=cur, terms="月结30天",
                       created_at=now)
        session.add(r)
        rs[inv] = r
    await session.flush()
    await ledger.record_payment(session, customer=customers["C1"], amount=D("5000.00"), paid_on=date(2026, 11, 20),
                                reference="LS-0001", invoice_no="INV-A2", actor="fin1", channel="test", now=now)
    await collection.open_dispute(session, receivable=rs["INV-B1"], reason="发票抬头错误", person_id="rep1",
                                  at=now, channel="test")
    wo = WriteOff(receivable_id=rs["INV-C2"].id, amount=D("40000.00"), reason="客户破产", requested_by="fin1",
                  requested_at=now, status="pending", approvals={}, approvers_needed=[])
    session.add(wo)
    await session.flush()
    await ledger.apply_write_off(session, wo, on=date(2026, 11, 1), actor="gm", channel="test", now=now)
    return customers


async def add_reps(session, *, count: int, rep_id, customer_code, customer_name, invoice_no, invoices: int,
                   step_days: int, unit: Decimal, credit_limit: Decimal = D("100000")) -> None:
    """More reps under sup1 (华东), each with one customer and ``invoices`` overdue invoices: the
    k-th due ``step_days * k + 1`` days before 2026-11-20, for ``unit * (k + 1)``. The id and name
    arguments are functions of the rep's index (and ``invoice_no`` of the invoice's too)."""
    for i in range(count):
        session.add(Person(id=rep_id(i), name=f"业务员{i:02d}", role="rep", supervisor_id="sup1", team="华东",
                           accounts=accounts(wecom=f"wx_{rep_id(i)}"), mobile="", email="", active=True))
        await session.flush()
        c = Customer(code=customer_code(i), name=customer_name(i), grade="B", credit_limit=credit_limit,
                     rep_id=rep_id(i), region="华东", cross_border=False, status="active", broken_promises=0)
        session.add(c)
        await session.flush()
        for k in range(invoices):
            due = date(2026, 11, 20) - timedelta(days=step_days * k + 1)
            amount = unit * (k + 1)
            session.add(Receivable(invoice_no=invoice_no(i, k), contract_no="", customer_id=c.id, rep_id=c.rep_id,
                                   issue_date=due - timedelta(days=30), due_date=due, amount=amount,
                                   open_amount=amount, currency="CNY", terms="", status="open", disputed=False))


async def build_with_collections(session, now: datetime) -> dict[str, Customer]:
    """The fixture plus two collections in November for commission and KPI tests: 40,000 from
    恒信 naming INV-A3 (its 30,000, the rest to the next oldest), and a new 150,000 invoice of
    顺发 (rep2) paid in full."""
    customers = await build(session, now)
    await ledger.record_payment(session, customer=customers["C1"], amount=Decimal("40000.00"),
                                paid_on=date(2026, 11, 21), reference="LS-0002", invoice_no="INV-A3", actor="fin1",
                                channel="test", now=now + timedelta(days=1))
    c3 = customers["C3"]
    session.add(Receivable(invoice_no="INV-C9", customer_id=c3.id, rep_id="rep2", issue_date=date(2026, 10, 1),
                           due_date=date(2026, 11, 1), amount=Decimal("150000.00"), open_amount=Decimal("150000.00"),
                           currency="CNY"))
    await session.flush()
    await ledger.record_payment(session, customer=c3, amount=Decimal("150000.00"), paid_on=date(2026, 11, 22),
                                reference="LS-0003", invoice_no="INV-C9", actor="fin1", channel="test",
                                now=now + timedelta(days=2))
    return customers
