"""The verifier's shortcuts against the general code they stand in for: the row encoder and the
content-hash records against canonical_bytes, and PostgreSQL's canonical `recorded_at` against
Python's."""

from __future__ import annotations

import enum
from collections import namedtuple
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text

from billing_desk.db.models import Allocation, Invoice, InvoiceLine, Payment
from billing_desk.domain.hashing import canonical_bytes
from billing_desk.domain.integrity import content_hash
from billing_desk.services import verification
from billing_desk.services.integrity import invoice_record, payment_record
from tests.conftest import PG_ADMIN_URL


class _Colour(enum.Enum):
    RED = "red"


class _Text(str):
    pass


_plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_zones = st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-9.5))])
_aware = st.datetimes(timezones=_zones)
# What the ORM's column types give back: aware datetimes in UTC, dates, text, ints, bools, None.
_plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    _plain_text,
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
)
# And what they should never give, but a tampered SQLite file or a new column type could.
_odd = st.one_of(
    _aware,
    st.datetimes(),  # naive
    st.floats(allow_nan=False),
    st.just(_Colour.RED),
    _plain_text.map(_Text),
    st.binary(max_size=4),
    st.text(st.characters(categories=("Cs",)), min_size=1, max_size=2),  # lone surrogates
)


def _outcome(encode: Callable[[], bytes]) -> tuple[str, object]:
    try:
        return "bytes", encode()
    except (TypeError, ValueError) as err:
        return "refused", type(err)


def _names(entity: Any) -> list[str]:
    return [attr.key for attr in inspect(entity).column_attrs]


PAYMENT_COLUMNS = _names(Payment)


def _typed_row(entity: Any) -> st.SearchStrategy[list[object]]:
    """A row as the ORM's column types give it: a UTC datetime or a date in a date or time
    column, text, an int, a bool or None elsewhere."""
    mapper = inspect(entity)
    return st.tuples(
        *(
            st.one_of(st.none(), st.datetimes(timezones=st.just(UTC)), st.dates())
            if verification._is_time(mapper.columns[name].type)
            else st.one_of(st.none(), st.booleans(), st.integers(), _plain_text)
            for name in _names(entity)
        )
    ).map(list)


@given(_typed_row(Payment))
def test_typed_rows_take_the_fast_path_and_give_canonical_bytes(row: list[object]) -> None:
    encoder = verification._RowEncoder(inspect(Payment), PAYMENT_COLUMNS)
    assert encoder.plain(row) is not None
    assert encoder.canonical_bytes(row) == canonical_bytes(
        dict(zip(PAYMENT_COLUMNS, row, strict=True))
    )


@given(st.lists(_plain, min_size=len(PAYMENT_COLUMNS), max_size=len(PAYMENT_COLUMNS)))
def test_plain_values_anywhere_give_canonical_bytes(row: list[object]) -> None:
    encoder = verification._RowEncoder(inspect(Payment), PAYMENT_COLUMNS)
    assert encoder.canonical_bytes(row) == canonical_bytes(
        dict(zip(PAYMENT_COLUMNS, row, strict=True))
    )


@given(
    st.lists(st.one_of(_plain, _odd), min_size=len(PAYMENT_COLUMNS), max_size=len(PAYMENT_COLUMNS))
)
def test_any_row_is_encoded_or_refused_exactly_as_canonical_bytes_does(row: list[object]) -> None:
    encoder = verification._RowEncoder(inspect(Payment), PAYMENT_COLUMNS)
    record = dict(zip(PAYMENT_COLUMNS, row, strict=True))
    assert _outcome(lambda: encoder.canonical_bytes(row)) == _outcome(
        lambda: canonical_bytes(record)
    )


def test_a_field_subset_is_read_by_position() -> None:
    columns = ["memo", "id", "recorded_at", "payer"]
    row = ["x", 7, datetime(2026, 6, 1, 9, 30, tzinfo=UTC), "y"]
    mapper = inspect(Payment)
    encoder = verification._RowEncoder(mapper, ["id", "recorded_at", "payer"], columns)
    assert encoder.plain(row) == {
        "id": 7,
        "recorded_at": "2026-06-01T09:30:00.000000Z",
        "payer": "y",
    }
    single = verification._RowEncoder(mapper, ["id"], columns)
    assert single.canonical_bytes(row) == b'{"id":7}'


def _rows(entity: Any, values: st.SearchStrategy[object]) -> st.SearchStrategy[Any]:
    """Rows of `entity` that read both by position and by attribute name, as Core rows do."""
    names = _names(entity)
    shape = namedtuple(entity.__name__, names)  # type: ignore[misc]
    return st.lists(values, min_size=len(names), max_size=len(names)).map(lambda row: shape(*row))


def _with_id(row: Any, index: int) -> Any:
    return row._replace(id=index)


@pytest.mark.parametrize(
    ("check", "parent", "child", "record"),
    [
        (verification._PAYMENTS, Payment, Allocation, payment_record),
        (verification._INVOICES, Invoice, InvoiceLine, invoice_record),
    ],
    ids=["payment", "invoice"],
)
@settings(max_examples=150)
@given(data=st.data())
def test_the_fast_content_hash_is_the_stored_hash_function(
    check: Any, parent: Any, child: Any, record: Any, data: st.DataObject
) -> None:
    values = st.one_of(_plain, _odd) if data.draw(st.booleans()) else _plain
    row = data.draw(_rows(parent, values))
    kids = [
        _with_id(kid, index)
        for index, kid in enumerate(data.draw(st.lists(_rows(child, values), max_size=3)))
    ]
    parent_encoder = verification._RowEncoder(inspect(parent), check.fields, _names(parent))
    child_encoder = verification._RowEncoder(inspect(child), check.child_fields, _names(child))
    assert _outcome(
        lambda: check._hash(row, kids, parent_encoder, child_encoder).encode()
    ) == _outcome(lambda: content_hash(check.kind, record(row, kids)).encode())


_STAMP_QUERY = text(
    f"SELECT {verification._PG_STAMP} FROM (SELECT CAST(:at AS timestamptz) AS recorded_at) "
    "AS audit_entry"
)


@pytest.fixture(scope="module")
def pg_stamp() -> Iterator[Callable[[object, str], object]]:
    """`_PG_STAMP` of a value, evaluated by PostgreSQL in a session of the given time zone (on
    the server's own database: the expression needs no table)."""
    engine = create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1))

    def stamp(value: object, zone: str) -> object:
        with engine.connect() as connection:
            connection.execute(text("SELECT set_config('TimeZone', :zone, false)"), {"zone": zone})
            return connection.scalar(_STAMP_QUERY, {"at": value})

    yield stamp
    engine.dispose()


def _canonical_stamp(moment: datetime) -> str:
    return canonical_bytes({"t": moment})[6:-2].decode()  # {"t":"...Z"}


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Chatham", "America/St_Johns"])
def test_postgresql_writes_recorded_at_as_canonical_bytes_does(
    zone: str, pg_stamp: Callable[[object, str], object]
) -> None:
    """`_PG_STAMP` is the canonical text of the stored instant whatever the session's time zone,
    and NULL (the general path) for what a Python datetime cannot hold."""
    for moment in [
        datetime(2026, 6, 1, 9, 30, 0, 123456, tzinfo=UTC),
        datetime(2026, 6, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3))),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]:
        assert pg_stamp(moment, zone) == _canonical_stamp(moment)
    for beyond in ("0044-03-15 12:00:00+00 BC", "0001-01-01 00:00:00+01", "infinity", "-infinity"):
        assert pg_stamp(beyond, zone) is None


@settings(max_examples=60, deadline=None)
@given(moment=_aware, zone=st.sampled_from(["UTC", "Asia/Kathmandu", "America/Adak"]))
def test_postgresql_stamps_agree_with_python_for_any_instant(
    pg_stamp: Callable[[object, str], object], moment: datetime, zone: str
) -> None:
    try:
        moment.astimezone(UTC)
    except OverflowError:
        assume(False)  # before year 1 in UTC: no Python datetime, the general path decides
    assert pg_stamp(moment, zone) == _canonical_stamp(moment)
