"""Letters as documents: DOCX for finance and legal to edit, stamp (盖章) and keep, PDF for the
customer.

- DOCX: docxtpl fills a Word template (``bot/templates/letters/<kind>.docx``, made by
  scripts/make_letter_templates.py) with the letter's facts; autoescaped, so a customer's name
  with ``<`` or ``&`` stays text and the file opens in Word and WPS.
- PDF: fpdf2 lays out an HTML template (``letters/<kind>.html.j2``, autoescaped) with a CJK
  TrueType font embedded (subset), so the customer's reader needs no Chinese fonts of its own.
  Pure Python: no LibreOffice or system libraries at run time.

A company replaces either by putting a file of the same name in ``[letters] template_dir``.
"""
from __future__ import annotations

import re
from datetime import datetime, time, timezone
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

from bot.letters import Letter
from bot.render import environment, money, ymd

PACKAGED = Path(__file__).resolve().parent / "templates" / "letters"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PDF_MIME = "application/pdf"


class DocumentError(RuntimeError):
    """A document cannot be made here (no CJK font, a broken company template): the reason says which."""


def font_path(config) -> str:
    if config.letters.font:
        if not Path(config.letters.font).is_file():
            raise DocumentError(f"[letters] font: no such file {config.letters.font}")
        return config.letters.font
    for p in FONT_CANDIDATES:
        if Path(p).is_file():
            return p
    raise DocumentError("no CJK font for PDF letters: install fonts-wqy-microhei or set [letters] font")


def context(letter: Letter) -> dict:
    """The letter's facts as the documents print them: text only, amounts formatted."""
    d = letter.data
    h = d["letterhead"]
    fmt = environment().globals["fmt"]
    words = environment().get_template("letters/_words.j2").module
    listed = d["overdue"] if letter.kind in ("reminder", "lawyer_letter") else d["invoices"]
    rows = [{"contract_no": i["contract_no"] or "", "invoice_no": i["invoice_no"], "issue_date": ymd(i["issue_date"]),
             "due_date": ymd(i["due_date"]), "amount": money(i["amount"], i["currency"]),
             "open_amount": money(i["open_amount"], i["currency"]), "days_overdue": str(i["days_overdue"]),
             "late_fee": money(i["late_fee"], i["currency"])} for i in listed]
    contact = d.get("contact")
    line = str(words.company_line(h))
    disputed = str(words.disputed(d.get("disputed", [])))
    return {"kind": letter.kind, "title": letter.title, "company_name": h["name"], "company_line": line,
            "company_address": h["address"], "company_contact": h["contact"] or "-", "company_phone": h["phone"],
            "bank": str(words.see_contract(h["bank"])), "account": str(words.see_contract(h["account"])),
            "customer_name": d["customer"].name, "contact_name": contact.name if contact else "",
            "today": ymd(d["today"]), "rows": rows,
            "total": str(fmt.amounts(d["totals"])) or money(0), "overdue_total": str(fmt.amounts(d["overdue_totals"])) or money(0),
            "late_fee_total": str(fmt.amounts(d["late_fees"])) or money(0),
            "show_late_fee": bool(d["show_late_fee"] and d["late_fees"]),
            "fee_rule": str(words.fee_rule(d["tiers"], d["cap_ratio"])) if d["tiers"] else "",
            "disputed": disputed, "confirm_url": d.get("confirm_url", ""),
            "confirm_expires": ymd(d["confirm_expires"]) if d.get("confirm_expires") else ""}


def _override(config, name: str) -> Path | None:
    if config.letters.template_dir:
        p = Path(config.letters.template_dir) / name
        if p.is_file():
            return p
    return None


def docx(config, letter: Letter) -> bytes:
    from docxtpl import DocxTemplate
    path = _override(config, f"{letter.kind}.docx") or PACKAGED / f"{letter.kind}.docx"
    try:
        tpl = DocxTemplate(str(path))
        tpl.render(context(letter), autoescape=True)
        out = BytesIO()
        tpl.save(out)
    except Exception as e:       # a company's template with a broken tag: say which file
        raise DocumentError(f"{path.name}: {type(e).__name__}: {e}") from None
    return out.getvalue()


@lru_cache(maxsize=4)
def _html_environment(template_dir: str) -> Environment:
    loaders = [FileSystemLoader(template_dir)] if template_dir else []
    return Environment(loader=ChoiceLoader(loaders + [PackageLoader("bot", "templates/letters")]),
                       undefined=StrictUndefined, autoescape=True, trim_blocks=True, lstrip_blocks=True)


def html(config, letter: Letter) -> str:
    return _html_environment(config.letters.template_dir).get_template(f"{letter.kind}.html.j2").render(
        **context(letter))


def pdf(config, letter: Letter) -> bytes:
    from fpdf import FPDF
    font = font_path(config)
    doc = FPDF(format="A4")
    doc.set_margins(20, 18, 20)
    kw = {"collection_font_number": 0} if font.lower().endswith(".ttc") else {}
    # one face only: reading a CJK font takes about a second, and they rarely ship a bold one
    doc.add_font("cjk", fname=font, **kw)
    # the document's date is the letter's, not the machine's (one clock for the bot)
    doc.set_creation_date(datetime.combine(letter.data["today"], time(), timezone.utc))
    doc.set_title(letter.title)
    doc.set_author(letter.data["letterhead"]["name"])
    doc.add_page()
    doc.set_font("cjk", size=10.5)
    from fpdf.html import TextStyle
    # a letter's headings in black, not fpdf2's dark red
    styles = {"h2": TextStyle(color=(0, 0, 0), font_size_pt=18, t_margin=4, b_margin=2),
              "h3": TextStyle(color=(0, 0, 0), font_size_pt=14, t_margin=2, b_margin=1)}
    try:
        doc.write_html(html(config, letter), font_family="cjk", tag_styles=styles, table_line_separators=True)
    except Exception as e:
        raise DocumentError(f"{letter.kind}.html.j2: {type(e).__name__}: {e}") from None
    return bytes(doc.output())


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def file_stem(letter: Letter) -> str:
    """An ASCII name for the letter's files (download links accept nothing else)."""
    code = _UNSAFE.sub("-", letter.data["customer"].code).strip("-") or str(letter.data["customer"].id)
    return f"{letter.kind}-{code[:40]}-{letter.data['today'].isoformat()}"


def links(config, letter: Letter, now: datetime) -> dict[str, str]:
    """Signed download links ({"docx": url, "pdf": url}) of the files :func:`save` writes; a link
    expires with the reports' (``[reports] link_days``)."""
    from bot.web import downloads
    return {ext: downloads.download_url(config, f"{file_stem(letter)}.{ext}", now) for ext in ("docx", "pdf")}


def save(config, letter: Letter) -> None:
    """Write the letter's DOCX and PDF under ``[reports] dir`` (blocking: seconds for the PDF,
    whose font is read and subset; callers on the event loop run it in a thread)."""
    from bot.web import downloads
    stem = file_stem(letter)
    for ext, make in (("docx", docx), ("pdf", pdf)):
        downloads.save(config, f"{stem}.{ext}", make(config, letter))
