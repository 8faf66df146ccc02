"""Which customer a receipt is from, and what it pays (domain/cash_matching.py): the rules a
careful clerk follows, and the cases where the clerk would ask instead of guessing."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain.cash_matching import Book, Item, Party, Receipt, core_name, match

D = Decimal


def book() -> Book:
    parties = {c: Party(c, n, "rep1") for c, n in [
        ("HD", "深圳市恒达精密机械有限公司"), ("HE", "东莞恒达精密电子有限公司"), ("DS", "上海东升贸易有限责任公司"),
        ("HN", "广东华南电子股份有限公司"), ("PAID", "杭州已清科技有限公司")]}
    items = [Item("FP2026-0001", "HD", D("11300.00"), date(2026, 10, 31)),
             Item("FP2026-0002", "HD", D("3000.00"), date(2026, 11, 10)),
             Item("FP2026-0003", "HD", D("6000.00"), date(2026, 11, 20), contract_no="HT-88"),
             Item("DS-0001", "DS", D("5000.00"), date(2026, 11, 1)),
             Item("DS-0002", "DS", D("3000.00"), date(2026, 11, 5)),
             Item("DS-0003", "DS", D("7000.00"), date(2026, 11, 25)),
             Item("HN-0001", "HN", D("0.00"), date(2026, 9, 1)),
             Item("HN-0002", "HN", D("4000.00"), date(2026, 11, 1))]
    return Book(parties=parties, items={i.invoice_no.replace("-", "").upper(): i for i in items})


def test_names_compare_without_legal_form_place_and_branch():
    assert core_name("深圳市恒达精密机械有限公司") == core_name("恒达精密机械有限责任公司") == "恒达精密机械"
    assert core_name("深圳市恒达精密机械有限公司东莞分公司") == "恒达精密机械"
    assert core_name("广东华南电子股份有限公司") == core_name("华南电子（广州）有限公司") == "华南电子"


@pytest.mark.parametrize("payer, reason", [
    ("深圳市恒达精密机械有限公司", "same_name"), ("恒达精密机械有限责任公司", "same_name"),
    ("深圳市恒达精密机械有限公司东莞分公司", "same_name"), ("上海东升贸易", "same_name"),
    ("东升贸易有限公司", "same_name"), ("华南电子（广州）有限公司", "same_name")])
def test_the_payer_named_in_any_usual_form_is_certain(payer, reason):
    code = {"恒": "HD", "深": "HD", "上": "DS", "东": "DS", "华": "HN"}[payer[0]]
    m = match(Receipt(D("100.00"), payer, "", ""), book())
    assert (m.status, m.customer, m.reasons[0]) == ("apply", code, reason)


def test_a_shortening_shared_by_two_customers_is_asked_not_guessed():
    m = match(Receipt(D("3000.00"), "恒达精密", "", "货款"), book())       # 恒达精密机械 and 恒达精密电子
    assert m.status == "unclaimed" and m.customer is None and "ambiguous_name" in m.reasons
    assert {s.customer for s in m.suggestions} >= {"HD", "HE"}


def test_a_person_paying_named_invoices_of_exactly_that_amount_is_applied_else_suggested():
    b = book()
    m = match(Receipt(D("9000.00"), "张伟", "6217000010001234567", "付 FP2026-0002 FP2026-0003"), b)
    assert (m.status, m.customer) == ("apply", "HD") and m.order == ["FP2026-0002", "FP2026-0003"]
    m = match(Receipt(D("5650.00"), "张伟", "6217000010001234567", "恒达精密 FP2026 0003"), b)
    assert m.status == "unclaimed" and m.suggestions[0].customer == "HD" and m.suggestions[0].invoices == ["FP2026-0003"]


def test_a_learned_account_or_name_makes_the_customer_certain():
    b = book()
    b.learn(code="HD", account="6217000010001234567")
    b.learn(code="DS", name="王老板贸易商行")
    m = match(Receipt(D("5650.00"), "张伟", "6217000010001234567", ""), b)
    assert (m.status, m.customer, m.reasons[0]) == ("apply", "HD", "account_alias")
    m = match(Receipt(D("100.00"), "王老板贸易商行", "", ""), b)
    assert (m.status, m.customer, m.reasons[0]) == ("apply", "DS", "name_alias")


def test_amounts_an_exact_invoice_then_an_exact_set_then_oldest_first():
    b = book()
    assert match(Receipt(D("3000.00"), "上海东升贸易", "", ""), b).order == ["DS-0002"]
    m = match(Receipt(D("12000.00"), "上海东升贸易", "", ""), b)
    assert m.reasons[-1] == "exact_subset" and m.order == ["DS-0001", "DS-0003"]
    m = match(Receipt(D("6000.00"), "上海东升贸易", "", ""), b)
    assert m.reasons[-1] == "oldest_first" and m.planned == [("DS-0001", D("5000.00")), ("DS-0002", D("1000.00"))]


def test_name_and_memo_disagreeing_is_left_for_a_person():
    m = match(Receipt(D("5000.00"), "上海东升贸易有限责任公司", "", "FP2026-0001"), book())
    assert m.status == "unclaimed" and "conflict" in m.reasons and {s.customer for s in m.suggestions} == {"DS", "HD"}


def test_anomalies_duplicate_payment_over_balance_nothing_open():
    b = book()
    m = match(Receipt(D("1000.00"), "广东华南电子股份有限公司", "", "HN-0001"), b)     # HN-0001 is paid
    assert m.status == "unclaimed" and "duplicate_payment" in m.anomalies
    m = match(Receipt(D("5000.00"), "广东华南电子股份有限公司", "", ""), b)            # 4,000 open
    assert m.status == "apply" and m.anomalies == ["over_balance"]
    m = match(Receipt(D("800.00"), "杭州已清科技有限公司", "", ""), b)
    assert m.status == "apply" and m.anomalies == ["nothing_open"]


def test_debits_and_bank_interest_are_never_applied():
    assert match(Receipt(D("10.00"), "深圳市恒达精密机械有限公司", "", "", direction="debit"), book()).status == "ignored"
    assert match(Receipt(D("3.21"), "", "", "结息"), book()).status == "ignored"


def test_the_same_brand_in_another_city_is_another_company():
    m = match(Receipt(D("3000.00"), "苏州恒达精密机械有限公司", "", ""), book())
    assert m.status == "unclaimed" and m.reasons == ["place_differs"]
    b = book()
    b.parties["SZ"] = Party("SZ", "苏州恒达精密机械有限公司")
    b._index()
    # two customers of one brand: the city tells them apart; no city, and nobody can tell
    assert match(Receipt(D("3000.00"), "苏州恒达精密机械有限公司", "", ""), b).customer == "SZ"
    assert match(Receipt(D("3000.00"), "深圳恒达精密机械有限公司", "", ""), b).customer == "HD"
    assert match(Receipt(D("3000.00"), "恒达精密机械有限公司", "", ""), b).status == "unclaimed"


def test_a_foreign_currency_receipt_for_a_customer_owing_only_yuan_is_left_for_finance():
    m = match(Receipt(D("1000.00"), "上海东升贸易有限责任公司", "", "", currency="USD"), book())
    assert m.status == "unclaimed" and "currency" in m.reasons



def test_a_trade_word_is_not_a_shortening():
    m = match(Receipt(D("3000.00"), "精密机械有限公司", "", ""), book())     # inside 恒达精密机械, but not its start
    assert m.status == "unclaimed" and m.customer is None
