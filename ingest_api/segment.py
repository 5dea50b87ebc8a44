"""Segment-spec messages (`/v1/batch`, `/v1/track`, ...) mapped onto `mobile/1` events.

A Segment message becomes a `mobile/1` event, which then goes through exactly the validation,
tokenization and landing of `/v1/events`. The mapping only moves fields; it never fixes values,
so a value of the wrong type is rejected by the `mobile/1` schema under its `mobile/1` name:

| Segment | mobile/1 |
| --- | --- |
| `messageId` | `event_id`: as is if a UUID, else `uuid5(NAMESPACE, "<source>:<messageId>")` |
| `context.device.id`, else `anonymousId`, else `userId` | `device_id` |
| `event` (track), else the type: `identify`, `page`, `screen` | `event_type` |
| `timestamp`, else `originalTimestamp` | `occurred_at` |
| `sentAt` (of the batch, else of the message) | the batch's `sent_at` (null when absent) |
| `context.app.name` / `.version` | `app.name` / `app.version` |
| `context.os.name` / `.version` | `device.os` / `device.os_version` |
| `context.device.model` / `.manufacturer` | `device.model` / `device.manufacturer` |
| `context.network.wifi` / `.cellular` (true) | `network.type` `wifi` / `cellular` |
| `context.network.carrier` | `network.carrier` |
| `context.ip` | `network.ip` (tokenized like any `network.ip`) |
| `properties` (track, page, screen), `traits` (identify) | `attributes` (scalars only) |
| `name`, `category` (page, screen) | `attributes.name`, `attributes.category` unless set |

`context.device.id` comes first because a device is what `mobile/1` describes and mobile SDKs
set it to the hardware id; `anonymousId` is per install, so next; `userId` names a person who
may use several devices, so it is the last resort. A non-UUID `messageId` is hashed with the
source, so two sources using the same ids never collide in silver's dedup by `event_id`.

Nested `properties` or `traits` (objects, arrays) reject the event with a reason rather than
being flattened: flattening would invent attribute names the sender never chose. Other types
(`group`, `alias`) are rejected. Routing and library fields (`integrations`, `context.library`,
`context.locale`, ..., `writeKey`) are not part of `mobile/1` and are not stored; any other
unknown top-level field rejects the event, as in `/v1/events`. A rejected event is quarantined
as the original Segment message, with `context.ip` (and any `network.ip`/`ssid`) tokenized.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired, cast
from uuid import UUID, uuid5

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from ingest_api.batches import (
    Origin,
    ValidatedBatch,
    field_errors,
    load_json,
    validate_events,
)
from ingest_api.body import too_large
from ingest_api.clock import DeviceClock
from ingest_api.errors import InvalidEnvelopeError
from ingest_api.schemas import DEFAULT_SCHEMA_VERSION, NO_CONTROL_CHARS, SCHEMAS, Rfc3339Utc
from ingest_api.tokenize import SENSITIVE_FIELDS, Tokenizer
from lake_config.settings import Settings

TYPES = ("identify", "page", "screen", "track")
NAMESPACE = UUID("0c5b7f4e-2d1a-4f3b-8e6c-9a7d5e3f1b20")  # fixed forever: event ids depend on it
SENSITIVE = (*SENSITIVE_FIELDS, ("context", "ip"))
MAX_MESSAGE_ID_CHARS = 256
# Top-level message fields that carry routing or delivery data, not telemetry: not stored.
_IGNORED = frozenset(
    {"integrations", "context", "version", "channel", "_metadata", "receivedAt", "sentAt"}
    | {"writeKey", "type", "options"}
)
# Fields the mapping reads, by type; any other field is unknown and rejects the event.
_COMMON = frozenset({"messageId", "anonymousId", "userId", "timestamp", "originalTimestamp"})
_MAPPED = {
    "track": _COMMON | {"event", "properties"},
    "identify": _COMMON | {"traits"},
    "page": _COMMON | {"name", "category", "properties"},
    "screen": _COMMON | {"name", "category", "properties"},
}


class SegmentBatch(TypedDict):
    """The body of `POST /v1/batch`; `context` applies to every message (theirs wins)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    batch: Annotated[list[Any], Field(min_length=1)]
    sentAt: NotRequired[Rfc3339Utc | None]
    context: NotRequired[dict[str, Any]]
    integrations: NotRequired[dict[str, Any]]
    writeKey: NotRequired[Any]
    metadata: NotRequired[Any]


_BATCH = TypeAdapter(SegmentBatch)
_SENT_AT = TypeAdapter(Rfc3339Utc | None)


# --- OpenAPI: what the routes read (documentation; the mapping above is what decides) --------

_TEXT = {"type": "string", "maxLength": 256}
_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_CONTROL_CHARS}
_TIMESTAMP = {"type": "string", "format": "date-time", "description": "RFC 3339, with a zone"}
_SCALARS = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    "description": "Scalars only: a nested object or array rejects the event",
}


def _object(**fields: Any) -> dict[str, Any]:
    return {"type": "object", "properties": fields}


def message_json_schema(message_type: str | None = None) -> dict[str, Any]:
    """JSON schema of one Segment message as the mapping reads it (other fields: see
    ingest_api/README.md); `message_type` is the one a single-message route implies."""
    types = list(TYPES) if message_type is None else [message_type]
    required = ["messageId", "timestamp"]
    if message_type is None:
        required.append("type")
    elif message_type == "track":
        required.append("event")
    device_id = {"properties": {"device": {"required": ["id"]}}, "required": ["device"]}
    return {
        "type": "object",
        "required": required,
        # The device id: context.device.id, else anonymousId, else userId.
        "anyOf": [
            {"required": ["anonymousId"]},
            {"required": ["userId"]},
            {"required": ["context"], "properties": {"context": device_id}},
        ],
        "properties": {
            "type": {"type": "string", "enum": types},
            "messageId": {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE_ID_CHARS},
            "anonymousId": _ID,
            "userId": _ID,
            "event": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": NO_CONTROL_CHARS,
                "description": "track: the event_type",
            },
            "name": _TEXT,
            "category": _TEXT,
            "timestamp": _TIMESTAMP,
            "originalTimestamp": _TIMESTAMP,
            "sentAt": _TIMESTAMP,
            "properties": _SCALARS,
            "traits": _SCALARS,
            "integrations": {"type": "object"},
            "context": _object(
                app=_object(name=_TEXT, version=_TEXT),
                os=_object(name=_TEXT, version=_TEXT),
                device=_object(id=_ID, model=_TEXT, manufacturer=_TEXT),
                network=_object(
                    wifi={"type": "boolean"}, cellular={"type": "boolean"}, carrier=_TEXT
                ),
                ip={"type": "string", "description": "tokenized like network.ip"},
            ),
        },
    }


def batch_json_schema() -> dict[str, Any]:
    """JSON schema of the body of `POST /v1/batch`."""
    return {
        "type": "object",
        "required": ["batch"],
        "additionalProperties": False,
        "properties": {
            "batch": {"type": "array", "minItems": 1, "items": message_json_schema()},
            "sentAt": _TIMESTAMP,
            "context": {"type": "object", "description": "applies to every message"},
            "integrations": {"type": "object"},
            "writeKey": {"description": "ignored: authenticate with HTTP Basic or Bearer"},
            "metadata": {},
        },
    }


def validate_segment(
    body: bytes,
    settings: Settings,
    tokenizer: Tokenizer,
    *,
    source: str,
    message_type: str | None = None,
    received_at: datetime | None = None,
) -> ValidatedBatch:
    """Map and validate a Segment body: a batch, or one message of `message_type` (`track`...);
    events are bounded in time against `received_at` (default: now), as on `/v1/events`."""
    doc = load_json(body)
    if message_type is None:
        messages, sent_at, shared = _batch(doc, settings.max_events_per_batch)
    else:
        messages, sent_at, shared = [_message(doc)], _sent_at(doc), {}
    events, errors = [], []
    for message in messages:
        event, reasons = to_event(message, source=source, shared_context=shared, only=message_type)
        events.append(event)
        errors.append(reasons)
    envelope = {"schema_version": DEFAULT_SCHEMA_VERSION, "sent_at": sent_at, "events": events}
    return validate_events(
        envelope,
        SCHEMAS[DEFAULT_SCHEMA_VERSION],
        tokenizer,
        max_event_bytes=settings.max_event_bytes,
        origin=Origin(payloads=messages, errors=errors, sensitive_fields=SENSITIVE),
        clock=DeviceClock.for_settings(settings, received_at or datetime.now(UTC)),
    )


def _batch(doc: Any, max_events: int) -> tuple[list[Any], Any, dict[str, Any]]:
    if not isinstance(doc, dict):
        raise InvalidEnvelopeError(
            "body must be a JSON object with a batch of messages",
            errors=[{"field": "body", "message": "Input should be an object"}],
        )
    messages = doc.get("batch")
    if isinstance(messages, list) and len(messages) > max_events:
        raise too_large("max_events_per_batch", max_events, f"batch of {len(messages)} events")
    try:
        parsed = cast(dict[str, Any], _BATCH.validate_python(doc))
    except ValidationError as exc:
        raise InvalidEnvelopeError(
            "body is not a Segment batch", errors=field_errors(exc.errors(**_NO_INPUT), "body")
        ) from None  # the chained error's text quotes the input
    return parsed["batch"], parsed.get("sentAt"), parsed.get("context") or {}


def _message(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidEnvelopeError(
            "body must be a JSON object (one Segment message)",
            errors=[{"field": "body", "message": "Input should be an object"}],
        )
    return doc


def _sent_at(message: dict[str, Any]) -> Any:
    try:
        return _SENT_AT.validate_python(message.get("sentAt"))
    except ValidationError as exc:
        raise InvalidEnvelopeError(
            "sentAt is not a timestamp", errors=field_errors(exc.errors(**_NO_INPUT), "sentAt")
        ) from None


_NO_INPUT: dict[str, Any] = {"include_url": False, "include_context": False, "include_input": False}


def to_event(
    message: Any,
    *,
    source: str,
    shared_context: dict[str, Any] | None = None,
    only: str | None = None,
) -> tuple[Any, list[dict[str, str]]]:
    """A `mobile/1` event (unvalidated) for one Segment message, and the reasons it cannot be
    mapped at all (empty when it can). `only` is the type an endpoint such as `/v1/track`
    implies; a message of another type is rejected."""
    if not isinstance(message, dict):
        return message, []  # the schema rejects it: "Input should be a valid dictionary"
    kind = message.get("type", only)
    if only is not None and kind != only:
        return {}, [{"field": "type", "message": f"must be {only} on this endpoint"}]
    if kind not in TYPES:
        return {}, [{"field": "type", "message": f"must be one of {', '.join(TYPES)}"}]
    context = message.get("context")
    if not isinstance(context, dict):
        context = {}  # the mapping reads it defensively; a non-object context has nothing
    context = {**(shared_context or {}), **context}
    known = _IGNORED | _MAPPED[kind]
    # Unknown fields stay, so that the schema rejects them by name.
    event: dict[str, Any] = {key: value for key, value in message.items() if key not in known}
    _put(event, "event_id", _event_id(message.get("messageId"), source))
    device = _section(context, "device")
    _put(
        event,
        "device_id",
        _first(device.get("id"), message.get("anonymousId"), message.get("userId")),
    )
    _put(event, "event_type", message.get("event") if kind == "track" else kind)
    _put(event, "occurred_at", _first(message.get("timestamp"), message.get("originalTimestamp")))

    app = _section(context, "app")
    os_ = _section(context, "os")
    network = _section(context, "network")
    _put_section(event, "app", {"name": app.get("name"), "version": app.get("version")})
    _put_section(
        event,
        "device",
        {
            "os": os_.get("name"),
            "os_version": os_.get("version"),
            "model": device.get("model"),
            "manufacturer": device.get("manufacturer"),
        },
    )
    kind_of_network = (
        "wifi"
        if network.get("wifi") is True
        else "cellular"
        if network.get("cellular") is True
        else None
    )
    _put_section(
        event,
        "network",
        {"type": kind_of_network, "carrier": network.get("carrier"), "ip": context.get("ip")},
    )
    attributes = message.get("traits" if kind == "identify" else "properties")
    if kind in {"page", "screen"}:
        named = {k: message[k] for k in ("name", "category") if message.get(k) is not None}
        if named and (attributes is None or isinstance(attributes, dict)):
            attributes = {**named, **(attributes or {})}  # properties win over name/category
    if attributes is not None:
        event["attributes"] = attributes
    return event, []


def _event_id(message_id: Any, source: str) -> Any:
    if not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID_CHARS:
        return message_id  # None (absent) or a wrong type: the schema says why
    try:
        return str(UUID(message_id))
    except ValueError:
        return str(uuid5(NAMESPACE, f"{source}:{message_id}"))


def _section(context: dict[str, Any], name: str) -> dict[str, Any]:
    value = context.get(name)
    return value if isinstance(value, dict) else {}


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _put(event: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        event[key] = value


def _put_section(event: dict[str, Any], key: str, values: dict[str, Any]) -> None:
    present = {k: v for k, v in values.items() if v is not None}
    if present:
        event[key] = present
