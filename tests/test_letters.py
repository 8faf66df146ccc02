"""Letters one per customer, with the company's letterhead and bank details; late fees only where
the contract says so, on the daily balance, capped; the letters as DOCX and PDF.

Every figure below is computed by hand in the comment next to it."""
from __future__ import annotations

import io
import re
import zipfile
from datetime import date
from decimal import Decimal
from email import message_from_bytes
from email.policy import default

import pypdf
import pytest
from sqlalchemy import select

from bot import documents, letters
from domain.late_fees import STANDARD, TermsError, contract_fee, parse_terms
from storage import collection, ledger
from storage.models import Contact, Customer, Person, Receivable
from tests.conftest import at
from tests.harness import Bot, config_for
from tests.ledger_fixture import accounts
from tests import test_email

D = Decimal
smtp_server = test_email.smtp_server          # the aiosmtpd fixture
TIERS = ({"from_day": 1, "rate": "0.0005"}, {"from_day": 31, "rate": "0.001"})
FLAT = [(1, D("0.0005"))]
COMPANY = {"name": "上海示例机电科技有限公司", "address": "上海市浦东新区张江路 88 号", "bank": "招商银行上海张江支行",
           "account": "1219 0876 5432 101", "contact": "财务部 李娟", "phone": "021-5080 1234"}


def pdf_text(data: bytes) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages)


def docx_xml(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read("word/document.xml").decode("utf-8")


# -- the fee ---------------------------------------------------------------------------------

def test_fee_is_charged_on_the_balance_of_each_day():
    # ¥10,000 due 01-31 at 0.05%/day; ¥6,000 paid on 03-02 (day 30); asked on 04-01 (day 60):
    # days 1-30 on 10,000 = 150.00, days 31-60 on 4,000 = 60.00 → 210.00
    # (today's balance over the whole period would be 4,000 × 60 × 0.05% = 120.00)
    cuts = [(date(2026, 3, 2), D("6000.00"))]
    assert contract_fee(D("10000.00"), date(2026, 1, 31), date(2026, 4, 1), cuts, FLAT) == D("210.00")
    # tiered: days 1-30 at 0.05% on 10,000 = 150.00; day 31-60 at 0.1% on 4,000 = 120.00 → 270.00
    assert contract_fee(D("10000.00"), date(2026, 1, 31), date(2026, 4, 1), cuts, TIERS) == D("270.00")
    # paid before it fell due: the principal is what was left, 6,000 × 10 × 0.05% = 30.00
    assert contract_fee(D("10000.00"), date(2026, 1, 31), date(2026, 2, 10),
                        [(date(2026, 1, 31), D("4000.00"))], FLAT) == D("30.00")
    # paid in full on day 5: days 1-5 on 2,000 = 5.00, nothing after
    assert contract_fee(D("2000.00"), date(2026, 1, 31), date(2026, 4, 1),
                        [(date(2026, 2, 5), D("2000.00"))], FLAT) == D("5.00")
    # two part payments the same day count as one
    assert contract_fee(D("10000.00"), date(2026, 1, 31), date(2026, 4, 1),
                        [(date(2026, 3, 2), D("1000.00")), (date(2026, 3, 2), D("5000.00"))], FLAT) == D("210.00")
    assert contract_fee(D("10000.00"), date(2026, 1, 31), date(2026, 1, 31), [], FLAT) == D("0.00")


def test_fee_is_capped():
    # the issue's case: ¥8,000 of principal, 1,235 days at the standard tiers:
    # 8,000 × (30 × 0.05% + 1,205 × 0.1%) = 8,000 × 1.22 = 9,760.00 — more than the debt itself
    due, today = date(2023, 7, 15), date(2026, 12, 1)
    assert (today - due).days == 1235
    assert contract_fee(D("8000.00"), due, today, [], TIERS) == D("9760.00")
    # capped at 30% of the principal: 2,400.00
    assert contract_fee(D("8000.00"), due, today, [], TIERS, D("0.3")) == D("2400.00")
    # under the cap nothing changes: 8,000 × 100 days… 8,000 × (0.015 + 70 × 0.001) = 680.00
    assert contract_fee(D("8000.00"), date(2026, 8, 23), date(2026, 12, 1), [], TIERS, D("0.3")) == D("680.00")


def test_contract_terms_as_written():
    assert parse_terms("") is None and parse_terms("无") is None
    assert parse_terms("标准") == STANDARD and parse_terms("standard") == STANDARD
    assert parse_terms("0.05%") == D("0.0005") == parse_terms("0.0005") == parse_terms("0.05％")
    for bad in ("abc", "5%", "-0.001", "0"):
        with pytest.raises(TermsError):
            parse_terms(bad)


# -- the letters -------------------------------------------------------------------------------

async def _customer(s, *, name="杭州明光电子有限公司", clause="", channel="email"):
    s.add(Person(id="rep1", name="张伟", role="rep", accounts=accounts(local="rep1")))
    s.add(Person(id="fin1", name="李娟", role="finance", accounts=accounts(local="fin1")))
    await s.flush()
    c = Customer(code="C42", name=name, grade="B", credit_limit=D("500000"), rep_id="rep1", late_fee_rate=clause)
    s.add(c)
    await s.flush()
    s.add(Contact(customer_id=c.id, name="陈会计", channel=channel, email="ap@mingguang.example.com"))
    for no, contract, due, amount in (("FP-1", "HT-2026-031", date(2026, 11, 13), "20000.00"),
                                      ("FP-2", "", date(2026, 11, 13), "8000.00"),
                                      ("FP-3", "HT-2026-058", date(2026, 12, 20), "15600.00")):
        s.add(Receivable(invoice_no=no, contract_no=contract, customer_id=c.id, rep_id="rep1",
                         issue_date=date(2026, 10, 14), due_date=due, amount=D(amount), open_amount=D(amount),
                         created_at=at("2026-10-14 10:00")))
    await s.flush()
    return c


async def test_one_letter_per_customer_with_the_company_details(db):
    cfg = config_for(db.url, company=COMPANY)
    async with db.session() as s, s.begin():
        c = await _customer(s, name="杭州明光<b>电子</b> & Co", clause="standard")
        # ¥12,000 of FP-1 paid on 11-20 (day 7)
        await ledger.record_payment(s, customer=c, amount=D("12000.00"), paid_on=date(2026, 11, 20),
                                    reference="B1", invoice_no="FP-1", actor="fin1", channel="test",
                                    now=at("2026-11-20 10:00"))
        letter = await letters.customer_letter(s, cfg, "reminder", c, date(2026, 12, 3))
    md = letter.markdown
    # both overdue invoices in one letter, the one not yet due left out
    rows = [line for line in md.splitlines() if line.startswith("| ") and "FP-" in line]
    # FP-1: days 1-7 on 20,000 at 0.05% = 70.00, days 8-20 on 8,000 at 0.05% = 52.00 → 122.00
    # FP-2: 20 days on 8,000 at 0.05% = 80.00
    assert rows == ["| HT-2026-031 | FP-1 | 2026-11-13 | ¥8,000.00 | 20 | ¥122.00 |",
                    "|  | FP-2 | 2026-11-13 | ¥8,000.00 | 20 | ¥80.00 |"]
    assert "逾期合计：¥16,000.00。" in md and "估算合计 ¥202.00" in md
    assert "以逾期本金的30%为限" in md
    assert "合同-" not in md and "编号：-" not in md
    for v in COMPANY.values():
        assert v in md
    # a customer's name is text wherever it is shown
    assert "杭州明光＜b＞电子＜/b＞ & Co" in md

    pdf = documents.pdf(cfg, letter)
    text = pdf_text(pdf)
    assert "杭州明光<b>电子</b> & Co" in text and "FP-2" in text and "¥202.00" in text
    flat = re.sub(r"\s+", "", text)          # the layout may break a line anywhere
    assert "招商银行上海张江支行" in flat and "121908765432101" in flat and "回执" in flat and "（盖章）" in flat
    word = documents.docx(cfg, letter)
    from docx import Document
    opened = Document(io.BytesIO(word))          # a well-formed Word document, tables and all
    assert [c.text for c in opened.tables[0].rows[1].cells][:2] == ["HT-2026-031", "FP-1"]
    xml = docx_xml(word)
    assert "杭州明光&lt;b&gt;电子&lt;/b&gt; &amp; Co" in xml and "<b>" not in xml
    assert "¥122.00" in xml and "1219 0876 5432 101" in xml and "回　执" in xml
    assert "{{" not in xml and "{%" not in xml
    html = documents.html(cfg, letter)
    assert "杭州明光&lt;b&gt;电子&lt;/b&gt; &amp; Co" in html


async def test_the_documents_point_to_the_contract_for_a_missing_bank_and_list_what_is_disputed(db):
    cfg = config_for(db.url, company={"name": "上海示例机电科技有限公司", "phone": "021-5080 1234"})
    async with db.session() as s, s.begin():
        c = await _customer(s)
        fp2 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "FP-2"))).scalar_one()
        await collection.open_dispute(s, receivable=fp2, reason="数量不符", person_id="rep1",
                                      at=at("2026-11-20 10:00"), channel="test")
        letter = await letters.customer_letter(s, cfg, "confirmation", c, date(2026, 12, 3))
    got = documents.context(letter)
    assert (got["bank"], got["account"]) == ("（见合同）", "（见合同）")
    assert got["company_line"] == "电话 021-5080 1234"
    assert got["disputed"] == "FP-2 未付 ¥8,000.00（数量不符）"


async def test_no_late_fee_without_a_clause(db):
    cfg = config_for(db.url, company=COMPANY)
    async with db.session() as s, s.begin():
        c = await _customer(s)
        letter = await letters.customer_letter(s, cfg, "reminder", c, date(2026, 12, 3))
    assert "滞纳金" not in letter.markdown
    assert "滞纳金" not in documents.html(cfg, letter)        # what the PDF lays out
    assert "滞纳金" not in docx_xml(documents.docx(cfg, letter))


async def test_company_templates_replace_the_packaged_ones(db, tmp_path):
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "reminder.html.j2").write_text("<p>本公司专用格式：{{ customer_name }} 欠 {{ overdue_total }}</p>",
                                            encoding="utf-8")
    from docx import Document
    d = Document()
    d.add_paragraph("自定义模板 {{ customer_name }}：")
    d.add_paragraph("{%p for row in rows %}")
    d.add_paragraph("{{ row.invoice_no }} {{ row.open_amount }}")
    d.add_paragraph("{%p endfor %}")
    d.save(folder / "reminder.docx")
    cfg = config_for(db.url, company=COMPANY, letters={"template_dir": str(folder)})
    async with db.session() as s, s.begin():
        c = await _customer(s)
        letter = await letters.customer_letter(s, cfg, "reminder", c, date(2026, 12, 3))
    assert documents.html(cfg, letter) == "<p>本公司专用格式：杭州明光电子有限公司 欠 ¥28,000.00</p>"
    xml = docx_xml(documents.docx(cfg, letter))
    assert "自定义模板 杭州明光电子有限公司" in xml and "FP-2 ¥8,000.00" in xml
    # the other kinds still come from the package
    confirmation = await _letter(db, cfg, "confirmation")
    assert "回　执" in docx_xml(documents.docx(cfg, confirmation))


async def _letter(db, cfg, kind):
    async with db.session() as s:
        c = (await s.execute(select(Customer))).scalar_one()
        return await letters.customer_letter(s, cfg, kind, c, date(2026, 12, 3))


async def test_the_ladder_mails_one_pdf_per_customer(aiohttp_client, db, smtp_server, tmp_path):
    controller, box = smtp_server
    async with db.session() as s, s.begin():
        await _customer(s, clause="0.05%")
    bot = await Bot.start(aiohttp_client, db, at("2026-11-20 09:30"), company=COMPANY,
                          reports={"dir": str(tmp_path)},
                          smtp={"host": "127.0.0.1", "port": controller.port, "from_addr": "ar@shili.example.com"})
    # FP-1 and FP-2 both reach day 7 on 11-20: one mail, one letter listing both
    assert "2 ladder step(s) fired" in await bot.run("escalations", at("2026-11-20 09:30"))
    [env] = box.envelopes
    msg = message_from_bytes(env.original_content, policy=default)
    body = msg.get_body(("plain",)).get_content()
    assert "共有2张发票逾期未付，合计¥28,000.00" in body
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "付款提醒函.pdf"
    text = pdf_text(att.get_content())
    # 7 days at 0.05%: 20,000 → 70.00, 8,000 → 28.00
    assert "FP-1" in text and "FP-2" in text and "FP-3" not in text
    assert "¥70.00" in text and "¥28.00" in text and "¥98.00" in text
    assert "招商银行上海张江支行" in text
    # the rep hears that the second invoice went in the same letter
    rep = "\n".join(await bot.inbox("rep1"))
    assert "已列入同次发给客户联系人陈会计的函件" in rep


async def test_staff_drafts_link_to_the_word_and_pdf_files(aiohttp_client, db, tmp_path):
    async with db.session() as s, s.begin():
        await _customer(s, name="苏州<明达>")
    bot = await Bot.start(aiohttp_client, db, at("2026-11-28 09:30"), company=COMPANY, reports={"dir": str(tmp_path)})
    # day 15: finance gets the balance confirmation draft (账款确认函), with its files
    await bot.run("escalations", at("2026-11-28 09:30"))
    [draft] = [m for m in await bot.inbox("fin1") if "账款确认函" in m and "Word 版" in m]
    docx_url = re.search(r"Word 版（可编辑、盖章）：(\S+)", draft).group(1)
    pdf_url = re.search(r"PDF 版：(\S+)", draft).group(1)
    path = docx_url.split("://", 1)[1].split("/", 1)[1]
    resp = await bot.client.get("/" + path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == documents.DOCX_MIME
    xml = docx_xml(await resp.read())
    assert "苏州&lt;明达&gt;" in xml and "FP-1" in xml and "FP-3" in xml     # every open invoice
    resp = await bot.client.get("/" + pdf_url.split("://", 1)[1].split("/", 1)[1])
    assert resp.status == 200 and (await resp.read()).startswith(b"%PDF-")
    # a link whose signature does not match is refused
    resp = await bot.client.get("/" + path[:-3] + "xyz")
    assert resp.status == 403


async def test_the_contract_clause_comes_with_the_customers_file(db, tmp_path):
    from datetime import datetime, timezone
    from storage.imports import import_file
    p = tmp_path / "customers.csv"
    p.write_text("客户编码,客户名称,滞纳金日利率\nK1,甲公司,0.05%\nK2,乙公司,标准\nK3,丙公司,\n", encoding="utf-8")
    now, today = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc), date(2026, 12, 1)
    report = await import_file(db, "customers", p, now=now, today=today)
    assert report.ok, report.to_dict()
    async with db.session() as s:
        got = dict((await s.execute(select(Customer.code, Customer.late_fee_rate).order_by(Customer.code))).all())
    assert got == {"K1": "0.0005", "K2": "standard", "K3": ""}
    # a rate that cannot be read: the line is named, nothing changes
    bad = tmp_path / "bad.csv"
    bad.write_text("客户编码,客户名称,滞纳金日利率\nK1,甲公司,百分之五\n", encoding="utf-8")
    report = await import_file(db, "customers", bad, now=now, today=today)
    assert not report.ok
    [e] = report.to_dict()["errors"]
    assert e["line"] == 2 and e["code"] == "bad_late_fee"
    async with db.session() as s:
        assert (await s.execute(select(Customer.late_fee_rate).where(Customer.code == "K1"))).scalar_one() == "0.0005"


async def test_letter_command_links_the_documents_made_when_opened(aiohttp_client, db, tmp_path):
    async with db.session() as s, s.begin():
        await _customer(s, name="苏州<明达>")
    bot = await Bot.start(aiohttp_client, db, at("2026-12-03 10:00"), company=COMPANY, reports={"dir": str(tmp_path)})
    [reply] = await bot.say("fin1", "/letter 苏州")
    assert "苏州＜明达＞ 的函件" in reply
    urls = dict(re.findall(r"- (\S+)：\[Word 版\]\((\S+?)\)", reply))
    assert sorted(urls) == ["付款提醒函", "对账单", "律师函底稿", "账款确认函"]
    path = "/" + urls["付款提醒函"].split("://", 1)[1].split("/", 1)[1]
    resp = await bot.client.get(path)
    assert resp.status == 200 and resp.headers["Content-Type"] == documents.DOCX_MIME
    xml = docx_xml(await resp.read())
    # made from the ledger of the day it is opened: 20 days overdue on 12-03
    assert "苏州&lt;明达&gt;" in xml and "FP-1" in xml and "FP-2" in xml and "FP-3" not in xml and ">20<" in xml
    # a link for one file does not open another
    other = path.replace("reminder-", "confirmation-", 1)
    assert (await bot.client.get(other)).status == 404
    # outside a rep's own customers the command finds nothing; in a group it is refused
    [reply] = await bot.say("rep1", "/letter 苏州", chat="sales")
    assert "/letters/" not in reply
