"""Defects of issue #18 a finance user hit: a number too big for any row, a bad date on the
command line, the demo's summary. Each answers what was wrong instead of failing."""
from __future__ import annotations

from datetime import date

from bot.render import render
from storage.demo import load_demo
from tests import cli_inprocess, ledger_fixture
from tests.conftest import at
from tests.harness import Bot

HUGE = "99999999999999999999"      # 20 digits: past the largest integer SQLite stores (2**63 - 1)
FAILED = "处理您的消息时出了问题"     # the internal-error answer (bot/templates/errors/internal.md.j2)


async def _bot(aiohttp_client, db) -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           permissions={"finance_head": "fin1", "sales_director": "sup1", "general_manager": "gm"})


async def test_huge_numbers_get_a_clear_answer(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    answers = {
        ("gm", f"/approve {HUGE}"): f"找不到核销申请 {HUGE}",
        ("gm", "/reject ²"): "找不到核销申请 ²",                   # a digit to isdigit(), not to int()
        ("fin1", f"/claims 驳回 {HUGE} 重复登记"): f"找不到到账待核实 {HUGE}",
    }
    for (user, text), wanted in answers.items():
        [reply] = await bot.say(user, text)
        assert reply.startswith(wanted), (text, reply)
    for user, text in (("fin1", f"/reverse #{HUGE} 错账"), ("fin1", f"/reverse {HUGE} 错账"), ("fin1", f"/confirm {HUGE}")):
        replies = await bot.say(user, text)
        assert replies and FAILED not in "\n".join(replies), (text, replies)
    # a card button whose key names a pushed item by a huge number
    resp = await bot.client.post("/local/messages", json={"user": "rep1", "text": "",
                                                          "card": {"key": f"fu:{HUGE}:contacted"}})
    assert resp.status == 200
    assert [r["text"] if isinstance(r, dict) else r for r in (await resp.json())["replies"]] == [
        "这个按钮已失效或不属于您的清单，请直接按编号回复。"]


def test_export_followups_since_a_bad_date_says_how_to_write_it(tmp_path, capfd):
    config = cli_inprocess.config_file(tmp_path, f"sqlite:///{tmp_path}/e.db")
    capfd.readouterr()
    assert cli_inprocess.arbot(config, "export", "followups", "--since", "bad") == 2
    out = capfd.readouterr()
    assert "--since must be a date such as 2026-11-01 (YYYY-MM-DD)" in out.err and "Traceback" not in out.err
    assert out.out == ""


async def test_the_demo_summary_is_printed(db):
    async with db.session() as s, s.begin():
        summary = await load_demo(s, today=date(2026, 3, 18), now=at("2026-03-18 10:30"), customers=5, receivables=10)
    text = render("cli/demo_loaded.txt.j2", s=summary)
    assert text.startswith("已载入演示数据：人员 ") and f"客户 5，联系人 {summary.contacts}，应收发票 10，" in text
