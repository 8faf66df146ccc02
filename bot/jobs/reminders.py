"""Reminders before the due date, the escalation ladder, credit and statute watches.

Rules (``[policy]``, ``[conduct]``, ``[credit]``, ``[statute]`` in the configuration):

- Each step fires once per invoice: a ``LadderStep`` row (unique per invoice and step) plus an
  audit entry; every message carries an outbox key (``ladder:{invoice}:{step}`` for the customer,
  the same plus ``:{person}`` for staff), so a re-run sends nothing twice.
- Only an invoice's current step fires; the steps it passed unseen (imported already overdue,
  the bot down, a step added to the ladder, a dispute meanwhile) are recorded as skipped, never
  sent (see ``escalations``). A step that comes due while an open promise's date (plus the
  promise grace working days) has not passed is held, and fires on the first run after the
  promise is broken: then all held steps fire for staff, but only the latest customer-facing
  one writes to the customer.
- Customer messages go only in working hours on working days and within the per-customer cap;
  one that cannot go now is queued for the next allowed slot (``outbox.enqueue(not_before=...)``).
  A queued message whose reason vanished (dispute, full payment, fresh promise) is cancelled in
  the very transaction that made the change, and re-checked at send time (see
  ``storage/reminders.py``). A pre-due message that could only go on or after the due date is
  not sent (staff are told to follow up by hand).
- Staff notifications from these jobs also wait for working hours (``[conduct] staff_hours``).
- A step with ``freeze = true`` sets the customer's status to "frozen" (new orders paused);
  unfreezing is a person's decision, never automatic.
- Lawyer's-letter drafts (律师函底稿) go to staff only; a customer message on such a step carries
  the payment reminder letter (付款提醒函) instead.
"""
from __future__ import annotations

import base64
import logging
from datetime import date, timedelta
from decimal import Decimal

from bot import documents, letters
from domain import statute
from storage import statute as statute_events
from bot.core.messages import OutgoingMessage
from bot.jobs.context import JobContext
from bot.jobs.ledger_pass import CustomerView, LedgerPass
from bot.render import render, yuan
from bot.web import letter_files
from storage import payment_history
from storage import reminders as rem
from storage import unapplied as unapplied_q
from storage.reminders import GROUP_SUFFIX
from storage.models import Contact, CreditAlert, Customer, Receivable


log = logging.getLogger(__name__)


def at_config(section: str, attr: str):
    """A registry trigger reading HH:MM from ``[section] attr``."""
    def trigger(cfg) -> dict:
        hh, mm = getattr(getattr(cfg, section), attr).split(":")
        return {"hour": int(hh), "minute": int(mm)}
    return trigger


# -- customer messages -------------------------------------------------------------------------

def _sms_params(c: Customer, inv: dict) -> dict:
    return {"customer": c.name, "invoice": inv["invoice_no"], "contract": inv["contract_no"] or inv["invoice_no"],
            "amount": yuan(inv["open_amount"]), "currency": inv["currency"], "due_date": inv["due_date"].isoformat(),
            "days": str(inv["days_overdue"])}


def _attachment(config, letter: "letters.Letter") -> dict:
    """The letter as a PDF (CJK font embedded); as HTML only where no CJK font can be found, so the
    customer still gets the letter (and the log says what to install). Blocking (about a second
    of font work): callers on the event loop run it in a thread."""
    try:
        data = documents.pdf(config, letter)
    except documents.DocumentError as e:
        log.warning("letters: PDF not made (%s); the letter goes as HTML", e)
        return {"filename": f"{letter.title}.html", "content": letter.html, "mime": "text/html"}
    return {"filename": letter.filename, "content": base64.b64encode(data).decode(), "base64": True,
            "mime": documents.PDF_MIME}


def _customer_out(contact: Contact, *, subject: str, text: str, key: str, sms_kind: str, params: dict,
                  letter: "letters.Letter | None") -> OutgoingMessage:
    extra: dict = {"customer_message": key}
    if contact.channel == "email":
        extra["html"] = letters.markdown_to_html(text)
        extra["to_name"] = contact.name
        if letter is not None:
            # filled by _attachment in a thread before the row is written (LedgerPass.later)
            extra["attachment"] = {}
        return OutgoingMessage(platform="email", target_kind="email", target=contact.email, text=text, format="text",
                               title=subject, extra=extra)
    if contact.channel == "sms":
        extra.update(sms_template=sms_kind, sms_params=params)
        return OutgoingMessage(platform="sms", target_kind="sms", target=contact.mobile, text=text, format="text",
                               title=subject, extra=extra)
    # "<platform>_group": a group robot of that platform, by its configured name
    platform = contact.channel.removesuffix(GROUP_SUFFIX)
    return OutgoingMessage(platform=platform, target_kind="robot", target=contact.channel_target, text=text,
                           format="markdown", title=subject, extra=extra)


def _sms_kind(kind: str, invoice: dict) -> str:
    """The approved SMS template a message uses: a month-end reminder says what the pre-due or
    the overdue template says, so it needs no template of its own ([sms] templates)."""
    if kind == "month_end":
        return "overdue" if invoice["days_overdue"] > 0 else "pre_due"
    return kind


def compose(config, contact: Contact, data: dict, *, key: str, kind: str, template: str,
            letter_kind: str | None = None) -> OutgoingMessage:
    """The message to a customer contact from the ledger's facts (``letters.facts``): made when
    it is queued and made again from the ledger as it stands when it leaves
    (bot/send_time_check.py), which ``extra["compose"]`` makes possible."""
    attach = letters.render_letter(letter_kind, data) if letter_kind and contact.channel == "email" else None
    text = render(template, **{**data, "contact": contact}, attached=attach.title if attach else "")
    subject = render("reminders/customer_subject.txt.j2", kind=kind, company=data["company"], invoice=data["invoice"])
    out = _customer_out(contact, subject=subject, text=text, key=key, sms_kind=_sms_kind(kind, data["invoice"]),
                        params=_sms_params(data["customer"], data["invoice"]), letter=attach)
    out.extra["compose"] = {"kind": kind, "template": template, "letter": letter_kind}
    return out


def _to_customer(run: LedgerPass, view: CustomerView, r: Receivable, *, step: str, key: str, kind: str,
                 template: str, data: dict, letter_kind: str | None = None, before: date | None = None) -> dict:
    """Queue one message to the customer's contact at the next allowed slot. Returns a note for staff."""
    contact = view.contact
    if contact is None:
        return {"outcome": "no_contact"}
    slot = run.customer_slot(view)
    if before is not None and slot.date() >= before:
        return {"outcome": "too_late", "contact": contact}
    out = compose(run.ctx.config, contact, data, key=key, kind=kind, template=template, letter_kind=letter_kind)
    attached = "attachment" in out.extra
    covers: list[int] = []
    if attached:
        # the PDF is made in a thread before the pass writes (LedgerPass.later); the letter lists
        # the customer's other overdue invoices, checked again where the pass writes
        cfg, letter = run.ctx.config, letters.render_letter(letter_kind, data)
        run.later(lambda: out.extra["attachment"].update(_attachment(cfg, letter)))
        listed = {i["invoice_no"] for i in data.get("overdue", ())}
        covers = [x.id for x in view.open_rs if x.invoice_no in listed and x.id != r.id]
    run.to_customer(view, r, out, key=key, step=step, slot=slot, covers=covers,
                    kind="letter" if attached else ("statement" if kind == "statement" else "reminder"))
    return {"outcome": "queued", "contact": contact, "slot": slot, "later": slot > run.ctx.at}


def _note(note: dict | None) -> str:
    if not note:
        return ""
    return render("reminders/customer_note.md.j2", outcome=note["outcome"], contact=note.get("contact"),
                  slot=note.get("slot"), later=note.get("later", False), days=note.get("days", 0))


def _last_workday_on_or_before(cal, d: date) -> date:
    return d if cal.is_workday(d) else cal.add_workdays(d, -1)


# -- jobs --------------------------------------------------------------------------------------

async def customer_reminders(ctx: JobContext) -> str:
    """Before the due date: the statement to the customer (``statement_days`` before) and the
    grade's reminder (A: director, B: rep with a statement, C: automatic message to the customer)."""
    today, cfg, cal = ctx.today, ctx.config, ctx.services.calendar
    await rem.sync_sent(ctx.session)
    await ctx.checkpoint(force=True)
    run = await LedgerPass.start(ctx, "customer_reminders")
    done = skipped = 0
    async for chunk in run.chunks(due_on_or_after=today + timedelta(days=1)):
        payers = await _month_end_payers(ctx, chunk)
        for r, view in chunk.rows:
            await run.maybe_write()
            c, fired = view.customer, chunk.recorded[r.id]
            wanted: list[str] = []
            sd = cfg.policy.statement_days
            if sd and "pre_statement" not in fired and \
                    today >= _last_workday_on_or_before(cal, r.due_date - timedelta(days=sd)):
                wanted.append("pre_statement")
            spec = cfg.policy.pre_due_spec(c.grade)
            if _pre_due_now(cal, today, r, spec, fired):
                wanted.append("pre_due")
            if not wanted:
                continue
            if rem.ledger_block(r) or r.id in chunk.promised:
                skipped += 1
                continue
            data = view.facts(ctx, r)
            for step in wanted:
                run.step(r, step, due_date=r.due_date, grade=c.grade)
                done += 1
                key = f"remind:{r.invoice_no}:{step}"
                if step == "pre_statement":
                    _to_customer(run, view, r, step=step, key=key, kind="statement",
                                 template="reminders/customer_statement.txt.j2", data=data, before=r.due_date)
                    continue
                note = None
                if spec.customer_message and c.id in payers:
                    # it pays in its month-end run: reminded before that (bot/jobs/month_end_reminders.py)
                    note = {"outcome": "month_end", "days": cfg.policy.month_end_days}
                elif spec.customer_message:
                    note = _to_customer(run, view, r, step=step, key=key, kind="pre_due",
                                        template="reminders/customer_pre_due.txt.j2", data=data, before=r.due_date)
                persons = run.people_for(spec.notify, r, c)
                if persons:
                    line = render("digest/item_pre_due.md.j2", **data, statement=spec.statement,
                                  days_left=(r.due_date - today).days, customer_note=_note(note))
                    run.to_staff(persons, key=key, kind="pre_due", rank=-1, customer=c, subject=r.invoice_no,
                                 label=render("digest/label_pre_due.j2", grade=c.grade), line=line,
                                 amount=r.open_amount, currency=r.currency)
    digests = await run.send_digests()
    return f"{done} reminder step(s) fired, {skipped} invoice(s) held (dispute or promise), {digests} digest(s)"


def _pre_due_now(cal, today: date, r: Receivable, spec, fired) -> bool:
    """Is the grade's pre-due step of this invoice due (and not yet recorded)?"""
    if spec is None or "pre_due" in fired:
        return False
    target = cal.add_workdays(r.due_date, -spec.days) if spec.working_days else \
        _last_workday_on_or_before(cal, r.due_date - timedelta(days=spec.days))
    return today >= target


async def _month_end_payers(ctx: JobContext, chunk) -> set[int]:
    """The chunk's customers that get their reminder before month-end instead of before the due
    date (``[policy] month_end_days``): read only for those whose grade's reminder would write to
    them today (a few a day), not for every customer every day."""
    cfg = ctx.config
    if cfg.policy.month_end_days <= 0:
        return set()
    grades: dict[int, str] = {}
    specs: dict[str, object] = {}
    for r, view in chunk.rows:
        c = view.customer
        if c.grade not in specs:
            specs[c.grade] = cfg.policy.pre_due_spec(c.grade)
        spec = specs[c.grade]
        if c.id not in grades and spec is not None and spec.customer_message and \
                _pre_due_now(ctx.services.calendar, ctx.today, r, spec, chunk.recorded[r.id]):
            grades[c.id] = c.grade
    if not grades:
        return set()
    async with ctx.reader() as r:
        return await payment_history.month_end_payers(r, grades, ctx.today)


async def escalations(ctx: JobContext) -> str:
    """After the due date: the ladder's steps, each once per invoice.

    Only an invoice's current step (the last one its days overdue have reached) fires. A step it
    passed without the ladder noticing (the invoice was imported already overdue, the bot was
    down, the ladder was changed, a dispute paused it) is recorded as skipped and never sent:
    otherwise the first run after an import would send every past step of every old invoice at
    once. A step that comes due while a promise to pay holds the invoice is recorded as held and
    fires when the promise is broken (the promise deferred it; staff hear of each held step, the
    customer only once)."""
    today, cfg = ctx.today, ctx.config
    steps = cfg.policy.steps()
    await rem.sync_sent(ctx.session)
    await ctx.checkpoint(force=True)
    run = await LedgerPass.start(ctx, "escalations")
    done = held = skipped = 0
    async for chunk in run.chunks(due_before=today):
        for r, view in chunk.rows:
            await run.maybe_write()
            days = (today - r.due_date).days
            reached = [st for st in steps if st.days <= days]
            if not reached:
                continue
            current, seen = reached[-1], chunk.recorded[r.id]
            deferred = [st for st in reached if seen.get(st.name) == "held"]
            new = [st for st in reached if st.name not in seen]
            if not new and not deferred:
                continue
            # a step recorded at a later day than the current one (the ladder was changed: d15
            # moved to d14) means the invoice is past this stage already: its current step is
            # skipped too
            past = any(_step_days(name) > current.days for name in seen)
            missed = [st for st in new if st is not current or past]
            for st in missed:
                run.step(r, st.name, "skipped", days_overdue=days, current=current.name)
                skipped += 1
            reason = rem.ledger_block(r) or ("promise" if r.id in chunk.promised else None)
            if reason:
                if reason == "promise" and current in new and current not in missed:
                    run.step(r, current.name, "held", days_overdue=days)
                held += 1
                continue
            due = deferred + [st for st in new if st not in missed]
            facing = [st for st in due if st.customer_message]
            for st in due:
                _fire_ladder_step(run, view, r, st, latest=bool(facing) and st is facing[-1],
                                  was_held=st in deferred, skipped=[m.days for m in missed])
                done += 1
    digests = await run.send_digests()
    return (f"{done} ladder step(s) fired, {skipped} earlier step(s) skipped, "
            f"{held} invoice(s) held (dispute or promise), {digests} digest(s)")


def _step_days(name: str) -> int:
    """The days overdue of a recorded ladder step's name (``d30`` → 30); -1 for other steps."""
    return int(name[1:]) if name[:1] == "d" and name[1:].isdigit() else -1


# documents about the customer's whole account (they list every open or overdue invoice)
CUSTOMER_DOCUMENTS = ("confirmation", "lawyer_letter")


def _fire_ladder_step(run: LedgerPass, view: CustomerView, r: Receivable, st, *, latest: bool,
                      was_held: bool, skipped: list[int] = ()) -> None:
    ctx, c = run.ctx, view.customer
    days = (ctx.today - r.due_date).days
    run.step(r, st.name, was_held=was_held, days_overdue=days, notify=list(st.notify), document=st.document,
             step_action=st.action, freeze=st.freeze, customer_message=st.customer_message and latest)
    froze = st.freeze and run.freeze(c, reason=f"ladder {st.name}", invoice=r.invoice_no)
    data = view.facts(ctx, r)
    key = f"ladder:{r.invoice_no}:{st.name}"
    note = None
    if st.customer_message and latest:
        kind = st.document if st.document in ("reminder", "confirmation") else "reminder"
        # the letter lists all the customer's overdue invoices: one mail to a customer in a run,
        # not one per invoice (three identical letters reached one customer)
        letter_key = f"letter:{c.id}:{kind}"
        if view.contact is not None and view.contact.channel == "email" and letter_key in run.documents:
            note = {"outcome": "in_letter", "contact": view.contact}
        else:
            run.documents.add(letter_key)
            note = _to_customer(run, view, r, step=st.name, key=key, kind="overdue",
                                template="reminders/customer_overdue.txt.j2", data=data, letter_kind=kind)
    persons = run.people_for(st.notify, r, c)
    line = render("digest/item_ladder.md.j2", **data, step=st, rep=run.rep_of(r, c), froze=froze,
                  customer_note=_note(note), skipped=skipped)
    run.to_staff(persons, key=key, kind=st.name, rank=st.days, label=render("digest/label_ladder.j2", step=st),
                 customer=c, subject=r.invoice_no, line=line, amount=r.open_amount, currency=r.currency)
    if st.document:
        # a balance confirmation or a lawyer's letter covers all the customer's invoices: one
        # draft per customer and step in a run, not one per invoice (40 invoices were 40 drafts)
        per_invoice = st.document not in CUSTOMER_DOCUMENTS
        doc_key = f"{key}:doc" if per_invoice else f"ladder:{c.code}:{st.name}:doc:{ctx.fire_key}"
        if doc_key not in run.documents:
            run.documents.add(doc_key)
            doc = letters.render_letter(st.document, data)
            links = _document_links(run, doc, c, per_invoice) if persons else {}
            run.document_to_staff(persons, render("reminders/document.md.j2", letter=doc, per_invoice=per_invoice,
                                                  links=links, **data), key=doc_key, title=doc.title)


def _document_links(run: LedgerPass, letter: "letters.Letter", customer: Customer, per_invoice: bool) -> dict:
    """Signed download links of the letter's DOCX and PDF. A customer's letter is made when its
    link is opened, from the ledger as it stands that day, as /letter's are: a morning of the
    ladder then makes no PDF for drafts that may never be opened (half the PDFs of the digests'
    test morning were these, at about a second of font work each). A per-invoice document is saved
    under ``[reports] dir`` in a thread before the draft is written (the draft in chat stands
    without them)."""
    cfg = run.ctx.config
    if not per_invoice:
        return {ext: letter_files.link(cfg, letter.kind, customer, ext, "ladder", run.ctx.at) for ext in ("docx", "pdf")}

    def save() -> None:
        try:
            documents.save(cfg, letter)
        except documents.DocumentError as e:
            log.warning("letters: documents not made (%s)", e)
    run.later(save)
    return documents.links(cfg, letter, run.ctx.at)


async def credit_watch(ctx: JobContext) -> str:
    """Credit usage crossing yellow / red (once per crossing, to the rep and finance; red freezes)
    and key accounts (a big single invoice or consecutive overdue invoices); and, to finance,
    unapplied cash that a customer's open invoice could take (applied with /apply)."""
    now, today, cfg = ctx.at, ctx.today, ctx.config
    cr = cfg.credit
    alerts = 0
    run = await LedgerPass.start(ctx, "credit_watch")
    async with ctx.reader() as r:
        positions = await rem.credit_positions(r, cfg.company.fx_rates)
        streaks = await rem.overdue_streaks(r, today, cr.key_consecutive_overdue)
        open_ = await rem.open_alerts(r)
    for pos in positions:
        await run.maybe_write()
        c = pos.customer
        big = pos.largest_invoice > cr.key_invoice_amount
        streak = c.id in streaks
        is_key = big or streak
        persons = run.people_for(("rep", "finance"), None, c)
        if is_key and (c.id, "key") not in open_:
            run.audit(action="credit.key_account", entity="customer", entity_id=c.code, big=big, streak=streak)
            text = render("digest/item_key_account.md.j2", customer=c, big=big, streak=streak,
                          limit=cr.key_invoice_amount, largest=pos.largest_invoice, n=cr.key_consecutive_overdue)
            run.new_alert(CreditAlert(customer_id=c.id, level="key", balance=pos.balance, crossed_at=now),
                          lambda a, c=c, persons=persons, text=text:
                          _credit_line(run, persons, c, "key", text, key=f"credit:{c.code}:key:{a.id}"))
            alerts += 1
        elif not is_key and (c.id, "key") in open_:
            run.clear_alert(open_[(c.id, "key")])
        usage = pos.usage()
        if usage is None:
            continue
        new: list[tuple[str, Decimal]] = []
        for level, threshold in (("yellow", cr.yellow), ("red", cr.red)):
            if usage >= threshold and (c.id, level) not in open_:
                new.append((level, threshold))
            elif usage < threshold and (c.id, level) in open_:
                run.clear_alert(open_[(c.id, level)])
                run.audit(action="credit.clear", entity="customer", entity_id=c.code, level=level, usage=usage)
        if not new:
            continue
        for level, _ in new[:-1]:               # straight to red: one message, the red one
            run.new_alert(CreditAlert(customer_id=c.id, level=level, balance=pos.balance, crossed_at=now))
        level, threshold = new[-1]
        froze = level == "red" and cr.freeze_on_red and c.status == "active"
        if froze:
            run.freeze(c, quiet=True)
        run.audit(action="credit.alert", entity="customer", entity_id=c.code, level=level, usage=usage,
                  balance=pos.balance, froze=froze)
        text = render("digest/item_credit.md.j2", customer=c, level=level, balance=pos.balance,
                      usage=usage * 100, threshold=threshold * 100, froze=froze, key=is_key)
        run.new_alert(CreditAlert(customer_id=c.id, level=level, balance=pos.balance, crossed_at=now),
                      lambda a, c=c, level=level, persons=persons, text=text:
                      _credit_line(run, persons, c, level, text, key=f"credit:{c.code}:{level}:{a.id}"))
        alerts += 1
    told = await _unapplied_to_apply(run)
    digests = await run.send_digests()
    return f"{alerts} credit alert(s), {told} unapplied-cash note(s), {digests} digest(s)"


CREDIT_RANKS = {"red": 0, "yellow": 1, "key": 2, "unapplied": 3}


async def _unapplied_to_apply(run: LedgerPass) -> int:
    """Unapplied cash (预收) that an open invoice of the same customer and currency could take:
    finance is told once per such state (the payments and invoices concerned) and applies it with
    /apply, which asks to confirm (storage/unapplied.py). Nothing is applied here."""
    ctx = run.ctx
    told = 0
    async with ctx.reader() as r:
        waiting = await unapplied_q.customers_with_cash(r)
        for c in waiting:
            plan = await unapplied_q.plan_on_account(r, c.id)
            if not plan:
                continue
            await run.maybe_write()
            state = ",".join(f"{p.id}>{inv.id}" for p, inv, _ in plan)
            key = f"unapplied:{c.code}:{state}"
            if await rem.told(r, key):
                continue                       # this state was told already
            amounts: dict[str, Decimal] = {}
            for p, inv, a in plan:
                amounts[inv.currency] = amounts.get(inv.currency, Decimal("0.00")) + a
            line = render("digest/item_unapplied.md.j2", customer=c, plan=plan, amounts=amounts)
            run.to_staff(run.people.by_role("finance"), key=key, kind="unapplied",
                         rank=CREDIT_RANKS["unapplied"], label=render("digest/label_unapplied.j2"), customer=c,
                         subject=c.code, line=line)
            told += 1
    return told


def _credit_line(run: LedgerPass, persons, c: Customer, level: str, line: str, *, key: str) -> None:
    # the balance is in the reporting currency (foreign invoices converted), so it is not added
    # to the per-currency totals of invoices: no amount on a credit line
    run.to_staff(persons, key=key, kind=level, rank=CREDIT_RANKS.get(level, 9), customer=c, subject=c.code,
                 label=render("digest/label_credit.j2", level=level), line=line)


async def statute_watch(ctx: JobContext) -> str:
    """Warn legal once per expiry date, ``warn_days`` before the statute of limitations runs out."""
    today, cfg = ctx.today, ctx.config
    st = cfg.statute
    await rem.sync_sent(ctx.session)
    await ctx.checkpoint(force=True)
    run = await LedgerPass.start(ctx, "statute_watch")
    legal = run.people.by_role("legal")
    warned = 0
    # an interruption only moves the last day later, so an invoice whose period, counted from its
    # due date, ends after the warning horizon cannot warn today: the job reads only the few
    # invoices near their statute date, not every open one (it read 750k and ran for minutes at 1M)
    horizon = today + timedelta(days=st.warn_days)
    due_before = min(today, statute.add_years(horizon, -min(st.years, st.cross_border_years)) + timedelta(days=2))
    async with ctx.reader() as reader:
        rows = await rem.open_receivables(reader, due_before=due_before)
        recorded = await rem.fired_steps(reader, [r.id for r, _ in rows])
        reckoned = await statute_events.reckonings(reader, [r for r, _ in rows], today=today, statute=st,
                                                   cross_border={c.id: c.cross_border for _, c in rows},
                                                   work_calendar=ctx.services.calendar, tz=cfg.tz)
        for r, c in rows:
            await run.maybe_write()
            years = st.cross_border_years if c.cross_border else st.years
            rk = reckoned[r.id]
            anchor, last = rk.anchor, rk.last_day
            # one warning per last day: a period that ran out stays out, whatever is sent after it
            step = f"statute:{last.isoformat()}"
            if today < last - timedelta(days=st.warn_days) or step in recorded[r.id]:
                continue
            run.step(r, step, anchor=anchor, last_day=last, years=years, reason=rk.reason)
            data = await letters.facts(reader, cfg, r, today)
            line = render("digest/item_statute.md.j2", **data, years=years, anchor=anchor, last_day=last,
                          days_left=(last - today).days, expired=today > last, rk=rk)
            run.to_staff(legal, key=f"statute:{r.invoice_no}:{last.isoformat()}", kind="statute", rank=0,
                         label=render("digest/label_statute.j2"), customer=c, subject=r.invoice_no, line=line,
                         amount=r.open_amount, currency=r.currency)
            warned += 1
    digests = await run.send_digests()
    return f"{warned} statute warning(s), {digests} digest(s)"
