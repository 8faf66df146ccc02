"""Monthly statements (对账单) with online confirmation.

On ``[letters] statement_day`` each e-mail contact of every customer with an open balance gets
the statement of the month just closed as a PDF, with a signed link to a page where their
accountant confirms the balance or disputes lines (bot/web/statements.py; no account, the link
expires after ``[letters] confirm_days``). One statement per customer, contact and month: a
re-run of the fire, or a run stopped half-way and run again, sends nothing twice (the statement
row is unique, the mail's outbox key is the statement's id).

``statement_answers`` sends the reps the digest of what their customers answered (a dispute
opened from the page) every ten minutes.
"""
from __future__ import annotations

import asyncio
import base64
import logging
from datetime import timedelta

from sqlalchemy import select

from bot import digests, documents, letters, outbox
from bot.core.messages import OutgoingMessage
from bot.jobs.context import JobContext
from bot.render import render
from bot.web import signing
from storage import reminders as rem
from storage import statements as store
from storage.models import OutboxMessage

log = logging.getLogger(__name__)
PAGE = 100          # customers read at a time


def period_of(today) -> str:
    """The month a statement made on ``today`` closes: the previous one."""
    return (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def confirm_url(config, statement_id: int, expires) -> str:
    token = signing.sign(config, "statement", {"s": statement_id}, expires)
    return f"{signing.base_url(config)}/statements/confirm?t={token}"


async def monthly_statements(ctx: JobContext) -> str:
    cfg, today = ctx.config, ctx.today
    period = period_of(today)
    expires = ctx.at + timedelta(days=cfg.letters.confirm_days)
    slot = rem.next_slot(ctx.at, cfg.conduct, ctx.services.calendar)
    after, sent, failed = 0, 0, 0
    while True:
        async with ctx.reader() as r:
            customers = await store.customers_with_balance(r, after, PAGE)
            if not customers:
                break
            contacts = await store.email_contacts(r, [c.id for c in customers])
            facts = {c.id: await letters.customer_facts_read(r, cfg, c, today) for c in customers if contacts[c.id]}
        after = customers[-1].id
        for c in customers:
            for contact in contacts[c.id]:
                s = ctx.session
                st = await store.existing(s, c.id, contact.id, period)
                data = facts[c.id]
                if st is None:
                    lines, balances = store.lines_of(data["invoices"])
                    st = await store.create(s, customer=c, contact=contact, period=period, as_of=today, lines=lines,
                                            balances=balances, now=ctx.at, expires=expires)
                key = f"statement:{st.id}"
                if (await s.execute(select(OutboxMessage.id).where(OutboxMessage.idem_key == key))).first():
                    continue
                await ctx.checkpoint(force=True)        # the statement is kept before its PDF is made
                url = confirm_url(cfg, st.id, st.expires_at)
                letter = letters.render_letter("statement", {**data, "contact": contact, "confirm_url": url,
                                                             "confirm_expires": st.expires_at.astimezone(cfg.tz).date()})
                try:
                    pdf = await asyncio.to_thread(documents.pdf, cfg, letter)
                except documents.DocumentError as e:
                    log.error("statements: %s: PDF not made (%s); not sent", c.code, e)
                    failed += 1
                    continue
                text = render("reminders/customer_monthly_statement.txt.j2", **letter.data, period=period)
                subject = render("reminders/customer_monthly_statement_subject.txt.j2", company=cfg.company.name,
                                 period=period)
                extra = {"to_name": contact.name, "html": letters.markdown_to_html(text),
                         "attachment": {"filename": f"对账单{period}.pdf", "content": base64.b64encode(pdf).decode(),
                                        "base64": True, "mime": documents.PDF_MIME}}
                out = OutgoingMessage(platform="email", target_kind="email", target=contact.email, text=text,
                                      format="text", title=subject, extra=extra)
                await outbox.enqueue(s, out, key, ctx.at, not_before=slot)
                sent += 1
                await ctx.checkpoint(force=True)
    return f"{sent} statement(s) for {period} queued" + (f", {failed} not made (see the log)" if failed else "")


async def statement_answers(ctx: JobContext) -> str:
    """The digests of the disputes customers opened on the statement page (recorded by it)."""
    n = await digests.send(ctx, "statement_answers")
    return f"{n} digest(s)"
