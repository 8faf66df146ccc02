"""The managers' reports on the hand-computed fixture company (tests/ledger_fixture.py): the
weekly report in the managers' group with its chart and workbook, and the monthly report to
sales, finance and legal, each scoped like their commands."""
from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
from decimal import Decimal
from urllib.parse import urlsplit

from openpyxl import load_workbook
from sqlalchemy import select

from bot.jobs.scheduler import run_job
from storage.models import Setting
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot
from tests.multiproc import with_checkout

D = Decimal


async def _bot(aiohttp_client, db, tmp_path, when="2026-11-23 08:00"):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at(when), company={"fx_rates": ledger_fixture.FX},
                           reports={"manager_groups": ("local:mgmt",), "dir": str(tmp_path / "reports")},
                           web={"secret": "test-secret"})


def _links(text: str) -> dict[str, str]:
    return {label: url for label, url in re.findall(r"\[([^\]]+)\]\((http[^)]+)\)", text)}


async def _fetch(bot, url: str) -> tuple[int, bytes]:
    u = urlsplit(url)
    resp = await bot.client.get(u.path + "?" + u.query)
    return resp.status, await resp.read()


def _sheet_rows(data: bytes, sheet: str) -> list[tuple]:
    wb = load_workbook(io.BytesIO(data), data_only=True)
    return [tuple(r) for r in wb[sheet].iter_rows(values_only=True)]


def _money(v) -> Decimal:
    return D(str(v)).quantize(D("0.01"))


async def test_weekly_aging_report_to_the_managers_group(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    summary = await bot.run("weekly_aging_report", at("2026-11-23 09:00"))
    assert "1 group message(s)" in summary
    text, chart = await bot.inbox(chat="mgmt")       # the report, then the chart itself (an image row)
    assert chart == ""
    lines = text.splitlines()
    assert lines[0] == "**应收账款周报 · 示例公司（截至11月23日）**"
    assert "未收合计 ¥87,446.17，7笔；其中逾期 ¥77,446.17（88.6%）" in lines
    # last Monday (11-16) the 5,000 paid on 11-20 was still open on INV-A2
    assert "较上周（11月16日）：合计 -5,000.00，逾期 -5,000.00" in lines
    assert "- 未到期：¥10,000.00，1笔，占11.4%（较上周 持平）" in lines
    assert "- 1-30天：¥27,100.00，3笔，占31.0%（较上周 -5,000.00）" in lines
    assert "- 31-60天：¥30,000.00，1笔，占34.3%（较上周 持平）" in lines
    assert "- 61-90天：¥8,000.50，1笔，占9.1%（较上周 持平）" in lines
    assert "- 90天以上：¥12,345.67，1笔，占14.1%（较上周 持平）" in lines
    assert "- 华东：未收 ¥75,346.17，逾期 ¥65,346.17" in lines
    assert "- 华南：未收 ¥12,100.00，逾期 ¥12,100.00" in lines
    assert "1. 上海恒信机电有限公司：逾期 ¥45,000.00，最长60天" in lines
    assert "2. 苏州明达电子科技有限公司：逾期 ¥20,346.17，最长206天" in lines

    links = _links(text)
    # the chart: a real PNG of 800×450, served by its signed link and saved under [reports] dir
    status, png = await _fetch(bot, links["查看账龄分布图"])
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (800, 450)
    assert (tmp_path / "reports" / "aging-weekly-2026-11-23.png").read_bytes() == png

    status, xlsx = await _fetch(bot, links["下载Excel明细"])
    assert status == 200
    rows = _sheet_rows(xlsx, "账龄")
    assert rows[0] == ("账龄区间", "金额", "笔数", "占比(%)", "上期金额", "变化")
    got = {r[0]: (_money(r[1]), r[2], _money(r[4])) for r in rows[1:]}
    assert got == {"未到期": (D("10000.00"), 1, D("10000.00")), "1-30天": (D("27100.00"), 3, D("32100.00")),
                   "31-60天": (D("30000.00"), 1, D("30000.00")), "61-90天": (D("8000.50"), 1, D("8000.50")),
                   "90天以上": (D("12345.67"), 1, D("12345.67")), "未收合计": (D("87446.17"), 7, D("92446.17"))}
    teams = {r[0]: (_money(r[-2]), _money(r[-1])) for r in _sheet_rows(xlsx, "按团队")[1:]}
    assert teams == {"华东": (D("75346.17"), D("65346.17")), "华南": (D("12100.00"), D("12100.00"))}
    top = _sheet_rows(xlsx, "逾期客户")[1:]
    assert [(r[1], _money(r[2]), r[3]) for r in top[:2]] == [("上海恒信机电有限公司", D("45000.00"), 60),
                                                            ("苏州明达电子科技有限公司", D("20346.17"), 206)]

    # a forged or altered link is refused; a re-run sends nothing twice
    assert (await _fetch(bot, links["下载Excel明细"].replace("weekly-2026-11-23.xlsx", "weekly-2026-11-23.png")))[0] == 403
    assert (await _fetch(bot, links["下载Excel明细"][:-3] + "AAA"))[0] == 403
    assert "already ran" in await bot.run("weekly_aging_report", at("2026-11-23 09:00"))
    assert "0 group message(s)" in await bot.run("weekly_aging_report", at("2026-11-23 09:05"), claim=False)
    assert len(await bot.inbox(chat="mgmt")) == 2         # the report and its chart, once


async def test_weekly_report_without_groups_sends_nothing(aiohttp_client, db, tmp_path):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), reports={"dir": str(tmp_path)})
    assert "nothing sent" in await bot.run("weekly_aging_report", at("2026-11-23 09:00"))


async def test_monthly_report_to_sales_finance_and_legal(aiohttp_client, db, tmp_path):
    """Fired on 12-05: November as of 11-30 (A1 not yet due; A3 now 61-90, B1 over 90, C1 31-60)."""
    bot = await _bot(aiohttp_client, db, tmp_path, when="2026-12-05 08:00")
    summary = await bot.run("monthly_aging_report", at("2026-12-05 09:00"))
    # manager, finance, legal and both supervisors; one company workbook and one per team
    assert "5 message(s) to 5 person(s), 3 workbook(s)" in summary
    [fin] = await bot.inbox("fin1")
    lines = fin.splitlines()
    assert lines[0] == "**2026年11月应收账款月报 · 全公司**"
    assert "- 逾期 ¥77,446.17，逾期率 88.6%；90天以上占比 23.3%" in lines
    # November: due by 11-30 and open on 11-01 (C2 was written off on 11-01 itself) = 132,446.17; 5,000 paid
    assert "- 11月回款率 3.8%（已回款 ¥5,000.00 / 11月应收 ¥132,446.17）" in lines
    # DSO: 87,446.17 open / 42,100.00 issued 09-02..11-30 × 90
    assert "- DSO：186.9天" in lines
    assert "- 1-30天：¥22,100.00，2笔，占25.3%" in lines
    assert "- 61-90天：¥30,000.00，1笔，占34.3%" in lines
    assert "- 90天以上：¥20,346.17，2笔，占23.3%" in lines
    assert "- 未收合计 ¥87,446.17，7笔（较上月末 -45,000.00）" in lines   # 10-31: C2 not yet written off, A2 unpaid
    # nobody was pushed: no rate, rather than a 0.0% that reads as "answered nothing"
    assert "- 张伟：逾期 ¥65,346.17，回款 ¥5,000.00（回款率6.2%），回复及时率—（不适用）" in lines
    assert "- 李娜：逾期 ¥12,100.00，回款 ¥0.00（回款率0.0%），回复及时率—（不适用）" in lines
    url = _links(fin)["下载Excel月报"]
    assert "aging-monthly-2026-11-all.xlsx" in url
    status, xlsx = await _fetch(bot, url)
    assert status == 200
    summary_rows = {r[0]: r[1] for r in _sheet_rows(xlsx, "汇总")}
    assert _money(summary_rows["未收合计"]) == D("87446.17") and _money(summary_rows["本月已回款"]) == D("5000.00")
    assert D(str(summary_rows["DSO（天）"])) == D("186.9") and D(str(summary_rows["本月回款率"])) == D("3.8")
    reps = {r[0]: (_money(r[2]), _money(r[4])) for r in _sheet_rows(xlsx, "业务员")[1:]}
    assert reps == {"张伟": (D("65346.17"), D("5000.00")), "李娜": (D("12100.00"), D("0.00"))}

    # a supervisor's report covers their team only
    [sup2] = await bot.inbox("sup2")
    assert "**2026年11月应收账款月报 · 华南团队**" in sup2 and "张伟" not in sup2 and "恒信" not in sup2
    assert "- 未收合计 ¥12,100.00，2笔" in sup2
    # reps get no monthly report; a re-run sends nothing twice
    assert await bot.inbox("rep1") == []
    assert "0 message(s)" in await bot.run("monthly_aging_report", at("2026-12-05 09:30"), claim=False)


async def test_wecom_robot_gets_the_chart_as_an_image_row(aiohttp_client, db, tmp_path):
    import base64

    from sqlalchemy import select

    from storage.models import OutboxMessage
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                          reports={"manager_groups": ("wecom:robot:managers",), "dir": str(tmp_path)})
    await run_job(bot.services, "weekly_aging_report", at("2026-11-23 09:00"))
    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
    assert [(r.platform, r.target_kind, r.target) for r in rows] == [("wecom", "robot", "managers")] * 2
    assert rows[0].title == "应收账款周报（11月23日）" and "¥87,446.17" in rows[0].text
    assert base64.b64decode(rows[1].extra["image_base64"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_manager_groups_are_checked_at_start_up():
    import pytest

    from bot.config import ConfigError, load_config
    from bot.jobs.reports import parse_group
    assert parse_group("local:mgmt") == ("local", "group", "mgmt")
    assert parse_group("wecom:robot:managers") == ("wecom", "robot", "managers")
    cfg = load_config(env={"ARBOT_REPORTS_MANAGER_GROUPS": "local:mgmt,dingtalk:robot:managers"})
    assert cfg.reports.manager_groups == ("local:mgmt", "dingtalk:robot:managers")
    with pytest.raises(ConfigError, match="manager_groups"):
        load_config(env={"ARBOT_REPORTS_MANAGER_GROUPS": "managers"})
    with pytest.raises(ConfigError, match="monthly_day"):
        load_config(env={"ARBOT_REPORTS_MONTHLY_DAY": "31"})


async def test_a_report_link_made_by_the_command_line_opens_in_the_server(aiohttp_client, db, tmp_path):
    """No [web] secret: the server and `arbot jobs run` sign with the secret kept in the database.
    Each process used to make its own, so the Excel link of a report run from the CLI answered 403."""
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    reports = str(tmp_path / "reports")
    bot = await Bot.start(aiohttp_client, db, at("2026-12-05 08:00"), reports={"dir": reports})
    env = {**os.environ, "ARBOT_DATABASE_URL": db.url, "ARBOT_LOCAL_ENABLED": "true", "ARBOT_REPORTS_DIR": reports}
    for name in ("ARBOT_CONFIG", "ARBOT_WEB_SECRET"):
        env.pop(name, None)
    cli = subprocess.run([sys.executable, "-m", "bot", "jobs", "run", "monthly_aging_report", "--at", "2026-12-05T09:00"],
                         cwd=tmp_path, env=with_checkout(env), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    [fin] = await bot.inbox("fin1")
    status, xlsx = await _fetch(bot, _links(fin)["下载Excel月报"])
    assert status == 200 and xlsx[:2] == b"PK"
    status, _ = await _fetch(bot, _links(fin)["下载Excel月报"].replace("t=", "t=x"))
    assert status == 403                                     # still signed, not open to anyone
    async with db.session() as s:
        [stored] = (await s.execute(select(Setting))).scalars().all()
    assert stored.key == "web.link_secret" and len(stored.value) >= 40
    assert stored.value not in cli.stdout + cli.stderr       # never printed or logged


async def test_a_configured_secret_is_used_and_nothing_is_stored(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path, when="2026-12-05 08:00")     # [web] secret = "test-secret"
    await bot.run("monthly_aging_report", at("2026-12-05 09:00"))
    [fin] = await bot.inbox("fin1")
    assert (await _fetch(bot, _links(fin)["下载Excel月报"]))[0] == 200
    async with db.session() as s:
        assert (await s.execute(select(Setting))).scalars().all() == []


async def test_kpi_of_reps_never_pushed_says_not_applicable(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path, when="2026-11-23 08:00")
    [kpi] = await bot.say("gm", "/kpi")
    lines = kpi.splitlines()
    assert "- 回复及时率（近30天）：—（不适用：没有已到回复时限的推送）" in lines
    assert any(line.startswith("- 张伟：") and line.endswith("回复及时率—（不适用）") for line in lines)
    assert "回复及时率0.0%" not in kpi
    # pushed this morning, the window still open: nothing to measure yet either
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 11:00"))
    [kpi] = await bot.say("rep1", "/kpi")
    assert "回复及时率—（不适用）" in kpi and "0.0%（0/" not in kpi
    # a reply, then the window closes: now there are rates
    await bot.say("rep1", "1 已联系，月底付")
    await bot.run("reply_window_close", at("2026-11-24 09:10"))
    [kpi] = await bot.say("gm", "/kpi")
    lines = kpi.splitlines()
    assert any(line.startswith("- 张伟：") and line.endswith("回复及时率33.3%（1/3）") for line in lines)
    # 李娜 was pushed and answered nothing: that zero is real and stays
    assert any(line.startswith("- 李娜：") and line.endswith("回复及时率0.0%（0/2）") for line in lines)
