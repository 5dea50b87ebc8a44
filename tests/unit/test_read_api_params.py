"""Read API parameters: cursors, time windows, filters, and the 400s they raise."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import orjson
import pytest

from ingest_api.errors import (
    InvalidCursorError,
    InvalidFilterError,
    InvalidLimitError,
    InvalidParameterError,
    InvalidRangeError,
    InvalidTimestampError,
)
from ingest_api.readparams import (
    Window,
    decode_cursor,
    encode_cursor,
    fingerprint,
    parameter_error,
    parse_value,
)

AT = datetime(2024, 5, 1, 12, 30, 15, 250_000, tzinfo=UTC)
QUERY = fingerprint("metrics", "device_hourly", [None, None], {})


def test_a_cursor_round_trips_typed_values() -> None:
    values = (AT, "dev-1", 7, True, date(2024, 5, 2))
    kinds = ("timestamptz", "text", "int", "bool", "date")

    token = encode_cursor(QUERY, values)

    assert decode_cursor(token, QUERY, kinds) == values
    assert "=" not in token  # url-safe, unpadded: goes into a query string as it is


def test_a_cursor_is_opaque_base64url_json() -> None:
    token = encode_cursor(QUERY, (AT, "a/b+c"))
    padded = token + "=" * (-len(token) % 4)

    body = orjson.loads(base64.urlsafe_b64decode(padded))

    assert body == {"v": 1, "q": QUERY, "k": ["2024-05-01T12:30:15.250000+00:00", "a/b+c"]}


def test_a_cursor_of_another_query_is_refused() -> None:
    other = fingerprint("metrics", "device_hourly", [None, None], {"device_id": "x"})
    token = encode_cursor(other, (AT, "dev-1"))

    with pytest.raises(InvalidCursorError, match="belongs to another query") as caught:
        decode_cursor(token, QUERY, ("timestamptz", "text"))
    assert caught.value.body()["error"] == {
        "code": "invalid_cursor",
        "message": "cursor belongs to another query: repeat the parameters of the page it "
        "came from",
        "parameter": "cursor",
    }


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        "",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"v": 2, "q": "x", "k": []}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "é",
    ],
)
def test_garbage_is_not_a_cursor(token: str) -> None:
    with pytest.raises(InvalidCursorError, match="cursor is not one this API issued"):
        decode_cursor(token, QUERY, ("timestamptz", "text"))


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        (["2024-05-01T12:00:00", "d"], ("timestamptz", "text")),  # naive timestamp
        ([1, "d"], ("timestamptz", "text")),
        (["2024-05-01T12:00:00Z", 5], ("timestamptz", "text")),
        (["2024-05-01T12:00:00Z"], ("timestamptz", "text")),  # too few values
        ([True], ("int",)),  # a bool is not an int
        (["x"], ("date",)),
    ],
)
def test_a_cursor_with_values_of_the_wrong_kind_is_refused(
    values: list[object], kinds: tuple[str, ...]
) -> None:
    token = base64.urlsafe_b64encode(orjson.dumps({"v": 1, "q": QUERY, "k": values})).decode()

    with pytest.raises(InvalidCursorError, match="cursor is not one this API issued"):
        decode_cursor(token, QUERY, kinds)  # type: ignore[arg-type]


def test_start_after_end_is_an_invalid_range() -> None:
    with pytest.raises(InvalidRangeError, match="start must not be after end"):
        Window(datetime(2024, 5, 2, tzinfo=UTC), datetime(2024, 5, 1, tzinfo=UTC))


def test_an_empty_or_open_window_is_allowed() -> None:
    assert Window(AT, AT).as_key() == [AT.isoformat(), AT.isoformat()]
    assert Window().as_key() == [None, None]


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (
            datetime(2024, 5, 1, tzinfo=UTC),
            datetime(2024, 5, 3, tzinfo=UTC),
            (date(2024, 5, 1), date(2024, 5, 2)),
        ),
        (
            datetime(2024, 5, 1, 0, 0, 1, tzinfo=UTC),
            datetime(2024, 5, 3, 0, 0, 1, tzinfo=UTC),
            (date(2024, 5, 2), date(2024, 5, 3)),
        ),
        (None, None, (None, None)),
    ],
)
def test_a_window_keeps_the_days_whose_midnight_is_inside(
    start: datetime | None, end: datetime | None, days: tuple[date | None, date | None]
) -> None:
    assert Window(start, end).days() == days


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        ("text", "Lisbon", "Lisbon"),
        ("text", "", ""),
        ("int", "3", 3),
        ("int", "-12", -12),
        ("bool", "true", True),
        ("bool", "FALSE", False),
        ("bool", "1", True),
    ],
)
def test_filter_values_are_parsed_as_their_column_kind(kind: str, raw: str, value: object) -> None:
    assert parse_value("f", kind, raw) == value  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("int", "three", "sensor_id must be an integer"),
        ("int", "99999999999", "sensor_id must be an integer"),
        ("bool", "maybe", "sensor_id must be true or false"),
        ("text", "x" * 257, "sensor_id must be at most 256 characters"),
        ("text", "a\x00b", "sensor_id must be at most 256 characters"),
    ],
)
def test_bad_filter_values_are_invalid_filter(kind: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message):
        parse_value("sensor_id", kind, raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("loc", "error", "message"),
    [
        (("query", "limit"), InvalidLimitError, "limit: too big"),
        (("query", "start"), InvalidTimestampError, r"start: too big \(write '\+' as %2B"),
        (("query", "cursor"), InvalidCursorError, "cursor: too big"),
        (("query", "source"), InvalidParameterError, "source: too big"),
    ],
)
def test_framework_validation_errors_become_400s_naming_the_parameter(
    loc: tuple[str, str], error: type[InvalidParameterError], message: str
) -> None:
    raised = parameter_error([{"loc": loc, "msg": "too big", "input": "SECRET"}])

    assert type(raised) is error
    assert raised.status == 400
    assert raised.details == {"parameter": loc[1]}
    with pytest.raises(error, match=message):
        raise raised
    assert "SECRET" not in raised.message
