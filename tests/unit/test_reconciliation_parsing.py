"""Reading Stripe's CSV exports: both layouts, whatever the header's case and order, exact amounts in every
currency's exponent, and every unreadable row named by its line and column."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.payouts.gateway import ProviderBalanceTransaction
from app.reconciliation.currencies import InvalidAmount, InvalidCurrency, format_minor, to_minor
from app.reconciliation.parsing import ProviderRow, UnreadableExport, detect_layout, from_gateway, read_export

DASHBOARD = "id,Type,Source,Amount,Fee,Net,Currency,Created (UTC),Available On (UTC),Description\r\n"
ITEMIZED = "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,source_id\r\n"


def read(text: str) -> list[ProviderRow]:
    return list(read_export(io.StringIO(text, newline="")))


def unreadable(text: str) -> UnreadableExport:
    with pytest.raises(UnreadableExport) as caught:
        read(text)
    return caught.value


# --- exact amounts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("0.29", "EUR", 29),
        ("1234567.89", "eur", 123456789),
        ("-12.34", "EUR", -1234),
        ("12", "EUR", 1200),
        ("12.3", "EUR", 1230),
        ("12.340", "EUR", 1234),  # extra decimals that are zeros
        ("-0.00", "EUR", 0),
        ("500", "JPY", 500),
        ("500.0", "jpy", 500),
        ("-7", "KRW", -7),
        ("1.005", "KWD", 1005),
        ("-0.001", "BHD", -1),
        ("0.1", "KWD", 100),
        (" 3.50 ", "USD", 350),
    ],
)
def test_amounts_convert_exactly_with_the_currency_exponent(text: str, currency: str, minor: int) -> None:
    assert to_minor(text, currency) == minor


@pytest.mark.parametrize(
    "text",
    ["12.345", "0.001", "1,234.56", "1e3", "NaN", "inf", "", "-", "12.", ".5", "+1.00", "1 000", "١٢", "--1", "0x10"],
)
def test_anything_but_an_exact_eur_amount_is_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        to_minor(text, "EUR")


def test_amounts_past_the_money_bound_are_refused() -> None:
    assert to_minor("-100000000000.00", "EUR") == -(10**13)
    for text, currency in [("100000000000.01", "EUR"), ("10000000000001.000", "JPY"), ("99999999999999", "JPY")]:
        with pytest.raises(InvalidAmount, match="out of range"):
            to_minor(text, currency)


def test_a_zero_decimal_currency_refuses_decimals_and_a_three_decimal_one_its_fourth() -> None:
    with pytest.raises(InvalidAmount):
        to_minor("500.5", "JPY")
    with pytest.raises(InvalidAmount):
        to_minor("1.0005", "KWD")


@pytest.mark.parametrize("currency", ["EU", "EURO", "€UR", "12X", ""])
def test_a_currency_that_is_not_three_letters_is_refused(currency: str) -> None:
    with pytest.raises(InvalidCurrency):
        to_minor("1.00", currency)


@given(amount=st.integers(min_value=-(10**13), max_value=10**13), currency=st.sampled_from(["EUR", "JPY", "KWD"]))
def test_formatting_then_parsing_gives_back_the_same_minor_units(amount: int, currency: str) -> None:
    text = format_minor(amount, currency)
    assert to_minor(text, currency) == amount
    places = {"EUR": 2, "JPY": 0, "KWD": 3}[currency]
    assert ("." in text) == (places > 0)
    if places:
        assert len(text.split(".")[1]) == places


# --- both layouts -----------------------------------------------------------------------------------------


def test_the_dashboard_export_is_read_row_by_row() -> None:
    rows = read(
        DASHBOARD
        + "txn_1,charge,ch_1,12.34,0.50,11.84,eur,2026-11-01 10:00,2026-11-03 10:00,Order 1\r\n"
        + "txn_2,refund,re_1,-5.00,0.00,-5.00,eur,2026-11-02 23:59:59,2026-11-04 00:00,\r\n"
        + "txn_3,stripe_fee,,-1.20,0.00,-1.20,eur,2026-11-03 08:00,2026-11-03 08:00,Billing\r\n"
    )
    assert rows == [
        ProviderRow(2, "txn_1", "charge", "ch_1", 1234, 50, 1184, "EUR", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
        ProviderRow(3, "txn_2", "refund", "re_1", -500, 0, -500, "EUR", datetime(2026, 11, 2, 23, 59, 59, tzinfo=UTC)),
        ProviderRow(4, "txn_3", "stripe_fee", None, -120, 0, -120, "EUR", datetime(2026, 11, 3, 8, 0, tzinfo=UTC)),
    ]


def test_the_itemized_report_is_read_with_its_category_as_the_type() -> None:
    rows = read(
        ITEMIZED
        + "txn_1,2026-11-01 10:00:05,2026-11-03 00:00:00,jpy,1500,45,1455,charge,ch_1\r\n"
        + "txn_2,2026-11-01T11:00:00Z,2026-11-03 00:00:00,kwd,-1.250,0.000,-1.250,transfer_reversal,trr_1\r\n"
    )
    assert rows == [
        ProviderRow(2, "txn_1", "charge", "ch_1", 1500, 45, 1455, "JPY", datetime(2026, 11, 1, 10, 0, 5, tzinfo=UTC)),
        ProviderRow(
            3, "txn_2", "transfer_reversal", "trr_1", -1250, 0, -1250, "KWD", datetime(2026, 11, 1, 11, tzinfo=UTC)
        ),
    ]


def test_a_time_with_an_offset_is_moved_to_utc() -> None:
    (row,) = read(ITEMIZED + "txn_1,2026-11-01T12:00:00+02:00,,eur,1.00,0,1.00,charge,ch_1\n")
    assert row.created == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "header",
    [
        "ID,TYPE,SOURCE,AMOUNT,FEE,NET,CURRENCY,CREATED (UTC)",
        "id,type,source,amount,fee,net,currency,created (utc)",
        " Currency ,Net,Fee,Amount,Created (UTC),Source,Type,id",
        "Status,Description,Created (UTC),cUrReNcY,id,Type,Customer Facing Amount,Source,Amount,Fee,Net,Transfer",
    ],
)
def test_the_dashboard_header_is_found_in_any_case_and_order_with_extra_columns(header: str) -> None:
    names = [name.strip().lower() for name in header.split(",")]
    values = {"id": "txn_9", "type": "Charge", "source": "ch_9", "amount": "10.00", "fee": "0.59", "net": "9.41"}
    values |= {"currency": "EUR", "created (utc)": "2026-11-05 09:30"}
    line = ",".join(values.get(name, "extra, quoted") if name in values else '"extra, ""quoted"""' for name in names)
    (row,) = read(header + "\n" + line + "\n")
    assert row == ProviderRow(
        2, "txn_9", "charge", "ch_9", 1000, 59, 941, "EUR", datetime(2026, 11, 5, 9, 30, tzinfo=UTC)
    )


def test_the_itemized_header_is_found_in_upper_case_and_another_order() -> None:
    header = "NET,FEE,GROSS,Source_Id,Reporting_Category,Currency,Created_UTC,Balance_Transaction_ID,customer_id"
    (row,) = read(header + "\n-3.00,0,-3.00,re_4,refund,usd,2026-11-05 09:30:00,txn_4,cus_1\n")
    assert (row.balance_transaction_id, row.type, row.source, row.amount, row.currency) == (
        "txn_4",
        "refund",
        "re_4",
        -300,
        "USD",
    )


def test_quoted_fields_keep_commas_quotes_and_line_breaks_and_lines_are_counted_physically() -> None:
    rows = read(
        DASHBOARD
        + 'txn_1,charge,ch_1,"1,00" ,0,1.00,eur,2026-11-01 10:00,,x\r\n'.replace('"1,00" ', "1.00")
        + 'txn_2,charge,ch_2,2.00,0,2.00,eur,2026-11-01 10:00,,"Order 2, ""gift""\r\nsecond line\r\nthird"\r\n'
        + "txn_3,charge,ch_3,3.00,0,3.00,eur,2026-11-01 10:00,,plain\r\n"
    )
    assert [(r.line, r.balance_transaction_id, r.amount) for r in rows] == [
        (2, "txn_1", 100),
        (3, "txn_2", 200),
        (6, "txn_3", 300),
    ]


def test_a_byte_order_mark_and_blank_lines_are_skipped() -> None:
    rows = read("\ufeff" + DASHBOARD + "\r\ntxn_1,charge,ch_1,1.00,0,1.00,eur,2026-11-01 10:00,,\r\n,,,,\r\n\r\n")
    assert [(r.line, r.balance_transaction_id) for r in rows] == [(3, "txn_1")]


def test_lf_and_crlf_line_ends_read_the_same() -> None:
    body = "txn_1,charge,ch_1,1.00,0,1.00,eur,2026-11-01 10:00,,\r\n"
    body += "txn_2,refund,re_1,-1.00,0,-1.00,eur,2026-11-01 11:00,,\r\n"
    assert read(DASHBOARD + body) == read((DASHBOARD + body).replace("\r\n", "\n"))


def test_an_empty_file_and_a_header_only_file_have_no_rows() -> None:
    assert read("") == []
    assert read("\ufeff") == []
    assert read(DASHBOARD) == []
    assert read(ITEMIZED.rstrip("\r\n")) == []


def test_a_row_pulled_from_the_provider_reads_like_a_file_row() -> None:
    tx = ProviderBalanceTransaction(
        id="txn_1",
        type="transfer_refund",
        amount=700,
        fee=0,
        net=700,
        currency="eur",
        source="trr_1",
        created=1793527200,
    )
    assert from_gateway(tx) == ProviderRow(
        0, "txn_1", "transfer_refund", "trr_1", 700, 0, 700, "EUR", datetime.fromtimestamp(1793527200, UTC)
    )


# --- what cannot be read ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "id,Type,Amount,Currency,Created (UTC)",  # no Source, Fee, Net
        "date,description,amount",
        "balance_transaction_id,created_utc,currency,gross,fee,net,source_id",  # no reporting_category
    ],
)
def test_an_unknown_header_is_refused_on_line_1(header: str) -> None:
    error = unreadable(header + "\nsomething\n")
    assert (error.line, error.column) == (1, None)
    assert "lacks" in error.reason


def test_a_required_column_twice_is_refused() -> None:
    error = unreadable("id,Type,Source,Amount,Fee,Net,Currency,Created (UTC),amount\n")
    assert (error.line, error.column) == (1, None)
    assert "amount" in error.reason


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("txn_1,charge,ch_1,12.345,0,1.00,eur,2026-11-01 10:00", "Amount", "decimal"),
        ("txn_1,charge,ch_1,1.00,abc,1.00,eur,2026-11-01 10:00", "Fee", "not a decimal amount"),
        ("txn_1,charge,ch_1,1.00,0,1e2,eur,2026-11-01 10:00", "Net", "not a decimal amount"),
        ("txn_1,charge,ch_1,5.5,0,5.5,jpy,2026-11-01 10:00", "Amount", "decimal"),
        ("txn_1,charge,ch_1,1.00,0,1.00,euro,2026-11-01 10:00", "Currency", "currency"),
        ("txn_1,charge,ch_1,1.00,0,1.00,€€€,2026-11-01 10:00", "Currency", "currency"),
        ("txn_1,charge,ch_1,1.00,0,1.00,eur,2026-13-01 10:00", "Created (UTC)", "not a time"),
        ("txn_1,charge,ch_1,1.00,0,1.00,eur,2026-11-01", "Created (UTC)", "not a time"),
        ("txn_1,charge,ch_1,1.00,0,1.00,eur,yesterday", "Created (UTC)", "not a time"),
        (",charge,ch_1,1.00,0,1.00,eur,2026-11-01 10:00", "id", "empty"),
        ("txn_1, ,ch_1,1.00,0,1.00,eur,2026-11-01 10:00", "Type", "empty"),
        ("txn_1,charge,ch_1,,0,1.00,eur,2026-11-01 10:00", "Amount", "empty"),
        ("txn_1,charge,ch_1,1.00,0,1.00,eur", "Created (UTC)", "missing"),
    ],
)
def test_an_unreadable_row_names_its_line_and_column(row: str, column: str, reason: str) -> None:
    good = "txn_0,charge,ch_0,1.00,0,1.00,eur,2026-11-01 10:00\n"
    error = unreadable("id,Type,Source,Amount,Fee,Net,Currency,Created (UTC)\n" + good + good + row + "\n" + good)
    assert (error.line, error.column) == (4, column)
    assert reason in error.reason
    assert f"line 4, column '{column}'" in str(error)


def test_the_column_is_named_as_the_file_spells_it_and_lines_count_embedded_breaks() -> None:
    error = unreadable(
        "NET,FEE,GROSS,SOURCE_ID,REPORTING_CATEGORY,CURRENCY,CREATED_UTC,BALANCE_TRANSACTION_ID,DESCRIPTION\n"
        + '1.00,0,1.00,ch_1,charge,eur,2026-11-01 10:00:00,txn_1,"two\nlines"\n'
        + "1.00,0,1.0.0,ch_2,charge,eur,2026-11-01 10:00:00,txn_2,x\n"
    )
    assert (error.line, error.column) == (4, "GROSS")


def test_rows_before_a_bad_one_are_yielded_first() -> None:
    rows = read_export(io.StringIO(DASHBOARD + "txn_1,charge,ch_1,1.00,0,1.00,eur,2026-11-01 10:00,,\nbad\n"))
    assert next(rows).balance_transaction_id == "txn_1"
    with pytest.raises(UnreadableExport) as caught:
        next(rows)
    assert (caught.value.line, caught.value.column) == (3, "Type")


def test_an_unclosed_quote_is_refused_with_its_line() -> None:
    error = unreadable(DASHBOARD + 'txn_1,charge,ch_1,1.00,0,1.00,eur,2026-11-01 10:00,,"never closed\n')
    assert error.line == 2


def test_detect_layout_gives_the_position_of_each_field() -> None:
    layout, positions = detect_layout(["x", "Net", "fee", "Gross", "source_id", "reporting_category", "currency",
                                       "created_utc", "balance_transaction_id"])  # fmt: skip
    assert layout == "itemized"
    assert positions == (8, 5, 4, 3, 2, 1, 6, 7)
