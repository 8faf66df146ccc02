"""Writes the packaged Word templates of the letters (bot/templates/letters/<kind>.docx).

They are docxtpl templates: ordinary Word documents whose text holds jinja2 tags ({{ customer_name }},
{%tr for row in rows %} in a table row). A company edits a copy in Word or WPS — wording, logo,
fonts — keeping the tags, and puts it in its ``[letters] template_dir``. This script is how the
packaged ones are made, so they can be remade after a change of wording:

    .venv/bin/python scripts/make_letter_templates.py
"""
from __future__ import annotations

from pathlib import Path

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt

OUT = Path(__file__).resolve().parent.parent / "bot" / "templates" / "letters"
FONT = "宋体"

COLUMNS = {
    # kind → (column title, row field), the late-fee column only when the contract has a clause
    "reminder": [("合同编号", "contract_no"), ("发票号", "invoice_no"), ("到期日", "due_date"),
                 ("未付金额", "open_amount"), ("逾期天数", "days_overdue")],
    "confirmation": [("合同编号", "contract_no"), ("发票号", "invoice_no"), ("到期日", "due_date"),
                     ("未付金额", "open_amount"), ("逾期天数", "days_overdue")],
    "lawyer_letter": [("合同编号", "contract_no"), ("发票号", "invoice_no"), ("到期日", "due_date"),
                      ("未付金额", "open_amount"), ("逾期天数", "days_overdue")],
    "statement": [("合同编号", "contract_no"), ("发票号", "invoice_no"), ("开票日", "issue_date"),
                  ("到期日", "due_date"), ("发票金额", "amount"), ("未付金额", "open_amount")],
}
FEE_COLUMN = ("滞纳金估算", "late_fee")
TITLES = {"reminder": "付款提醒函", "confirmation": "账款确认函", "lawyer_letter": "律师函（底稿）",
          "statement": "对账单"}
BODY = {
    "reminder": ["截至 {{ today }}，贵司以下款项已超过约定付款日期："],
    "confirmation": ["截至 {{ today }}，经我司账面核对，贵司尚欠我司款项如下："],
    "lawyer_letter": ["受{{ company_name }}（以下简称“委托人”）委托，就贵司拖欠委托人货款一事，致函如下：",
                      "根据委托人与贵司签订的合同及相关发货、开票凭证，贵司尚欠下列逾期款项："],
    "statement": ["截至 {{ today }}，贵司在我司的未结清款项如下："],
}
AFTER = {
    "reminder": ["逾期合计：{{ overdue_total }}。",
                 "{% if show_late_fee %}按合同约定，逾期付款按日计收滞纳金（{{ fee_rule }}），截至 {{ today }} 估算合计 "
                 "{{ late_fee_total }}（仅供参考，未计入账款）。{% endif %}",
                 "恳请贵司尽快安排付款。如已付款，请忽略本函并告知付款信息；如对账款有异议，请与我司联系核对。"],
    "confirmation": ["合计：{{ total }}。",
                     "请贵司核对。如无误，请在回执上签字盖章后回传我司；如有不符，请在回执上列明差异及依据。"],
    "lawyer_letter": ["逾期本金合计：{{ overdue_total }}。",
                      "{% if show_late_fee %}滞纳金按合同约定计算（{{ fee_rule }}），截至 {{ today }} 估算合计 "
                      "{{ late_fee_total }}。{% endif %}",
                      "请贵司于收到本函之日起七日内付清上述款项。逾期未付，委托人将依法通过诉讼途径解决，并可依法申请财产保全。"],
    "statement": ["余额合计：{{ total }}。",
                  "{% if confirm_url %}请贵司财务核对后在线确认余额或对个别发票提出异议（无需注册，链接有效期至 "
                  "{{ confirm_expires }}）：{{ confirm_url }}{% endif %}"],
}
RECEIPT = {
    # the 回执 slip the customer signs and returns
    "reminder": "我司已收到贵司 {{ today }} 发出的《付款提醒函》。付款安排：____年__月__日前支付 ________ 元。",
    "confirmation": "经核对，截至 {{ today }} 我司欠贵司款项 {{ total }}：□ 属实　□ 不符，差异如下：",
    "statement": "经核对，截至 {{ today }} 我司在贵司的未结清余额 {{ total }}：□ 属实　□ 不符，差异如下：",
}


def _font(run, size=None, bold=False):
    run.font.name = FONT
    run._element.rPr.rFonts.set(qn("w:eastAsia"), FONT)
    if size:
        run.font.size = Pt(size)
    run.bold = bold
    return run


def _para(doc, text="", *, size=11, bold=False, align=None, space_after=4):
    p = doc.add_paragraph()
    if text:
        _font(p.add_run(text), size, bold)
    if align is not None:
        p.alignment = align
    p.paragraph_format.space_after = Pt(space_after)
    return p


def _rule(p):
    """A bottom border under the paragraph: the letterhead's line."""
    ppr = p._p.get_or_add_pPr()
    borders = OxmlElement("w:pBdr")
    bottom = OxmlElement("w:bottom")
    for k, v in (("w:val", "single"), ("w:sz", "12"), ("w:space", "1"), ("w:color", "000000")):
        bottom.set(qn(k), v)
    borders.append(bottom)
    ppr.append(borders)


def _table(doc, columns):
    t = doc.add_table(rows=3, cols=len(columns))
    t.style = "Table Grid"
    t.alignment = WD_TABLE_ALIGNMENT.CENTER
    for i, (title, _) in enumerate(columns):
        c = t.rows[0].cells[i]
        c.text = ""
        _font(c.paragraphs[0].add_run(title), 10, True)
        c.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
    # docxtpl: the {%tr %} rows are replaced by one row per invoice
    t.rows[1].cells[0].text = ""
    _font(t.rows[1].cells[0].paragraphs[0].add_run("{%tr for row in rows %}"), 10)
    for i, (_, field) in enumerate(columns):
        c = t.rows[2].cells[i]
        c.text = ""
        _font(c.paragraphs[0].add_run("{{ row.%s }}" % field), 10)
        if field in ("amount", "open_amount", "late_fee", "days_overdue"):
            c.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
    row = t.add_row()
    row.cells[0].text = ""
    _font(row.cells[0].paragraphs[0].add_run("{%tr endfor %}"), 10)
    return t


def build(kind: str) -> Document:
    doc = Document()
    sec = doc.sections[0]
    sec.page_height, sec.page_width = Cm(29.7), Cm(21.0)
    sec.left_margin = sec.right_margin = Cm(2.2)
    sec.top_margin = sec.bottom_margin = Cm(2.0)
    style = doc.styles["Normal"]
    style.font.name = FONT
    style.element.rPr.rFonts.set(qn("w:eastAsia"), FONT)
    style.font.size = Pt(11)
    # letterhead
    _para(doc, "{{ company_name }}", size=16, bold=True, align=WD_ALIGN_PARAGRAPH.CENTER, space_after=2)
    head = _para(doc, "{{ company_line }}", size=9, align=WD_ALIGN_PARAGRAPH.CENTER, space_after=10)
    _rule(head)
    if kind == "lawyer_letter":
        _para(doc, "内部底稿：由系统根据台账生成，须经法务或律师审核修改后方可发出。", size=9)
        _para(doc, "{% if disputed %}内部提示：以下发票有未解决的异议，未列入本函，其滞纳金也未计入；异议解决前请勿主张"
                   "（发出前删去本段）：{{ disputed }}{% endif %}", size=9)
    _para(doc, TITLES[kind], size=18, bold=True, align=WD_ALIGN_PARAGRAPH.CENTER, space_after=12)
    _para(doc, "致：{{ customer_name }}{% if contact_name %}（{{ contact_name }} 收）{% endif %}")
    for text in BODY[kind]:
        _para(doc, text)
    columns = COLUMNS[kind]
    if kind in ("reminder", "lawyer_letter"):
        # the late-fee column only where the contract has a clause: two tables, one kept
        _para(doc, "{%p if show_late_fee %}", space_after=0)
        _table(doc, columns + [FEE_COLUMN])
        _para(doc, "{%p else %}", space_after=0)
        _table(doc, columns)
        _para(doc, "{%p endif %}", space_after=0)
    else:
        _table(doc, columns)
    _para(doc, space_after=2)
    for text in AFTER[kind]:
        _para(doc, text)
    if kind != "lawyer_letter":
        _para(doc, "收款账户：户名 {{ company_name }}；开户行 {{ bank }}；账号 {{ account }}")
        _para(doc, "联系人：{{ company_contact }}{% if company_phone %}（电话 {{ company_phone }}）{% endif %}")
    # 盖章 area: the company's name, space for the stamp, the date
    _para(doc, space_after=18)
    if kind == "lawyer_letter":
        _para(doc, "此致")
        _para(doc, "{{ customer_name }}")
        _para(doc, "（律师事务所名称）（盖章）", align=WD_ALIGN_PARAGRAPH.RIGHT)
        _para(doc, "律师：（待填）", align=WD_ALIGN_PARAGRAPH.RIGHT)
    else:
        _para(doc, "{{ company_name }}（盖章）", align=WD_ALIGN_PARAGRAPH.RIGHT)
        _para(doc, "", space_after=30)
    _para(doc, "{{ today }}", align=WD_ALIGN_PARAGRAPH.RIGHT)
    if kind in RECEIPT:
        _para(doc, space_after=12)
        _para(doc, "- - - - - - - - - - - - - - - - 沿此线剪下，签字盖章后寄回或拍照回传 - - - - - - - - - - - - - - - -",
              size=8, align=WD_ALIGN_PARAGRAPH.CENTER)
        _para(doc, "回　执", size=14, bold=True, align=WD_ALIGN_PARAGRAPH.CENTER)
        _para(doc, "致：{{ company_name }}")
        _para(doc, RECEIPT[kind])
        _para(doc, "______________________________________________________________", space_after=14)
        _para(doc, "{{ customer_name }}（盖章）", align=WD_ALIGN_PARAGRAPH.RIGHT)
        _para(doc, "经办人签字：____________　　日期：____年__月__日", align=WD_ALIGN_PARAGRAPH.RIGHT)
    return doc


if __name__ == "__main__":
    for kind in COLUMNS:
        path = OUT / f"{kind}.docx"
        build(kind).save(path)
        print(path)
