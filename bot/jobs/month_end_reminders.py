"""Reminders timed to a customer's habit: a month-end payer (回款画像 "习惯月底付") is reminded a
few working days before the month's last working day, when it draws up its month-end payment
run, instead of before each due date, a date it ignores.

Rules (``[policy] month_end_days``, default 3 working days; 0: off):

- Who: customers whose *own* paid history shows the habit (domain/payment_profile.py). A new
  customer borrowing its grade's profile is not timed by a habit it has not shown.
- When: from ``month_end_days`` working days (Chinese calendar, 调休 included) before the last
  working day of the month, through that last working day; a message that could only leave after
  it is not sent (the rep's digest says so, as for a pre-due reminder).
- What: each open invoice due by the month's last day, once per invoice and month (step and
  outbox key ``month_end:{invoice}:{YYYY-MM}``); never one disputed, paid, written off or held by
  a promise (checked when read, when written and when it leaves: bot/send_time_check.py).
- How: like every customer message, within working hours and the per-customer cap
  (:meth:`LedgerPass.customer_slot`), and the rep hears of it in the job's digest.

The grade's pre-due customer message is left to this job for such customers
(``customer_reminders`` asks ``storage.payment_history.month_end_payers``); staff reminders by grade are unchanged.
"""
from __future__ import annotations

import calendar as _calendar
from datetime import date, timedelta

from bot.jobs.context import JobContext
from bot.jobs.ledger_pass import LedgerPass
from bot.jobs.reminders import _note, _to_customer
from bot.render import render
from storage import payment_history as ph
from storage import reminders as rem

STEP = "month_end"


def last_workday_of_month(cal, day: date) -> date:
    end = day.replace(day=_calendar.monthrange(day.year, day.month)[1])
    return end if cal.is_workday(end) else cal.add_workdays(end, -1)


def window(cal, today: date, days: int) -> tuple[date, date] | None:
    """The days this month's habit reminders go out (first, last working day), or None when off."""
    if days <= 0:
        return None
    last = last_workday_of_month(cal, today)
    return cal.add_workdays(last, -days), last


async def month_end_reminders(ctx: JobContext) -> str:
    """Month-end payers: their open invoices due by month-end, a few working days before it."""
    today, cal = ctx.today, ctx.services.calendar
    span = window(cal, today, ctx.config.policy.month_end_days)
    if span is None or not span[0] <= today <= span[1]:
        return "not in a month-end reminder window; nothing to do"
    last = span[1]
    month_end = today.replace(day=_calendar.monthrange(today.year, today.month)[1])
    step = f"{STEP}:{today:%Y-%m}"
    await rem.sync_sent(ctx.session)
    await ctx.checkpoint(force=True)
    run = await LedgerPass.start(ctx, "month_end_reminders")
    queued = held = 0
    async for chunk in run.chunks(due_before=month_end + timedelta(days=1)):
        # profiles read only for customers with an invoice this month's reminder has not seen yet
        grades = {view.customer.id: view.customer.grade for r, view in chunk.rows if step not in chunk.recorded[r.id]}
        async with ctx.reader() as r:
            payers = await ph.month_end_payers(r, grades, today)
        for r, view in chunk.rows:
            await run.maybe_write()
            c = view.customer
            if c.id not in payers or step in chunk.recorded[r.id]:
                continue
            if rem.ledger_block(r) or r.id in chunk.promised:
                held += 1
                continue
            run.step(r, step, due_date=r.due_date, habit="month_end")
            key = f"{STEP}:{r.invoice_no}:{today:%Y-%m}"
            data = view.facts(ctx, r)
            note = _to_customer(run, view, r, step=step, key=key, kind="month_end",
                                template="reminders/customer_month_end.txt.j2", data=data,
                                before=last + timedelta(days=1))
            queued += note.get("outcome") == "queued"
            persons = run.people_for(("rep",), r, c)
            if persons:
                line = render("digest/item_month_end.md.j2", **data, month_end=last, customer_note=_note(note))
                run.to_staff(persons, key=key, kind="month_end", rank=-1, customer=c, subject=r.invoice_no,
                             label=render("digest/label_month_end.j2"), line=line,
                             amount=r.open_amount, currency=r.currency)
    digests = await run.send_digests()
    return (f"{queued} month-end reminder(s) queued, {held} invoice(s) held (dispute or promise), "
            f"{digests} digest(s)")
