"""/audit (/审计): the audit log in chat for auditors and finance — who changed what, when and
from where, newest first, a page at a time (each page a message the outbox fits to the platform).

``/audit [发票号|客户|@人员|动作] [2026-11-01~2026-11-30] [第2页]``: the words narrow it down in any
order; the whole log is ``arbot audit`` on the command line.
"""
from __future__ import annotations

import re
from datetime import date

from sqlalchemy import or_, select

from bot.core.arguments import customer_named
from bot.core.errors import UserError
from bot.core.messages import Reply
from bot.core.permissions import AUDIT_READERS
from bot.core.router import Router
from storage import audit_trail
from storage.models import AuditEntry, Person, Receivable
from storage.scope import Scope

router = Router("audit")
PER_PAGE = 15
_PAGE = re.compile(r"^(?:第(\d+)页|[pP页](\d+))$")
_RANGE = re.compile(r"^(\d{4}-\d{1,2}-\d{1,2})(?:(?:~|～|\.\.|至)(\d{4}-\d{1,2}-\d{1,2}))?$")


def _day(text: str, word: str) -> date:
    try:
        y, m, d = (int(x) for x in text.split("-"))
        return date(y, m, d)
    except ValueError:
        raise UserError("audit_bad_word", word=word) from None


async def _query(session, args: str) -> tuple[audit_trail.AuditQuery, int, list[str]]:
    """The filters the words name, the page, and the words as the caller wrote them (for the
    next page's command)."""
    q, page, words = {}, 1, []
    for word in args.split():
        m = _PAGE.match(word)
        if m:
            page = int((m.group(1) or m.group(2))[:6])
            continue
        words.append(word)
        m = _RANGE.match(word)
        if m:
            q["since"] = _day(m.group(1), word)
            q["until"] = _day(m.group(2), word) if m.group(2) else q["since"]
            if q["until"] < q["since"]:
                raise UserError("audit_bad_word", word=word)
        elif word.startswith(("@", "＠")):
            who = word[1:]
            pid = (await session.execute(select(Person.id).where(or_(Person.id == who, Person.name == who))
                                         .limit(1))).scalar()
            q["actor"] = pid or who
        elif (await session.execute(select(Receivable.id).where(Receivable.invoice_no == word))).first():
            q["invoice"] = word
        elif "." in word or (await session.execute(select(AuditEntry.id).where(
                AuditEntry.action.like(word.replace("%", "") + ".%")).limit(1))).first():
            q["action"] = word
        else:
            try:
                q["customer"] = await customer_named(session, Scope.everything(), word)
            except UserError:
                raise UserError("audit_bad_word", word=word) from None
    return audit_trail.AuditQuery(**q), page, words


@router.command("audit", aliases=("审计",), roles=AUDIT_READERS, reads_only=True)
async def audit_cmd(session, args, config) -> Reply:
    """The audit log, newest first, narrowed by invoice, customer, @person, action and dates; a page at a time."""
    q, page, words = await _query(session, args)
    found = await audit_trail.entries(session, q, config.tz, page=page, per_page=PER_PAGE)
    lines = [{"e": e, "who": found.names.get(e.actor, e.actor), "detail": audit_trail.brief(e.detail, 120)}
             for e in found.entries]
    return Reply("audit/page.md.j2", {"q": q, "page": found, "lines": lines, "words": " ".join(words),
                                      "tz": config.tz})
