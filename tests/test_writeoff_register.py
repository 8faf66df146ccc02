"""Write-offs as an auditor checks them (issue #19): separated duties, both approvals above the
limit, and a register with the recoveries — in chat, exported and on the dashboard.

The fixture company (tests/ledger_fixture.py) has INV-C2 (顺发, rep2) written off on 11-01 for
¥40,000.00 (#1). Here 恒信 (C1, rep1) also owes INV-E1, ¥60,000.00, due 2023-06-30, gone bad.
Approvers: finance head 钱会计 (fin1), sales director 王主管 (sup1), general manager 周总 (gm);
the limit is the default ¥50,000.00, so INV-E1 needs 钱会计 AND 周总.

By hand: written off 40,000.00 + 60,000.00 = 100,000.00; recovered 5,000.00 on INV-E1 (11-23);
net loss 95,000.00 (INV-E1 alone: 55,000.00).
"""
from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import date
from decimal import Decimal
from urllib.parse import urlsplit

from sqlalchemy import select

from storage.models import AuditEntry, Customer, Receivable, WriteOff
from tests import cli_inprocess, ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal
APPROVERS = {"finance_head": "fin1", "sales_director": "sup1", "general_manager": "gm"}


async def _bot(aiohttp_client, db, tmp_path=None) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        c1 = (await s.execute(select(Customer).where(Customer.code == "C1"))).scalar_one()
        s.add(Receivable(invoice_no="INV-E1", contract_no="HT-E1", customer_id=c1.id, rep_id="rep1",
                         issue_date=date(2023, 5, 31), due_date=date(2023, 6, 30), amount=D("60000.00"),
                         open_amount=D("60000.00"), created_at=at("2026-11-20 10:00")))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           permissions=APPROVERS, web={"secret": "test-secret"},
                           **({"reports": {"dir": str(tmp_path)}} if tmp_path else {}))


async def _open(db, invoice: str) -> tuple[Decimal, str]:
    async with db.session() as s:
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == invoice))).scalar_one()
        return r.open_amount, r.status


async def test_above_the_limit_the_finance_head_and_the_general_manager_both_approve(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("admin", "/writeoff INV-E1 客户已注销，无可执行财产")
    assert reply.splitlines()[1] == "已请 钱会计、周总 审批（需全部批准），批准后自动核销并通知您。"
    assert len(await bot.inbox("fin1")) == 1 and len(await bot.inbox("gm")) == 1 and await bot.inbox("sup1") == []
    # the general manager alone does not book it
    assert (await bot.say("gm", "/approve 2"))[0] == "已批准核销申请 #2（INV-E1），还需 钱会计 批准。"
    assert await _open(db, "INV-E1") == (D("60000.00"), "open")
    [reply] = await bot.say("fin1", "/approve 2")
    assert reply == "已批准核销申请 #2，审批完成：INV-E1 ¥60,000.00 已核销（2026-11-23），仍保留追偿权。"
    assert await _open(db, "INV-E1") == (D("0.00"), "written_off")
    async with db.session() as s:
        wo = await s.get(WriteOff, 2)
        assert wo.approvals == {"general_manager": "gm", "finance_head": "fin1"}


async def test_a_requester_never_gives_one_of_the_approvals(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    # the finance head asks for a write-off she would have to approve: refused, nothing written
    [reply] = await bot.say("fin1", "/writeoff INV-B2 客户失联三年")
    assert reply.startswith("这笔核销需要财务负责人审批，而您就是财务负责人：申请人不能审批自己的申请。")
    async with db.session() as s:
        assert (await s.execute(select(WriteOff).where(WriteOff.status == "pending"))).scalars().all() == []
    # a request made before this rule, by one of its own approvers: she cannot approve it, nor reject it
    async with db.session() as s, s.begin():
        b2 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-B2"))).scalar_one()
        s.add(WriteOff(receivable_id=b2.id, amount=b2.open_amount, reason="客户失联", status="pending",
                       requested_by="fin1", requested_at=at("2026-11-20 10:00"), approvals={},
                       approvers_needed=["fin1", "sup1"]))
    assert (await bot.say("sup1", "/approve 2"))[0] == "已批准核销申请 #2（INV-B2），还需 钱会计 批准。"
    for verb in ("/approve 2", "/reject 2"):
        [reply] = await bot.say("fin1", verb)
        assert reply.startswith("核销申请 #2 是您提出的，申请人不能审批或驳回自己的申请。")
    assert await _open(db, "INV-B2") == (D("12345.67"), "open")
    async with db.session() as s:
        wo = await s.get(WriteOff, 2)
        assert (wo.status, wo.approvals) == ("pending", {"sales_director": "sup1"})
        assert [a.actor for a in (await s.execute(select(AuditEntry).where(
            AuditEntry.action == "writeoff.approve"))).scalars()] == ["sup1"]


async def _booked_with_a_recovery(bot) -> None:
    await bot.say("admin", "/writeoff INV-E1 =1+1 客户已注销")
    await bot.say("gm", "/approve 2")
    await bot.say("fin1", "/approve 2")
    [reply] = await bot.say("fin1", "/paid INV-E1 5000 LS-R9")
    assert "- INV-E1（已核销）：追回 ¥5,000.00，冲减坏账损失" in reply


async def test_the_register_in_chat_with_recoveries_scoped_like_aging(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    await _booked_with_a_recovery(bot)
    [reply] = await bot.say("aud1", "/writeoffs")
    lines = reply.splitlines()
    assert lines[0] == "**坏账核销台账**"
    assert "已核销 ¥100,000.00，已追回 ¥5,000.00，净损失 ¥95,000.00" in lines
    assert ("- #2 2026-11-23 上海恒信机电有限公司 INV-E1 ¥60,000.00；申请 管理员，批准 周总、钱会计；"
            "追回 2026-11-23 ¥5,000.00，净损失 ¥55,000.00") in lines
    # booked before approvals were recorded: the register says so rather than leave it blank
    assert "- #1 2026-11-01 广州顺发贸易有限公司 INV-C2 ¥40,000.00；申请 钱会计，批准 （未记录审批人）" in lines
    # a pending request is listed with who is still to approve (#3 is the recovery's reversing row)
    await bot.say("admin", "/核销 INV-B2 客户失联")
    [reply] = await bot.say("gm", "/核销台账")
    assert "- #4 苏州明达电子科技有限公司 INV-B2 ¥12,345.67：管理员 申请，待 钱会计、王主管 审批" in reply.splitlines()
    # reps see their own customers' write-offs only: rep1 has C1 and C2, rep2 has C3
    [rep1] = await bot.say("rep1", "/writeoffs")
    assert "INV-E1" in rep1 and "INV-B2" in rep1 and "INV-C2" not in rep1
    assert "已核销 ¥60,000.00，已追回 ¥5,000.00，净损失 ¥55,000.00" in rep1
    [rep2] = await bot.say("rep2", "/writeoffs")
    assert "INV-C2" in rep2 and "INV-E1" not in rep2 and "已核销 ¥40,000.00，已追回 ¥0.00，净损失 ¥40,000.00" in rep2


async def test_the_register_on_the_dashboard(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    await _booked_with_a_recovery(bot)
    [reply] = await bot.say("aud1", "/dashboard")
    u = urlsplit(re.search(r"(https?://\S+/dashboard/login\?t=[A-Za-z0-9_.-]+)", reply).group(1))
    resp = await bot.client.post("/dashboard/login", data={"t": u.query.split("t=", 1)[1]}, allow_redirects=False)
    assert resp.status == 303
    html = await (await bot.client.get("/dashboard")).text()
    section = html[html.index('<section id="writeoffs">'):]
    section = section[:section.index("</section>")]
    assert "净损失 <b>¥95,000.00</b>" in section
    row = re.sub(r"<[^>]+>", "|", section[section.index("#2"):section.index("#1")])
    cells = [c.strip() for c in row.split("|") if c.strip()]
    assert cells == ["#2", "已核销", "C1 上海恒信机电有限公司", "INV-E1", "¥60,000.00", "2026-11-23", "管理员",
                     "周总、钱会计", "¥5,000.00", "2026-11-23 ¥5,000.00", "¥55,000.00"]


async def test_the_register_exported_for_the_auditors(aiohttp_client, db, tmp_path, capfd):
    bot = await _bot(aiohttp_client, db)
    await _booked_with_a_recovery(bot)
    config = cli_inprocess.config_file(tmp_path, db.url)

    def arbot(*args: str):
        capfd.readouterr()
        # the command line runs its own event loop, as it does from a shell
        return asyncio.get_running_loop().run_in_executor(None, cli_inprocess.arbot, config, *args)

    assert await arbot("export", "writeoffs") == 0
    rows = list(csv.DictReader(io.StringIO(capfd.readouterr().out.lstrip("\ufeff"))))
    e1 = next(r for r in rows if r["invoice_no"] == "INV-E1")
    assert (e1["status"], e1["customer_code"], e1["amount"], e1["recovered"], e1["net_loss"]) == (
        "approved", "C1", "60000.00", "5000.00", "55000.00")
    assert e1["approved_by"] == "general_manager:周总; finance_head:钱会计" and e1["requested_by"] == "管理员"
    assert e1["recoveries"] == "2026-11-23 5000.00" and e1["written_off_on"] == "2026-11-23"
    assert e1["reason"] == "'=1+1 客户已注销"                # typed in chat; never a formula in Excel
    assert [r["invoice_no"] for r in rows] == ["INV-E1", "INV-C2"]
    assert await arbot("export", "writeoffs", "--format", "json", "--since", "2026-11-21") == 0
    data = json.loads(capfd.readouterr().out)
    assert [r["invoice_no"] for r in data] == ["INV-E1"]
    assert await arbot("export", "writeoffs", "--since", "bad") == 2
    err = capfd.readouterr().err
    assert "--since must be a date such as 2026-11-01" in err and "Traceback" not in err
