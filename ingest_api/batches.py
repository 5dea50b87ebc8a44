"""A validated batch: the envelope parsed once, then every event validated on its own.

The whole body is parsed with one `orjson.loads`; the envelope is checked (400 or 413 for the
request as a whole), then each event goes through its schema's `TypeAdapter`. An invalid event
rejects that event only, with one `{field, message}` per problem; its payload is kept for the
quarantine with sensitive fields tokenized. Accepted events are tokenized here too, so nothing
downstream of this module ever holds a raw sensitive value.

Two events with the same `event_id` in one batch are both accepted: deduplication by event id is
silver's job, across batches, and doing it here too would only hide that duplicates were sent.

An event whose occurred_at lies too far in the future (`ingest_api.clock`: Segment's skew
correction, then `max_future_s`) is rejected like an invalid one; its occurred_at is stored as
sent when it is accepted.

Messages are pydantic's `msg` (or ours), never its `input`: an error never quotes the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ingest_api.body import too_large
from ingest_api.clock import DeviceClock, FutureBound
from ingest_api.errors import InvalidEnvelopeError, InvalidJsonError, UnsupportedSchemaVersionError
from ingest_api.schemas import DEFAULT_SCHEMA_VERSION, ENVELOPE, SCHEMAS, EventSchema
from ingest_api.tokenize import MAX_PAYLOAD_DEPTH, SensitiveValueError, Tokenizer
from lake_config.settings import Settings

MAX_FIELD_CHARS = 200  # a field path quotes keys the client chose: keep it short
MAX_EVENT_ID_CHARS = 64
# pydantic messages that would quote part of the input, replaced by fixed ones.
_MESSAGES = {
    "uuid_parsing": "Input should be a valid UUID",
    "uuid_type": "Input should be a valid UUID string",
    # The ids' patterns (a timestamp's shape has its own error type, `rfc3339`).
    "string_pattern_mismatch": "must not contain control characters",
}


@dataclass(frozen=True)
class Rejection:
    """One invalid event: position, id when readable, reasons, and its tokenized payload (also
    as JSON bytes, serialized once). The payload is None when it nests too deeply to copy."""

    index: int
    event_id: str | None
    reasons: list[dict[str, str]]
    payload: Any
    payload_json: bytes


@dataclass
class ValidatedBatch:
    """The outcome of validating one request; `results` is in request order.

    Accepted events are kept as the JSON they are written as (validated, tokenized, timestamps
    in UTC): serialized once, measured against `max_event_bytes`, embedded in the raw lines.
    """

    schema_version: str
    sent_at: datetime | None
    accepted: list[bytes] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


def validate_batch(
    body: bytes,
    settings: Settings,
    tokenizer: Tokenizer,
    received_at: datetime | None = None,
) -> ValidatedBatch:
    """Parse and validate a decoded request body (400/413 for the request, else per event);
    events are bounded in time against `received_at` (default: now)."""
    envelope, schema = parse_envelope(body, settings.max_events_per_batch)
    return validate_events(
        envelope,
        schema,
        tokenizer,
        max_event_bytes=settings.max_event_bytes,
        clock=DeviceClock.for_settings(settings, received_at or datetime.now(UTC)),
    )


def load_json(body: bytes) -> Any:
    """The parsed body; 400 `invalid_json` naming the line and column (never the text)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJsonError(
            f"body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from exc


def parse_envelope(body: bytes, max_events: int) -> tuple[dict[str, Any], EventSchema]:
    """The envelope (events still raw) and the schema its events are validated with."""
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise InvalidEnvelopeError(
            "body must be a JSON object with sent_at and events",
            errors=[{"field": "body", "message": "Input should be an object"}],
        )
    events = doc.get("events")
    if isinstance(events, list) and len(events) > max_events:
        raise too_large("max_events_per_batch", max_events, f"batch of {len(events)} events")
    version = doc.get("schema_version", DEFAULT_SCHEMA_VERSION)
    schema = SCHEMAS.get(version) if isinstance(version, str) else None
    if schema is None:
        raise UnsupportedSchemaVersionError(
            f"schema_version is not supported; supported: {', '.join(sorted(SCHEMAS))}",
            errors=[{"field": "schema_version", "message": "unsupported schema version"}],
            supported=sorted(SCHEMAS),
        )
    try:
        envelope = cast(dict[str, Any], ENVELOPE.validate_python(doc))
    except ValidationError as exc:
        raise InvalidEnvelopeError(
            "body is not a batch envelope", errors=field_errors(exc.errors(**_NO_INPUT), "body")
        ) from None  # the chained error's text quotes the input
    envelope.setdefault("schema_version", schema.version)
    return envelope, schema


@dataclass(frozen=True)
class Origin:
    """What mapped events were made from (Segment messages): a rejected event is quarantined as
    its original payload, with `sensitive_fields` tokenized, and `errors[i]`, when not empty,
    rejects event i with those reasons before validation (a mapping failure)."""

    payloads: Sequence[Any]
    errors: Sequence[list[dict[str, str]]]
    sensitive_fields: tuple[tuple[str, str], ...]


def validate_events(
    envelope: dict[str, Any],
    schema: EventSchema,
    tokenizer: Tokenizer,
    *,
    max_event_bytes: int,
    origin: Origin | None = None,
    clock: DeviceClock | None = None,
) -> ValidatedBatch:
    """Validate every event of a parsed envelope (`origin`: see `Origin`).

    An event is measured against `max_event_bytes` as the compact JSON it would be stored as
    (tokenized, UTC timestamps), which is also what bounds it downstream; since the schema
    bounds every field, only a valid event can be measured this way, and an invalid one is
    rejected for its field errors whatever its size. With `clock`, a valid event too far in
    the future is rejected with one reason on `occurred_at`; without it (re-validating events
    long after their receipt) there is no future bound.
    """
    batch = ValidatedBatch(schema_version=envelope["schema_version"], sent_at=envelope["sent_at"])
    future = None if clock is None else clock.bound(batch.sent_at)
    validate = schema.adapter.validator.validate_python  # pydantic-core's, without the wrapper
    sensitive = schema.sensitive_fields
    memo: dict[str, str] = {}
    accepted, rejected, results = batch.accepted, batch.rejected, batch.results
    for index, raw in enumerate(envelope["events"]):
        reasons = origin.errors[index] if origin is not None else []
        if not reasons:
            try:
                event = validate(raw)
            except ValidationError as exc:
                reasons = field_errors(exc.errors(**_NO_INPUT), "event")
            else:
                event_json, reasons = _stored(event, tokenizer, sensitive, memo, future)
                if event_json is not None and len(event_json) <= max_event_bytes:
                    accepted.append(event_json)
                    results.append(
                        {
                            "index": index,
                            "event_id": _canonical_id(raw["event_id"], event["event_id"]),
                            "status": "accepted",
                            "errors": [],
                        }
                    )
                    continue
                if event_json is not None:
                    message = f"event exceeds max_event_bytes={max_event_bytes}"
                    reasons = [{"field": "event", "message": message}]
        if origin is None:
            rejection = _rejection(index, raw, reasons, tokenizer, sensitive)
        else:
            rejection = _rejection(
                index,
                origin.payloads[index],
                reasons,
                tokenizer,
                origin.sensitive_fields,
                event_id=_readable_event_id(raw),
            )
        rejected.append(rejection)
        results.append(
            {
                "index": index,
                "event_id": rejection.event_id,
                "status": "rejected",
                "errors": rejection.reasons,
            }
        )
    return batch


def _stored(
    event: dict[str, Any],
    tokenizer: Tokenizer,
    sensitive: Sequence[tuple[str, str]],
    memo: dict[str, str],
    future: FutureBound | None,
) -> tuple[bytes | None, list[dict[str, str]]]:
    """A valid event as the JSON it is stored as (occurred_at in UTC), or None and the reasons
    it is rejected."""
    occurred_at = event["occurred_at"]
    if future is not None:
        too_late = future.check(occurred_at)
        if too_late is not None:
            return None, [too_late]
    if occurred_at.utcoffset():  # most clients send UTC already: no conversion then
        event["occurred_at"] = occurred_at.astimezone(UTC)
    try:
        tokenizer.tokenize_event(event, sensitive, memo)
    except SensitiveValueError as exc:  # its message names the field, not the value
        return None, [{"field": exc.field, "message": str(exc)}]
    return orjson.dumps(event, option=orjson.OPT_UTC_Z), []


_NO_INPUT: dict[str, Any] = {"include_url": False, "include_context": False, "include_input": False}


def field_errors(errors: Sequence[ErrorDetails], root: str) -> list[dict[str, str]]:
    """`{field, message}` per pydantic error: a dotted path (`root` for the whole) and the msg."""
    return [
        {"field": _field_path(e["loc"], root), "message": _MESSAGES.get(e["type"], e["msg"])}
        for e in errors
    ]


def _field_path(loc: tuple[int | str, ...], root: str) -> str:
    if loc and loc[-1] == "[key]":  # a dict key failed: name its dict, not the bad key itself
        return _field_path(loc[:-2], root) + "[key]"
    if not loc:
        return root
    path = ".".join(str(part) for part in loc).replace("\x00", "\\u0000")
    return path if len(path) <= MAX_FIELD_CHARS else path[: MAX_FIELD_CHARS - 3] + "..."


def _rejection(
    index: int,
    raw: Any,
    reasons: list[dict[str, str]],
    tokenizer: Tokenizer,
    sensitive: Sequence[tuple[str, str]],
    *,
    event_id: str | None = None,
) -> Rejection:
    """`raw` tokenized for the quarantine; its event id is read from `raw` unless given."""
    try:
        payload = tokenizer.tokenize_payload(raw, sensitive)
    except ValueError:
        message = f"event nests deeper than {MAX_PAYLOAD_DEPTH} levels; its payload is not kept"
        payload, reasons = None, [*reasons, {"field": "event", "message": message}]
    if event_id is None:
        event_id = _readable_event_id(raw)
    return Rejection(index, event_id, reasons, payload, orjson.dumps(payload))


def _canonical_id(sent: Any, parsed: UUID) -> str:
    """The canonical text of an accepted event's id: the id as sent when it already is that
    (36 characters and lower case: the only 36-character form the UUID parser accepts is the
    hyphenated one), which spares `str(UUID)`'s ~1 us per event; else `str(parsed)`."""
    if sent.__class__ is str and len(sent) == 36 and sent.islower():
        return cast(str, sent)
    return str(parsed)


def _readable_event_id(raw: Any) -> str | None:
    """The event id of a rejected event as sent, when it is a short string (else None)."""
    value = raw.get("event_id") if isinstance(raw, dict) else None
    if isinstance(value, str) and len(value) <= MAX_EVENT_ID_CHARS and "\x00" not in value:
        return value
    return None
