"""Reply understanding: the realistic corpus plus focused unit tests.

The corpus (tests/data/replies_corpus.jsonl) is run line by line and *all* mismatches are
reported together, so one failing run shows every phrase the parser gets wrong.
"""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from bot.replies import ParsedReply, parse_message, parse_reply, resolve_amount, split_reply

CORPUS = Path(__file__).parent / "data" / "replies_corpus.jsonl"
MONDAY = date(2026, 11, 23)
COMPARED = ("items", "outcome", "promised_date", "promised_amount", "promised_share")
OPTIONAL = ("paid_amount", "remainder", "correction")


def _corpus() -> list[dict]:
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_corpus_is_big_enough_and_well_formed():
    rows = _corpus()
    assert len(rows) >= 80
    for row in rows:
        assert {"text", "today", *COMPARED} <= row.keys(), row
        date.fromisoformat(row["today"])


def test_corpus():
    mismatches = []
    for n, row in enumerate(_corpus(), 1):
        got = parse_reply(row["text"], date.fromisoformat(row["today"]), row.get("item_count")).to_json()
        keys = COMPARED + tuple(k for k in OPTIONAL if k in row)
        diff = {k: (row[k], got[k]) for k in keys if row[k] != got[k]}
        if diff:
            mismatches.append(f"line {n} {row['text']!r}: " + ", ".join(
                f"{k} expected {e!r} got {g!r}" for k, (e, g) in diff.items()))
    assert not mismatches, f"{len(mismatches)} corpus mismatches:\n" + "\n".join(mismatches)


# ---- focused tests -------------------------------------------------------------------
@pytest.mark.parametrize("text, items", [
    ("1 已联系", [1]), ("1. 已联系", [1]), ("1、已联系", [1]), ("1,3 已联系", [1, 3]),
    ("1，3 已联系", [1, 3]), ("1-3 已联系", [1, 2, 3]), ("1 2 3 已联系", [1, 2, 3]),
    ("第1条 已联系", [1]), ("第二条 已联系", [2]), ("#1 已联系", [1]), ("① 已联系", [1]),
    ("1和2 已联系", [1, 2]), ("全部 已联系", "all"), ("所有 已联系", "all"), ("都已联系", "all"),
    ("12月20号付", None), ("5万已付", None), ("12.20付", None), ("3天内付", None), ("已联系", None),
    ("12-20付清", None),
])
def test_item_references(text, items):
    assert parse_reply(text, MONDAY).items == items


def test_single_item_push_needs_no_reference():
    assert parse_reply("客户说月底付", MONDAY, item_count=1).items == [1]
    assert parse_reply("客户说月底付", MONDAY, item_count=3).items is None


def test_glued_number_beyond_item_count_is_not_a_reference():
    assert parse_reply("500已付", MONDAY, item_count=3).items is None
    assert parse_reply("500已付", MONDAY, item_count=3).paid_amount == Decimal("500.00")


def test_paid_and_promised_rest_is_promised_with_paid_amount():
    p = parse_reply("5 已付5万，剩下的12月20号", MONDAY)
    assert (p.outcome, p.promised_date, p.paid_amount, p.remainder) == (
        "promised", date(2026, 12, 20), Decimal("50000.00"), True)
    assert p.note == "已付5万，剩下的12月20号"


def test_paid_without_future_promise_is_paid_claimed():
    assert parse_reply("1 已付5万", MONDAY).outcome == "paid_claimed"


@pytest.mark.parametrize("text, outcome", [
    ("还没到账", "other"), ("客户不答应", "contacted"), ("没有异议，月底付", "promised"),
    ("对账没问题", "contacted"), ("客户不接受滞纳金，其他没问题", "contacted"),
])
def test_negations(text, outcome):
    assert parse_reply(text, MONDAY).outcome == outcome


def test_dispute_beats_promise():
    assert parse_reply("1 金额不对，对的部分月底付", MONDAY).outcome == "dispute"


def test_to_json_shape():
    j = parse_reply("更正 1 答应下周五付5万", MONDAY).to_json()
    assert set(j) == {"items", "outcome", "promised_date", "promised_amount", "promised_share",
                      "paid_amount", "remainder", "correction", "note", "approximate", "conditional",
                      "paid_share", "first_amount", "lifts_dispute", "same_as_previous", "ask", "text"}
    assert j["promised_amount"] == "50000.00" and j["promised_date"] == "2026-12-04"
    assert j["correction"] is True and j["note"] == "答应下周五付5万"
    json.dumps(j)


@pytest.mark.parametrize("text, segments", [
    ("1 已联系\n2 联系不上", ["1 已联系", "2 联系不上"]),
    ("1已联系；2联系不上", ["1已联系", "2联系不上"]),
    ("1已联系，2联系不上", ["1已联系", "2联系不上"]),
    ("1已联系 2联系不上 3客户说发票错了", ["1已联系", "2联系不上", "3客户说发票错了"]),
    ("1 已电话联系王总\n答应下周五付一半\n2 关机", ["1 已电话联系王总\n答应下周五付一半", "2 关机"]),
    ("2,3 客户说发票抬头错了，要重开", ["2,3 客户说发票抬头错了，要重开"]),
    ("1 答应付一半，2周内付清", ["1 答应付一半，2周内付清"]),
    ("更正 1 客户答应月底付全款\n2 已付", ["更正 1 客户答应月底付全款", "2 已付"]),
    ("①已联系②关机", ["①已联系", "②关机"]),
    ("", []),
])
def test_split_reply(text, segments):
    assert split_reply(text) == segments


def _p(**kw) -> ParsedReply:
    return ParsedReply(items=[1], outcome="promised", **kw)


@pytest.mark.parametrize("parsed, balance, expected", [
    (_p(promised_amount=Decimal("50000.00")), "80000", "50000.00"),
    (_p(promised_amount=Decimal("90000.00")), "80000", "90000.00"),          # never cut: asked back
    (_p(promised_share=Decimal("0.5")), "12345.67", "6172.84"),               # half up
    (_p(remainder=True, paid_amount=Decimal("50000.00")), "80000", "30000.00"),
    (_p(remainder=True, paid_amount=Decimal("90000.00")), "80000", "0.00"),   # never negative
    (_p(remainder=True, promised_share=Decimal("0.5")), "100", "50.00"),
    (_p(remainder=True), "100", "100.00"),
    (_p(), "100", None),
])
def test_resolve_amount(parsed, balance, expected):
    got = resolve_amount(parsed, Decimal(balance))
    assert got == (None if expected is None else Decimal(expected))


# ---- properties ------------------------------------------------------------------------
from hypothesis import given, strategies as st  # noqa: E402

_WORDS = ["已联系", "答应", "下周五", "月底", "付", "一半", "5万", "已付", "剩下的", "，", " ", "\n", "关机",
          "发票错了", "12月20号", "1", "2,3", "全部", "更正", "ok", "👍", "３０％", "¥1,000", "没", "不"]


@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(_WORDS), max_size=10).map("".join)),
       st.sampled_from([None, 1, 3]))
def test_parse_reply_never_crashes(text, item_count):
    p = parse_reply(text, MONDAY, item_count)
    j = p.to_json()
    json.dumps(j)
    assert j["outcome"] in {"contacted", "promised", "paid_claimed", "dispute", "unreachable", "other"}
    assert p.promised_date is None or p.promised_date >= MONDAY
    for value in (p.promised_amount, p.paid_amount):
        assert value is None or value.as_tuple().exponent == -2
    if p.items not in (None, "all"):
        assert p.items and all(isinstance(i, int) and i > 0 for i in p.items)
    balance = resolve_amount(p, Decimal("1000.00"))
    assert balance is None or Decimal(0) <= balance


@given(st.lists(st.sampled_from(_WORDS), max_size=12).map("".join))
def test_split_reply_segments_are_pieces_of_the_text(text):
    for seg in split_reply(text):
        assert seg and seg in text


# ---- issue 13: every text quoted there, read as the rep meant it ---------------------------
D = date.fromisoformat


def _read(text: str, items: int | None = 50) -> list[dict]:
    """The fields a reader cares about, per segment (None/False fields left out)."""
    keep = ("items", "outcome", "promised_date", "promised_amount", "promised_share", "paid_amount",
            "paid_share", "remainder", "first_amount", "approximate", "conditional", "lifts_dispute",
            "same_as_previous", "correction", "ask")
    return [{k: v for k, v in p.to_json().items() if k in keep and v not in (None, False)}
            for p in parse_message(text, MONDAY, items)]


@pytest.mark.parametrize("text, expected", [
    ("1 已联系\n2 月底付\n3 联系不上", [
        {"items": [1], "outcome": "contacted"},
        {"items": [2], "outcome": "promised", "promised_date": "2026-11-30", "approximate": True},
        {"items": [3], "outcome": "unreachable"}]),
    ("44 已联系\n45 联系不上\n46 月底付", [
        {"items": [44], "outcome": "contacted"}, {"items": [45], "outcome": "unreachable"},
        {"items": [46], "outcome": "promised", "promised_date": "2026-11-30", "approximate": True}]),
    # item 19 pays on 12-20: not items 12..20
    ("19 12-20付款", [{"items": [19], "outcome": "promised", "promised_date": "2026-12-20"}]),
    ("25 已联系\n26 元旦前付清", [
        {"items": [25], "outcome": "contacted"},
        {"items": [26], "outcome": "promised", "promised_date": "2026-12-31", "promised_share": "1",
         "approximate": True}]),
    ("24 元旦前付清", [{"items": [24], "outcome": "promised", "promised_date": "2026-12-31",
                        "promised_share": "1", "approximate": True}]),
    ("3 月底付", [{"items": [3], "outcome": "promised", "promised_date": "2026-11-30", "approximate": True}]),
    ("14 月底", [{"items": [14], "outcome": "promised", "promised_date": "2026-11-30", "approximate": True}]),
    ("2 月底", [{"items": [2], "outcome": "promised", "promised_date": "2026-11-30", "approximate": True}]),
    ("9 3月底", [{"items": [9], "outcome": "promised", "promised_date": "2027-03-31", "approximate": True}]),
    ("7 12.25", [{"items": [7], "outcome": "promised", "promised_date": "2026-12-25"}]),
])
def test_issue13_multi_line_and_dates_after_item_numbers(text, expected):
    assert _read(text) == expected


def test_glued_month_after_an_item_on_the_same_line_is_asked_back_not_attached():
    got = _read("3已联系，4关机，5月底付")
    assert [g.get("items") for g in got] == [[3], [4], None]
    assert got[1]["outcome"] == "unreachable" and "promised_date" not in got[1]
    assert got[2]["ask"] == "month_or_item"


def test_issue13_glued_month_between_items_is_asked_back():
    # 2月底付 between items 1 and 3: item 2 at month end, or February? The bot asks.
    got = _read("1 已联系\n2月底付\n3 联系不上")
    assert [g.get("items") for g in got] == [[1], None, [3]]
    assert got[1]["ask"] == "month_or_item"


@pytest.mark.parametrize("text, expected", [
    ("43 付了一半，剩下月底", [{"items": [43], "outcome": "promised", "paid_share": "0.5", "remainder": True,
                                "promised_share": "0.5", "promised_date": "2026-11-30", "approximate": True}]),
    ("28 先付5000剩下的月底", [{"items": [28], "outcome": "promised", "first_amount": "5000.00", "remainder": True,
                                 "promised_date": "2026-11-30", "approximate": True}]),
    ("4 5万 月底", [{"items": [4], "outcome": "promised", "promised_amount": "50000.00",
                     "promised_date": "2026-11-30", "approximate": True}]),
    ("10 联系上了，说明天付款；11也是", [
        {"items": [10], "outcome": "promised", "promised_date": "2026-11-24"},
        {"items": [11], "outcome": "promised", "promised_date": "2026-11-24", "same_as_previous": True}]),
])
def test_issue13_partial_meanings(text, expected):
    assert _read(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("13 没有付款，客户不承认这笔账", {"items": [13], "outcome": "dispute"}),
    ("17 微信发了对账单，还没回复", {"items": [17], "outcome": "contacted"}),
    ("27 客户说钱已经打了", {"items": [27], "outcome": "paid_claimed"}),
    ("3 Called the customer, they will pay 50000 next Friday",
     {"items": [3], "outcome": "promised", "promised_amount": "50000.00", "promised_date": "2026-12-04"}),
    ("5 春节前付", {"items": [5], "outcome": "promised", "promised_date": "2027-02-04", "approximate": True}),
    ("6 年前付清", {"items": [6], "outcome": "promised", "promised_date": "2027-02-04", "promised_share": "1",
                    "approximate": True}),
    ("8 元旦后付", {"items": [8], "outcome": "promised", "promised_date": "2027-01-04", "approximate": True}),
    ("2 等甲方回款后再付", {"items": [2], "outcome": "other", "conditional": True}),
])
def test_issue13_outcomes(text, expected):
    assert _read(text) == [expected]


def test_issue13_damage_that_does_not_affect_payment_is_no_dispute():
    text = ("12 上周送的货运输途中有点破损，客户拍了照片，已经跟物流索赔了，客户说这个不影响付款，"
            "月底前会把这笔结清")
    [got] = _read(text)
    assert got["outcome"] == "promised" and got["promised_date"] == "2026-11-30"
    # the same damage without that sentence is a dispute
    assert _read("12 货物运输途中有点破损，客户要求退货")[0]["outcome"] == "dispute"


@pytest.mark.parametrize("text, expected", [
    ("更正 16 是3万不是3000", {"items": [16], "outcome": "promised", "promised_amount": "30000.00",
                               "correction": True}),
    ("更正 16 不是3000是3万", {"items": [16], "outcome": "promised", "promised_amount": "30000.00",
                               "correction": True}),
    ("更正 3 不是异议，客户月底付", {"items": [3], "outcome": "promised", "promised_date": "2026-11-30",
                                    "approximate": True, "correction": True, "lifts_dispute": True}),
    ("更正 3 不是异议，已联系", {"items": [3], "outcome": "contacted", "correction": True, "lifts_dispute": True}),
])
def test_issue13_corrections(text, expected):
    assert _read(text) == [expected]


@pytest.mark.parametrize("text, ask", [
    ("客户说尽快付", "no_item"), ("1 客户答应尽快付", "no_date"), ("1 答应付款", "no_date"),
])
def test_asks_back_when_unsure(text, ask):
    assert _read(text, 3)[0]["ask"] == ask


@pytest.mark.parametrize("text, expected", [
    ("3 Called, no answer", {"items": [3], "outcome": "unreachable"}),
    ("2 Customer says they already paid 20000 last week", {"items": [2], "outcome": "paid_claimed",
                                                           "paid_amount": "20000.00"}),
    ("5 spoke to finance, will transfer the rest by end of the month",
     {"items": [5], "outcome": "promised", "promised_date": "2026-11-30", "remainder": True,
      "promised_share": "1", "approximate": True}),
    ("1 they dispute the invoice amount", {"items": [1], "outcome": "dispute"}),
])
def test_english_replies(text, expected):
    assert _read(text) == [expected]


def test_cli_parse_reply_split_prints_one_segment_per_item(capsys):
    from bot.cli import main
    assert main(["parse-reply", "--split", "--items", "30", "--today", "2026-11-23", "25 已联系\n26 元旦前付清"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(s["items"], s["outcome"], s["promised_date"], s["text"]) for s in out] == [
        ([25], "contacted", None, "25 已联系"), ([26], "promised", "2026-12-31", "26 元旦前付清")]
    assert out[1]["promised_amount"] is None and out[1]["approximate"] is True
