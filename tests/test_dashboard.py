"""The web dashboard: /dashboard in chat → one-time signed link → session cookie → the page,
scoped like the commands. Expired, reused and forged links are refused with 403. And the page
in a real headless Chromium, with a screenshot."""
from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

from sqlalchemy import select

from bot.web import signing
from storage import ledger
from storage.models import Customer, Promise, Receivable
from tests import ledger_fixture
from tests.browser import ARGS, chromium_path, playwright_or_skip
from tests.conftest import at
from tests.harness import Bot


async def _bot(aiohttp_client, db, tmp_path, secret="test-secret"):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        # rep1's promise for Friday this week, and one for next week (not shown)
        a3 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-A3"))).scalar_one()
        s.add(Promise(receivable_id=a3.id, promised_date=date(2026, 11, 27), amount=Decimal("15000.00"),
                      made_by="rep1", made_at=at("2026-11-20 11:00")))
        s.add(Promise(receivable_id=a3.id, promised_date=date(2026, 12, 4), amount=Decimal("15000.00"),
                      made_by="rep1", made_at=at("2026-11-20 11:00")))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           reports={"dir": str(tmp_path / "reports")}, web={"secret": secret})


async def _link(bot, user: str) -> str:
    [reply] = await bot.say(user, "/dashboard")
    m = re.search(r"(https?://\S+/dashboard/login\?t=[A-Za-z0-9_.-]+)", reply)
    assert m, reply
    assert "15分钟内有效" in reply and "只能使用一次" in reply
    u = urlsplit(m.group(1))
    return f"{u.path}?{u.query}"


def _token(path: str) -> str:
    return path.split("t=", 1)[1]


async def _login(bot, path: str) -> int:
    """Open the link (a page with one button), press it: the status of the POST."""
    page = await bot.client.get(path)
    if page.status != 200:
        return page.status
    assert "进入看板" in await page.text()
    resp = await bot.client.post("/dashboard/login", data={"t": _token(path)}, allow_redirects=False)
    if resp.status == 303:
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "arbot_session=" in cookie
        assert resp.headers["Location"] == "/dashboard"
    return resp.status


async def test_link_cookie_dashboard_with_the_key_figures(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    assert (await bot.client.get("/dashboard")).status == 403          # no session yet
    path = await _link(bot, "gm")
    assert await _login(bot, path) == 303
    resp = await bot.client.get("/dashboard")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    html = await resp.text()
    assert "周总（管理层）" in html
    assert 'id="total">¥87,446.17<' in html and 'id="overdue">¥77,446.17<' in html
    assert 'id="collection-rate">3.8%<' in html                 # 5,000 of 132,446.17 due in November
    assert 'id="dso">186.9天<' in html                          # 87,446.17 / 42,100.00 × 90
    assert "上海恒信机电有限公司" in html and "华东" in html and "华南" in html
    assert "张伟" in html and "李娜" in html
    promises = html.split('id="promises"')[1].split("</section>")[0]
    assert "11月27日" in promises and "INV-A3" in promises and "¥15,000.00" in promises
    assert "12月4日" not in promises
    assert "2026-06-30" in html and "2026-10-31" in html and "2026-11-23" in html     # DSO trend, 6 points
    assert 'id="ops"' in html and 'id="outbox-dead"' in html                            # managers see health
    # the link was spent: opening or posting it again is refused
    assert (await bot.client.get(path)).status == 403
    assert (await bot.client.post("/dashboard/login", data={"t": _token(path)})).status == 403
    # logging out drops the cookie
    assert (await bot.client.post("/dashboard/logout")).status == 200
    assert (await bot.client.get("/dashboard")).status == 403


async def test_logout_ends_the_session_for_a_copied_cookie_too(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    assert await _login(bot, await _link(bot, "gm")) == 303
    stolen = bot.client.session.cookie_jar.filter_cookies(bot.client.make_url("/"))["arbot_session"].value
    assert (await bot.client.get("/dashboard")).status == 200
    bot.client.session.cookie_jar.clear()
    assert await _login(bot, await _link(bot, "gm")) == 303           # a second browser, its own session
    other = bot.client.session.cookie_jar.filter_cookies(bot.client.make_url("/"))["arbot_session"].value
    bot.client.session.cookie_jar.clear()
    as_cookie = lambda v: {"Cookie": f"arbot_session={v}"}          # noqa: E731  sent by hand: a copied cookie
    assert (await bot.client.post("/dashboard/logout", headers=as_cookie(stolen))).status == 200
    assert (await bot.client.get("/dashboard", headers=as_cookie(stolen))).status == 403
    assert (await bot.client.post("/dashboard/logout", headers=as_cookie(stolen))).status == 200   # twice: fine
    assert (await bot.client.get("/dashboard", headers=as_cookie(other))).status == 200
    # a cookie signed before sessions had ids (no "s") cannot be ended, so it is refused
    old = signing.sign(bot.services.config, "session", {"p": "gm"}, at("2026-11-23 17:00"))
    assert (await bot.client.get("/dashboard", headers=as_cookie(old))).status == 403
    new = signing.sign(bot.services.config, "session", {"p": "gm", "s": "x1"}, at("2026-11-23 17:00"))
    assert (await bot.client.get("/dashboard", headers=as_cookie(new))).status == 200      # the same key signs


async def test_expired_reused_and_forged_links_are_refused(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    expired = await _link(bot, "gm")
    bot.clock.advance(minutes=15, seconds=1)
    assert await _login(bot, expired) == 403
    assert (await bot.client.post("/dashboard/login", data={"t": _token(expired)})).status == 403

    fresh = await _link(bot, "gm")
    token = _token(fresh)
    body, mac = token.split(".")
    forged_mac = body + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    assert (await bot.client.get(f"/dashboard/login?t={forged_mac}")).status == 403
    # a token claiming to be somebody else, signed with another key
    other = signing.sign(type("C", (), {"web": type("W", (), {"secret": "guess"})()})(), "login",
                         {"p": "admin", "j": "x"}, bot.clock.now().replace(year=2030))
    assert (await bot.client.post("/dashboard/login", data={"t": other})).status == 403
    # a login token is not a session cookie (keys differ per purpose)
    bot.client.session.cookie_jar.update_cookies({"arbot_session": token})
    assert (await bot.client.get("/dashboard")).status == 403
    assert (await bot.client.get("/dashboard/login?t=garbage")).status == 403

    assert await _login(bot, fresh) == 303
    assert await _login(bot, fresh) == 403                       # reused
    # a restart (a new process: the in-memory set is empty) does not make it good again
    from bot.web.dashboard import SPENT
    bot.client.app[SPENT].clear()
    assert await _login(bot, fresh) == 403


async def test_a_reps_dashboard_shows_only_their_own_figures(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    assert await _login(bot, await _link(bot, "rep2")) == 303
    html = await (await bot.client.get("/dashboard")).text()
    assert "李娜（业务员）" in html
    assert 'id="total">¥12,100.00<' in html and 'id="overdue">¥12,100.00<' in html   # INV-C1 + INV-D1 (USD 1,000 at 7.10)
    for other in ("上海恒信", "苏州明达", "张伟", "华东", "87,446.17"):
        assert other not in html, other
    assert 'id="ops"' not in html                                # operations are for admin/finance/managers


async def test_dashboard_link_only_in_private_chat(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    [reply] = await bot.say("gm", "/dashboard", chat="mgmt")
    assert "请在与我的单聊中使用" in reply and "/dashboard/login" not in reply


async def test_dashboard_in_headless_chromium(aiohttp_client, db, tmp_path):
    executable = chromium_path()
    async_playwright = playwright_or_skip()
    bot = await _bot(aiohttp_client, db, tmp_path)
    path = await _link(bot, "gm")
    url = str(bot.client.make_url(path))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
            await page.goto(url)
            await page.click("#enter")
            await page.wait_for_selector("#total")
            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert await page.inner_text("#total") == "¥87,446.17"
            assert await page.inner_text("#overdue") == "¥77,446.17"
            assert await page.inner_text("#dso") == "186.9天"
            assert await page.inner_text("#collection-rate") == "3.8%"
            assert "账龄分布" in await page.inner_text("#aging")
            cookies = await page.context.cookies()
            [c] = [c for c in cookies if c["name"] == "arbot_session"]
            assert c["httpOnly"] and c["sameSite"] == "Strict"
            # the spent link in the same browser: refused
            resp = await page.goto(url)
            assert resp.status == 403
        finally:
            await browser.close()
    print(f"dashboard screenshot: {shot}")


# C1 恒信 paid three earlier invoices twelve days late, each in the last days of its month
HABIT = [("OLD-1", date(2026, 6, 16), date(2026, 6, 28)), ("OLD-2", date(2026, 7, 17), date(2026, 7, 29)),
         ("OLD-3", date(2026, 8, 17), date(2026, 8, 29))]


async def _with_habit(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    async with db.session() as s, s.begin():
        c1 = (await s.execute(select(Customer).where(Customer.code == "C1"))).scalar_one()
        for inv, due, paid_on in HABIT:
            s.add(Receivable(invoice_no=inv, customer_id=c1.id, rep_id="rep1", issue_date=due - timedelta(days=30),
                             due_date=due, amount=Decimal("1000.00"), open_amount=Decimal("1000.00"),
                             terms="月结30天", created_at=at("2026-11-20 10:00")))
            await s.flush()
            await ledger.record_payment(s, customer=c1, amount=Decimal("1000.00"), paid_on=paid_on,
                                        reference="LS-" + inv, invoice_no=inv, actor="fin1", channel="test",
                                        now=at("2026-11-20 10:00"))
    return bot


async def test_the_top_customers_payment_habits_in_chromium(aiohttp_client, db, tmp_path):
    """The dashboard's top overdue customers with their payment profile in words, the words of
    /customer; a rep sees only their own customers' (a new customer: its peers')."""
    executable = chromium_path()
    async_playwright = playwright_or_skip()
    bot = await _with_habit(aiohttp_client, db, tmp_path)
    [card] = await bot.say("gm", "/customer 恒信")
    said = "付款习惯：通常逾期12天付款，按期付款占0%，习惯月底付"
    assert said in card
    url = str(bot.client.make_url(await _link(bot, "gm")))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
            await page.goto(url)
            await page.click("#enter")
            await page.wait_for_selector("#top-customers")
            rows = await page.locator("#top-customers tr").all_inner_texts()
            [hengxin] = [r for r in rows if "上海恒信机电有限公司" in r]
            assert said in hengxin
            [shunfa] = [r for r in rows if "广州顺发贸易有限公司" in r]
            assert "付款习惯：新客户，参照全部客户：通常逾期12天付款" in shunfa
        finally:
            await browser.close()
    bot.client.session.cookie_jar.clear()
    assert await _login(bot, await _link(bot, "rep2")) == 303
    html = await (await bot.client.get("/dashboard")).text()
    top = html.split('id="top-customers"')[1].split("</table>")[0]
    assert "广州顺发贸易有限公司" in top and "付款习惯：新客户" in top
    assert "恒信" not in html and "按期付款占0%，习惯月底付；" not in html
