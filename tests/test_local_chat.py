"""The local web chat over real HTTP: what a newcomer sees, and what bad requests get."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.models import InboundEvent
from tests import ledger_fixture
from tests.browser import ARGS, chromium_path, playwright_or_skip
from tests.conftest import at
from tests.harness import Bot


async def _bot(aiohttp_client, db, **sections):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           **sections)


async def test_commands_aliases_and_unknown_people(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    for text in ("/aging", "aging", "/账龄", "账龄", "／账龄"):
        [reply] = await bot.say("gm", text)
        assert reply.startswith("**账龄分析（截至11月23日）**"), text
        assert "未收合计 ¥87,446.17，7笔" in reply
    [reply] = await bot.say("nobody", "/aging")
    assert "我还不认识您" in reply
    [reply] = await bot.say("gm", "/nonsense")
    assert "没有看懂“/nonsense”" in reply and "/help" in reply


async def test_scope_narrowing_and_refusal(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("gm", "/aging 华南")
    assert "账龄分析 · 华南" in reply and "未收合计 ¥12,100.00，2笔" in reply
    [reply] = await bot.say("sup1", "/aging @李娜")                 # another team's rep
    assert "不在您负责的范围内" in reply and "¥" not in reply
    [reply] = await bot.say("rep2", "/aging 上海恒信机电有限公司")      # another rep's customer, by full name
    assert "不在您负责的范围内" in reply and "¥" not in reply
    [reply] = await bot.say("rep2", "/aging 恒信")                    # loosely: not even its existence leaks
    assert "¥" not in reply and "上海恒信机电有限公司" not in reply
    [reply] = await bot.say("rep1", "/aging")
    assert "未收合计 ¥75,346.17，5笔" in reply


async def test_group_messages_only_when_mentioned_and_redelivery_once(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    assert len(await bot.say("gm", "/aging", chat="mgmt", msg_id="m-1")) == 1
    assert await bot.say("gm", "/aging", chat="mgmt", msg_id="m-1") == []          # the same message again
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one() == 1


async def test_bad_requests_get_4xx_and_change_nothing(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    c = bot.client
    assert (await c.post("/local/messages", data="not json", headers={"Content-Type": "application/json"})).status == 400
    assert (await c.post("/local/messages", data="x", headers={"Content-Type": "text/plain"})).status == 415
    assert (await c.post("/local/messages", json={"text": "hi"})).status == 400
    assert (await c.post("/local/messages", json=["user"])).status == 400
    assert (await c.post("/local/messages", json={"user": "gm", "text": "hi", "chat": 5})).status == 400
    big = "x" * (2 * 1024 * 1024)
    assert (await c.post("/local/messages", data=big, headers={"Content-Type": "application/json"})).status == 413
    assert (await c.get("/local/inbox")).status == 400
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one() == 0


class _Peer:
    """A socket transport whose peer is another machine (the test server itself only has loopback)."""

    def __init__(self, host: str):
        self.host = host

    def get_extra_info(self, name, default=None):
        return (self.host, 40000) if name == "peername" else default

    def is_closing(self):
        return False


def _handler(app, method: str, path: str):
    for route in app.router.routes():
        if route.method == method and route.resource.canonical == path:
            return route.handler
    raise LookupError(path)


async def test_remote_clients_are_refused_unless_allowed(aiohttp_client, db):
    import dataclasses

    from aiohttp.test_utils import make_mocked_request

    from bot.core.intake import Forbidden
    bot = await _bot(aiohttp_client, db)
    resp = await bot.client.post("/local/messages", json={"user": "gm", "text": "/aging"},
                                 headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status == 200        # forwarded headers are not trusted: the socket peer is loopback
    people = _handler(bot.client.app, "GET", "/local/people")
    remote = make_mocked_request("GET", "/local/people", app=bot.client.app, transport=_Peer("203.0.113.9"))
    with pytest.raises(Forbidden) as refused:    # the app's middleware answers it 403 (bot/core/intake.py)
        await people(remote)
    assert refused.value.status == 403
    # an operator who opts in (behind their own access control) lets remote browsers in
    state = bot.state
    state.services.config = dataclasses.replace(state.config, local=dataclasses.replace(state.config.local,
                                                                                        allow_remote=True))
    answer = await people(make_mocked_request("GET", "/local/people", app=bot.client.app,
                                              transport=_Peer("203.0.113.9")))
    assert answer.status == 200
    health = await (await bot.client.get("/healthz")).json()
    assert health["local_chat"] is True and health["database"] == "ok"


async def test_replies_that_start_like_an_alias_stay_replies(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 10:00"))
    [ack] = await bot.say("rep1", "客户说发票抬头错了，要重开")          # starts with the alias 客户
    assert "已作为备注记录" in ack                                       # logged as a note, not /customer
    ack, claim = await bot.say("rep1", "3 回款了5千，剩下的月底")      # 回款 inside a reply
    assert "3. 苏州明达电子科技有限公司 INV-B2" in ack
    assert "已转财务核实到账" in claim                                   # the 5,000 is finance's to confirm
    [reply] = await bot.say("gm", "/账龄华南")
    assert "账龄分析 · 华南" in reply


async def test_a_bug_in_a_handler_is_answered_and_changes_nothing(aiohttp_client, db, monkeypatch):
    bot = await _bot(aiohttp_client, db)

    async def broken(**kwargs):
        raise RuntimeError("boom")
    cmd = bot.state.pipeline.dispatcher.commands["overdue"]
    monkeypatch.setattr(cmd, "handler", broken)      # simulates a defect in one handler
    [reply] = await bot.say("rep1", "/overdue", msg_id="bug-1")
    assert "出了问题" in reply and "boom" not in reply
    async with db.session() as s:
        [ev] = (await s.execute(select(InboundEvent))).scalars().all()
        # put back to be tried again (tests/test_write_discipline.py follows it to the end)
        assert ev.status == "retry" and ev.error == "RuntimeError" and ev.attempts == 1


async def test_inbox_times_are_the_companys(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    resp = await bot.client.get("/local/inbox", params={"user": "rep1"})
    [push] = (await resp.json())["messages"]
    assert push["at"] == "2026-11-23T09:00:00+08:00"          # not 01:00 UTC


async def test_several_lines_in_headless_chromium(aiohttp_client, db):
    """Reps answer several items a line each: Shift+Enter is a new line, Enter sends the lot.
    The browser runs in UTC: the push's time shown is still the company's 09:00."""
    executable = chromium_path()
    async_playwright = playwright_or_skip()
    bot = await _bot(aiohttp_client, db)
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 10:00"))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = await browser.new_page(locale="zh-CN", timezone_id="UTC")
            await page.goto(str(bot.client.make_url("/")))
            await page.wait_for_selector("#person option[value=rep1]", state="attached")
            await page.select_option("#person", "rep1")
            push = page.locator(".msg.push").first
            await push.wait_for()
            assert (await push.inner_text()).startswith("推送 · 2026-11-23 09:00")
            box = page.locator("#text")
            assert await box.evaluate("e => e.tagName") == "TEXTAREA"
            await box.click()
            await page.keyboard.type("1 已联系财务，在走流程")
            await page.keyboard.press("Shift+Enter")
            await page.keyboard.type("2 联系不上")
            assert await box.input_value() == "1 已联系财务，在走流程\n2 联系不上"
            assert await page.locator(".msg.me").count() == 0            # Shift+Enter sent nothing
            await page.keyboard.press("Enter")
            await page.locator(".msg.bot").first.wait_for()
            assert await page.locator(".msg.me").inner_text() == "1 已联系财务，在走流程\n2 联系不上"
            ack = await page.locator(".msg.bot").first.inner_text()
            assert "已记录" in ack and "1. " in ack and "2. " in ack
            assert await box.input_value() == ""
        finally:
            await browser.close()
