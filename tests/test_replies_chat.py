"""Replies to the morning push as reps really write them, end to end through the local chat:
what the rep reads back, and what lands in the follow-up log, the promises, the disputes and
the audit log (issue 13)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select

from storage.models import AuditEntry, Dispute, FollowUp, Promise, Push, PushItem, Receivable
from tests import ledger_fixture
from tests.conftest import at
from tests.harness import Bot

D = Decimal


async def _bot(aiohttp_client, db, *, long_list: bool = False):
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        if long_list:
            # rep "rep9" with 50 overdue invoices: item n is INV-L{50-n}, open (51-n) × ¥2,000
            await ledger_fixture.add_reps(s, count=1, rep_id=lambda i: "rep9", customer_code=lambda i: "C9",
                                          customer_name=lambda i: "无锡长列机械有限公司",
                                          invoice_no=lambda i, k: f"INV-L{k:02d}", invoices=50, step_days=1,
                                          unit=D("2000"))
    # all 50 numbered (the push numbers 20 by default): item numbers past 20 are what the long list tests
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 08:00"), company={"fx_rates": ledger_fixture.FX},
                          collection={"push_max_items": 50})
    await bot.run("overdue_push", at("2026-11-23 09:00"))
    bot.clock.set(at("2026-11-23 11:00"))
    return bot


async def _log(db, rep: str) -> list[tuple]:
    """(invoice, outcome, promised date, promised amount) of the rep's follow-ups, in order."""
    async with db.session() as s:
        rows = (await s.execute(select(FollowUp, Receivable.invoice_no)
                                .outerjoin(Receivable, Receivable.id == FollowUp.receivable_id)
                                .where(FollowUp.person_id == rep, FollowUp.channel == "local")
                                .order_by(FollowUp.id))).all()
    return [(inv, fu.outcome, fu.promised_date, fu.promised_amount) for fu, inv in rows]


async def _open_promises(db) -> dict[str, tuple]:
    async with db.session() as s:
        rows = (await s.execute(select(Promise, Receivable.invoice_no).join(Receivable, Receivable.id == Promise.receivable_id)
                                .where(Promise.status == "open"))).all()
    return {inv: (p.promised_date, p.amount) for p, inv in rows}


async def _seqs(db, rep: str) -> dict[int, str]:
    async with db.session() as s:
        rows = (await s.execute(select(PushItem.seq, Receivable.invoice_no)
                                .join(Receivable, Receivable.id == PushItem.receivable_id)
                                .where(Receivable.rep_id == rep))).all()
    return dict(rows)


async def test_multi_line_reply_records_every_item(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [ack] = await bot.say("rep1", "1 已联系\n2 月底付\n3 联系不上")
    assert "1. 上海恒信机电有限公司 INV-A3：已联系" in ack
    assert "2. 上海恒信机电有限公司 INV-A2：承诺付款，承诺11月30日（约期）" in ack
    assert "3. 苏州明达电子科技有限公司 INV-B2：联系不上" in ack
    assert "2月" not in ack and "2月28日" not in ack
    assert await _log(db, "rep1") == [("INV-A3", "contacted", None, None),
                                      ("INV-A2", "promised", date(2026, 11, 30), None),
                                      ("INV-B2", "unreachable", None, None)]
    assert await _open_promises(db) == {"INV-A2": (date(2026, 11, 30), None)}
    async with db.session() as s:   # every item answered, every follow-up audited
        items = (await s.execute(select(PushItem).join(Push, Push.id == PushItem.push_id)
                                 .where(Push.rep_id == "rep1"))).scalars().all()
        assert len(items) == 3 and all(i.replied_at for i in items)
        audited = (await s.execute(select(AuditEntry).where(AuditEntry.action == "followup.log",
                                                            AuditEntry.channel == "local"))).scalars().all()
    assert sorted(a.entity_id for a in audited) == ["INV-A2", "INV-A3", "INV-B2"]
    # so nothing of rep1's list is escalated as unanswered when the window closes
    await bot.run("reply_window_close", at("2026-11-25 09:00"))
    assert not any("张伟" in m for m in await bot.inbox("sup1"))


async def test_long_list_item_numbers_followed_by_dates(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db, long_list=True)
    seq = await _seqs(db, "rep9")
    assert seq[19] == "INV-L31" and len(seq) == 50

    # 19 pays on 12-20: one entry, not items 12..20
    [ack] = await bot.say("rep9", "19 12-20付款")
    assert "19. 无锡长列机械有限公司 INV-L31：承诺付款，承诺12月20日" in ack
    assert await _log(db, "rep9") == [("INV-L31", "promised", date(2026, 12, 20), None)]

    [ack] = await bot.say("rep9", "25 已联系\n26 元旦前付清")
    assert "¥26.00" not in ack
    assert "25. 无锡长列机械有限公司 INV-L25：已联系" in ack
    assert "26. 无锡长列机械有限公司 INV-L24：承诺付款，承诺12月31日付 ¥50,000.00（约期）" in ack

    [ack] = await bot.say("rep9", "24 元旦前付清")
    assert "24. 无锡长列机械有限公司 INV-L26：承诺付款，承诺12月31日付 ¥54,000.00" in ack
    [ack] = await bot.say("rep9", "3 月底付")
    assert "3. 无锡长列机械有限公司 INV-L47：承诺付款，承诺11月30日" in ack
    [ack] = await bot.say("rep9", "14 月底")
    assert "14. 无锡长列机械有限公司 INV-L36：承诺付款，承诺11月30日" in ack and "未能确定" not in ack

    [ack] = await bot.say("rep9", "10 联系上了，说明天付款；11也是")
    assert "10. 无锡长列机械有限公司 INV-L40：承诺付款，承诺11月24日" in ack
    assert "11. 无锡长列机械有限公司 INV-L39：承诺付款，承诺11月24日（同上）" in ack

    [ack] = await bot.say("rep9", "43 付了一半，剩下月底")
    assert "43. 无锡长列机械有限公司 INV-L07：承诺付款，承诺11月30日付 ¥8,000.00，称已付一半" in ack
    [ack] = await bot.say("rep9", "28 先付5000剩下的月底")
    assert "28. 无锡长列机械有限公司 INV-L22：承诺付款，承诺11月30日前付清 ¥46,000.00（其中先付 ¥5,000.00）" in ack
    [ack] = await bot.say("rep9", "4 5万 月底")
    assert "4. 无锡长列机械有限公司 INV-L46：承诺付款，承诺11月30日付 ¥50,000.00" in ack

    [ack] = await bot.say("rep9", "13 没有付款，客户不承认这笔账")
    assert "13. 无锡长列机械有限公司 INV-L37：有异议，提醒和升级暂停" in ack
    [ack] = await bot.say("rep9", "17 微信发了对账单，还没回复")
    assert "17. 无锡长列机械有限公司 INV-L33：已联系" in ack
    ack, claim = await bot.say("rep9", "27 客户说钱已经打了")
    assert "27. 无锡长列机械有限公司 INV-L23：称已付款" in ack
    assert "已转财务核实到账" in claim                     # a claim goes to finance to check
    [ack] = await bot.say("rep9", "3 Called the customer, they will pay 50000 next Friday")
    assert "3. 无锡长列机械有限公司 INV-L47：承诺付款，承诺12月4日付 ¥50,000.00" in ack
    [ack] = await bot.say("rep9", "5 春节前付\n6 年前付清\n8 元旦后付")
    assert "5. 无锡长列机械有限公司 INV-L45：承诺付款，承诺2月4日" in ack
    assert "6. 无锡长列机械有限公司 INV-L44：承诺付款，承诺2月4日付 ¥90,000.00（约期）" in ack
    assert "8. 无锡长列机械有限公司 INV-L42：承诺付款，承诺1月4日" in ack

    promises = await _open_promises(db)
    assert promises["INV-L31"] == (date(2026, 12, 20), None)
    assert promises["INV-L24"] == (date(2026, 12, 31), D("50000.00"))
    assert promises["INV-L39"] == promises["INV-L40"] == (date(2026, 11, 24), None)
    assert promises["INV-L07"] == (date(2026, 11, 30), D("8000.00"))           # the other half
    assert promises["INV-L22"] == (date(2026, 11, 30), D("46000.00"))          # all of it by month end
    assert promises["INV-L47"] == (date(2026, 12, 4), D("50000.00"))           # the later reply replaced it
    assert promises["INV-L44"] == (date(2027, 2, 4), D("90000.00"))
    async with db.session() as s:
        disputed = (await s.execute(select(Receivable.invoice_no).where(Receivable.disputed.is_(True),
                                                                      Receivable.rep_id == "rep9"))).scalars().all()
        # nothing was logged on items 12..18 or 20 by "19 12-20付款"
        logged = set((await s.execute(select(Receivable.invoice_no).join(FollowUp, FollowUp.receivable_id == Receivable.id)
                                      .where(FollowUp.person_id == "rep9"))).scalars())
    assert disputed == ["INV-L37"]
    assert not logged & {seq[n] for n in (12, 15, 16, 18, 20)}


async def test_damage_that_does_not_affect_payment_pauses_nothing(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [ack] = await bot.say("rep1", "1 上周送的货运输途中有点破损，客户拍了照片，已经跟物流索赔了，"
                                  "客户说这个不影响付款，月底前会把这笔结清")
    assert "1. 上海恒信机电有限公司 INV-A3：承诺付款，承诺11月30日付 ¥30,000.00" in ack and "暂停" not in ack
    async with db.session() as s:
        assert not (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-A3"))).scalar_one().disputed


async def test_amount_above_the_open_balance_is_asked_back_not_cut(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [ack] = await bot.say("rep1", "2 答应12月20日付5万")
    assert "第2笔 INV-A2 未付余额 ¥15,000.00，您写的 ¥50,000.00 超过余额，未记录承诺" in ack
    assert "¥15,000.00付" not in ack and "承诺12月20日" not in ack
    assert await _open_promises(db) == {}
    assert await _log(db, "rep1") == [("INV-A2", "other", None, None)]        # the text kept as a note
    # the rep answers the question with a correction: now it is recorded
    [ack] = await bot.say("rep1", "更正 2 答应12月20日付清")
    assert "2. 上海恒信机电有限公司 INV-A2：承诺付款，承诺12月20日付 ¥15,000.00（已更正）" in ack
    assert await _open_promises(db) == {"INV-A2": (date(2026, 12, 20), D("15000.00"))}
    # a claimed payment above the balance is asked back too
    ack, claim = await bot.say("rep1", "3 客户说已付五万")
    assert "第3笔 INV-B2 未付余额 ¥12,345.67，您写的已付 ¥50,000.00 超过余额，未记录" in ack
    assert "多 ¥37,654.33" in claim and "未记为回款" in claim      # finance checks it; nothing booked


async def test_promise_without_a_date_is_logged_and_asked(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [ack] = await bot.say("rep1", "1 客户答应尽快付")
    assert "1. 上海恒信机电有限公司 INV-A3：承诺付款" in ack
    assert "第1笔 INV-A3：客户答应哪天付？" in ack
    assert await _open_promises(db) == {}


async def test_corrections_replace_the_promise_and_lift_the_dispute(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    await bot.say("rep1", "1 答应12月20日付3000\n3 客户说发票抬头错了，要重开")
    assert await _open_promises(db) == {"INV-A3": (date(2026, 12, 20), D("3000.00"))}

    [ack] = await bot.say("rep1", "更正 1 是3万不是3000")
    assert "1. 上海恒信机电有限公司 INV-A3：承诺付款，承诺12月20日付 ¥30,000.00（已更正）" in ack
    assert await _open_promises(db) == {"INV-A3": (date(2026, 12, 20), D("30000.00"))}

    [ack] = await bot.say("rep1", "更正 3 不是异议，客户月底付")
    assert "3. 苏州明达电子科技有限公司 INV-B2：承诺付款，承诺11月30日付 ¥12,345.67" not in ack   # no amount said
    assert "3. 苏州明达电子科技有限公司 INV-B2：承诺付款，承诺11月30日，异议已撤销，提醒恢复（已更正）" in ack
    async with db.session() as s:
        b2 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-B2"))).scalar_one()
        assert not b2.disputed
        assert (await s.execute(select(Dispute).where(Dispute.receivable_id == b2.id))).scalar_one().resolved_at
        actions = [a.action for a in (await s.execute(select(AuditEntry).where(AuditEntry.channel == "local")
                                                      .order_by(AuditEntry.id))).scalars()]
    assert actions.count("dispute.resolve") == 1 and actions.count("followup.log") == 4


async def test_undo_takes_the_last_reply_back(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    await bot.say("rep1", "1 答应12月20日付3万")
    [ack] = await bot.say("rep1", "1 答应下周五付一半\n3 发票开错了，客户要求重开")
    assert await _open_promises(db) == {"INV-A3": (date(2026, 12, 4), D("15000.00"))}

    [undone] = await bot.say("rep1", "撤销")
    assert "已撤销您的上一条回复" in undone and "第1笔、第3笔" in undone
    # the earlier promise is open again, the dispute and the second reply's follow-ups are gone
    assert await _open_promises(db) == {"INV-A3": (date(2026, 12, 20), D("30000.00"))}
    assert await _log(db, "rep1") == [("INV-A3", "promised", date(2026, 12, 20), D("30000.00"))]
    async with db.session() as s:
        b2 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-B2"))).scalar_one()
        assert not b2.disputed
        item3 = (await s.execute(select(PushItem).where(PushItem.receivable_id == b2.id))).scalar_one()
        assert item3.replied_at is None                     # unanswered again: the window will see it
        undo = (await s.execute(select(AuditEntry).where(AuditEntry.action == "followup.undo"))).scalars().all()
    assert sorted(u.entity_id for u in undo) == ["INV-A3", "INV-B2"]
    # undo again: the first reply goes too; then there is nothing left
    await bot.say("rep1", "撤销")
    assert await _open_promises(db) == {}
    [nothing] = await bot.say("rep1", "撤销")
    assert "没有可以撤销的回复" in nothing


async def test_a_reply_without_an_item_is_kept_as_an_audited_note_and_asked(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [ack] = await bot.say("rep1", "客户说月底付")
    assert "未能确定“客户说月底付”说的是哪一笔，已作为备注记录。是第几笔？" in ack and "共3笔" in ack
    assert await _open_promises(db) == {}
    [ack] = await bot.say("rep1", "1 已联系\n2月底付\n3 联系不上")
    assert "“2月底付”是第2笔，还是2月？" in ack
    assert await _open_promises(db) == {}
    [logged] = await bot.say("rep1", "/followup 恒信 上门拜访了财务")
    assert "已记录对 上海恒信机电有限公司 的跟进" in logged
    async with db.session() as s:
        audited = [(a.entity, a.detail["outcome"]) for a in (await s.execute(
            select(AuditEntry).where(AuditEntry.action == "followup.log", AuditEntry.entity != "receivable")
            .order_by(AuditEntry.id))).scalars()]
    assert audited == [("push", "other"), ("push", "other"), ("customer", "contacted")]


async def test_foreign_currency_items_are_acknowledged_in_their_currency(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    [ack] = await bot.say("rep2", "1 答应月底付清\n2 答应12月20日付一半")
    assert "1. Harbor Lighting Ltd INV-D1：承诺付款，承诺11月30日付 US$1,000.00（约期）" in ack
    assert "2. 广州顺发贸易有限公司 INV-C1：承诺付款，承诺12月20日付 ¥2,500.00" in ack
    [ask] = await bot.say("rep2", "更正 1 答应月底付5000")
    assert "第1笔 INV-D1 未付余额 US$1,000.00，您写的 US$5,000.00 超过余额" in ask


async def test_a_reply_whose_promise_was_already_judged_is_not_undone(aiohttp_client, db):
    bot = await _bot(aiohttp_client, db)
    await bot.say("rep1", "1 答应明天付3万")
    # the promise passes unpaid and is marked broken
    await bot.run("promise_watch", at("2026-12-03 10:00"))      # well past the date and any grace
    async with db.session() as s:
        [p] = (await s.execute(select(Promise).where(Promise.made_by == "rep1"))).scalars().all()
    assert p.status == "broken"
    bot.clock.set(at("2026-12-03 10:05"))
    [refused] = await bot.say("rep1", "撤销")
    assert "已到期并已判定" in refused
    assert await _log(db, "rep1") == [("INV-A3", "promised", date(2026, 11, 24), D("30000.00"))]
