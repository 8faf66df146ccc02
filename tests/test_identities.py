"""People bound to their chat accounts by mobile: at import and at first contact, against the fake
platforms' user-by-mobile APIs (WeCom user/getuserid, DingTalk topapi/v2/user/getbymobile,
Feishu contact/v3/users/batch_get_id)."""
from __future__ import annotations

import json

from sqlalchemy import select

from bot.cli import _parser, _run
from storage.models import Person, PersonAccount
from tests import ledger_fixture
from tests.conftest import at
from tests.fakes.dingtalk_server import FakeDingTalk
from tests.fakes.feishu_server import FakeFeishu
from tests.fakes.wecom_server import FakeWeCom
from tests.harness import Bot, config_for

AGENT = 1000002
PEOPLE_CSV = """员工编号*,姓名,角色,上级,团队,手机号,钉钉ID
E001,张伟,业务员,,华东一组,13800138001,
E002,李娜,业务员,,华东一组,+86 138-0013-8002,
E003,刘洋,业务员,,华南组,13800138003,dt_liuyang
E004,陈静,财务,,财务部,13800138004,
E005,赵磊,法务,,法务部,,
"""


async def accounts(db) -> dict[tuple[str, str], str]:
    async with db.session() as s:
        return {(a.person_id, a.platform): a.user_id for a in (await s.execute(select(PersonAccount))).scalars()}


async def test_a_people_import_binds_by_mobile_and_reports_who_could_not_be(db, tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_text(PEOPLE_CSV, encoding="utf-8")
    async with FakeDingTalk() as dt, FakeWeCom(apps={AGENT: "secret"}) as wx, FakeFeishu() as fs:
        dt.members = {"13800138001": "dt_zhangwei", "13800138002": "dt_lina", "13800138004": "dt_liuyang"}
        wx.members = {"13800138001": "zhangwei"}
        fs.members = {"13800138003": {"user_id": "fs_liuyang", "open_id": "ou_1", "union_id": "on_1"}}
        cfg = config_for(db.url,
                         dingtalk=dict(enabled=True, app_key=dt.app_key, app_secret=dt.app_secret,
                                       robot_code=dt.robot_code, api_base=dt.url, oapi_base=dt.url),
                         wecom=dict(enabled=True, corp_id=wx.corp_id, agent_id=str(AGENT), secret="secret",
                                    token="t", encoding_aes_key="a" * 43, api_base=wx.url),
                         feishu=dict(enabled=True, app_id=fs.app_id, app_secret=fs.app_secret,
                                     verification_token="v", api_base=fs.url))
        code = await _run(cfg, _parser().parse_args(["import", "people", str(path)]))
        out = capsys.readouterr().out
        assert code == 0 and "导入人员成功：共5行" in out
        got = await accounts(db)
        assert got[("E001", "dingtalk")] == "dt_zhangwei" and got[("E002", "dingtalk")] == "dt_lina"
        assert got[("E001", "wecom")] == "zhangwei" and got[("E003", "feishu")] == "fs_liuyang"
        assert got[("E003", "dingtalk")] == "dt_liuyang"          # imported, not looked up
        assert ("E004", "dingtalk") not in got and ("E005", "dingtalk") not in got
        assert "已按手机号绑定聊天账号：4个" in out
        assert "员工编号 E004（陈静），钉钉：手机号 138****8004 对应的账号已属于员工 E003" in out
        assert "员工编号 E002（李娜），企业微信：没有手机号为 138****8002 的成员" in out
        # the same as JSON; a second import finds nothing left to bind on DingTalk but the taken one
        code = await _run(cfg, _parser().parse_args(["import", "people", str(path), "--format", "json"]))
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and report["ok"] and report["accounts"]["bound"] == []
        assert {(u["person"], u["platform"], u["reason"]) for u in report["accounts"]["unbound"]
                if u["platform"] == "dingtalk"} == {("E004", "dingtalk", "taken")}
        # a platform that cannot be asked: reported as such, the import still stands
        dt.inject("http", endpoint="getbymobile", status=500)
        await _run(cfg, _parser().parse_args(["import", "people", str(path)]))
        assert "员工编号 E004（陈静），钉钉：暂时无法查询" in capsys.readouterr().out


async def test_first_contact_binds_an_unknown_sender_by_mobile(db, aiohttp_client):
    async with FakeDingTalk() as fake:
        async with db.session() as s, s.begin():
            await ledger_fixture.build(s, at("2026-11-20 10:00"))
            s.add(Person(id="rep9", name="新同事", role="rep", team="华东", mobile="13900139009"))
        fake.members = {"13900139009": "dt_rep9"}
        bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX},
                              dingtalk=dict(enabled=True, mode="http", app_key=fake.app_key, app_secret=fake.app_secret,
                                            robot_code=fake.robot_code, api_base=fake.url, oapi_base=fake.url))
        fake.clock = lambda: bot.clock.now().timestamp()
        session_of = {}
        for user, text in (("dt_rep9", "/help"), ("dt_stranger", "/help")):
            body = fake.robot_message(text, staff_id=user)
            session_of[user] = body["sessionWebhook"].rpartition("session=")[2]
            headers, raw = fake.signed_callback(body)
            assert (await bot.client.post("/dingtalk/callback", data=raw, headers=headers)).status == 200
        await bot.state.inbound.wait_idle()
        await bot.state.sender.drain()
        assert (await accounts(db))[("rep9", "dingtalk")] == "dt_rep9"
        # each answer by the conversation it went to: the two are handled concurrently, in any order
        answers = {r.target: r.payload["markdown"]["text"] if "markdown" in r.payload else r.payload["text"]["content"]
                   for r in fake.messages("session")}
        first, second = answers[session_of["dt_rep9"]], answers[session_of["dt_stranger"]]
        assert "我还不认识您" not in first and "/overdue" in first        # answered as rep9
        assert "我还不认识您" in second                                   # nobody's mobile: still a stranger


async def test_a_platform_that_cannot_be_asked_is_not_asked_for_everyone(db):
    """A wrong secret (or no permission, or no network) fails every lookup: after a few, the rest
    are reported without a call each (each could wait for its whole timeout)."""
    from bot.identities import bind_by_mobile
    async with db.session() as s, s.begin():
        for i in range(12):
            s.add(Person(id=f"p{i:02d}", name=f"同事{i}", role="rep", mobile=f"1390000{i:04d}"))
    async with FakeDingTalk() as dt:
        dt.members = {f"1390000{i:04d}": f"dt_{i}" for i in range(12)}
        cfg = config_for(db.url, dingtalk=dict(enabled=True, app_key=dt.app_key, app_secret="wrong",
                                               robot_code=dt.robot_code, api_base=dt.url, oapi_base=dt.url))
        binding = await bind_by_mobile(db, cfg)
        assert binding.bound == [] and len(binding.unbound) == 12
        assert {u.reason for u in binding.unbound} == {"error"}
        assert "40089" in binding.unbound[-1].detail
        assert dt.token_requests < 12
        assert await accounts(db) == {}


def test_mobiles_are_normalized_for_the_platforms():
    from bot.identities import normalize_mobile
    assert normalize_mobile("+86 138-0013-8002") == "13800138002"
    assert normalize_mobile("0086 13800138002") == "13800138002"
    assert normalize_mobile(" 138 0013 8002 ") == "13800138002"
