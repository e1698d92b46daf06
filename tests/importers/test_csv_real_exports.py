"""CSV exports as banks really write them, written from RFC 4180 (fields, quoting, spaces are
part of a field) and from the column descriptions banks publish for their exports: dates with a
time part or a month name, separators with spaces around them, pending rows without a completed
date or balance, a record-type or state column that also lists balances, turnover totals and
pending rows, and a running balance broken in a newest-first file.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_desk.domain.csv_mappings import MONTH_NAMES, CsvMapping, parse_date
from billing_desk.domain.errors import BadInput
from billing_desk.domain.statements import Statement
from billing_desk.importers.statements import csv_statement


def read(text: str, **guess: str) -> list[Statement]:
    data = text.encode()
    return csv_statement.parse_with(data, csv_statement.guess_mapping(data, **guess))


def lines(statements: list[Statement]) -> list[tuple[date, int]]:
    return [(line.booked, line.amount.minor) for s in statements for line in s.lines]


@pytest.mark.parametrize(
    ("written", "wanted"),
    [
        ("2022-01-02 12:16:55", date(2022, 1, 2)),
        ("2022-01-02T12:16:55Z", date(2022, 1, 2)),
        ("2022-01-02T23:59:59.123+05:30", date(2022, 1, 2)),
        ("02.01.2022 07:05", date(2022, 1, 2)),
        ("1/2/2022 1:05 PM", date(2022, 1, 2)),
    ],
)
def test_a_date_with_a_time_part_is_its_calendar_date(written: str, wanted: date) -> None:
    text = f"Date,Amount,Currency,Description\n{written},-12.50,EUR,Coffee\n"
    if "/" in written:  # month first, as US banks write it: one more row says so
        text += "12/31/2022 9:00 AM,1.00,EUR,Interest\n"
    assert lines(read(text))[0] == (wanted, -1250)


@pytest.mark.parametrize(
    ("written", "wanted"),
    [
        ('"Apr 8, 2018"', date(2018, 4, 8)),
        ('"April 8, 2018"', date(2018, 4, 8)),
        ("8 Apr 2018", date(2018, 4, 8)),
        ("08-Apr-2018", date(2018, 4, 8)),
        ("08-APR-18", date(2018, 4, 8)),
        ("8. März 2018", date(2018, 3, 8)),
        ("8 mrt 2018", date(2018, 3, 8)),
        ("8 déc. 2018", date(2018, 12, 8)),
        ("8 okt 2018", date(2018, 10, 8)),
        ("8 dic 2018", date(2018, 12, 8)),
    ],
)
def test_dates_with_month_names(written: str, wanted: date) -> None:
    text = f"Date,Amount,Currency,Description\n{written},-12.50,EUR,Coffee\n"
    assert lines(read(text)) == [(wanted, -1250)]


def test_an_unknown_month_name_is_refused_with_the_formats_known() -> None:
    with pytest.raises(BadInput) as refused:
        read("Date,Amount,Currency,Description\n8 Smarch 2018,-12.50,EUR,Coffee\n")
    assert "'8 Smarch 2018'" in str(refused.value)


def test_separators_with_spaces_around_them() -> None:
    text = (
        "Date ; Amount ; Currency ; Description\n"
        '2022-01-02 ; "-1.234,50" ; EUR ; "Rent; January" \n'
        "2022-01-03 ; 100,00 ; EUR ; Salary\n"
    )
    statements = read(text)
    assert lines(statements) == [(date(2022, 1, 2), -123450), (date(2022, 1, 3), 10000)]
    assert statements[0].lines[0].description == "Rent; January"


REVOLUT_LIKE = (
    "Type,Product,Started Date,Completed Date,Description,Amount,Fee,Currency,State,Balance\n"
    "CARD_PAYMENT,Current,2022-01-01 10:00:00,2022-01-02 12:16:55,Coffee,-12.50,0.00,EUR,"
    "COMPLETED,87.50\n"
    "TOPUP,Current,2022-01-03 08:00:00,,Top-up,100.00,0.00,EUR,PENDING,\n"
    "CARD_PAYMENT,Current,2022-01-04 09:00:00,2022-01-04 09:01:00,Lunch,-7.50,0.00,EUR,"
    "COMPLETED,80.00\n"
    "CARD_PAYMENT,Current,2022-01-05 09:00:00,2022-01-05 09:01:00,Refused,-9.99,0.00,EUR,"
    "REVERTED,80.00\n"
)


def test_pending_and_reverted_rows_are_left_out_and_counted() -> None:
    mapping = csv_statement.guess_mapping(REVOLUT_LIKE.encode())
    assert (mapping.keep_column, mapping.keep_values) == ("State", ("completed",))
    (statement,) = csv_statement.parse_with(REVOLUT_LIKE.encode(), mapping)
    assert lines([statement]) == [(date(2022, 1, 2), -1250), (date(2022, 1, 4), -750)]
    assert all(check.ok for check in statement.checks()), statement.checks()
    assert any("2 row(s) left out by the row filter" in note for note in statement.notes)


def test_rows_without_a_date_or_an_amount_are_not_booked() -> None:
    text = (
        "Completed Date,Amount,Currency,Description,Balance\n"
        "2022-01-02,-12.50,EUR,Coffee,87.50\n"
        ",100.00,EUR,Top-up pending,\n"
        "2022-01-04,,EUR,Card check,87.50\n"
        "2022-01-05,-7.50,EUR,Lunch,80.00\n"
    )
    (statement,) = read(text)
    assert lines([statement]) == [(date(2022, 1, 2), -1250), (date(2022, 1, 5), -750)]
    assert (
        "2 row(s) not booked, left out: they have no date or no amount, as pending rows do "
        "(line 3, 4)." in statement.notes
    )
    assert all(check.ok for check in statement.checks())


def test_a_record_type_column_keeps_only_the_transactions() -> None:
    text = (
        "Record type,Date,Amount,Currency,Description\n"
        "Balance,2022-01-01,1000.00,EUR,Opening balance\n"
        "Transaction,2022-01-02,-12.50,EUR,Coffee\n"
        "Transaction,2022-01-03,100.00,EUR,Salary\n"
        "Turnover,2022-01-31,87.50,EUR,Total\n"
        "Balance,2022-01-31,1087.50,EUR,Closing balance\n"
    )
    (statement,) = read(text)
    assert lines([statement]) == [(date(2022, 1, 2), -1250), (date(2022, 1, 3), 10000)]
    assert any("3 row(s) left out by the row filter" in note for note in statement.notes)


def test_a_row_filter_needs_its_column_and_its_values() -> None:
    with pytest.raises(BadInput) as refused:
        CsvMapping(name="x", date=1, date_format="yyyy-mm-dd", amount=2, currency="EUR",
                   keep_column="State")  # fmt: skip
    assert "keep_values" in str(refused.value)


def test_a_broken_running_balance_in_a_newest_first_file_blames_the_right_row() -> None:
    text = (
        "Date,Amount,Currency,Description,Balance\n"
        "2022-01-05,-1.00,EUR,e,95.00\n"
        "2022-01-04,-1.00,EUR,d,96.00\n"
        "2022-01-03,-1.00,EUR,c,97.00\n"  # a row of -2.00 is missing below this one
        "2022-01-02,-1.00,EUR,b,100.00\n"
        "2022-01-01,-1.00,EUR,a,101.00\n"
    )
    (statement,) = read(text)
    (check,) = statement.checks()
    assert not check.ok
    assert check.detail.startswith("the balance at line 4 (97.00) does not follow from the row ")
    assert "newest first" in check.detail


_FORMATS = {
    "yyyy-mm-dd": "%Y-%m-%d",
    "dd.mm.yyyy": "%d.%m.%Y",
    "mm/dd/yyyy": "%m/%d/%Y",
    "d mon yyyy": "%d %b %Y",
    "mon d, yyyy": "%b %d, %Y",
    "dd-mon-yyyy": "%d-%b-%Y",
}


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(datetime(1990, 1, 1), datetime(2060, 12, 31)),
    st.sampled_from(sorted(_FORMATS)),
    st.sampled_from(["", " %H:%M", " %H:%M:%S", "T%H:%M:%SZ", "T%H:%M:%S+02:00", " %I:%M %p"]),
)
def test_any_date_with_or_without_a_time_reads_as_its_day(
    moment: datetime, date_format: str, time_part: str
) -> None:
    written = moment.strftime(_FORMATS[date_format] + time_part)
    assert parse_date(written, date_format) == moment.date()
    # The day before midnight in the writer's zone stays that day: nothing is converted.
    assert parse_date(written, date_format) != (moment + timedelta(days=1)).date()


def test_every_month_has_a_name_in_each_language() -> None:
    assert sorted(set(MONTH_NAMES.values())) == list(range(1, 13))
