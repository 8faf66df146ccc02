"""The permission matrix: every command registered in ``bot.handlers.routers()`` × every role,
through the real local chat. Allowed roles get a real answer; the others get the forbidden reply
and nothing in the ledger, the collection log or the audit log changes. A rep (or supervisor)
asking about another rep's customer is refused without a single figure.

The matrix is built from the routers, so a new command is covered automatically; the expected
role sets are written out below, so a new command, or a widened permission, fails this test
until someone decides it on purpose.
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.handlers import routers
from storage.models import (Allocation, AuditEntry, Dispute, FollowUp, Payment, Promise, Receivable,
                            WriteOff)
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

USERS = {"rep": "rep1", "supervisor": "sup1", "finance": "fin1", "legal": "legal1", "manager": "gm",
         "auditor": "aud1", "admin": "admin"}
EVERYONE = frozenset(USERS)
COLLECT = frozenset({"rep", "supervisor", "finance", "legal", "admin"})
MONEY = frozenset({"finance", "admin"})

EXPECTED = {
    "help": EVERYONE,
    "aging": EVERYONE,
    "overdue": EVERYONE,
    "followup": COLLECT,
    "promise": COLLECT,
    "dispute": COLLECT,
    "resolve": COLLECT,
    "customer": EVERYONE,
    "kpi": EVERYONE,
    "dso": EVERYONE,
    "paid": MONEY,
    "writeoff": MONEY,
    "approve": EVERYONE,      # anyone may type it; only the named approvers may act (not_approver)
    "reject": EVERYONE,
    "dashboard": EVERYONE,    # a login link, scoped like the caller's commands (private chat only)
    "reverse": frozenset({"finance"}),   # undoing a booked payment: finance alone
    "calendar": frozenset({"finance"}),  # next year's holidays: finance alone
    "confirm": EVERYONE,      # anyone answers their own questions; a rep's "确认 …" without one is a reply
    "claims": EVERYONE,       # scoped like /overdue; dismissing one is finance's (MONEY)
    "notices": EVERYONE,      # one's own notifications of the day that the digests did not list
    "bill": EVERYONE,         # acceptance bills held, listed in scope; recording and disposing are MONEY's
    "claim": EVERYONE,        # bank receipts to claim, listed in scope; claiming is COLLECT's, confirming MONEY's
    "forecast": EVERYONE,     # scoped like /aging
    "commission": EVERYONE,   # scoped like /kpi: a rep sees their own
    "writeoffs": EVERYONE,    # the write-off register, scoped like /aging
    "audit": frozenset({"auditor", "finance"}),    # the audit log: auditors and finance
    "unfreeze": MONEY,        # lifting a credit freeze: finance
    "statute": EVERYONE,      # reading an invoice's statute; recording evidence is finance's and legal's
    "credit": MONEY,          # credit notes (红字发票)
    "apply": MONEY,           # applying unapplied cash (asks first)
    "letter": COLLECT,        # a customer's letters as documents (links; private chat only), scoped like /customer
}

# arguments that make each command do its real work on the fixture ledger (C1 is rep1's, in sup1's team)
ARGS = {
    "followup": "INV-A1 已电话联系，月底付款",
    "promise": "INV-A1 12月20日",
    "dispute": "INV-A1 发票抬头错误",
    "resolve": "INV-B1",
    "customer": "C1",
    "letter": "C1",
    "paid": "INV-A1 100",
    "writeoff": "INV-B2 客户失联",
    "approve": "1",
    "reject": "1",
    "reverse": "LS-0001 测试冲销",
    "unfreeze": "C1 已补签担保",
    "statute": "INV-A1",
    "credit": "INV-A1 100 HZ-T1",
    "apply": "C1",
}
# what a real answer from a read-only command contains
MARKERS = {"help": "可以使用的命令", "aging": "账龄分析", "customer": "上海恒信机电有限公司", "kpi": "回款考核",
           "dso": "DSO", "forecast": "回款预测", "commission": "回款提成",
           "letter": "/letters/"}
TABLES = (Receivable, Payment, Allocation, FollowUp, Promise, Dispute, WriteOff, AuditEntry)
COMMANDS = [c.name for r in routers() for c in r.commands]
APPROVERS = {"finance_head": "fin1", "sales_director": "sup1", "general_manager": "gm"}


async def _bot(aiohttp_client, db):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
    return await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                           permissions=APPROVERS)


async def _counts(db) -> dict[str, int]:
    async with db.session() as s:
        return {m.__tablename__: (await s.execute(select(func.count()).select_from(m))).scalar_one() for m in TABLES}


async def _ledger_state(db):
    async with db.session() as s:
        return sorted((r.invoice_no, r.open_amount, r.status, r.disputed)
                      for r in (await s.execute(select(Receivable))).scalars())


def test_every_registered_command_has_its_role_set_written_down():
    registered = {c.name: set(c.roles) for r in routers() for c in r.commands}
    assert registered == {k: set(v) for k, v in EXPECTED.items()}


@pytest.mark.parametrize("command", COMMANDS)
async def test_permission_matrix(aiohttp_client, db, command):
    assert command in EXPECTED, f"/{command} is new: write down who may use it in EXPECTED"
    bot = await _bot(aiohttp_client, db)
    text = f"/{command} {ARGS.get(command, '')}".strip()
    forbidden = f"没有使用 /{command} 的权限"
    for role, user in USERS.items():
        before, ledger_before = await _counts(db), await _ledger_state(db)
        replies = await bot.say(user, text)
        assert replies, (role, text)
        reply = "\n".join(replies)
        if role in EXPECTED[command]:
            assert forbidden not in reply, (role, reply)
            assert "出错了" not in reply, (role, reply)
            if command in MARKERS:
                assert MARKERS[command] in reply, (role, reply)
        else:
            assert forbidden in reply, (role, reply)
            assert "¥" not in reply, (role, reply)
            assert await _counts(db) == before, (role, text)
            assert await _ledger_state(db) == ledger_before, (role, text)


@pytest.mark.parametrize("user,text", [
    ("rep1", "/customer 广州顺发贸易有限公司"),
    ("rep1", "/customer C3"),
    ("rep1", "/客户 Harbor Lighting Ltd"),
    ("rep1", "/aging 广州顺发贸易有限公司"),
    ("rep1", "/aging C4"),
    ("rep1", "/kpi 广州顺发贸易有限公司"),
    ("rep1", "/dso C3"),
    ("rep1", "/overdue C3"),
    ("rep2", "/customer 上海恒信机电有限公司"),
    ("rep2", "/aging C2"),
    ("sup1", "/customer C3"),
    ("sup2", "/aging 上海恒信机电有限公司"),
])
async def test_another_reps_customer_is_refused_without_figures(aiohttp_client, db, user, text):
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say(user, text)
    assert "不在您负责的范围内" in reply
    assert "¥" not in reply and "USD" not in reply
    for figure in ("5,000", "7,100", "1,000", "55,000", "20,346", "10,000", "15,000", "30,000"):
        assert figure not in reply


async def test_a_loose_name_never_reveals_another_reps_customer(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("rep1", "/customer 顺发")
    assert reply.startswith("找不到客户“顺发”")
    assert "广州顺发贸易有限公司" not in reply and "¥" not in reply
    # pinyin initials: S matches 上海恒信 and 苏州明达 (rep1's), not rep2's customers
    [reply] = await bot.say("rep2", "/customer S")
    assert reply.startswith("找不到客户“S”") and "上海" not in reply and "苏州" not in reply


@pytest.mark.parametrize("user,text", [
    ("rep1", "/aging 华南"), ("rep1", "/overdue 华南"), ("rep1", "/kpi 华南"), ("rep1", "/dso 华南"),
    ("sup1", "/aging 华南"), ("rep2", "/aging 华东"), ("sup2", "/kpi 华东"),
])
async def test_another_team_is_refused_not_answered_with_zero(aiohttp_client, db, user, text):
    """Narrowed to a team that is not theirs, a rep's /aging used to answer ¥0.00 — "nothing owed
    there" — instead of saying it is not theirs to see."""
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say(user, text)
    team = text.split()[1]
    assert reply.startswith(f"“{team}”不在您负责的范围内")
    assert "¥" not in reply and "0.0%" not in reply


async def test_own_team_and_region_still_answer(aiohttp_client, db):
    from bot.core.permissions import may_narrow_to, scope_for
    from storage.models import Person
    bot = await _bot(aiohttp_client, db)
    [reply] = await bot.say("rep1", "/aging 华东")                # her own team: her own customers
    assert "账龄分析 · 华东" in reply and "未收合计 ¥75,346.17，5笔" in reply
    [reply] = await bot.say("sup1", "/aging 华东")
    assert "未收合计 ¥75,346.17，5笔" in reply
    [reply] = await bot.say("gm", "/aging 华南")                  # who reads everything names any team
    assert "未收合计 ¥12,100.00，2笔" in reply
    async with db.session() as s:                                  # regions: by where their customers are
        rep1 = await s.get(Person, "rep1")
        scope = await scope_for(s, rep1)
        assert await may_narrow_to(s, scope, region="华东")
        assert not await may_narrow_to(s, scope, region="华南")
        assert await may_narrow_to(s, await scope_for(s, await s.get(Person, "fin1")), region="华南")
