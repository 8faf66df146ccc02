"""/help: each person sees the commands they may use, one line each, in one message that fits
every platform; `/help 命令` shows how to write one of them."""
from __future__ import annotations

import re

from bot.core.permissions import may_use
from bot.handlers import dispatcher
from storage.models import Person
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

WECOM_MARKDOWN_BYTES = 2048          # the smallest text limit of the platforms (docs/channels.md)


async def _bot(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX})


async def test_each_role_gets_its_commands_in_one_message_that_fits(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    for pid, name, role, *_ in ledger_fixture.PEOPLE:
        [index] = await bot.say(pid, "/help")
        assert len(index.encode()) <= WECOM_MARKDOWN_BYTES, (role, len(index.encode()))
        assert index.startswith(f"**{name}（")
        listed = re.findall(r"^- `([^`]+)`(.*)$", index, re.M)
        person = Person(id=pid, role=role, active=True)
        allowed = [c for c in dispatcher().ordered if may_use(person, c.roles) and c.name != "help"]
        assert len(listed) == len(allowed), role
        # every line says what the command is for, not just its name
        assert all(title.strip() for _, title in listed), [shown for shown, title in listed if not title.strip()]
        shown = {s.lstrip("/") for s, _ in listed}
        for c in allowed:
            assert shown & {c.name, *c.aliases}, (role, c.name)
    [rep] = await bot.say("rep1", "/help")
    assert "`/followup` 记录跟进" in rep and "/reverse" not in rep and "/calendar" not in rep
    assert "直接按编号回复" in rep                       # a rep is told how to answer the morning list
    [fin] = await bot.say("fin1", "/help")
    assert "`/reverse` 冲销" in fin and "`确认` 确认" in fin and "直接按编号回复" not in fin


async def test_help_with_a_command_shows_how_to_write_it(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [paid] = await bot.say("fin1", "/help paid")
    assert paid.startswith("`/paid 发票号或客户 金额") and "例如 `/paid 上海恒信 5万" in paid
    assert await bot.say("fin1", "/help 回款") == [paid]        # by its Chinese alias
    assert await bot.say("fin1", "帮助 /paid") == [paid]
    [no] = await bot.say("rep1", "/help reverse")              # a rep may not reverse payments
    assert "没有“reverse”这个命令，或者您不能使用它" in no
    [typo] = await bot.say("rep1", "/help overdu")
    assert "没有“overdu”这个命令" in typo and "`/help`" in typo
