"""Late fees (exact, tiered, never booked), statute-of-limitations dates, and the credit and
statute watches."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.config import ConfigError, load_config
from domain.late_fees import late_fee
from domain.statute import add_years, anchor, last_day
from domain.workdays import WorkCalendar
from domain.statute import Event
from storage import ledger
from storage import statute as statute_events
from storage import reminders as rem
from storage.models import CreditAlert, Customer, CustomerMessage, DigestItem, OutboxMessage, Person, Receivable
from tests.conftest import at
from tests.harness import Bot
from tests.ledger_fixture import accounts

D = Decimal
TIERS = ({"from_day": 1, "rate": "0.0005"}, {"from_day": 31, "rate": "0.001"})


@pytest.mark.parametrize("amount,days,fee", [
    ("10000.00", 0, "0.00"),
    ("10000.00", -5, "0.00"),
    ("10000.00", 1, "5.00"),
    ("10000.00", 30, "150.00"),              # 30 × 0.05%
    ("10000.00", 31, "160.00"),              # + 1 × 0.1%
    ("10000.00", 45, "300.00"),              # 30 × 0.05% + 15 × 0.1%
    ("12345.67", 31, "197.53"),              # 12345.67 × 0.016 = 197.53072
    ("0.01", 1, "0.00"),
    ("8000.50", 90, "600.04"),               # × (30 × 0.05% + 60 × 0.1%) = 600.0375, half up
])
def test_late_fee_tiers(amount, days, fee):
    assert late_fee(D(amount), days, TIERS) == D(fee)


def test_late_fee_is_exact_and_refuses_floats():
    assert late_fee(D("33333.33"), 100, TIERS) == (D("33333.33") * D("0.085")).quantize(D("0.01"))
    assert late_fee(D("100"), 10, [{"from_day": 1, "rate": "0.001"}]) == D("1.00")
    with pytest.raises(TypeError):
        late_fee(100.0, 10, TIERS)
    with pytest.raises(TypeError):
        late_fee(D("100"), 10, [{"from_day": 1, "rate": 0.001}])


def test_statute_dates():
    # 3 years from the day after the due date: the last day is the anniversary of the due date
    assert last_day(date(2026, 5, 1), 3) == date(2029, 5, 1)
    assert last_day(date(2026, 5, 1), 4) == date(2030, 5, 1)            # cross-border
    assert add_years(date(2024, 2, 29), 3) == date(2027, 2, 28)          # no 29 Feb: month's last day
    assert last_day(date(2024, 2, 29), 4) == date(2028, 2, 29)
    # a last day on a rest day moves to the next working day (National Day 2026: to Thursday 10/8)
    assert last_day(date(2023, 10, 1), 3, WorkCalendar()) == date(2026, 10, 8)
    assert last_day(date(2023, 11, 21), 3, WorkCalendar()) == date(2026, 11, 23)   # Saturday → Monday
    # interruptions restart the period from their day; earlier ones do not count
    assert anchor(date(2024, 3, 1), []) == date(2024, 3, 1)
    assert anchor(date(2024, 3, 1), [date(2025, 1, 10), date(2024, 12, 1)]) == date(2025, 1, 10)
    assert anchor(date(2024, 3, 1), [date(2024, 2, 1)]) == date(2024, 3, 1)


def test_policy_config_is_validated(tmp_path):
    cfg = load_config(env={})
    assert [s.name for s in cfg.policy.steps()] == ["d7", "d15", "d30", "d60", "d90"]
    assert cfg.policy.pre_due_spec("B").working_days and cfg.policy.pre_due_spec("A").notify == ("director",)
    p = tmp_path / "c.toml"
    p.write_text('[policy]\nladder = [{days = 10, notify = ["rep"], customer_message = true}, '
                 '{days = 45, notify = ["legal"], document = "lawyer_letter", freeze = true}]\n'
                 '[policy.pre_due.A]\ndays = 5\n[smtp]\nhost = "smtp.example.com"\nfrom_addr = "ar@example.com"\n',
                 encoding="utf-8")
    cfg = load_config(p, env={"ARBOT_SMTP_PASSWORD": "s3cret"})
    assert [(s.days, s.freeze) for s in cfg.policy.steps()] == [(10, False), (45, True)]
    assert cfg.policy.pre_due_spec("A").days == 5 and cfg.policy.pre_due_spec("A").notify == ("director",)
    assert cfg.smtp.password == "s3cret"
    for bad, where in [('[policy]\nladder = [{days = 7, notify = ["boss"]}]', "notify"),
                       ('[policy]\nladder = [{days = 7, document = "poem"}]', "document"),
                       ('[policy]\nladder = [{days = 7}, {days = 7}]', "two steps"),
                       ('[policy]\nladder = [{days = 7, when = 1}]', "unknown"),
                       ('[late_fees]\ntiers = [{from_day = 1, rate = 0.0005}]', "rate"),
                       ('[conduct]\nstart = "19:00"', "start"),
                       ('[credit]\nyellow = "0.95"', "yellow"),
                       ('[smtp]\nhost = "smtp.example.com"', "from_addr")]:
        p.write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError, match=where):
            load_config(p, env={})


async def _people_and_customer(s, **customer):
    for pid, role, sup in (("sup1", "supervisor", None), ("rep1", "rep", "sup1"), ("fin1", "finance", None),
                           ("legal1", "legal", None)):
        s.add(Person(id=pid, name=pid, role=role, supervisor_id=sup, accounts=accounts(wecom="wx_" + pid)))
        await s.flush()
    c = Customer(code="C1", name="上海恒信机电有限公司", rep_id="rep1", **customer)
    s.add(c)
    await s.flush()
    return c


def _invoice(c, inv, due, amount):
    return Receivable(invoice_no=inv, contract_no="HT-" + inv, customer_id=c.id, rep_id="rep1", issue_date=due,
                      due_date=due, amount=D(amount), open_amount=D(amount), created_at=at("2023-01-01 10:00"))


async def _texts(db, prefix):
    """Staff notifications as lines of their digests (issue #15): (key, heading + line)."""
    async with db.session() as s:
        items = (await s.execute(select(DigestItem).where(DigestItem.item_key.like(prefix + "%"))
                                 .order_by(DigestItem.id))).scalars().all()
        for i in items:           # each went out in a queued digest that shows it
            text = "".join((await s.execute(select(OutboxMessage.text).where(
                OutboxMessage.idem_key.like(i.digest_key + ":%")))).scalars())
            assert i.label in text and i.line in text
        return [(i.item_key, i.label + "\n" + i.line) for i in items]


async def test_statute_watch_warns_legal_once_and_restarts(aiohttp_client, any_db):
    db = any_db
    async with db.session() as s, s.begin():
        c = await _people_and_customer(s, grade="B", credit_limit=D("0"))
        s.add(_invoice(c, "OLD-1", date(2023, 12, 1), "9000.00"))       # last day 2026-12-01 (Tue)
        s.add(_invoice(c, "OLD-2", date(2023, 12, 1), "5000.00"))       # part paid 2025-01-10: restarted
        xb = Customer(code="C9", name="Harbor Lighting Ltd", rep_id="rep1", cross_border=True)
        s.add(xb)
        await s.flush()
        s.add(_invoice(xb, "XB-1", date(2023, 12, 1), "7000.00"))      # 4 years: 2027-12-01
        await s.flush()
        await ledger.record_payment(s, customer=c, amount=D("1000.00"), paid_on=date(2025, 1, 10), reference="P1",
                                    invoice_no="OLD-2", actor="fin1", channel="test", now=at("2025-01-10 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-09-01 09:20"))
    assert "0 statute warning(s)" in await bot.run("statute_watch", at("2026-09-01 09:20"))   # 91 days before
    assert "1 statute warning(s)" in await bot.run("statute_watch", at("2026-09-02 09:20"))   # 90 days before
    assert "0 statute warning(s)" in await bot.run("statute_watch", at("2026-09-03 09:20"))
    [(key, text)] = await _texts(db, "statute:")
    assert key == "statute:OLD-1:2026-12-01:legal1"
    assert "时效3年自2023-12-01次日起算，2026-12-01届满（还有90天）" in text
    # a signed confirmation restarts it: no new warning for the new expiry until 90 days before it
    async with db.session() as s, s.begin():
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == "OLD-1"))).scalar_one()
        rem.record_confirmation(s, receivable=r, signed_on=date(2026, 9, 10), actor="fin1", channel="test",
                                now=at("2026-09-10 10:00"))
        assert (await statute_events.events_for(s, [r.id]))[r.id] == [Event(date(2026, 9, 10), "signed_confirmation")]
    assert "0 statute warning(s)" in await bot.run("statute_watch", at("2026-09-11 09:20"))


async def test_customer_card_statute_counts_proof_not_sends(aiohttp_client, db):
    """/customer's statute dates restart on what statute_watch counts: an e-mail the mail server
    accepted is no proof of delivery and counts only where [statute] notice_evidence says so; an
    SMS never does; a signed balance confirmation always does."""
    async with db.session() as s, s.begin():
        c = await _people_and_customer(s, grade="B", credit_limit=D("0"))
        r = _invoice(c, "OLD-1", date(2023, 12, 1), "9000.00")
        s.add(r)
        await s.flush()
        for i, (channel, sent) in enumerate((("email", at("2026-06-11 10:00")), ("sms", at("2026-07-01 10:00")),
                                             ("email", None))):        # the last one never went out
            s.add(CustomerMessage(customer_id=c.id, receivable_id=r.id, step="d30", kind="reminder", channel=channel,
                                  outbox_key=f"cm:{i}", status="sent" if sent else "queued",
                                  queued_at=at("2026-06-11 09:00"), send_at=at("2026-06-11 09:00"), sent_at=sent))
    bot = await Bot.start(aiohttp_client, db, at("2026-09-01 09:20"))
    [card] = await bot.say("fin1", "/customer C1")
    # 2026-12-01 − 2026-09-01 = 91 days
    assert "- OLD-1：2026-12-01届满（还有91天），自到期日 2023-12-01 次日起算3年" in card
    opted_in = await Bot.start(aiohttp_client, db, at("2026-09-01 09:20"),
                               statute={"notice_evidence": ["customer_reply", "email_accepted"]})
    [card] = await opted_in.say("fin1", "/customer C1")
    assert "- OLD-1：2029-06-11届满（还有1014天），自催款邮件（仅邮件服务器接收） 2026-06-11 次日起算3年" in card
    async with db.session() as s, s.begin():
        r = (await s.execute(select(Receivable).where(Receivable.invoice_no == "OLD-1"))).scalar_one()
        rem.record_confirmation(s, receivable=r, signed_on=date(2026, 8, 20), actor="fin1", channel="test",
                                now=at("2026-08-20 10:00"))
    [card] = await bot.say("fin1", "/customer C1")
    # 2029-08-20 is a Monday; 2029-08-20 − 2026-09-01 = 1,084 days
    assert "- OLD-1：2029-08-20届满（还有1084天），自客户签认账款确认函 2026-08-20 次日起算3年" in card


async def test_credit_watch_once_per_crossing_red_freezes_key_accounts(aiohttp_client, any_db):
    db = any_db          # alerts are written in batches with dialect-specific statements: both databases
    async with db.session() as s, s.begin():
        c = await _people_and_customer(s, grade="B", credit_limit=D("100000"))
        s.add(_invoice(c, "I-1", date(2026, 12, 1), "40000.00"))
        s.add(_invoice(c, "I-2", date(2026, 12, 5), "35000.00"))       # 75%: yellow
    bot = await Bot.start(aiohttp_client, db, at("2026-11-02 09:10"))
    assert "1 credit alert(s)" in await bot.run("credit_watch", at("2026-11-02 09:10"))
    assert "0 credit alert(s)" in await bot.run("credit_watch", at("2026-11-03 09:10"))    # once per crossing
    msgs = await _texts(db, "credit:")
    assert sorted(k.rsplit(":", 1)[1] for k, _ in msgs) == ["fin1", "rep1"]
    assert "信用预警：黄色\n" in msgs[0][1] and "占用75.0%（黄色预警线70%）" in msgs[0][1]

    async with db.session() as s, s.begin():
        c = (await s.execute(select(Customer))).scalar_one()
        s.add(_invoice(c, "I-3", date(2026, 12, 9), "20000.00"))       # 95%: red, freeze
    assert "1 credit alert(s)" in await bot.run("credit_watch", at("2026-11-04 09:10"))
    async with db.session() as s:
        assert (await s.execute(select(Customer.status))).scalar_one() == "frozen"
    red = [t for k, t in await _texts(db, "credit:") if ":red:" in k]
    assert len(red) == 2 and "已冻结：新发货须经财务审批" in red[0]

    async with db.session() as s, s.begin():                           # paid down to 35%: both clear
        c = (await s.execute(select(Customer))).scalar_one()
        await ledger.record_payment(s, customer=c, amount=D("60000.00"), paid_on=date(2026, 11, 5), reference="P9",
                                    actor="fin1", channel="test", now=at("2026-11-05 10:00"))
    assert "0 credit alert(s)" in await bot.run("credit_watch", at("2026-11-05 11:00"))
    async with db.session() as s, s.begin():                           # back over 70%: a new crossing
        c = (await s.execute(select(Customer))).scalar_one()
        s.add(_invoice(c, "I-4", date(2026, 12, 20), "40000.00"))
    # I-4 alone is below the key-account line (50,000); I-1..3 paid or open: no streak
    assert "1 credit alert(s)" in await bot.run("credit_watch", at("2026-11-06 09:10"))
    async with db.session() as s:
        alerts = [(a.level, a.cleared_at is None) for a in (await s.execute(
            select(CreditAlert).order_by(CreditAlert.id))).scalars()]
    assert alerts == [("yellow", False), ("red", False), ("yellow", True)]     # (level, still open)

    async with db.session() as s, s.begin():                           # a single invoice over 50,000
        c = (await s.execute(select(Customer))).scalar_one()
        s.add(_invoice(c, "I-5", date(2026, 12, 30), "60000.00"))
    await bot.run("credit_watch", at("2026-11-09 09:10"))
    key = [t for k, t in await _texts(db, "credit:") if ":key:" in k]
    assert len(key) == 2 and "已列为重点客户：单笔应收超过¥50,000.00（最大一笔¥60,000.00）" in key[0]


async def test_three_consecutive_overdue_invoices_make_a_key_account(db):
    async with db.session() as s, s.begin():
        c = await _people_and_customer(s, grade="C", credit_limit=D("0"))
        for i, due in enumerate([date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)]):
            s.add(_invoice(c, f"K-{i}", due, "1000.00"))
        await s.flush()
        # K-0 paid late, K-1 and K-2 still open: three in a row
        await ledger.record_payment(s, customer=c, amount=D("1000.00"), paid_on=date(2026, 8, 20), reference="PK",
                                    invoice_no="K-0", actor="fin1", channel="test", now=at("2026-08-20 10:00"))
        assert await rem.consecutive_overdue(s, c.id, date(2026, 11, 2), 3)
        # the latest one paid on time breaks the streak
        await ledger.record_payment(s, customer=c, amount=D("1000.00"), paid_on=date(2026, 9, 30), reference="PK2",
                                    invoice_no="K-2", actor="fin1", channel="test", now=at("2026-09-30 10:00"))
        assert not await rem.consecutive_overdue(s, c.id, date(2026, 11, 2), 3)


async def test_lawyer_letter_leaves_out_disputed_invoices_and_their_fees(db):
    """C2 苏州明达 owes INV-B1 (8,000.50, 90 days, disputed: 发票抬头错误) and INV-B2 (12,345.67,
    206 days). The draft demands B2 and its fee only, and tells legal what it left out and why."""
    from bot.config import Config
    from bot.letters import letter
    from tests import ledger_fixture
    async with db.session() as s, s.begin():
        await ledger_fixture.build(s, at("2026-11-20 10:00"))
        b2 = (await s.execute(select(Receivable).where(Receivable.invoice_no == "INV-B2"))).scalar_one()
        today = date(2026, 11, 23)
        # without a late-fee clause in the contract, no fee is claimed at all
        bare = (await letter(s, Config(), "lawyer_letter", b2, today)).markdown
        (await s.get(Customer, b2.customer_id)).late_fee_rate = "standard"
        draft = (await letter(s, Config(), "lawyer_letter", b2, today)).markdown
        confirmation = (await letter(s, Config(), "confirmation", b2, today)).markdown
    assert "滞纳金" not in bare.split("致：")[1]
    assert "| HT-INV-B2 | INV-B2 | 2026-05-01 | ¥12,345.67 | 206 |" in bare.splitlines()
    fee_b2 = late_fee(D("12345.67"), 206, TIERS)
    table = [line for line in draft.splitlines() if line.startswith("| HT-")]
    assert table == [f"| HT-INV-B2 | INV-B2 | 2026-05-01 | ¥12,345.67 | 206 | ¥{fee_b2:,.2f} |"]
    assert "逾期本金合计：¥12,345.67。" in draft
    assert f"估算合计 ¥{fee_b2:,.2f}。" in draft               # B1's 600.04 not added
    assert "- INV-B1（合同HT-INV-B1）未付 ¥8,000.50，异议：发票抬头错误" in draft
    assert draft.index("内部提示") < draft.index("致：")       # in the internal part, above the letter
    # the balance confirmation is the books as they stand: the disputed invoice is there to be queried
    assert "| HT-INV-B1 | INV-B1 |" in confirmation and "合计：¥20,346.17" in confirmation
