"""Monthly statements with online confirmation: the statement mail (PDF and link), and the page
in headless Chromium — confirm, dispute, an expired link, a link used twice — over real HTTP on
loopback, with a real SMTP server (aiosmtpd) and a real SQLite file."""
from __future__ import annotations

import io
import re
from datetime import date, timedelta
from decimal import Decimal
from email import message_from_bytes
from email.policy import default

import pypdf
from sqlalchemy import select

from storage import statute as statute_q
from storage.models import (AuditEntry, Contact, Customer, Dispute, Person, Receivable, Statement,
                            StatuteEvidence)
from tests import test_email
from tests.browser import ARGS, chromium_path, playwright_or_skip
from tests.conftest import at
from tests.harness import Bot
from tests.ledger_fixture import accounts

D = Decimal
smtp_server = test_email.smtp_server          # the aiosmtpd fixture
COMPANY = {"name": "上海示例机电科技有限公司", "bank": "招商银行上海张江支行", "account": "1219 0876 5432 101",
           "contact": "财务部 李娟", "phone": "021-5080 1234"}


async def _ledger(db, contacts=2):
    async with db.session() as s, s.begin():
        s.add(Person(id="rep1", name="张伟", role="rep", accounts=accounts(local="rep1")))
        await s.flush()
        c = Customer(code="C42", name="杭州明光<电子>有限公司", grade="B", credit_limit=D("500000"), rep_id="rep1")
        s.add(c)
        await s.flush()
        s.add(Contact(customer_id=c.id, name="陈会计", channel="email", email="chen@mingguang.example.com"))
        if contacts == 2:
            s.add(Contact(customer_id=c.id, name="王出纳", channel="email", email="wang@mingguang.example.com"))
        for no, due, amount in (("FP-1", date(2026, 10, 13), "20000.00"), ("FP-2", date(2026, 11, 13), "8000.00"),
                                ("FP-3", date(2026, 12, 20), "15600.00")):
            s.add(Receivable(invoice_no=no, contract_no="", customer_id=c.id, rep_id="rep1",
                             issue_date=date(2026, 9, 14), due_date=due, amount=D(amount), open_amount=D(amount),
                             created_at=at("2026-09-14 10:00")))
        # paid off: not on the statement; another customer without a balance gets none
        c2 = Customer(code="C43", name="苏州明达", grade="B", credit_limit=D("0"), rep_id="rep1")
        s.add(c2)
        await s.flush()
        s.add(Contact(customer_id=c2.id, name="赵", channel="email", email="zhao@mingda.example.com"))


async def _statements(aiohttp_client, db, smtp_server, tmp_path, contacts=2, **letters):
    controller, box = smtp_server
    await _ledger(db, contacts)
    bot = await Bot.start(aiohttp_client, db, at("2026-12-07 09:00"), company=COMPANY, reports={"dir": str(tmp_path)},
                          letters=letters, smtp={"host": "127.0.0.1", "port": controller.port,
                                                 "from_addr": "ar@shili.example.com"})
    # Monday 12-07 (the 5th was a Saturday): November's statements
    assert f"{contacts} statement(s) for 2026-11 queued" in await bot.run("monthly_statements", at("2026-12-07 09:00"))
    links = {}
    for env in box.envelopes:
        msg = message_from_bytes(env.original_content, policy=default)
        body = msg.get_body(("plain",)).get_content()
        url = re.search(r"(http\S+/statements/confirm\?t=\S+)", body).group(1)
        links[env.rcpt_tos[0]] = "/" + url.split("://", 1)[1].split("/", 1)[1]
    return bot, box, links


async def test_statement_mail_has_the_pdf_and_the_link(aiohttp_client, db, smtp_server, tmp_path):
    bot, box, links = await _statements(aiohttp_client, db, smtp_server, tmp_path)
    assert sorted(links) == ["chen@mingguang.example.com", "wang@mingguang.example.com"]
    msg = message_from_bytes(box.envelopes[0].original_content, policy=default)
    assert msg["Subject"] == "【上海示例机电科技有限公司】2026年11月对账单"
    body = msg.get_body(("plain",)).get_content()
    assert "未结清余额为¥43,600.00，共3张发票" in body
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "对账单2026-11.pdf"
    text = re.sub(r"\s+", "", "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(att.get_content())).pages))
    assert "杭州明光<电子>有限公司" in text and "FP-1" in text and "FP-3" in text and "¥43,600.00" in text
    assert "/statements/confirm?t=" in text and "回执" in text
    # the same fire again, or the next day: nothing new
    assert "0 statement(s)" in await bot.run("monthly_statements", at("2026-12-07 09:00"), claim=False)
    assert len(box.envelopes) == 2
    async with db.session() as s:
        sts = (await s.execute(select(Statement).order_by(Statement.id))).scalars().all()
    assert [(x.period, x.status, x.balances) for x in sts] == [("2026-11", "sent", {"CNY": "43600.00"})] * 2
    assert [line["invoice_no"] for line in sts[0].lines] == ["FP-1", "FP-2", "FP-3"]


async def test_page_is_rate_limited_and_checks_its_input(aiohttp_client, db, smtp_server, tmp_path):
    bot, _, links = await _statements(aiohttp_client, db, smtp_server, tmp_path, contacts=1,
                                           confirm_per_minute=3)
    link = links["chen@mingguang.example.com"]
    token = link.split("t=", 1)[1]
    # a dispute without a line: refused, says why, changes nothing
    resp = await bot.client.post("/statements/confirm", data={"t": token, "action": "dispute", "name": "陈会计"})
    assert resp.status == 400 and "请勾选有异议的发票" in await resp.text()
    resp = await bot.client.post("/statements/confirm", data={"t": token, "action": "confirm", "name": " "})
    assert resp.status == 400 and "请填写您的姓名" in await resp.text()
    resp = await bot.client.get(link[:-4] + "AAAA")          # a forged signature
    assert resp.status == 403 and "链接无效" in await resp.text()
    resp = await bot.client.get(link)
    assert resp.status == 429 and "请稍后再试" in await resp.text()
    async with db.session() as s:
        assert {x.status for x in (await s.execute(select(Statement))).scalars()} == {"sent"}


async def test_confirm_and_dispute_in_chromium(aiohttp_client, db, smtp_server, tmp_path):
    executable = chromium_path()
    async_playwright = playwright_or_skip()
    bot, _, links = await _statements(aiohttp_client, db, smtp_server, tmp_path)
    bot.clock.set(at("2026-12-08 10:15"))
    confirm_url = str(bot.client.make_url(links["chen@mingguang.example.com"]))
    dispute_url = str(bot.client.make_url(links["wang@mingguang.example.com"]))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(locale="zh-CN")
            # confirm: the balance as sent, a name, one click
            await page.goto(confirm_url)
            assert await page.inner_text("#balance") == "¥43,600.00"
            assert "杭州明光<电子>有限公司" in await page.inner_text("main")
            shot = tmp_path / "statement-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            print(f"statement page screenshot: {shot}")
            await page.fill("input[name=name]", "陈会计")
            await page.click("button[value=confirm]")
            await page.wait_for_selector("#answer")
            assert "余额已于 2026-12-08 10:15 由 陈会计 确认无误" in await page.inner_text("#answer")
            # the link again: the answer, and no way to answer twice
            await page.goto(confirm_url)
            assert "确认无误" in await page.inner_text("#answer")
            assert await page.query_selector("button[value=confirm]") is None

            # dispute: FP-2 ticked with a reason
            await page.goto(dispute_url)
            await page.check("input[name=d1]")
            await page.fill("input[name=r1]", "11月20日已付8000元")
            await page.fill("input[name=name]", "王出纳")
            await page.click("button[value=dispute]")
            await page.wait_for_selector("#answer")
            assert "FP-2（11月20日已付8000元）" in await page.inner_text("#answer")

            # expired: 20 days after the statement was made
            bot.clock.set(at("2026-12-07 09:00") + timedelta(days=20, seconds=1))
            resp = await page.goto(dispute_url)
            assert resp.status == 410
            assert "链接已过期" in await page.inner_text("main")
        finally:
            await browser.close()

    # the link used twice by hand: refused, the first answer stands
    bot.clock.set(at("2026-12-09 09:00"))
    token = links["chen@mingguang.example.com"].split("t=", 1)[1]
    resp = await bot.client.post("/statements/confirm", data={"t": token, "action": "dispute", "name": "X", "d0": "1",
                                                              "r0": "不对"})
    assert resp.status == 409 and "确认无误" in await resp.text()

    async with db.session() as s:
        chen, wang = (await s.execute(select(Statement).order_by(Statement.id))).scalars().all()
        assert (chen.status, chen.answered_by, chen.answered_ip) == ("confirmed", "陈会计", "127.0.0.1")
        assert "Chrome" in chen.user_agent and chen.answered_at == at("2026-12-08 10:15")
        assert (wang.status, wang.answer) == ("disputed", {"disputed": [{"invoice_no": "FP-2",
                                                                         "reason": "11月20日已付8000元"}]})
        # the confirmation is the debtor's acknowledgement of each invoice on it: the statute restarts
        signed = (await s.execute(select(Receivable.invoice_no).join(
            StatuteEvidence, StatuteEvidence.receivable_id == Receivable.id).where(
            StatuteEvidence.evidence == "signed_confirmation", StatuteEvidence.happened_on == date(2026, 12, 8))
            .order_by(Receivable.invoice_no))).scalars().all()
        assert signed == ["FP-1", "FP-2", "FP-3"]
        fp1 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "FP-1"))).scalar_one()
        rk = (await statute_q.reckonings(s, [fp1], today=date(2026, 12, 8), statute=None, cross_border={}))[fp1.id]
        assert (rk.anchor, rk.reason) == (date(2026, 12, 8), "signed_confirmation")
        # the dispute is open on FP-2 only, and collection of it pauses
        [d] = (await s.execute(select(Dispute))).scalars().all()
        fp2 = await s.get(Receivable, d.receivable_id)
        assert fp2.invoice_no == "FP-2" and fp2.disputed and "11月20日已付8000元" in d.reason
        evidence = (await s.execute(select(AuditEntry).where(AuditEntry.action == "statement.confirmed"))).scalar_one()
        assert evidence.detail["ip"] == "127.0.0.1" and evidence.detail["balances"] == {"CNY": "43600.00"}
    # the rep hears of the dispute in a digest
    assert "1 digest(s)" in await bot.run("statement_answers", at("2026-12-09 09:10"))
    [digest] = await bot.inbox("rep1")
    assert "客户对账回复" in digest and "FP-2" in digest and "11月20日已付8000元" in digest and "王出纳" in digest
