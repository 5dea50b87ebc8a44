"""Query parameters of the read API: time window, limit, opaque cursor, equality filters.

Every read route takes `start`/`end` (RFC 3339 with a time zone; `start` inclusive, `end`
exclusive), `limit` (1..`MAX_LIMIT`, default `DEFAULT_LIMIT`) and `cursor`; a bad one is a 400
with its own code, never FastAPI's 422 (`ReadRoute` maps those). Query parameters a route does
not know are refused (`unknown_parameter`), so a misspelt `strat=` cannot silently widen a query.

A cursor is base64url JSON of the last row's sort key plus a fingerprint of the query it pages
(route, dataset, filters, window): it is only valid with the very same other parameters, and a
cursor of another query is `invalid_cursor` instead of a wrong page. Clients must treat it as
opaque; its values are decoded with the declared kinds and bound as SQL parameters, never
spliced into SQL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from ingest_api.errors import (
    InvalidCursorError,
    InvalidFilterError,
    InvalidLimitError,
    InvalidParameterError,
    InvalidRangeError,
    InvalidTimestampError,
    UnknownFilterError,
    UnknownParameterError,
)
from ingest_api.schemas import Rfc3339Utc

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 2048
CURSOR_VERSION = 1
COMMON = ("start", "end", "limit", "cursor")

# Kinds of the columns a cursor or filter carries; a filter value is parsed as its column's kind.
Kind = Literal["text", "int", "bool", "timestamptz", "date"]
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}

Start = Annotated[
    Rfc3339Utc | None,
    Query(
        description="Inclusive lower bound, RFC 3339 with a time zone "
        "(`2024-05-01T00:00:00Z`; write `+` as `%2B`)"
    ),
]
End = Annotated[
    Rfc3339Utc | None,
    Query(description="Exclusive upper bound, RFC 3339 with a time zone"),
]
Limit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Rows per page, 1..{MAX_LIMIT}"),
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_CHARS,
        description="`next_cursor` of the previous page, with the same other parameters",
    ),
]

_PARAMETER_ERRORS: dict[str, type[InvalidParameterError]] = {
    "start": InvalidTimestampError,
    "end": InvalidTimestampError,
    "limit": InvalidLimitError,
    "cursor": InvalidCursorError,
}


class ReadRoute(APIRoute):
    """A route whose parameter validation errors are our 400s, not FastAPI's 422 body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise parameter_error(exc.errors()) from exc

        return route


def parameter_error(errors: Sequence[Any]) -> InvalidParameterError:
    """Our 400 for FastAPI's first validation error (the message never quotes the value)."""
    first = dict(errors[0]) if errors else {}
    loc = [str(part) for part in first.get("loc", ())]
    name = loc[-1] if loc else "request"
    error = _PARAMETER_ERRORS.get(name, InvalidParameterError)
    message = f"{name}: {first.get('msg', 'invalid value')}"
    if error is InvalidTimestampError:
        message += " (write '+' as %2B in a URL)"
    return error(message, parameter=name)


@dataclass(frozen=True)
class Window:
    """A time range: `start` inclusive, `end` exclusive; None is unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise InvalidRangeError("start must not be after end", parameter="start")

    def days(self) -> tuple[date | None, date | None]:
        """The UTC dates a row must have to be at or after `start` and before `end`.

        A date counts as its midnight (UTC): the first day is the one of `start` rounded up, the
        last is the day before `end` rounded up.
        """
        first = _ceil_date(self.start) if self.start is not None else None
        last = _ceil_date(self.end) - timedelta(days=1) if self.end is not None else None
        return first, last

    def as_key(self) -> list[str | None]:
        return [_iso(self.start), _iso(self.end)]


def _ceil_date(at: datetime) -> date:
    at = at.astimezone(UTC)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.date() if at == midnight else at.date() + timedelta(days=1)


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at is not None else None


def reject_unknown(request: Request, allowed: Iterable[str]) -> None:
    """Refuse query parameters the route does not take (`unknown_parameter`)."""
    known = set(allowed)
    for name in request.query_params:
        if name not in known:
            raise UnknownParameterError(
                f"unknown query parameter {_quote(name)}",
                parameter=_bounded(name),
                allowed=sorted(known),
            )


def filters_of(
    request: Request, columns: dict[str, Kind], allowed: Sequence[str], *, dataset: str
) -> dict[str, Any]:
    """The equality filters of the query string (every parameter not in `COMMON`), each parsed
    as its column's kind. Unknown names are `unknown_filter`, repeated or unparsable values
    `invalid_filter`."""
    found: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name in COMMON:
            continue
        if name not in allowed:
            raise UnknownFilterError(
                f"{dataset} cannot be filtered by {_quote(name)}",
                parameter=_bounded(name),
                filters=list(allowed),
            )
        if name in found:
            raise InvalidFilterError(f"give the filter {name} once", parameter=name)
        found[name] = parse_value(name, columns[name], value)
    return found


def parse_value(name: str, kind: Kind, raw: str) -> Any:
    """A filter value of `kind` from its query-string text (`invalid_filter` when it is not)."""
    if kind == "text":
        if len(raw) > 256 or "\x00" in raw:
            raise InvalidFilterError(f"{name} must be at most 256 characters", parameter=name)
        return raw
    if kind == "int":
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not -(2**31) <= value < 2**31:
            raise InvalidFilterError(f"{name} must be an integer", parameter=name)
        return value
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise InvalidFilterError(f"{name} must be true or false", parameter=name)
    raise InvalidFilterError(f"{name} cannot be filtered on", parameter=name)


def fingerprint(*parts: Any) -> str:
    """A short digest of what a cursor pages, so it is refused with any other query."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def encode_cursor(query: str, values: Sequence[Any]) -> str:
    """The opaque cursor after a row whose sort key is `values`, for the query `query`."""
    body = {"v": CURSOR_VERSION, "q": query, "k": [_encode(v) for v in values]}
    return base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()


def decode_cursor(token: str, query: str, kinds: Sequence[Kind]) -> tuple[Any, ...]:
    """The sort key a cursor carries, typed by `kinds`; `invalid_cursor` when it is not one of
    this query's cursors."""
    try:
        padded = token + "=" * (-len(token) % 4)
        body = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise InvalidCursorError("cursor is not one this API issued", parameter="cursor") from exc
    if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
        raise InvalidCursorError("cursor is not one this API issued", parameter="cursor")
    if body.get("q") != query:
        raise InvalidCursorError(
            "cursor belongs to another query: repeat the parameters of the page it came from",
            parameter="cursor",
        )
    values = body.get("k")
    if not isinstance(values, list) or len(values) != len(kinds):
        raise InvalidCursorError("cursor is not one this API issued", parameter="cursor")
    try:
        return tuple(_decode(kind, v) for kind, v in zip(kinds, values, strict=True))
    except (TypeError, ValueError) as exc:
        raise InvalidCursorError("cursor is not one this API issued", parameter="cursor") from exc


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    raise TypeError(f"a cursor cannot carry a {type(value).__name__}")


def _decode(kind: Kind, value: Any) -> Any:
    if kind == "timestamptz" and isinstance(value, str):
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError("naive timestamp")
        return at
    if kind == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "text" and isinstance(value, str):
        return value
    raise ValueError(f"not a {kind}")


def _bounded(name: str) -> str:
    return name[:64]


def _quote(name: str) -> str:
    # A parameter name is client input: shown cut and with control characters escaped.
    return repr(_bounded(name))
