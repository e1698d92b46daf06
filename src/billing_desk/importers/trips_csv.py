"""Trip files exported by a dispatch system: CSV in UTF-8 (a byte-order mark is fine), one trip
per row, read into `TripRecord`s and `RowProblem`s (the format for users: docs/trip-import.md).

The first line is a header naming the columns, in any order and any letter case; other columns
are ignored:

    trip_id       required; at most 64 characters; once per facility in a file
    facility      required; the facility code, read in upper case
    client        required; the client's name
    client_id     optional; the dispatch system's client id, at most 64 characters
    service_date  required; YYYY-MM-DD
    pickup        required
    dropoff       required
    status        required; completed, cancelled or no-show (also canceled, no_show, noshow)
    fare          required; digits with an optional decimal point (42.50), in the facility's
                  currency; the service checks its decimals once the currency is known
    billable      optional; yes/no, true/false, y/n or 1/0; yes when blank or absent

Fields are trimmed and blank lines skipped. A bad row becomes one `RowProblem` at the physical
line where the row starts (the header is line 1); a file that is not such a table at all is
refused whole with `BadInput`.
"""

from __future__ import annotations

import calendar
import codecs
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from billing_desk.domain.errors import BadInput
from billing_desk.domain.states import TripStatus
from billing_desk.domain.trips import RowProblem, TripRecord

MAX_FILE_BYTES: Final = 50 * 1024 * 1024
MAX_ID_CHARS: Final = 64
REQUIRED_COLUMNS: Final = (
    "trip_id", "facility", "client", "service_date", "pickup", "dropoff", "status", "fare",
)  # fmt: skip
OPTIONAL_COLUMNS: Final = ("client_id", "billable")
COLUMNS: Final = frozenset(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)

_STATUSES: Final = {
    "completed": TripStatus.COMPLETED,
    "cancelled": TripStatus.CANCELLED,
    "canceled": TripStatus.CANCELLED,
    "no-show": TripStatus.NO_SHOW,
    "no_show": TripStatus.NO_SHOW,
    "noshow": TripStatus.NO_SHOW,
}
_BILLABLE: Final = {"yes": True, "y": True, "true": True, "1": True} | {
    "no": False, "n": False, "false": False, "0": False,
}  # fmt: skip
_DATE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_FARE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_EXPONENT: Final = re.compile(r"[0-9.]*[0-9][0-9.]*[eE][-+]?[0-9]+")
_SHOWN_CHARS: Final = 40

# (facility, trip_id) -> the line it was first seen on.
_FirstLines = dict[tuple[str, str], int]


@dataclass(frozen=True)
class TripFile:
    """What a trip file holds: a record per good row, a problem per bad one, and the file's name
    and SHA-256 (hex) to tell one file from another."""

    name: str
    sha256: str
    records: tuple[TripRecord, ...]
    problems: tuple[RowProblem, ...]


class _BadRow(Exception):
    """One row's first problem; never leaves this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_trip_file(path: Path) -> TripFile:
    """Read a dispatch export. Bad rows are returned as problems beside the good rows' records;
    a file that cannot be read as a trip table at all raises `BadInput` with one sentence."""
    raw = _read_bytes(path)
    text = _decode(raw, path.name)
    records, problems = _read_table(text, path.name)
    return TripFile(path.name, hashlib.sha256(raw).hexdigest(), tuple(records), tuple(problems))


# -- the file as a whole -------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise BadInput(f"There is no file '{path}'; check its name and folder.") from None
    except IsADirectoryError:
        raise BadInput(f"'{path}' is a folder; name the trip file itself.") from None
    except OSError as err:
        raise BadInput(
            f"The file '{path}' cannot be read ({err.strerror or err}); check that you may open it."
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise BadInput(
            f"{path.name} is larger than 50 MB; export the trips in smaller files, a month each."
        )
    return raw


def _decode(raw: bytes, name: str) -> str:
    _refuse_binary(raw, name)
    body = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        offset = len(raw) - len(body) + err.start
        raise BadInput(
            f"{name} is not UTF-8 text: line {_line_at(raw, offset)} has the byte "
            f"0x{raw[offset]:02X} (byte {offset + 1} of the file); save the file as CSV UTF-8 "
            "and import it again."
        ) from None
    return text


def _refuse_binary(raw: bytes, name: str) -> None:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BadInput(f"{name} is saved as UTF-16 text; save it as CSV UTF-8 and import it again.")
    if raw.startswith(b"PK\x03\x04"):
        raise BadInput(f"{name} is a workbook or a zip archive, not CSV; save it as CSV UTF-8.")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise BadInput(
            f"{name} has a NUL byte on line {_line_at(raw, nul)} (byte {nul + 1}), so it is a "
            "binary file, not CSV text; export the trips as CSV UTF-8."
        )


def _line_at(raw: bytes, offset: int) -> int:
    """The 1-based line of byte `offset`, whether lines end in LF, CRLF or CR."""
    before = raw[:offset]
    return before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1


# -- the table -----------------------------------------------------------------------------------


def _read_table(text: str, name: str) -> tuple[list[TripRecord], list[RowProblem]]:
    rows = _rows_with_lines(text, name)
    first = next(rows, None)
    if first is None:
        raise BadInput(f"{name} is empty; export the trips again, with the header row.")
    header = first[1]
    columns = _columns(header, name)
    seen: _FirstLines = {}
    records: list[TripRecord] = []
    problems: list[RowProblem] = []
    for line, row in rows:
        try:
            records.append(_record(line, row, columns, len(header), seen))
        except _BadRow as bad:
            problems.append(RowProblem(line, bad.reason))
    return records, problems


def _rows_with_lines(text: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """Each row that is not blank, with the physical line it starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise BadInput(
                f"{name} line {start} cannot be read as CSV ({err}); look for a double quote "
                "that is never closed."
            ) from None
        if any(field.strip() for field in row):
            yield start, row
        start = reader.line_num + 1


def _columns(header: list[str], name: str) -> dict[str, int]:
    """Position of each documented column in the header; refuses a missing or doubled one."""
    names = [field.strip().lower() for field in header]
    known = [n for n in names if n in COLUMNS]
    twice = sorted({n for n in known if known.count(n) > 1})
    if twice:
        raise BadInput(
            f"{name} has more than one column named {', '.join(twice)}; keep one of each."
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in known]
    if missing:
        raise BadInput(
            f"{name} has no column {', '.join(missing)}; its first line must be a header naming "
            f"{', '.join(REQUIRED_COLUMNS)} (client_id and billable are optional)."
        )
    return {n: i for i, n in enumerate(names) if n in COLUMNS}


# -- one row -------------------------------------------------------------------------------------


def _record(
    line: int, row: list[str], columns: dict[str, int], width: int, seen: _FirstLines
) -> TripRecord:
    if len(row) != width:
        raise _BadRow(_width_reason(row, width))
    field = {column: row[index].strip() for column, index in columns.items()}
    for column in REQUIRED_COLUMNS:
        if not field[column]:
            raise _BadRow(f"{column} is blank; every trip needs one.")
    trip_id = _identifier("trip_id", field["trip_id"])
    facility = field["facility"].upper()
    _refuse_repeat(line, trip_id, facility, seen)
    return TripRecord(
        line=line,
        external_trip_id=trip_id,
        facility_code=facility,
        client_name=field["client"],
        client_ref=_identifier("client_id", field.get("client_id", "")) or None,
        service_date=_service_date(field["service_date"]),
        pickup=field["pickup"],
        dropoff=field["dropoff"],
        status=_status(field["status"]),
        fare=_fare(field["fare"]),
        billable=_billable(field.get("billable", "")),
    )


def _width_reason(row: list[str], width: int) -> str:
    counts = f"has {len(row)} fields but the header has {width}"
    if any("\n" in field or "\r" in field for field in row):
        return f"{counts} and runs over several lines; a double quote in it may never be closed."
    if len(row) > width:
        return f"{counts}; a field that contains a comma must be in double quotes."
    return f"{counts}; every row needs a field for each column, even a blank one."


def _refuse_repeat(line: int, trip_id: str, facility: str, seen: _FirstLines) -> None:
    first = seen.setdefault((facility, trip_id), line)
    if first != line:
        raise _BadRow(
            f"trip_id '{trip_id}' of facility {facility} is already on line {first}; "
            "a trip may appear once in a file."
        )


def _identifier(column: str, value: str) -> str:
    if len(value) > MAX_ID_CHARS:
        raise _BadRow(
            f"{column} '{_shown(value)}' is {len(value)} characters long; "
            f"at most {MAX_ID_CHARS} are allowed."
        )
    return value


def _service_date(value: str) -> date:
    parts = _DATE.fullmatch(value)
    if parts is None:
        raise _BadRow(
            f"service_date '{_shown(value)}' is not a date; write it as YYYY-MM-DD, "
            "such as 2026-05-04."
        )
    year, month, day = (int(part) for part in parts.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise _BadRow(
            f"service_date '{value}' is not a real date; {_why_not_a_day(year, month)}."
        ) from None


def _why_not_a_day(year: int, month: int) -> str:
    if year == 0:
        return "there is no year 0000"
    if not 1 <= month <= 12:
        return f"there is no month {month:02d}"
    return f"{year:04d}-{month:02d} has days 01 to {calendar.monthrange(year, month)[1]}"


def _status(value: str) -> TripStatus:
    status = _STATUSES.get(value.lower())
    if status is None:
        raise _BadRow(f"status '{_shown(value)}' is not one of completed, cancelled, no-show.")
    return status


def _fare(value: str) -> str:
    if _FARE.fullmatch(value):
        return value
    shown = _shown(value)
    if value.startswith("-"):
        raise _BadRow(f"fare '{shown}' is negative; a fare is zero or more.")
    if "," in value:
        raise _BadRow(
            f"fare '{shown}' has a comma; write the amount without thousands separators and "
            "with a dot before the decimals, such as 1234.50."
        )
    if _EXPONENT.fullmatch(value):
        raise _BadRow(
            f"fare '{shown}' is in exponent notation; write the amount out, such as 1000.00."
        )
    raise _BadRow(
        f"fare '{shown}' is not an amount; write digits with at most one decimal point and no "
        "currency sign, such as 42.50."
    )


def _billable(value: str) -> bool:
    if not value:
        return True
    flag = _BILLABLE.get(value.lower())
    if flag is None:
        raise _BadRow(
            f"billable '{_shown(value)}' is not yes or no; write yes, no, true, false, y, n, 1 "
            "or 0, or leave it blank for yes."
        )
    return flag


def _shown(value: str) -> str:
    """A field as quoted in a reason: on one line, and cut short when long."""
    flat = " ".join(value.split())
    return flat if len(flat) <= _SHOWN_CHARS else flat[: _SHOWN_CHARS - 1] + "…"
