"""The monthly KPI table and the commission as XLSX (issue #17): ``/kpi xlsx`` (导出) and
``/commission xlsx`` answer with a signed link to the month's workbook of the caller's scope, and
the monthly report's workbook has the same two sheets. Every figure in the sheets is checked
against what the chat commands say on the same day.

The ledger is tests/ledger_fixture.py (today 2026-11-23) with, as in tests/test_commission.py,
40,000 more from 恒信 on INV-A3 (rep1 张伟) and one collection of 150,000 from 顺发 (rep2 李娜),
which reaches the second tier (2 % to ¥100,000, 3 % above).
"""
from __future__ import annotations

import io
import re
from decimal import Decimal
from urllib.parse import urlsplit

from openpyxl import load_workbook

from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal


async def _bot(aiohttp_client, db, tmp_path, when="2026-11-23 10:00") -> Bot:
    async with db.session() as s, s.begin():
        await ledger_fixture.build_with_collections(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at(when), company={"fx_rates": ledger_fixture.FX},
                           reports={"dir": str(tmp_path / "reports")}, web={"secret": "test-secret"})


def _link(text: str) -> str:
    [url] = re.findall(r"\[下载Excel[^\]]*\]\((http[^)]+)\)", text)
    return url


async def _download(bot, url: str):
    u = urlsplit(url)
    resp = await bot.client.get(u.path + "?" + u.query)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    return load_workbook(io.BytesIO(await resp.read()))


def _rows(ws) -> dict[str, tuple]:
    """A sheet's data rows by their first cell (the header and the notes under the table left out)."""
    head = [c.value for c in ws[1]]
    out = {}
    for row in ws.iter_rows(min_row=2):
        if row[0].value is None or len(row) < len(head) or all(c.value is None for c in row[1:]):
            continue
        out[row[0].value] = row
    return out


def _pct(text: str) -> Decimal | None:
    return None if text in ("—", "-") else D(text.rstrip("%"))


def _chat_kpi(text: str) -> dict[str, dict]:
    """Per rep, what /kpi says: collection rate, reply timeliness, overdue ratio, share over 90."""
    out = {}
    for m in re.finditer(r"- (\S+)：逾期 ¥([\d,.]+)，本月回款 ¥([\d,.]+)（回款率([\d.]+%|—)），回复及时率(\S+?)(?:（[^）]*）)?\n"
                         r"\s*逾期率([\d.]+%|—)，逾期90天以上占比([\d.]+%|—)（¥([\d,.]+)）", text):
        name, overdue, collected, rate, timely, ratio, share, over_90 = m.groups()
        out[name] = {"overdue": D(overdue.replace(",", "")), "collected": D(collected.replace(",", "")),
                     "rate": _pct(rate), "timely": _pct(timely), "ratio": _pct(ratio), "share": _pct(share),
                     "over_90": D(over_90.replace(",", ""))}
    return out


def _chat_commission(text: str) -> dict[str, tuple]:
    return {name: (int(n), D(got.replace(",", "")), D(paid.replace(",", "")))
            for name, n, got, paid in re.findall(r"- (\S+)：回款(\d+)笔 ¥([\d,.]+)，提成 ¥([\d,.]+)", text)}


def _money(cell) -> Decimal:
    # a number with the currency's format, never text
    assert cell.data_type == "n" and isinstance(cell.value, (int, float)), (cell.coordinate, cell.value)
    assert "¥" in cell.number_format and "0.00" in cell.number_format
    return D(str(cell.value)).quantize(D("0.01"))


def _rate(cell) -> Decimal | None:
    if cell.value is None:
        return None
    assert cell.data_type == "n" and "%" in cell.number_format
    return D(str(cell.value)).quantize(D("0.1"))


async def test_kpi_xlsx_for_a_manager_matches_the_chat(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    [kpi] = await bot.say("gm", "/kpi")
    [commission] = await bot.say("gm", "/提成")
    said, paid = _chat_kpi(kpi), _chat_commission(commission)
    assert set(said) == {"张伟", "李娜"} and set(paid) == {"张伟", "李娜"}

    [reply] = await bot.say("gm", "/kpi xlsx")
    assert "**回款考核与提成表（11月1日至11月23日）**" in reply and f"链接{bot.services.config.reports.link_days}天内有效" in reply
    wb = await _download(bot, _link(reply))
    assert {"考核", "提成", "汇总", "明细"} <= set(wb.sheetnames)

    kpi_rows = _rows(wb["考核"])
    assert set(kpi_rows) == {"张伟", "李娜", "合计"}
    for name, chat in said.items():
        row = kpi_rows[name]
        assert (_rate(row[1]), _rate(row[2]), _rate(row[3]), _rate(row[4])) == \
            (chat["rate"], chat["timely"], chat["ratio"], chat["share"]), name
        assert (_money(row[6]), _money(row[8]), _money(row[9])) == (chat["collected"], chat["overdue"], chat["over_90"])
    # the company's line is the chat's heading: "本月回款率 X%（已回款 ¥…"
    company_rate = re.search(r"本月回款率：([\d.]+)%", kpi).group(1)
    assert _rate(kpi_rows["合计"][1]) == D(company_rate)

    com_rows = _rows(wb["提成"])
    head = [c.value for c in wb["提成"][1]]
    assert head[:5] == ["业务员", "回款笔数", "回款金额", "提成", "用到的档位"]
    assert head[5:] == ["100,000元以内部分（2%）", "100,000至500,000元部分（3%）", "500,000元以上部分（5%）"]
    for name, (n, got, fee) in paid.items():
        row = com_rows[name]
        assert (row[1].value, _money(row[2]), _money(row[3])) == (n, got, fee), name
        # the parts in the tiers add up to what was collected
        assert sum(_money(c) for c in row[5:]) == got
    # 李娜's one collection of 150,000: 100,000 at 2 %, 50,000 at 3 %
    assert com_rows["李娜"][4].value == "2%、3%"
    assert [_money(c) for c in com_rows["李娜"][5:]] == [D("100000.00"), D("50000.00"), D("0.00")]
    assert com_rows["张伟"][4].value == "2%"
    total = re.search(r"合计：回款 ¥([\d,.]+)，提成 ¥([\d,.]+)", commission).groups()
    assert (_money(com_rows["合计"][2]), _money(com_rows["合计"][3])) == tuple(D(v.replace(",", "")) for v in total)

    # /commission xlsx and 导出 answer with the same workbook
    [again] = await bot.say("gm", "/commission 导出")
    assert _link(again).split("?")[0] == _link(reply).split("?")[0]


async def test_a_reps_kpi_xlsx_has_only_their_row(aiohttp_client, db, tmp_path):
    bot = await _bot(aiohttp_client, db, tmp_path)
    [own] = await bot.say("rep1", "/kpi")
    [reply] = await bot.say("rep1", "/考核 导出")
    [manager] = await bot.say("gm", "/kpi xlsx")
    assert _link(reply).split("?")[0] != _link(manager).split("?")[0]      # a file of its own scope
    wb = await _download(bot, _link(reply))
    assert set(_rows(wb["考核"])) == {"张伟", "合计"}
    assert set(_rows(wb["提成"])) == {"张伟", "合计"}
    row = _rows(wb["考核"])["张伟"]
    assert _rate(row[1]) == _chat_kpi(own)["张伟"]["rate"]
    names = {c.value for ws in wb.worksheets for r in ws.iter_rows() for c in r if isinstance(c.value, str)}
    assert not any("李娜" in v or "顺发" in v for v in names)
    # a rep cannot narrow to another rep's figures
    [refused] = await bot.say("rep1", "/kpi @李娜 xlsx")
    assert "下载Excel" not in refused


async def test_the_monthly_report_workbook_has_the_kpi_and_commission_sheets(aiohttp_client, db, tmp_path):
    """Sent on 12-05 for November: no money came after 11-23, so November's commission is what
    /commission said on 11-23."""
    bot = await _bot(aiohttp_client, db, tmp_path)
    [commission] = await bot.say("fin1", "/commission")
    bot.clock.set(at("2026-12-05 08:00"))
    await bot.run("monthly_aging_report", at("2026-12-05 09:00"))
    [fin] = await bot.inbox("fin1")
    url = re.search(r"\[下载Excel月报\]\((http[^)]+)\)", fin).group(1)
    wb = await _download(bot, url)
    rows = _rows(wb["提成"])
    for name, (n, got, fee) in _chat_commission(commission).items():
        assert (rows[name][1].value, _money(rows[name][2]), _money(rows[name][3])) == (n, got, fee)
    assert wb["提成"].cell(row=wb["提成"].max_row, column=1).value == "期间：2026-11-01 至 2026-11-30（按每笔回款分段计提）"
    assert set(_rows(wb["考核"])) == {"张伟", "李娜", "合计"}
