"""The trip CSV reader: good files become records; each kind of bad row and bad file is told apart
with its own sentence and line number; no input makes it fail any other way."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_desk.domain.errors import BadInput
from billing_desk.domain.states import TripStatus
from billing_desk.domain.trips import RowProblem, TripRecord
from billing_desk.importers.trips_csv import MAX_FILE_BYTES, TripFile, read_trip_file

DATA = Path(__file__).resolve().parents[1] / "data" / "trips"
HEADER = "trip_id,facility,client,client_id,service_date,pickup,dropoff,status,fare,billable"
GOOD = {
    "trip_id": "T1",
    "facility": "STMARY",
    "client": "Ann Lee",
    "client_id": "C-17",
    "service_date": "2026-05-04",
    "pickup": "12 Oak Rd",
    "dropoff": "General Hospital",
    "status": "completed",
    "fare": "42.50",
    "billable": "yes",
}
GOOD_RECORD = TripRecord(
    line=2,
    external_trip_id="T1",
    facility_code="STMARY",
    client_name="Ann Lee",
    client_ref="C-17",
    service_date=date(2026, 5, 4),
    pickup="12 Oak Rd",
    dropoff="General Hospital",
    status=TripStatus.COMPLETED,
    fare="42.50",
    billable=True,
)


def csv_line(**changes: str) -> str:
    """The good row with some fields changed, quoted as a CSV writer would."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow({**GOOD, **changes}.values())
    return out.getvalue().removesuffix("\r\n")


def write(folder: Path, content: str | bytes, name: str = "trips.csv") -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read_text(folder: Path, *lines: str) -> TripFile:
    return read_trip_file(write(folder, "\n".join(lines) + "\n"))


# -- good files ----------------------------------------------------------------------------------


def test_a_good_file_becomes_one_record_per_row() -> None:
    path = DATA / "good.csv"
    parsed = read_trip_file(path)
    assert parsed.name == "good.csv"
    assert parsed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert parsed.problems == ()
    assert parsed.records == (
        TripRecord(2, "T-1001", "STMARY", "Ann Lee", "C-17", date(2026, 5, 4),
                   "12 Oak Rd, Apt 4", "General Hospital", TripStatus.COMPLETED, "42.50", True),
        TripRecord(3, "T-1002", "STMARY", "Bo Park", None, date(2026, 5, 5),
                   "3 Elm St", "Eye Clinic", TripStatus.CANCELLED, "0", False),
        TripRecord(4, "T-1003", "STMARY", "Ann Lee", "C-17", date(2026, 5, 6),
                   "12 Oak Rd", 'Dialysis Center "North"', TripStatus.NO_SHOW, "15.00", True),
        TripRecord(5, "T-1004", "STMARY", "Chloé Durand", None, date(2026, 5, 29),
                   "9 Pine Ave", "General Hospital", TripStatus.COMPLETED, "7", True),
    )  # fmt: skip


def test_a_byte_order_mark_and_crlf_line_endings_are_read(tmp_path: Path) -> None:
    content = codecs.BOM_UTF8 + f"{HEADER}\r\n{csv_line()}\r\n".encode()
    parsed = read_trip_file(write(tmp_path, content))
    assert parsed.records == (GOOD_RECORD,)
    assert parsed.problems == ()


def test_old_mac_line_endings_count_as_lines(tmp_path: Path) -> None:
    parsed = read_trip_file(write(tmp_path, f"{HEADER}\r\r{csv_line(status='done')}\r"))
    assert parsed.problems == (
        RowProblem(3, "status 'done' is not one of completed, cancelled, no-show."),
    )


def test_quoted_fields_keep_their_commas_quotes_and_line_breaks(tmp_path: Path) -> None:
    parsed = read_text(
        tmp_path,
        HEADER,
        csv_line(pickup="12 Oak Rd, Apt 4", dropoff='Clinic "North"'),
        csv_line(trip_id="T2", pickup="Ward 3\nGeneral Hospital"),
        csv_line(trip_id="T3", fare="x"),
    )
    assert [(r.line, r.pickup, r.dropoff) for r in parsed.records] == [
        (2, "12 Oak Rd, Apt 4", 'Clinic "North"'),
        (3, "Ward 3\nGeneral Hospital", "General Hospital"),
    ]
    # The row after a two-line field is numbered by the physical line it starts on.
    assert [p.line for p in parsed.problems] == [5]


def test_header_names_any_case_any_order_extra_columns_ignored(tmp_path: Path) -> None:
    parsed = read_text(
        tmp_path,
        " Fare ,STATUS,Dropoff,Pickup,Service_Date,Client,Facility,Trip_ID,Driver",
        "  42.50 , Completed ,General Hospital,12 Oak Rd,2026-05-04, Ann Lee ,stmary, T1 ,Bob",
    )
    assert parsed.records == (replace(GOOD_RECORD, client_ref=None),)


def test_optional_columns_and_blank_lines(tmp_path: Path) -> None:
    parsed = read_text(tmp_path, HEADER, "", csv_line(client_id="", billable=""), "   ", ",,,,")
    assert parsed.problems == ()
    assert [(r.line, r.client_ref, r.billable) for r in parsed.records] == [(3, None, True)]


def test_a_header_without_rows_is_an_empty_import(tmp_path: Path) -> None:
    parsed = read_text(tmp_path, HEADER)
    assert (parsed.records, parsed.problems) == ((), ())


@pytest.mark.parametrize(
    ("written", "status"),
    [
        ("completed", TripStatus.COMPLETED),
        ("COMPLETED", TripStatus.COMPLETED),
        ("Cancelled", TripStatus.CANCELLED),
        ("canceled", TripStatus.CANCELLED),
        ("no-show", TripStatus.NO_SHOW),
        ("No_Show", TripStatus.NO_SHOW),
        ("noshow", TripStatus.NO_SHOW),
    ],
)
def test_status_spellings(tmp_path: Path, written: str, status: TripStatus) -> None:
    assert read_text(tmp_path, HEADER, csv_line(status=written)).records[0].status == status


@pytest.mark.parametrize(
    ("written", "billable"),
    [("yes", True), ("Y", True), ("TRUE", True), ("1", True), ("", True),
     ("no", False), ("n", False), ("False", False), ("0", False)],
)  # fmt: skip
def test_billable_spellings(tmp_path: Path, written: str, billable: bool) -> None:
    assert read_text(tmp_path, HEADER, csv_line(billable=written)).records[0].billable is billable


@pytest.mark.parametrize("fare", ["0", "7", "42.5", "42.50", "0.001", "0042.50"])
def test_fares_are_kept_as_written(tmp_path: Path, fare: str) -> None:
    assert read_text(tmp_path, HEADER, csv_line(fare=fare)).records[0].fare == fare


def test_a_leap_day_is_a_date(tmp_path: Path) -> None:
    record = read_text(tmp_path, HEADER, csv_line(service_date="2028-02-29")).records[0]
    assert record.service_date == date(2028, 2, 29)


def test_the_same_trip_id_at_two_facilities_is_two_trips(tmp_path: Path) -> None:
    parsed = read_text(tmp_path, HEADER, csv_line(), csv_line(facility="OAKVIEW"))
    assert [(r.facility_code, r.external_trip_id) for r in parsed.records] == [
        ("STMARY", "T1"),
        ("OAKVIEW", "T1"),
    ]


# -- bad rows: one case per kind, with its exact sentence ----------------------------------------

TOO_LONG = "T" * 65

BAD_ROWS = [
    pytest.param(
        "T9,STMARY,Ann Lee",
        "has 3 fields but the header has 10; every row needs a field for each column, even a "
        "blank one.",
        id="too-few-fields",
    ),
    pytest.param(
        csv_line() + ",extra",
        "has 11 fields but the header has 10; a field that contains a comma must be in double "
        "quotes.",
        id="too-many-fields",
    ),
    *[
        pytest.param(
            csv_line(**{column: "  "}),
            f"{column} is blank; every trip needs one.",
            id=f"blank-{column}",
        )
        for column in (
            "trip_id",
            "facility",
            "client",
            "service_date",
            "pickup",
            "dropoff",
            "status",
            "fare",
        )
    ],
    pytest.param(
        csv_line(service_date="04/05/2026"),
        "service_date '04/05/2026' is not a date; write it as YYYY-MM-DD, such as 2026-05-04.",
        id="date-not-iso",
    ),
    pytest.param(
        csv_line(service_date="2026-5-4"),
        "service_date '2026-5-4' is not a date; write it as YYYY-MM-DD, such as 2026-05-04.",
        id="date-without-zeros",
    ),
    pytest.param(
        csv_line(service_date="2026-02-30"),
        "service_date '2026-02-30' is not a real date; 2026-02 has days 01 to 28.",
        id="date-impossible-day",
    ),
    pytest.param(
        csv_line(service_date="2026-04-00"),
        "service_date '2026-04-00' is not a real date; 2026-04 has days 01 to 30.",
        id="date-day-zero",
    ),
    pytest.param(
        csv_line(service_date="2026-13-01"),
        "service_date '2026-13-01' is not a real date; there is no month 13.",
        id="date-impossible-month",
    ),
    pytest.param(
        csv_line(service_date="0000-01-01"),
        "service_date '0000-01-01' is not a real date; there is no year 0000.",
        id="date-year-zero",
    ),
    pytest.param(
        csv_line(status="done"),
        "status 'done' is not one of completed, cancelled, no-show.",
        id="bad-status",
    ),
    pytest.param(
        csv_line(fare="forty"),
        "fare 'forty' is not an amount; write digits with at most one decimal point and no "
        "currency sign, such as 42.50.",
        id="fare-text",
    ),
    pytest.param(
        csv_line(fare="$42.50"),
        "fare '$42.50' is not an amount; write digits with at most one decimal point and no "
        "currency sign, such as 42.50.",
        id="fare-currency-sign",
    ),
    pytest.param(
        csv_line(fare="4.2.5"),
        "fare '4.2.5' is not an amount; write digits with at most one decimal point and no "
        "currency sign, such as 42.50.",
        id="fare-two-points",
    ),
    pytest.param(
        csv_line(fare="-5.00"),
        "fare '-5.00' is negative; a fare is zero or more.",
        id="fare-negative",
    ),
    pytest.param(
        csv_line(fare="1e3"),
        "fare '1e3' is in exponent notation; write the amount out, such as 1000.00.",
        id="fare-exponent",
    ),
    pytest.param(
        csv_line(fare="1,234.50"),
        "fare '1,234.50' has a comma; write the amount without thousands separators and with a "
        "dot before the decimals, such as 1234.50.",
        id="fare-thousands-comma",
    ),
    pytest.param(
        csv_line(fare="42,50"),
        "fare '42,50' has a comma; write the amount without thousands separators and with a "
        "dot before the decimals, such as 1234.50.",
        id="fare-decimal-comma",
    ),
    pytest.param(
        csv_line(billable="maybe"),
        "billable 'maybe' is not yes or no; write yes, no, true, false, y, n, 1 or 0, or leave "
        "it blank for yes.",
        id="bad-billable",
    ),
    pytest.param(
        csv_line(trip_id=TOO_LONG),
        f"trip_id '{'T' * 39}…' is 65 characters long; at most 64 are allowed.",
        id="trip-id-too-long",
    ),
    pytest.param(
        csv_line(client_id="C" * 70),
        f"client_id '{'C' * 39}…' is 70 characters long; at most 64 are allowed.",
        id="client-id-too-long",
    ),
    pytest.param(
        csv_line(trip_id="T0", facility="stmary", fare="10.00"),
        "trip_id 'T0' of facility STMARY is already on line 2; a trip may appear once in a file.",
        id="trip-id-twice",
    ),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS)
def test_a_bad_row_is_reported_with_its_line_and_reason(
    tmp_path: Path, row: str, reason: str
) -> None:
    parsed = read_text(tmp_path, HEADER, csv_line(trip_id="T0"), "", row, csv_line(trip_id="T5"))
    assert parsed.problems == (RowProblem(4, reason),)
    # The good rows around it are still read, with their own line numbers.
    assert [(r.line, r.external_trip_id) for r in parsed.records] == [(2, "T0"), (5, "T5")]


def test_a_quote_left_open_swallows_the_rest_of_the_file_and_says_so(tmp_path: Path) -> None:
    parsed = read_text(
        tmp_path,
        HEADER,
        'T1,STMARY,Ann Lee,,2026-05-04,"12 Oak Rd,General Hospital,completed,42.50,yes',
        csv_line(trip_id="T2"),
    )
    assert parsed.records == ()
    assert parsed.problems == (
        RowProblem(
            2,
            "has 6 fields but the header has 10 and runs over several lines; a double quote in "
            "it may never be closed.",
        ),
    )


def test_a_row_reports_its_first_problem_only(tmp_path: Path) -> None:
    parsed = read_text(tmp_path, HEADER, csv_line(service_date="soon", status="done", fare="x"))
    assert [p.reason for p in parsed.problems] == [
        "service_date 'soon' is not a date; write it as YYYY-MM-DD, such as 2026-05-04."
    ]


def test_every_bad_row_is_reported(tmp_path: Path) -> None:
    parsed = read_text(
        tmp_path, HEADER, csv_line(fare="x"), csv_line(trip_id="T2"), csv_line(trip_id="T2")
    )
    assert [p.line for p in parsed.problems] == [2, 4]
    assert [r.line for r in parsed.records] == [3]


def test_a_long_or_multiline_value_is_shown_on_one_line_and_cut_short(tmp_path: Path) -> None:
    parsed = read_text(tmp_path, HEADER, csv_line(status="not\nknown " + "x" * 100))
    assert parsed.problems[0].reason == (
        f"status 'not known {'x' * 29}…' is not one of completed, cancelled, no-show."
    )


# -- whole-file refusals -------------------------------------------------------------------------


def refusal(path: Path) -> str:
    with pytest.raises(BadInput) as refused:
        read_trip_file(path)
    assert refused.value.exit_code == 2
    return str(refused.value)


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert refusal(path) == f"There is no file '{path}'; check its name and folder."


def test_a_folder(tmp_path: Path) -> None:
    assert refusal(tmp_path) == f"'{tmp_path}' is a folder; name the trip file itself."


def test_an_unreadable_path(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER) / "trips.csv"
    assert refusal(path) == (
        f"The file '{path}' cannot be read (Not a directory); check that you may open it."
    )


@pytest.mark.parametrize(
    "content", [b"", codecs.BOM_UTF8, b"\n\r\n  \n", b",,,\n", b'""\n'], ids=repr
)
def test_an_empty_file(tmp_path: Path, content: bytes) -> None:
    assert refusal(write(tmp_path, content)) == (
        "trips.csv is empty; export the trips again, with the header row."
    )


def test_a_file_that_is_not_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    content = f"{HEADER}\n{csv_line()}\n".encode() + "T2,STMARY,Chloé".encode("latin-1")
    offset = content.index(b"\xe9")
    assert refusal(write(tmp_path, content)) == (
        f"trips.csv is not UTF-8 text: line 3 has the byte 0xE9 (byte {offset + 1} of the file); "
        "save the file as CSV UTF-8 and import it again."
    )


def test_the_byte_position_counts_the_byte_order_mark(tmp_path: Path) -> None:
    content = codecs.BOM_UTF8 + b"\xff" + HEADER.encode()
    assert "line 1 has the byte 0xFF (byte 4 of the file)" in refusal(write(tmp_path, content))


def test_missing_required_columns_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "trip_id,facility,client,service_date,pickup,dropoff\n")
    assert refusal(path) == (
        "trips.csv has no column status, fare; its first line must be a header naming trip_id, "
        "facility, client, service_date, pickup, dropoff, status, fare (client_id and billable "
        "are optional)."
    )


def test_a_file_without_a_header_row(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, csv_line() + "\n")).startswith(
        "trips.csv has no column trip_id, facility, client, service_date, pickup, dropoff, "
        "status, fare; its first line must be a header"
    )


def test_a_column_named_twice(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + ",Fare,notes,notes\n")
    assert refusal(path) == "trips.csv has more than one column named fare; keep one of each."


def test_a_file_over_50_mb(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    assert refusal(path) == (
        "huge.csv is larger than 50 MB; export the trips in smaller files, a month each."
    )


def test_a_nul_byte_means_a_binary_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n".encode() + b"T1,\x00\x01")
    assert refusal(path) == (
        f"trips.csv has a NUL byte on line 2 (byte {len(HEADER) + 5}), so it is a binary file, "
        "not CSV text; export the trips as CSV UTF-8."
    )


def test_utf16_text(tmp_path: Path) -> None:
    path = write(tmp_path, (HEADER + "\n").encode("utf-16"))
    assert refusal(path) == (
        "trips.csv is saved as UTF-16 text; save it as CSV UTF-8 and import it again."
    )


def test_an_excel_workbook(tmp_path: Path) -> None:
    path = write(tmp_path, b"PK\x03\x04\x14\x00\x06\x00", "trips.xlsx")
    assert (
        refusal(path) == "trips.xlsx is a workbook or a zip archive, not CSV; save it as CSV UTF-8."
    )


def test_a_field_too_long_for_csv(tmp_path: Path) -> None:
    path = write(tmp_path, f'{HEADER}\n{csv_line()}\nT2,"{"x" * 200_000}\n')
    assert refusal(path) == (
        "trips.csv line 3 cannot be read as CSV (field larger than field limit (131072)); look "
        "for a double quote that is never closed."
    )


# -- whatever the input, a TripFile or BadInput ---------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def read_or_refuse(folder: Path, content: bytes) -> TripFile | None:
    try:
        return read_trip_file(write(folder, content))
    except BadInput:
        return None


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(content=st.binary(max_size=2000))
def test_any_bytes(scratch: Path, content: bytes) -> None:
    read_or_refuse(scratch, content)


@FUZZ
@given(text=st.text(max_size=2000))
def test_any_text(scratch: Path, text: str) -> None:
    read_or_refuse(scratch, text.encode())


FIELDS = st.one_of(
    st.text(st.sampled_from('ab1-.:,"\n\r eE$\ufeff\u2028é0N'), max_size=12),
    st.sampled_from(["T1", "STMARY", "2026-05-04", "2026-02-30", "no-show", "42.50", "yes"]),
)


@FUZZ
@given(
    rows=st.lists(st.lists(FIELDS, max_size=12), max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_any_rows_under_a_good_header(scratch: Path, rows: list[list[str]], newline: str) -> None:
    text = newline.join([HEADER, *(",".join(row) for row in rows)])
    parsed = read_or_refuse(scratch, text.encode())
    if parsed is not None:
        lines = [r.line for r in parsed.records] + [p.line for p in parsed.problems]
        assert len(lines) == len(set(lines))  # one outcome per row, at the line it starts on
        assert all(2 <= line <= text.count("\n") + text.count("\r") + 1 for line in lines)
