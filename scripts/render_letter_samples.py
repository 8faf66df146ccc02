"""Renders the four letters of a sample customer as DOCX and PDF into a folder, for a person to
look at (docs/images/letter-*.png are these, converted by LibreOffice and pdftoppm):

    .venv/bin/python scripts/render_letter_samples.py /tmp/letters
    cd /tmp/letters && soffice --headless --convert-to pdf --outdir docx-pdf *.docx
    pdftoppm -png -r 60 -f 1 -l 1 docx-pdf/reminder-*.pdf reminder-docx
"""
from __future__ import annotations

import dataclasses
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from bot import documents, letters
from bot.config import CompanyConfig, Config
from storage.models import Contact, Customer, Receivable

D = Decimal


def sample() -> tuple[Config, dict]:
    cfg = dataclasses.replace(Config(), company=CompanyConfig(
        name="上海示例机电科技有限公司", address="上海市浦东新区张江路 88 号 5 楼", bank="招商银行上海张江支行",
        account="1219 0876 5432 101", contact="财务部 李娟", phone="021-5080 1234"))
    c = Customer(id=1, code="C-0042", name="杭州明光电子有限公司 <R&D>", late_fee_rate="standard")
    contact = Contact(id=1, customer_id=1, name="陈会计", email="ap@mingguang.example.com")
    today = date(2026, 12, 4)
    rs = [Receivable(id=1, invoice_no="FP26000411", contract_no="HT-2026-031", customer_id=1,
                     issue_date=date(2026, 7, 1), due_date=date(2026, 8, 31), amount=D("48000.00"),
                     open_amount=D("28000.00"), currency="CNY", terms="月结60天", disputed=False),
          Receivable(id=2, invoice_no="FP26000587", contract_no="", customer_id=1,
                     issue_date=date(2026, 9, 10), due_date=date(2026, 10, 10), amount=D("8000.00"),
                     open_amount=D("8000.00"), currency="CNY", terms="", disputed=False),
          Receivable(id=3, invoice_no="FP26000702", contract_no="HT-2026-058", customer_id=1,
                     issue_date=date(2026, 11, 20), due_date=date(2026, 12, 20), amount=D("15600.00"),
                     open_amount=D("15600.00"), currency="CNY", terms="月结30天", disputed=False)]
    cuts = {1: [(date(2026, 10, 15), D("20000.00"))]}
    data = letters.customer_facts(cfg, c, contact, rs, {}, today, cuts)
    data["confirm_url"] = "https://arbot.example.com/statements/confirm?t=eyJzIjo0Mn0.c2lnbmF0dXJl"
    data["confirm_expires"] = today + timedelta(days=20)
    return cfg, data


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "letters")
    out.mkdir(parents=True, exist_ok=True)
    cfg, data = sample()
    for kind in letters.KINDS:
        letter = letters.render_letter(kind, data)
        stem = documents.file_stem(letter)
        (out / f"{stem}.docx").write_bytes(documents.docx(cfg, letter))
        (out / f"{stem}.pdf").write_bytes(documents.pdf(cfg, letter))
        (out / f"{stem}.md").write_text(letter.markdown, encoding="utf-8")
        print(out / stem)
