"""Money helpers: exact decimals from what people type, cents, and display forms."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from domain.money import AmountError, format_wan, format_yuan, from_cents, parse_amount, to_cents


@pytest.mark.parametrize("text, expected", [
    ("12,345.60", "12345.60"), ("12345.6", "12345.60"), ("¥12345.6", "12345.60"),
    ("￥12,345.60", "12345.60"), ("12345.60元", "12345.60"), ("1.2万", "12000.00"),
    ("5万", "50000.00"), ("5w", "50000.00"), ("5W", "50000.00"), ("两万", "20000.00"),
    ("3万5", "35000.00"), ("三万五千", "35000.00"), ("三万五", "35000.00"), ("十万", "100000.00"),
    ("5千", "5000.00"), ("5k", "5000.00"), ("5K", "5000.00"), ("1.5亿", "150000000.00"),
    ("１２３", "123.00"), ("１２，３４５．６", "12345.60"), ("-300", "-300.00"), ("-1.2万", "-12000.00"),
    ("负五千", "-5000.00"), ("¥-5", "-5.00"), ("2万3千", "23000.00"), ("3万500", "30500.00"),
    ("1千2", "1200.00"), ("一点五万", "15000.00"), ("人民币5万元", "50000.00"), ("5万块", "50000.00"),
    ("RMB 3000", "3000.00"), (" 5 万 ", "50000.00"), ("0.005", "0.01"), ("0.004", "0.00"),
    ("12345.675", "12345.68"), ("1,200万", "12000000.00"), ("一千二百三十四", "1234.00"),
    ("0", "0.00"), (".5", "0.50"),
])
def test_parse_amount(text, expected):
    value = parse_amount(text)
    assert isinstance(value, Decimal)
    assert value == Decimal(expected) and str(value) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "abc", "五万块钱左右吧", "5万 3万", "12 34", "5万3万", "1,23", "3.4.5", "--5", "万一",
    "12a", "一半", "50%", "5万元整x", "¥", "元",
])
def test_parse_amount_rejects(text):
    with pytest.raises(AmountError) as info:
        parse_amount(text)
    assert str(info.value)                      # a message, not a bare exception
    assert isinstance(info.value, ValueError)


def test_parse_amount_rejects_non_text():
    with pytest.raises(AmountError):
        parse_amount(5.0)                       # type: ignore[arg-type]


@pytest.mark.parametrize("d, cents", [("0.00", 0), ("0.01", 1), ("12345.60", 1234560), ("-5.5", -550), ("7", 700)])
def test_cents_round_trip(d, cents):
    assert to_cents(Decimal(d)) == cents
    assert from_cents(cents) == Decimal(d)
    assert str(from_cents(cents)).split(".")[1].__len__() == 2


def test_to_cents_refuses_sub_cent_and_float():
    with pytest.raises(AmountError):
        to_cents(Decimal("0.001"))
    with pytest.raises(AmountError):
        to_cents(1.5)                           # type: ignore[arg-type]
    with pytest.raises(AmountError):
        from_cents(1.5)                         # type: ignore[arg-type]


@pytest.mark.parametrize("d, text", [
    ("12345.6", "12,345.60"), ("0", "0.00"), ("-1234567.891", "-1,234,567.89"), ("999.995", "1,000.00"),
])
def test_format_yuan(d, text):
    assert format_yuan(Decimal(d)) == text


@pytest.mark.parametrize("d, text", [
    ("12345.6", "1.23万"), ("50000", "5万"), ("15000", "1.5万"), ("12355", "1.24万"), ("9999.99", "9,999.99"),
    ("123456789", "1.23亿"), ("100000000", "1亿"), ("-25000", "-2.5万"), ("99999999", "1亿"), ("-100000000", "-1亿"),
])
def test_format_wan(d, text):
    assert format_wan(Decimal(d)) == text


cents_st = st.integers(min_value=-10**13, max_value=10**13)


@given(cents_st)
def test_format_then_parse_round_trips(cents):
    d = from_cents(cents)
    assert parse_amount(format_yuan(d)) == d
    assert parse_amount(f"¥{format_yuan(d)}元") == d
    assert to_cents(parse_amount(str(d))) == cents


@given(st.decimals(min_value=-10**9, max_value=10**9, allow_nan=False, allow_infinity=False, places=6))
def test_parse_amount_always_two_places_never_float(d):
    value = parse_amount(format(d, "f"))
    assert type(value) is Decimal
    assert value.as_tuple().exponent == -2
    assert abs(value - d) <= Decimal("0.005")


@given(st.integers(min_value=1, max_value=9999), st.sampled_from([("万", 10**4), ("w", 10**4), ("千", 1000),
                                                                   ("k", 1000), ("亿", 10**8)]))
def test_units_scale(n, unit):
    assert parse_amount(f"{n}{unit[0]}") == Decimal(n * unit[1]).quantize(Decimal("0.01"))


@given(st.text(max_size=20))
def test_parse_amount_only_raises_amount_error(text):
    try:
        value = parse_amount(text)
    except AmountError:
        return
    assert type(value) is Decimal and value.as_tuple().exponent == -2


def test_every_amount_is_written_with_its_own_currency_symbol():
    from domain.money import format_money
    assert format_money(Decimal("1000"), "USD") == "US$1,000.00"
    assert format_money(Decimal("12345.6"), "CNY") == "¥12,345.60"
    assert format_money(Decimal("99.5"), "EUR") == "€99.50"
    assert format_money(Decimal("-20"), "HKD") == "-HK$20.00"
    assert format_money(Decimal("7"), "THB") == "THB 7.00"            # no symbol: the code
    assert format_money(Decimal("0.005"), "USD") == "US$0.01"          # half up to the cent


def test_a_currency_may_be_glued_to_the_amount():
    from domain.money import currency_word, parse_money
    assert parse_money("US$2000") == (Decimal("2000.00"), "USD")
    assert parse_money("2000USD") == (Decimal("2000.00"), "USD")
    assert parse_money("2万美元") == (Decimal("20000.00"), "USD")
    assert parse_money("HK$1.5万") == (Decimal("15000.00"), "HKD")
    assert parse_money("€300") == (Decimal("300.00"), "EUR")
    assert parse_money("¥5万") == (Decimal("50000.00"), "CNY")
    assert parse_money("5万") == (Decimal("50000.00"), None)           # none written: the caller decides
    assert currency_word("美元") == "USD" and currency_word("ＵＳＤ") == "USD" and currency_word("LS001") is None
