"""A command's arguments are resolved one way, before its handler runs (bot/core/arguments.py):
the exact customer or invoice, else the candidates asked back, else an error naming what was not
found with the command's usage, then the caller's scope (bot/core/permissions.py). What a user
reads is the same whichever command they typed, and a refused argument changes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.core.arguments import CustomerArg
from bot.core.permissions import ALL
from bot.core.router import Router
from storage.models import AuditEntry, FollowUp, Person, Promise
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot


async def _bot(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        # a second 张伟, in another team
        s.add(Person(id="rep3", name="张伟", role="rep", supervisor_id="sup2", team="华南"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX})


async def _writes(db) -> tuple[int, int, int]:
    async with db.session() as s:
        return tuple([(await s.execute(select(func.count()).select_from(m))).scalar_one()
                      for m in (FollowUp, Promise, AuditEntry)])


async def test_one_answer_for_each_kind_of_argument_whatever_the_command(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    before = await _writes(db)

    # two customers match: asked back with both names, by every command that takes a customer
    for user, text in [("rep1", "/customer 电"), ("rep1", "/followup 电 已联系"), ("rep1", "/aging 电"),
                       ("rep1", "/overdue 电"), ("rep1", "/kpi 电"), ("fin1", "/paid 电 1000")]:
        [reply] = await bot.say(user, text)
        assert "“电”对应多个客户" in reply and "上海恒信机电有限公司" in reply \
            and "苏州明达电子科技有限公司" in reply, (text, reply)

    # nothing found: says what, and how the command is written
    cases = [("/customer 火星探测", "找不到客户“火星探测”", "/customer"),
             ("/followup 火星探测 已联系", "找不到发票号或客户“火星探测”", "/followup"),
             ("/aging 火星探测", "“火星探测”不是团队、区域、业务员或客户", "/aging"),
             ("/promise INV-Z9 12月20日", "找不到发票号 INV-Z9", "/promise"),
             ("/resolve INV-Z9", "找不到发票号 INV-Z9", "/resolve")]
    for text, said, usage in cases:
        [reply] = await bot.say("rep1", text)
        assert said in reply and "用法" in reply and usage in reply.split("用法", 1)[1], (text, reply)
    [reply] = await bot.say("fin1", "/writeoff INV-Z9 破产")
    assert "找不到发票号 INV-Z9" in reply

    # a word missing is said before anything is looked up
    for text in ("/dispute INV-A2", "/dispute INV-Z9", "/promise INV-A2", "/followup INV-A2", "/customer"):
        [reply] = await bot.say("rep1", text)
        assert "缺少参数" in reply, (text, reply)

    # another rep's customer, invoice, team: refused without a figure
    for text, what in [("/customer 上海恒信机电有限公司", "上海恒信机电有限公司"), ("/aging 华东", "华东"),
                       ("/aging 上海恒信机电有限公司", "上海恒信机电有限公司"),
                       ("/followup INV-A2 已联系", "INV-A2"), ("/followup 上海恒信机电有限公司 已联系", "上海恒信机电有限公司"),
                       ("/promise INV-A2 12月20日", "INV-A2"), ("/dispute INV-A2 价格不对", "INV-A2"),
                       ("/overdue @rep1", "@rep1")]:
        [reply] = await bot.say("rep2", text)
        assert f"“{what}”不在您负责的范围内" in reply and "¥" not in reply, (text, reply)
    assert await _writes(db) == before


async def test_a_name_two_people_share_is_asked_back(aiohttp_client, db):
    """/aging @张伟 used to pick one of the two 张伟 silently; now the answer lists both by id,
    and @工号 names one."""
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("gm", "/aging @张伟")
    assert "“张伟”对应多人" in reply and "@rep1" in reply and "@rep3" in reply
    [reply] = await bot.say("gm", "/aging @rep1")
    assert "张伟" in reply and "对应多人" not in reply


def test_a_handler_names_only_what_its_filter_gives():
    router = Router("t")
    with pytest.raises(TypeError, match="cannot inject"):
        @router.command("x", roles=ALL, args=CustomerArg())
        async def x(customer, receivable):      # a customer filter gives no receivable
            pass


def test_the_day_something_happened_is_the_first_word_when_it_is_a_date_and_never_tomorrow():
    from datetime import date

    from bot.core.arguments import happened_on
    from bot.core.errors import UsageError
    today = date(2026, 12, 4)
    assert happened_on(["12月2日", "EMS1190"], today) == (date(2026, 12, 2), ["EMS1190"])
    assert happened_on(["EMS1190", "签收"], today) == (today, ["EMS1190", "签收"])
    assert happened_on([], today) == (today, [])
    with pytest.raises(UsageError) as e:
        happened_on(["12月5日"], today)
    assert e.value.code == "date_in_future"
