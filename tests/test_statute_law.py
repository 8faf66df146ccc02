"""The statute of limitations (诉讼时效) as the law has it (issue #19), per invoice: a lapsed
period stays lapsed whatever is sent after it; only the debtor's written acknowledgement or a
payment is recorded after a lapse, as what it is; what proves a demand reached the debtor is
configured and recorded with its evidence. Hand-made ledger, dates worked out by hand:

C1 上海恒信 (3 years; last day = the anchor's date 3 years on, a rest day rolls to a working day):
  FP26000603  18,600.00  due 2023-07-01 → last day 2026-07-01 (Wed): lapsed before the story starts
  FP26000911   7,200.00  due 2023-12-15 → last day 2026-12-15 (Tue)
  FP26001120  30,000.00  due 2026-11-20 → last day 2029-11-20 (Tue)
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select

from domain.statute import Event, reckon
from storage.models import AuditEntry, Customer, CustomerMessage, LadderStep, Person, Receivable, StatuteEvidence
from tests.conftest import at
from tests.harness import Bot
from tests.ledger_fixture import accounts

D = Decimal
INVOICES = (("FP26000603", date(2023, 7, 1), "18600.00"), ("FP26000911", date(2023, 12, 15), "7200.00"),
            ("FP26001120", date(2026, 11, 20), "30000.00"))


async def _ledger(db):
    async with db.session() as s, s.begin():
        for pid, role, sup in (("sup1", "supervisor", None), ("rep1", "rep", "sup1"), ("fin1", "finance", None),
                               ("legal1", "legal", None)):
            s.add(Person(id=pid, name=pid, role=role, supervisor_id=sup, accounts=accounts(wecom="wx_" + pid)))
            await s.flush()
        c = Customer(code="C1", name="上海恒信机电有限公司", rep_id="rep1", grade="B", credit_limit=D("0"))
        s.add(c)
        await s.flush()
        for inv, due, amount in INVOICES:
            s.add(Receivable(invoice_no=inv, contract_no="HT-" + inv, customer_id=c.id, rep_id="rep1",
                             issue_date=due, due_date=due, amount=D(amount), open_amount=D(amount),
                             created_at=at("2023-01-01 10:00")))
        return c.id


async def _reminder_email(db, invoice, when):
    """An automatic reminder e-mail about ``invoice`` that the SMTP server accepted at ``when``."""
    async with db.session() as s, s.begin():
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == invoice))).scalar_one()
        s.add(CustomerMessage(customer_id=r.customer_id, receivable_id=r.id, step="d30", kind="reminder",
                              channel="email", outbox_key=f"cm:{invoice}:{when}", status="sent", queued_at=at(when),
                              send_at=at(when), sent_at=at(when)))


def _statute_lines(card):
    lines = card.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("**诉讼时效**"))
    return [line for line in lines[head + 1:] if line.startswith("- ")]


async def test_a_reminder_email_after_expiry_does_not_revive_the_claim(aiohttp_client, db):
    """The issue's case: FP26000603 lapsed 2026-07-01 (the bot told legal so on 11-17); an automatic
    reminder e-mail on 12-03 used to make it run again until 2029-12-03."""
    await _ledger(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-11-17 09:20"))
    assert "2 statute warning(s)" in await bot.run("statute_watch", at("2026-11-17 09:20"))
    await _reminder_email(db, "FP26000603", "2026-12-03 10:00")
    bot.clock.set(at("2026-12-03 15:00"))
    [reply] = await bot.say("fin1", "/时效 FP26000603 回复 12月3日 邮件回复")     # a reply to it, too late as well
    assert "- 2026-12-03 客户回复催款：时效已届满，催收不能使其重新计算" in reply

    # the next morning: no new warning, no new last day for the lapsed invoice
    bot.clock.set(at("2026-12-04 09:20"))
    assert "0 statute warning(s)" in await bot.run("statute_watch", at("2026-12-04 09:20"))
    async with db.session() as s:
        steps = sorted((await s.execute(select(LadderStep.step).where(LadderStep.step.like("statute:%")))).scalars())
    assert steps == ["statute:2026-07-01", "statute:2026-12-15"]

    # /customer lists the nearest expiries per invoice; the customer's latest due date (2026-11-20,
    # hence 2029-11-20) no longer hides FP26000911, which runs out in 2026-12-15 − 2026-12-04 = 11 days
    [card] = await bot.say("fin1", "/customer C1")
    assert _statute_lines(card) == [
        "- FP26000603：已于2026-07-01届满，自到期日 2023-07-01 次日起算3年；"
        "届满后的催收2次（最近 2026-12-03）不能使时效重新计算",
        "- FP26000911：2026-12-15届满（还有11天），自到期日 2023-12-15 次日起算3年",
        f"- FP26001120：2029-11-20届满（还有{(date(2029, 11, 20) - date(2026, 12, 4)).days}天），"
        "自到期日 2026-11-20 次日起算3年",
    ]
    assert "2029-12-03" not in card

    # a company that counts accepted e-mails as notices still cannot revive a lapsed claim with one
    # (the e-mail did interrupt nothing else here: FP26000911 had none)
    trusting = await Bot.start(aiohttp_client, db, at("2026-12-04 09:30"),
                               statute={"notice_evidence": ["customer_reply", "email_accepted"]})
    [card] = await trusting.say("fin1", "/customer C1")
    assert _statute_lines(card)[0].startswith("- FP26000603：已于2026-07-01届满")


async def test_after_expiry_only_the_debtors_acts_are_recorded_as_what_they_are(aiohttp_client, db):
    await _ledger(db)
    bot = await Bot.start(aiohttp_client, db, at("2026-12-03 10:00"))
    # a payment after the lapse: voluntary performance of the part paid; the rest stays time-barred
    assert (await bot.say("fin1", "/paid FP26000603 1000"))[0].startswith("**已登记回款")
    [view] = await bot.say("legal1", "/时效 FP26000603")
    assert view.splitlines()[1] == "已于2026-07-01届满，自到期日 2023-07-01 次日起算3年；" \
                                   "届满后2026-12-03回款：自愿履行，已付部分不得要求返还，余额仍已过时效"
    assert "- 2026-12-03 回款（#1）：自愿履行，已付部分不得要求返还；余额仍已过时效" in view

    # a balance confirmation the customer signs after the lapse re-confirms the debt: a new period
    # from 12-04 to 2029-12-04 (a Tuesday), 2029-12-04 − 2026-12-04 = 1,096 days
    bot.clock.set(at("2026-12-04 10:00"))
    [rec] = await bot.say("legal1", "/时效 FP26000603 确认函 12月4日 QR-7 对账单盖章")
    assert rec.splitlines()[0] == "**已登记**：FP26000603 2026-12-04 客户签认账款确认函（QR-7，对账单盖章）"
    assert "2029-12-04届满（还有1096天），自客户签认账款确认函 2026-12-04 次日起算3年；" \
           "原时效已于2026-07-01届满，客户届满后书面重新确认，自确认次日重新计算" in rec
    assert "- 2026-12-04 客户签认账款确认函（QR-7）：对原债务的重新确认，自次日起重新计算时效" in rec

    # a registered letter signed for within a running period interrupts it: FP26000911 from 12-02;
    # 2029-12-02 is a Sunday, so the last day is Monday 2029-12-03
    [rec] = await bot.say("fin1", "/statute FP26000911 挂号信 12月2日 EMS1190")
    assert "2029-12-03届满（还有1095天），自挂号信/EMS催款签收 2026-12-02 次日起算3年" in rec

    # reps read, finance and legal record; bad words and future dates change nothing
    assert "只有财务和法务可以登记时效证据" in (await bot.say("rep1", "/时效 FP26001120 回复"))[0]
    assert "看不懂证据“电话”" in (await bot.say("fin1", "/时效 FP26001120 电话"))[0]
    assert "还没到" in (await bot.say("fin1", "/时效 FP26001120 回复 12月9日"))[0]
    assert "2029-11-20届满" in (await bot.say("rep1", "/时效 FP26001120"))[0]
    async with db.session() as s:
        rows = [(e.evidence, e.happened_on, e.reference, e.recorded_by) for e in
                (await s.execute(select(StatuteEvidence).order_by(StatuteEvidence.id))).scalars()]
        assert rows == [("signed_confirmation", date(2026, 12, 4), "QR-7", "legal1"),
                        ("registered_letter", date(2026, 12, 2), "EMS1190", "fin1")]
        audited = (await s.execute(select(AuditEntry.detail).where(AuditEntry.action == "statute.evidence")
                                   .order_by(AuditEntry.id))).scalars().all()
        assert [(a["evidence"], a["reference"]) for a in audited] == [("signed_confirmation", "QR-7"),
                                                                     ("registered_letter", "EMS1190")]


def test_reckoning_rules():
    due = date(2023, 7, 1)                       # last day 2026-07-01
    today = date(2026, 12, 4)
    demands = ("customer_reply", "registered_letter", "lawsuit")
    # an accepted e-mail in time is not proof of delivery unless configured
    rk = reckon(due, [Event(date(2025, 3, 3), "email_accepted")], 3, today=today, notice_evidence=demands)
    assert (rk.last_day, rk.reason, rk.expired(today)) == (date(2026, 7, 1), "due", True)
    assert rk.ignored == [(Event(date(2025, 3, 3), "email_accepted"), "not_evidence")]
    rk = reckon(due, [Event(date(2025, 3, 3), "email_accepted")], 3, today=today,
                notice_evidence=demands + ("email_accepted",))
    assert (rk.last_day, rk.expired(today)) == (date(2028, 3, 3), False)
    # a chain of interruptions, each inside the running period
    rk = reckon(due, [Event(date(2026, 6, 30), "customer_reply"), Event(date(2029, 6, 1), "payment")], 3,
                today=date(2029, 7, 1))
    assert (rk.anchor, rk.last_day, rk.lapsed_on) == (date(2029, 6, 1), date(2032, 6, 1), None)
    # a day too late: the reply on 07-02 finds the period over
    rk = reckon(due, [Event(date(2026, 7, 2), "customer_reply")], 3, today=today)
    assert rk.expired(today) and rk.ignored == [(Event(date(2026, 7, 2), "customer_reply"), "after_expiry")]
    # after a lapse: a payment is recorded, the claim stays lapsed; an acknowledgement starts anew;
    # a lawsuit filed after the lapse does not revive it either
    events = [Event(date(2026, 8, 1), "payment"), Event(date(2026, 9, 1), "lawsuit"),
              Event(date(2026, 10, 1), "acknowledgement")]
    rk = reckon(due, events[:2], 3, today=today)
    assert (rk.last_day, rk.lapsed_on, rk.after_expiry) == (date(2026, 7, 1), date(2026, 7, 1), events[:1])
    assert rk.ignored == [(events[1], "after_expiry")]
    rk = reckon(due, events, 3, today=today)
    assert (rk.anchor, rk.last_day, rk.reacknowledged, rk.expired(today)) == \
        (date(2026, 10, 1), date(2029, 10, 1), True, False)
    # events before the due date do not start anything, events after today are not yet known
    rk = reckon(due, [Event(date(2023, 6, 1), "payment"), Event(date(2026, 12, 5), "acknowledgement")], 3,
                today=today)
    assert (rk.anchor, rk.after_expiry) == (due, [])
