"""Commission tiers at their edges (2 % to ¥100,000, 3 % to ¥500,000, 5 % above, per collection)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from domain.commission import DEFAULT_TIERS, for_month, on_collection, tiers_from

D = Decimal


@pytest.mark.parametrize("amount, expected", [
    ("0.00", "0.00"),
    ("0.01", "0.00"),                    # 0.0002 rounds to nothing
    ("100000.00", "2000.00"),            # the first edge: 2 % of all of it
    ("100000.01", "2000.00"),            # one cent into the second tier: 0.0003 more
    ("100100.00", "2003.00"),
    ("500000.00", "14000.00"),           # 2,000 + 3 % of 400,000
    ("500000.50", "14000.03"),           # 0.025 more, rounded half up
    ("600000.00", "19000.00"),           # 14,000 + 5 % of 100,000
])
def test_tiers_at_their_edges(amount, expected):
    assert on_collection(D(amount)) == D(expected)


def test_a_month_is_the_sum_of_its_collections_not_one_big_collection():
    assert for_month([D("100000"), D("100000")]) == D("4000.00")
    assert on_collection(D("200000")) == D("5000.00")


def test_tiers_from_configuration_and_what_is_wrong_with_them():
    assert tiers_from([{"upto": 100000, "rate": "0.02"}, {"upto": 500000, "rate": "0.03"}, {"rate": "0.05"}]) == DEFAULT_TIERS
    one = tiers_from([{"rate": "0.01"}])
    assert on_collection(D("1000000"), one) == D("10000.00")
    for bad, words in (([{"upto": 100, "rate": "0.02"}], "last tier"),
                       ([{"upto": 500, "rate": "0.02"}, {"upto": 100, "rate": "0.03"}, {"rate": "0.05"}], "increasing"),
                       ([{"upto": 100, "rate": "2"}, {"rate": "0.05"}], "between 0 and 1"),
                       ([{"upto": 100}], "expected")):
        with pytest.raises(ValueError, match=words):
            tiers_from(bad)


async def test_commission_in_chat_per_rep_this_month(aiohttp_client, db):
    """The fixture's one payment this month (5,000 on INV-A2, rep1) and 40,000 naming INV-A3 (its
    30,000, the rest to the customer's next oldest: one collection), and 150,000 more for 顺发 (rep2): scoped like /kpi."""
    from tests import ledger_fixture
    from tests.conftest import at
    from tests.harness import Bot

    async with db.session() as s, s.begin():
        await ledger_fixture.build_with_collections(s, at("2026-11-20 10:00"))
    bot = await Bot.start(aiohttp_client, db, at("2026-11-23 10:00"), company={"fx_rates": ledger_fixture.FX})
    [gm] = await bot.say("gm", "/提成")
    # rep2: one collection of 150,000 → 2,000 + 3 % of 50,000; rep1: 5,000 → 100, 40,000 → 800
    assert "- 李娜：回款1笔 ¥150,000.00，提成 ¥3,500.00" in gm
    assert "- 张伟：回款2笔 ¥45,000.00，提成 ¥900.00" in gm
    assert "合计：回款 ¥195,000.00，提成 ¥4,400.00" in gm
    assert "100,000元以内部分 2%，500,000元以内部分 3%，以上部分 5%" in gm
    [rep1] = await bot.say("rep1", "/commission")
    assert "张伟" in rep1 and "李娜" not in rep1
