"""People's chat identities live in person_accounts (platform, user_id) → person, not in a column
per platform: migration 0013 moves them there on SQLite and PostgreSQL, a person known on two
platforms is the same person on both, and people.csv keeps its <platform>_userid columns."""
from __future__ import annotations

import time

import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from bot import notify
from bot.channels.wecom_crypto import WeComCrypto
from storage import people
from storage.db import Database, alembic_config
from storage.models import FollowUp, Person, PersonAccount
from tests import ledger_fixture
from tests.conftest import at, fresh_pg_database
from tests.fakes.dingtalk_server import FakeDingTalk
from tests.fakes.wecom_server import FakeWeCom, build_callback, build_text_message_xml
from tests.harness import Bot

# -- the migration ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_at_0012(request, tmp_path):
    """An empty database migrated to 0012 only: the people table still has a column per platform."""
    url = (f"sqlite:///{tmp_path}/m.db" if request.param == "sqlite"
           else await fresh_pg_database(request.getfixturevalue("pg_server")))
    database = Database(url)
    async with database.engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0012"))
    yield database
    await database.close()


OLD_PEOPLE = [  # id, supervisor, wecom_userid, dingtalk_userid
    ("boss", None, "wx_boss", "dt_boss"),
    ("rep1", "boss", "wx_rep1", None),
    ("rep2", "boss", None, "dt_rep2"),
    ("rep3", "boss", "", None),            # an empty cell is no account
]


async def _columns(db: Database, table: str) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns(table)})


async def test_migration_moves_platform_ids_into_person_accounts(db_at_0012):
    db = db_at_0012
    async with db.engine.begin() as conn:
        for pid, sup, wx, dt in OLD_PEOPLE:
            await conn.execute(text(
                "INSERT INTO people (id, name, role, supervisor_id, team, wecom_userid, dingtalk_userid, mobile,"
                " email, active) VALUES (:id, :id, 'rep', NULL, '', :wx, :dt, '', '', TRUE)"),
                dict(id=pid, wx=wx, dt=dt))
        await conn.execute(text("UPDATE people SET supervisor_id = 'boss' WHERE id <> 'boss'"))
        # rows that reference people and contacts: the rebuild on SQLite must keep them pointing right
        await conn.execute(text(
            "INSERT INTO customers (id, code, name, grade, credit_limit, rep_id, region, cross_border, status,"
            " broken_promises) VALUES (1, 'C1', '客户', 'B', 0, 'rep1', '', FALSE, 'active', 0)"))
        await conn.execute(text(
            "INSERT INTO contacts (id, customer_id, name, mobile, email, wecom_userid, dingtalk_userid, channel,"
            " channel_target) VALUES (1, 1, '王经理', '', 'w@example.com', '', '', 'email', '')"))
    await db.migrate()

    async with db.session() as s:
        accounts = {(a.platform, a.user_id): a.person_id
                    for a in (await s.execute(select(PersonAccount))).scalars()}
        assert accounts == {("wecom", "wx_boss"): "boss", ("dingtalk", "dt_boss"): "boss",
                            ("wecom", "wx_rep1"): "rep1", ("dingtalk", "dt_rep2"): "rep2"}
        boss = await people.by_account(s, "dingtalk", "dt_boss")
        assert boss.id == "boss" and boss.account("wecom") == "wx_boss"
        rep3 = await s.get(Person, "rep3")
        assert rep3.accounts == [] and rep3.supervisor_id == "boss"
    assert not {"wecom_userid", "dingtalk_userid"} & await _columns(db, "people")
    assert not {"wecom_userid", "dingtalk_userid"} & await _columns(db, "contacts")
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT rep_id FROM customers"))).scalar_one() == "rep1"
        assert (await conn.execute(text("SELECT email FROM contacts"))).scalar_one() == "w@example.com"
        if db.is_sqlite:      # the rebuild ran with foreign keys off; they are on again
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1

    # a user id belongs to one person, and a person has one per platform
    async with db.session() as s:
        s.add(PersonAccount(platform="wecom", user_id="wx_boss", person_id="rep3"))
        with pytest.raises(Exception):
            await s.flush()
    async with db.session() as s:
        s.add(PersonAccount(platform="wecom", user_id="wx_other", person_id="boss"))
        with pytest.raises(Exception):
            await s.flush()

    # and back: the columns come back filled from the accounts; up again moves them again
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0012"))
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, wecom_userid, dingtalk_userid FROM people ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [("boss", "wx_boss", "dt_boss"), ("rep1", "wx_rep1", None),
                                       ("rep2", None, "dt_rep2"), ("rep3", None, None)]
    await db.migrate()
    async with db.session() as s:
        assert len((await s.execute(select(PersonAccount))).scalars().all()) == 4


# -- one person, two platforms ------------------------------------------------------------------

AGENT = 1000002
TOKEN = "cbTok3n"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@pytest.fixture
async def two_platforms(aiohttp_client, db):
    async with FakeWeCom(apps={AGENT: "secret"}) as wecom, FakeDingTalk() as dingtalk:
        async with db.session() as s, s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                              wecom=dict(enabled=True, corp_id=wecom.corp_id, agent_id=str(AGENT), secret="secret",
                                         token=TOKEN, encoding_aes_key=AES_KEY, api_base=wecom.url),
                              dingtalk=dict(enabled=True, app_key=dingtalk.app_key, app_secret=dingtalk.app_secret,
                                            robot_code=dingtalk.robot_code, api_base=dingtalk.url,
                                            oapi_base=dingtalk.url))
        dingtalk.clock = lambda: bot.clock.now().timestamp()
        yield bot, wecom, dingtalk


async def _settle(bot: Bot) -> None:
    await bot.state.inbound.wait_idle()
    await bot.state.sender.drain()


async def test_a_person_reachable_on_two_platforms_is_one_person(two_platforms, db):
    bot, wecom, dingtalk = two_platforms
    # 张伟 (rep1) answers the morning push once from WeCom and once from DingTalk
    assert bot.services.platforms == ("wecom", "dingtalk", "local")
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    assert wecom.messages_to("wx_rep1") and not dingtalk.messages()      # pushed where preferred: WeCom
    bot.clock.set(at("2026-11-23 10:00"))
    crypto = WeComCrypto(TOKEN, AES_KEY, wecom.corp_id)
    xml = build_text_message_xml(wecom.corp_id, "wx_rep1", "1 已电话联系王总，下周五付款", msg_id=501, agent_id=AGENT)
    query, body = build_callback(crypto, xml, int(time.time()), "n1")
    resp = await bot.client.post("/wecom/callback", params=query, data=body, headers={"Content-Type": "text/xml"})
    assert resp.status == 200
    message = dingtalk.robot_message("2 客户说发票抬头错了，要重开", staff_id="dt_rep1", nick="张伟")
    resp = await bot.client.post("/dingtalk/callback", data=dingtalk.signed_callback(message)[1],
                                 headers=dingtalk.signed_callback(message)[0])
    assert resp.status == 200
    await _settle(bot)
    async with db.session() as s:
        fus = (await s.execute(select(FollowUp).order_by(FollowUp.id))).scalars().all()
    assert [(f.person_id, f.channel) for f in fus] == [("rep1", "wecom"), ("rep1", "dingtalk")]
    # each answer went back on the platform the reply came on
    assert any("已记录" in m.payload.get("markdown", {}).get("content", "") for m in wecom.messages_to("wx_rep1"))
    [answer] = dingtalk.messages()
    assert "已记录" in str(answer.payload)


async def test_addressing_follows_the_registry_order_and_the_accounts(db, aiohttp_client):
    async with db.session() as s, s.begin():
        s.add(Person(id="p1", name="两栖", role="rep", accounts=ledger_fixture.accounts(wecom="wx_p1", dingtalk="dt_p1")))
        s.add(Person(id="p2", name="钉钉", role="rep", accounts=ledger_fixture.accounts(dingtalk="dt_p2")))
        s.add(Person(id="p3", name="无号", role="rep"))
    async with db.session() as s:
        p1, p2, p3 = [await people.by_id(s, pid) for pid in ("p1", "p2", "p3")]
        assert (await people.by_account(s, "wecom", "wx_p1")).id == (await people.by_account(s, "dingtalk", "dt_p1")).id
        assert await people.by_account(s, "wecom", "dt_p1") is None          # ids are per platform
    both = ("wecom", "dingtalk", "local")
    assert notify.address(p1, both) == ("wecom", "wx_p1")
    assert notify.address(p1, ("dingtalk", "local")) == ("dingtalk", "dt_p1")
    assert notify.address(p2, both) == ("dingtalk", "dt_p2")
    assert notify.address(p3, both) == ("local", "p3")                     # the local chat knows everyone
    assert notify.address(p3, ("wecom", "dingtalk")) is None


# -- people.csv ---------------------------------------------------------------------------------

async def test_people_import_sets_changes_and_removes_accounts(db, tmp_path):
    from storage.imports import import_file

    async def load(csv: str):
        path = tmp_path / "people.csv"
        path.write_text(csv, encoding="utf-8")
        return await import_file(db, "people", path, actor="admin", now=at("2026-11-23 10:00"),
                                 today=at("2026-11-23 10:00").date())

    report = await load("工号,姓名,角色,企业微信ID,钉钉ID\nE1,甲,业务员,wx_1,dt_1\nE2,乙,业务员,,dt_2\n")
    assert report.ok, report.to_dict()

    async def accounts() -> set:
        async with db.session() as s:
            return {(a.person_id, a.platform, a.user_id) for a in (await s.execute(select(PersonAccount))).scalars()}

    assert await accounts() == {("E1", "wecom", "wx_1"), ("E1", "dingtalk", "dt_1"), ("E2", "dingtalk", "dt_2")}
    # E1's WeCom id moves to E2 in the same file; E1's DingTalk id is removed
    report = await load("id,name,role,wecom_userid,dingtalk_userid\nE1,甲,rep,wx_new,\nE2,乙,rep,wx_1,dt_2\n")
    assert report.ok and report.updated == 2, report.to_dict()
    assert await accounts() == {("E1", "wecom", "wx_new"), ("E2", "wecom", "wx_1"), ("E2", "dingtalk", "dt_2")}
    # a file without the columns leaves the accounts alone
    report = await load("id,name,role\nE1,甲,rep\n")
    assert report.ok and report.unchanged == 1
    assert len(await accounts()) == 3
