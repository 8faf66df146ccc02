"""The web dashboard: server-rendered (jinja2, autoescaped), no JavaScript, no build step.

Login: ``/dashboard`` in a 1:1 chat replies with a signed one-time link (HMAC-SHA256, ``[web]
link_minutes``, default 15). Opening it shows a page with one button; the button POSTs the token,
which is then spent and exchanged for an HttpOnly, SameSite=Strict session cookie (signed, with
its own expiry). The extra click is deliberate: chat apps fetch links for previews, and a GET
that spent the token would log the preview robot in and lock the person out; and a POST from our
own page makes the redirect to /dashboard same-site, so the Strict cookie is sent with it.

Single use: spent token ids are kept in memory (the fast check, per process) *and* written to
the audit log (``dashboard_login``), which is checked before spending, so a restart or a second
instance does not make a used link good again. Expired, reused and forged links get 403.

Logout ends the session on the server, not only in this browser: the session's id (its login
link's id) is written to the ``settings`` table (``session_ended:<id>``), which every request
looks up, so a copied or stolen cookie stops working at once, on every instance.

The page is scoped exactly like the chat commands (``scope_for``); the role and scope are read
again on every request, so a deactivated person or a changed role takes effect at once.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.core.permissions import scope_for
from bot.render import html_environment
from bot.web import downloads, ops, signing
from bot.web.figures import dashboard_figures
from storage import audit
from storage.models import AuditEntry, Person, Setting

log = logging.getLogger(__name__)
COOKIE = "arbot_session"
ENDED = "session_ended:"          # settings key prefix of a session logged out
SPENT = web.AppKey("dashboard_spent_tokens", dict)     # token id → expiry (unix), pruned as they lapse
SPEND_LOCK = web.AppKey("dashboard_spend_lock", asyncio.Lock)
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                      "form-action 'self'; frame-ancestors 'none'"}


def _page(template: str, status: int = 200, **data) -> web.Response:
    html = html_environment().get_template(f"web/{template}").render(**data)
    return web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)


def _denied(reason: str) -> web.Response:
    return _page("denied.html.j2", status=403, reason=reason)


def install(app: web.Application, state) -> None:
    """Dashboard, signed report downloads and /metrics (one call from create_app)."""
    app[SPENT] = {}
    app[SPEND_LOCK] = asyncio.Lock()
    config, clock = state.config, state.services.clock

    def check_login_token(token: str) -> dict:
        payload = signing.verify(config, "login", token, clock.now())
        if not isinstance(payload.get("p"), str) or not isinstance(payload.get("j"), str):
            raise signing.BadToken("malformed")
        return payload

    async def spent(session, jti: str) -> bool:
        if jti in app[SPENT]:
            return True
        found = await session.execute(select(AuditEntry.id).where(
            AuditEntry.action == "dashboard_login", AuditEntry.entity == "login_link", AuditEntry.entity_id == jti))
        return found.first() is not None

    async def login_page(request: web.Request) -> web.Response:
        token = request.query.get("t", "")
        try:
            payload = check_login_token(token)
        except signing.BadToken as e:
            log.info("dashboard: login link refused (%s)", e)
            return _denied("link")
        async with state.db.reader() as s:
            if await spent(s, payload["j"]):
                return _denied("used")
        return _page("login.html.j2", token=token, company=config.company.name)

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        try:
            payload = check_login_token(str(form.get("t", "")))
        except signing.BadToken as e:
            log.info("dashboard: login refused (%s)", e)
            return _denied("link")
        now = clock.now()
        async with app[SPEND_LOCK], state.db.session() as s, s.begin():
            if await spent(s, payload["j"]):
                log.warning("dashboard: a used login link was presented again (person %s)", payload["p"])
                return _denied("used")
            person = await s.get(Person, payload["p"])
            if person is None or not person.active:
                return _denied("person")
            audit.record(s, at=now, actor=person.id, channel="web", action="dashboard_login",
                         entity="login_link", entity_id=payload["j"])
            spent_tokens = app[SPENT]
            for k in [k for k, exp in spent_tokens.items() if exp <= now.timestamp()]:
                del spent_tokens[k]
            spent_tokens[payload["j"]] = payload["exp"]
        expires = now + timedelta(hours=config.web.session_hours)
        # the session's id is the login link's: one link, one session, ended by /dashboard/logout
        cookie = signing.sign(config, "session", {"p": person.id, "s": payload["j"]}, expires)
        resp = web.Response(status=303, headers={**HEADERS, "Location": "/dashboard"})
        resp.set_cookie(COOKIE, cookie, max_age=config.web.session_hours * 3600, path="/", httponly=True,
                        samesite="Strict", secure=request.secure or signing.base_url(config).startswith("https://"))
        return resp

    def session_of(request: web.Request) -> dict | None:
        try:
            payload = signing.verify(config, "session", request.cookies.get(COOKIE, ""), clock.now())
        except signing.BadToken:
            return None
        # a cookie from before sessions had ids cannot be ended, so it is not taken
        return payload if isinstance(payload.get("s"), str) and isinstance(payload.get("p"), str) else None

    async def dashboard(request: web.Request) -> web.Response:
        payload = session_of(request)
        if payload is None:
            return _denied("session")
        async with state.db.reader() as s:
            if await s.get(Setting, ENDED + payload["s"]) is not None:
                return _denied("session")
            person = await s.get(Person, payload.get("p"))
            if person is None or not person.active:
                return _denied("person")
            scope = await scope_for(s, person)
            data = await dashboard_figures(s, state.services, state, person, scope, clock.now())
        return _page("dashboard.html.j2", **data)

    async def logout(request: web.Request) -> web.Response:
        payload = session_of(request)
        if payload is not None:
            now = clock.now()

            async def end(s) -> None:
                s.add(Setting(key=ENDED + payload["s"], value=str(payload["exp"]), created_at=now))
                audit.record(s, at=now, actor=payload["p"], channel="web", action="dashboard_logout",
                             entity="session", entity_id=payload["s"])
            try:
                await state.db.write(end)
            except IntegrityError:          # logged out already (the same cookie twice)
                pass
        resp = _page("denied.html.j2", status=200, reason="logged_out")
        resp.del_cookie(COOKIE, path="/")
        return resp

    app.add_routes([web.get("/dashboard/login", login_page), web.post("/dashboard/login", login),
                    web.get("/dashboard", dashboard), web.post("/dashboard/logout", logout)])
    downloads.install(app, state)
    ops.install(app, state)
