"""`make run` started at 15:00 on a working day, and the README's tour walked from step 1 through
the local chat's HTTP API, as a newcomer would (issue 13).

The app is the real one (``create_app`` with ``config.demo.toml``, its scheduler and outbox
sender running, a real SQLite file); only the clock is fixed. Started after 09:00, the
scheduler's start-up catch-up used to run the missed push on a still-empty database and mark the
day done, so the demo's own push was skipped: 尹欣怡 had alerts but no overdue list. Step 5 runs
the command the sidebar prints, as a real `arbot` process against the same database file.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import STATE, create_app
from bot.clock import FixedClock
from bot.config import load_config
from bot.services import Services
from tests.conftest import at
from tests.multiproc import with_checkout

# the tour reads chat, not the letter PDFs the start-up catch-up makes (read back in test_letters.py)
pytestmark = pytest.mark.usefixtures("placeholder_pdfs")
ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
START = at("2026-11-24 15:00")            # a Tuesday: a working day, six hours after the push time
REP, SUPERVISOR, GM = "rep01", "sup_hd", "gm"
ITEM = re.compile(r"^(\d+)\. (FP\d+) ¥([\d,]+\.\d\d)，逾期(\d+)天", re.M)


def in_readme(text: str) -> str:
    """The tour sends what the README tells people to type: a README that drifts fails here."""
    assert f"`{text}`" in README, f"README no longer says `{text}`"
    return text


async def _demo(aiohttp_client, tmp_path):
    cfg = load_config(ROOT / "config.demo.toml", env={})
    url = f"sqlite:///{tmp_path}/arbot-demo.db"
    cfg = dataclasses.replace(cfg, database=dataclasses.replace(cfg.database, url=url),
                              reports=dataclasses.replace(cfg.reports, dir=str(tmp_path / "reports")))
    services = Services.build(cfg, clock=FixedClock(START, cfg.company.timezone))
    assert services.calendar.is_workday(START.date())
    client = await aiohttp_client(create_app(cfg, services))     # start-up: demo data, push, scheduler
    return client, url


async def _say(client, user: str, text: str, chat: str | None = None) -> list[str]:
    resp = await client.post("/local/messages", json={"user": user, "chat": chat, "text": text})
    assert resp.status == 200, await resp.text()
    return [r["text"] for r in (await resp.json())["replies"]]


async def _inbox(client, **who) -> list[dict]:
    await client.app[STATE].sender.drain()
    resp = await client.get("/local/inbox", params=who)
    assert resp.status == 200
    return (await resp.json())["messages"]


async def _catch_up_push(state) -> dict:
    """The scheduler's start-up catch-up of today's 09:00 push (the first job it runs)."""
    for _ in range(600):
        if "overdue_push" in state.scheduler.last:
            return state.scheduler.last["overdue_push"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the catch-up never ran the push: {state.scheduler.status()}")


async def test_make_run_at_three_pm_then_the_tour(aiohttp_client, tmp_path):
    client, db_url = await _demo(aiohttp_client, tmp_path)
    state = client.app[STATE]
    # the demo's push ran first and claimed today's fire; the catch-up found it done
    assert state.tour.loaded and state.tour.push.startswith("pushed 12 rep(s)")
    caught_up = await _catch_up_push(state)
    assert caught_up["ok"] and "already ran for 2026-11-24" in caught_up["summary"]

    # the page: examples that exist in the demo, a multi-line input, step 5's exact command
    page = await (await client.get("/")).text()
    assert '<textarea id="text"' in page and "Shift+回车换行" in page
    for example in ("/aging @尹欣怡", "/customer 上海东升", "/aging 华东"):
        assert example in page
    m = re.search(r'<code id="close-cmd">([^<]+)</code>', page)
    assert m, "the sidebar does not say how to close the reply window"
    close_cmd = m.group(1)
    assert close_cmd.endswith("jobs run reply_window_close --at 2026-11-25T09:10")   # next working morning

    # step 1: 尹欣怡's overdue list, in the company's time
    inbox = await _inbox(client, user=REP)
    lists = [m for m in inbox if m["text"].startswith("**尹欣怡，早上好：以下是您今天（11月24日）的逾期账款")]
    assert lists, [m["text"][:40] for m in inbox]
    assert all(m["at"].startswith("2026-11-24T15:00") and m["at"].endswith("+08:00") for m in lists)
    items = {int(n): (inv, amount, int(days)) for n, inv, amount, days in ITEM.findall("\n".join(m["text"] for m in lists))}
    assert len(items) >= 10 and sorted(items) == list(range(1, len(items) + 1))
    assert "请在 11-25 09:00 前逐条回复" in lists[-1]["text"]

    # step 2: replies as a rep writes them, one and several at a time, several lines, a correction
    # item 1 belongs to the first customer block of the list (the push numbers its top items by customer)
    first_customer = re.search(r"^\*\*(.+)\*\*（合计 ", "\n".join(m["text"] for m in lists), re.M).group(1)
    [ack] = await _say(client, REP, in_readme("1 已电话联系王总，答应下周五前付一半"))
    assert f"1. {first_customer} {items[1][0]}：承诺付款，承诺12月4日付" in ack
    [ack] = await _say(client, REP, in_readme("2,3 客户说发票抬头错了，要重开"))
    assert items[2][0] in ack and items[3][0] in ack and "异议" in ack
    [ack] = await _say(client, REP, "4 已联系财务，在走流程\n5 联系不上")
    assert "4. " in ack and "5. " in ack and items[4][0] in ack and items[5][0] in ack
    [ack] = await _say(client, REP, in_readme("更正 1 客户答应月底付全款"))
    assert items[1][0] in ack and "11月30日" in ack
    # 全部 as another rep of the team, so 尹欣怡 still has unanswered items for step 5
    answers = await _say(client, "rep02", in_readme("全部 已对账，月底前付清"))
    assert "已记录" in answers[0]

    # step 3: her list now, a promise on an invoice of her list, her commands
    [overdue] = await _say(client, REP, "/overdue")
    assert re.match(r"\*\*逾期账款（11月24日）：\d+笔，¥[\d,]+\.\d\d\*\*", overdue)
    oldest = max(items.values(), key=lambda i: i[2])[0]
    assert oldest in overdue                              # the longest overdue first
    invoice = next(inv for n, (inv, amount, _) in sorted(items.items())
                   if n > 5 and float(amount.replace(",", "")) > 5000)
    [promise] = await _say(client, REP, f"/promise {invoice} 下周五 5000")
    assert invoice in promise and "12月4日" in promise and "¥5,000.00" in promise
    [helptext] = await _say(client, REP, "/help")
    assert "/overdue" in helptext and "/paid" not in helptext
    [card] = await _say(client, REP, in_readme("/customer 上海东升"))
    assert card.startswith("**上海东升医疗器械有限公司**") and "未结发票" in card

    # step 4: the general manager in the managers' group
    for text in ("/aging", "/账龄", "/aging 华东", "/aging @尹欣怡"):
        [reply] = await _say(client, GM, in_readme(text), chat="mgmt")
        assert "账龄分析" in reply and "未收合计 ¥0.00" not in reply, (text, reply)
        assert re.search(r"未收合计 ¥[\d,]+\.\d\d，\d+笔", reply)
    [reply] = await _say(client, GM, "/aging @尹欣怡", chat="mgmt")
    assert reply.startswith("**账龄分析 · 尹欣怡")
    [reply] = await _say(client, GM, "/paid FP202600001 100", chat="mgmt")
    assert "没有使用 /paid 的权限" in reply
    [card] = await _say(client, GM, "/customer 上海东升")
    assert "业务员 尹欣怡" in card

    # step 5: the command the sidebar printed, run as the operator would (another process)
    assert "jobs run reply_window_close --at" in README and "2026-11-24T09:10" not in README
    at_arg = close_cmd.rsplit("--at ", 1)[1]
    env = with_checkout({**os.environ, "ARBOT_DATABASE_URL": db_url})
    env.pop("ARBOT_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--config", str(ROOT / "config.demo.toml"), "jobs", "run",
        "reply_window_close", "--at", at_arg, cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert re.search(r"closed \d+ window", out.decode()), out.decode()

    [escalation] = [m["text"] for m in await _inbox(client, user=SUPERVISOR)
                    if "未在回复时限内反馈" in m["text"]]
    assert escalation.startswith("**陆建军，") and "**尹欣怡**（11月24日清单" in escalation
    last = items[max(items)][0]
    assert last != invoice and last in escalation        # unanswered: escalated
    for n in (1, 2, 3, 4, 5):
        assert items[n][0] not in escalation              # answered in step 2
    assert invoice not in escalation                      # answered by the /promise of step 3
    assert "邓佳慧" not in escalation                     # answered everything with 全部
    nudge = [m["text"] for m in await _inbox(client, user=REP) if "回复时间已过" in m["text"]]
    assert nudge and last in nudge[0] and items[1][0] not in nudge[0]
