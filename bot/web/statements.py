"""The statement confirmation page (对账确认): where a customer's accountant, following the signed
link of a monthly statement, confirms the balance or disputes lines. No account: the link is the
key, it names one statement and expires (``[letters] confirm_days``); a statement is answered
once; each address may ask ``[letters] confirm_per_minute`` times a minute.

What the page records (who typed which name, when, from which address and browser, the exact
balance and lines shown) is in storage/statements.py; a dispute reaches the rep as a line of the
``statement_answers`` digest.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque
from decimal import Decimal

from aiohttp import web
from sqlalchemy import select

from bot.render import html_environment, money, render, ymd
from bot.web import signing
from bot.web.dashboard import HEADERS
from storage import digests as digest_store
from storage import statements as store
from storage.models import Contact, Customer, Person, Receivable, Statement

LIMITS = web.AppKey("statement_rate_limits", dict)
MAX_NAME, MAX_REASON = 50, 200


class _Window:
    """Requests per address in the last minute (monotonic time: a rate, not a date)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.seen: dict[str, deque] = defaultdict(deque)

    def allow(self, address: str) -> bool:
        now = time.monotonic()
        q = self.seen[address]
        while q and now - q[0] >= 60:
            q.popleft()
        if len(q) >= self.per_minute:
            return False
        q.append(now)
        if len(self.seen) > 10_000:          # forget idle addresses rather than grow without end
            for k in [k for k, v in self.seen.items() if not v or now - v[-1] >= 60]:
                del self.seen[k]
        return True


def _page(status: int = 200, **data) -> web.Response:
    html = html_environment().get_template("web/statement.html.j2").render(**data)
    return web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)


def _lines(st: Statement) -> list[dict]:
    return [{**line, "amount_text": money(Decimal(line["amount"]), line["currency"]),
             "open_text": money(Decimal(line["open_amount"]), line["currency"])} for line in st.lines]


def _balances(st: Statement) -> str:
    return " + ".join(money(Decimal(v), cur) for cur, v in st.balances.items()) or money(Decimal(0))


def install(app: web.Application, state) -> None:
    config, clock = state.config, state.services.clock
    window = _Window(config.letters.confirm_per_minute)

    async def load(request: web.Request, token: str):
        """(statement, customer, contact) of a good link, or the page that says why not."""
        try:
            payload = signing.verify(config, "statement", token, clock.now())
        except signing.BadToken as e:
            return _page(410 if str(e) == "expired" else 403, state="expired" if str(e) == "expired" else "invalid")
        sid = payload.get("s")
        if not isinstance(sid, int) or isinstance(sid, bool) or not 0 < sid < 2 ** 62:
            return _page(403, state="invalid")
        async with state.db.reader() as s:
            st = await s.get(Statement, sid)
            if st is None:
                return _page(404, state="invalid")
            return st, await s.get(Customer, st.customer_id), await s.get(Contact, st.contact_id)

    def show(st, customer, contact, *, token: str = "", status: int = 200, error: str = "", form=None):
        tz = config.tz
        return _page(status, state="open" if st.status == "sent" else "answered", st=st,
                     company=config.company.name, customer=customer.name, contact=contact.name if contact else "",
                     lines=_lines(st), balance=_balances(st), as_of=ymd(st.as_of), period=st.period,
                     expires=st.expires_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                     answered_at=st.answered_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if st.answered_at else "",
                     error=error, form=form or {}, token=token)

    async def page(request: web.Request) -> web.Response:
        if not window.allow(request.remote or ""):
            return _page(429, state="busy")
        token = request.query.get("t", "")
        got = await load(request, token)
        if isinstance(got, web.Response):
            return got
        return show(*got, token=token)

    async def submit(request: web.Request) -> web.Response:
        if not window.allow(request.remote or ""):
            return _page(429, state="busy")
        try:
            form = await request.post()
        except ValueError:
            return _page(400, state="invalid")
        token = str(form.get("t", ""))
        got = await load(request, token)
        if isinstance(got, web.Response):
            return got
        st, customer, contact = got
        if st.status != "sent":
            return show(st, customer, contact, status=409)
        action = form.get("action")
        name = " ".join(str(form.get("name", "")).split())
        disputed: dict[str, str] = {}
        for i, line in enumerate(st.lines):
            if form.get(f"d{i}"):
                disputed[line["invoice_no"]] = " ".join(str(form.get(f"r{i}", "")).split())[:MAX_REASON]
        error = ""
        if action not in ("confirm", "dispute"):
            error = "action"
        elif not name or len(name) > MAX_NAME:
            error = "name"
        elif action == "dispute" and not disputed:
            error = "no_line"
        elif action == "dispute" and not all(disputed.values()):
            error = "no_reason"
        if error:
            return show(st, customer, contact, token=token, status=400, error=error, form=dict(form))
        now = clock.now()

        async def work(s):
            answered, opened = await store.answer(
                s, st.id, confirmed=action == "confirm", name=name, ip=request.remote or "",
                user_agent=request.headers.get("User-Agent", ""), disputed=disputed if action == "dispute" else {},
                now=now, tz=config.tz)
            await _tell_rep(s, config, customer, answered, opened, name, now)
            return answered
        try:
            answered = await state.db.write(work)
        except store.AlreadyAnswered as e:
            return show(e.statement, customer, contact, status=409)
        return show(answered, customer, contact)

    app.add_routes([web.get("/statements/confirm", page), web.post("/statements/confirm", submit)])


async def _tell_rep(s, config, customer: Customer, st: Statement, opened: list[Receivable], name: str, now) -> None:
    """A dispute from the page: a line of the rep's next ``statement_answers`` digest per invoice."""
    if not opened:
        return
    rep_ids = {r.rep_id or customer.rep_id for r in opened} - {None}
    reps = {p.id: p for p in (await s.execute(select(Person).where(Person.id.in_(rep_ids)))).scalars()}
    reasons = {d["invoice_no"]: d["reason"] for d in st.answer.get("disputed", [])}
    rows = []
    day = now.astimezone(config.tz).date()
    for r in opened:
        rep = reps.get(r.rep_id or customer.rep_id)
        if rep is None or not rep.active:
            continue
        line = render("digest/item_statement_dispute.md.j2", invoice=r, name=name, reason=reasons.get(r.invoice_no, ""),
                      period=st.period)
        rows.append(digest_store.item_row(
            item_key=f"statement:{st.id}:{r.invoice_no}:{rep.id}", job="statement_answers", fire=day.isoformat(),
            person_id=rep.id, kind="statement_dispute", rank=0, label=render("digest/label_statement_dispute.j2"),
            customer_key=customer.code, customer_name=customer.name, subject=r.invoice_no, currency=r.currency,
            amount=r.open_amount, line=line, now=now, not_before=now, day=day))
    await digest_store.record(s, rows)
