"""Versioned, bounded schemas of what clients send, and of what the API answers.

Events are validated one by one with a pydantic `TypeAdapter` over `TypedDict`s: validation
returns plain dicts (no model objects to build and dump again), optional sections stay absent
when absent, and `extra="forbid"` at every level rejects unknown fields with a reason. Every
string has a `max_length`; numbers that have a physical range are bounded.

`SCHEMAS` maps an envelope's `schema_version` to its `EventSchema`; a new version or client
profile plugs in by adding an entry. Unknown versions are refused with 400.

Types are JSON types: numbers and booleans are strict (no `"5"` for 5, no 1 for true); an event
id is any UUID spelling pydantic accepts and is written in canonical form; timestamps must be
RFC 3339 strings with a time zone and are written in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, Required
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    PlainValidator,
    Strict,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, core_schema
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from ingest_api.tokenize import SENSITIVE_FIELDS

DEFAULT_SCHEMA_VERSION = "mobile/1"
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY_CHARS = 64
MAX_ATTRIBUTE_VALUE_CHARS = 1024
MAX_INT64 = 2**63 - 1

_FORBID = ConfigDict(extra="forbid")
# RFC 3339 with a time zone; pydantic alone would also take unix seconds ("1700000000") and other
# ISO 8601 shapes. ASCII digits only (`\d` would take any script's), matched by pydantic-core's
# Rust regex, where `$` is the end of the text.
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
RFC3339_MESSAGE = "must be an RFC 3339 timestamp with a time zone, e.g. 2024-05-01T12:00:00Z"

# Client timestamps must fit every engine downstream: Sail holds timestamps as 64-bit
# nanoseconds (years 1677-2262), and an event outside them would fail a whole Spark stage.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
TIMESTAMP_RANGE = "must lie between 1900-01-01 and 2199-12-31 (UTC)"


def _rfc3339_schema(_source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    """The shape (one error, `rfc3339`, for any other input), then pydantic's parse of an aware
    datetime, then the range (`timestamp_range`; compared as instants, whatever the offsets):
    all in pydantic-core, no Python call per value (~3 us less per event than a before- and an
    after-validator in Python)."""
    return core_schema.chain_schema(
        [
            core_schema.custom_error_schema(
                core_schema.str_schema(max_length=40, pattern=RFC3339_PATTERN),
                custom_error_type="rfc3339",
                custom_error_message=RFC3339_MESSAGE,
            ),
            core_schema.datetime_schema(tz_constraint="aware"),
            core_schema.custom_error_schema(
                core_schema.datetime_schema(ge=EARLIEST, lt=LATEST),
                custom_error_type="timestamp_range",
                custom_error_message=TIMESTAMP_RANGE,
            ),
        ]
    )


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)  # in range (Rfc3339), so no overflow


# An RFC 3339 timestamp as sent (its offset kept; events' occurred_at: `batches` writes it in
# UTC), and one converted to UTC when validated (envelopes, query bounds: one per request).
Rfc3339 = Annotated[
    datetime,
    GetPydanticSchema(_rfc3339_schema),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Rfc3339Utc = Annotated[Rfc3339, AfterValidator(_as_utc)]


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
            raise PydanticCustomError(
                "string_too_long",
                f"String should have at most {MAX_ATTRIBUTE_VALUE_CHARS} characters",
            )
        return value
    raise PydanticCustomError(
        "scalar_type", "must be a string, number, boolean or null (no objects or arrays)"
    )


Scalar = Annotated[
    str | int | float | bool | None,
    PlainValidator(_scalar, json_schema_input_type=str | int | float | bool | None),
]
AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS)]
Attributes = Annotated[
    dict[AttributeKey, Scalar],
    Field(max_length=MAX_ATTRIBUTES, description="Free-form scalar attributes (<= 50 keys)"),
]


Text32 = Annotated[str, StringConstraints(max_length=32)]
Text64 = Annotated[str, StringConstraints(max_length=64)]
Text128 = Annotated[str, StringConstraints(max_length=128)]
# Ids end up as keys in Delta and PostgreSQL (which refuses U+0000): no control characters.
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_CONTROL_CHARS)]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL_CHARS)]
BatteryPct = Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]
TemperatureC = Annotated[float, Strict(), Field(ge=-100, le=200, allow_inf_nan=False)]
SignalDbm = Annotated[int, Strict(), Field(ge=-150, le=0)]
DurationMs = Annotated[int, Strict(), Field(ge=0, le=MAX_INT64)]
StrictBool = Annotated[bool, Strict()]


# --- mobile/1 ---------------------------------------------------------------------------------


class AppV1(TypedDict, total=False):
    """The application that sent the event."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    name: Text128 | None
    version: Text64 | None


class DeviceV1(TypedDict, total=False):
    """The device the event describes."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    os: Text64 | None
    os_version: Text64 | None
    model: Text128 | None
    manufacturer: Text128 | None


class BatteryV1(TypedDict, total=False):
    """Battery state when the event occurred."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    level_pct: BatteryPct | None
    charging: StrictBool | None
    temperature_c: TemperatureC | None


class NetworkV1(TypedDict, total=False):
    """Network state; `ip` and `ssid` are sensitive and stored only as HMAC tokens."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    type: Literal["wifi", "cellular", "ethernet", "none"] | None
    ip: Text64 | None
    ssid: Text64 | None
    carrier: Text64 | None
    signal_dbm: SignalDbm | None


class SessionV1(TypedDict, total=False):
    """The app session the event belongs to."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    session_id: Text128 | None
    duration_ms: DurationMs | None


class EventV1(TypedDict):
    """One device event (schema `mobile/1`). `event_id` is the deduplication key."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    event_id: Annotated[UUID, Field(description="Client-chosen id; the deduplication key")]
    device_id: Annotated[DeviceId, Field(description="Stable id of the device")]
    event_type: Annotated[EventType, Field(description="app_open, heartbeat, crash, ...")]
    occurred_at: Annotated[Rfc3339, Field(description="RFC 3339 with a time zone; stored in UTC")]
    app: NotRequired[AppV1 | None]
    device: NotRequired[DeviceV1 | None]
    battery: NotRequired[BatteryV1 | None]
    network: NotRequired[NetworkV1 | None]
    session: NotRequired[SessionV1 | None]
    attributes: NotRequired[Attributes | None]


# --- the origin sources (docs/CONTRACTS.md "Sources") -------------------------------------
# Every source keeps the common event fields (id, device, type, time, attributes) and adds one
# section named after it; silver keeps the section as JSON and flattens it per source.

BRAZIL_STATES = (
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA",
    "PB", "PR", "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
)  # fmt: skip
BrazilState = Literal[
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA",
    "PB", "PR", "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
]  # fmt: skip


def _matching(pattern: str, message: str) -> AfterValidator:
    """A format check whose error says what is expected (never quoting the value)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError("format", message)
        return value

    return AfterValidator(check)


DeviceCode = Annotated[
    str,
    StringConstraints(max_length=8),
    _matching(r"(AT|CC|PD|PC)[0-9]{6}", "must be AT, CC, PD or PC and six digits, e.g. AT000123"),
    Field(description="Machine type prefix (AT, CC, PD, PC) and a six-digit sequence"),
]
IsoDate = Annotated[
    str,
    StringConstraints(max_length=10),
    _matching(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "must be a date YYYY-MM-DD"),
]
BranchId = Annotated[
    str, StringConstraints(max_length=5), _matching(r"[0-9]{5}", "must be five digits")
]
AcquisitionSequence = Annotated[
    str,
    StringConstraints(max_length=13),
    _matching(r"[0-9]{13}", "must be the branch id and the acquisition date YYYYMMDD"),
]
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]


def _strict_number(value: Any) -> Any:
    # JSON numbers only: 21 and 21.5 are both readings, "21" and true are not.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "must be a JSON number")
    if value != value or value in (float("inf"), float("-inf")):
        raise PydanticCustomError("finite_number", "must be a finite number")
    return float(value)


Number = Annotated[float, PlainValidator(_strict_number, json_schema_input_type=float)]


class FleetV1(TypedDict, total=False):
    """A fleet machine's state when it reported (000's data dictionary)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    status: Required[Literal["online", "offline"]]
    machine_type: Required[Literal["ATM", "CC", "PD", "PC"]]
    state: Required[BrazilState]
    branch_id: BranchId | None
    acquisition_sequence: AcquisitionSequence | None
    has_error: StrictBool | None
    machine_model: Text64 | None
    supplier: Text64 | None
    network_address: Text64 | None  # sensitive: HMAC token by default
    operating_system: Text32 | None
    os_version: Text32 | None
    acquisition_date: IsoDate | None


class FleetEventV1(TypedDict):
    """A fleet machine heartbeat or inventory record (schema `fleet/1`); device_id is its
    device_code."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    event_id: UUID
    device_id: DeviceCode
    event_type: Literal["heartbeat", "inventory"]
    occurred_at: Rfc3339
    fleet: FleetV1
    attributes: NotRequired[Attributes | None]


class StoreV1(TypedDict):
    """One door sensor's hourly count (001). A failed reading has status `failed` and no
    visits, so it is never mistaken for an hour without visitors."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    store: Text64
    sensor_id: Annotated[int, Strict(), Field(ge=0, le=10_000)]
    status: Literal["ok", "failed"]
    visits: NotRequired[Annotated[int, Strict(), Field(ge=0, le=10_000_000)] | None]
    store_opened_on: NotRequired[IsoDate | None]


class StoreEventV1(TypedDict):
    """Door-sensor traffic (schema `store/1`): occurred_at is the start of the counted hour."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    event_id: UUID
    device_id: DeviceId
    event_type: Literal["door_count"]
    occurred_at: Rfc3339
    store: StoreV1
    attributes: NotRequired[Attributes | None]


class ReadingV1(TypedDict):
    """One sensor reading (002): the value and the sensor's declared metadata."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    value: Number
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    location: NotRequired[Text128 | None]
    latitude: NotRequired[Annotated[float, Strict(), Field(ge=-90, le=90)] | None]
    longitude: NotRequired[Annotated[float, Strict(), Field(ge=-180, le=180)] | None]
    range_min: NotRequired[Finite | None]
    range_max: NotRequired[Finite | None]


class IotEventV1(TypedDict):
    """An IoT sensor reading (schema `iot/1`); device_id is the sensor id."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    event_id: UUID
    device_id: DeviceId
    event_type: Literal["reading"]
    occurred_at: Rfc3339
    reading: ReadingV1
    attributes: NotRequired[Attributes | None]


class StreamV1(TypedDict):
    """One value of a stream (004)."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    value: Number


class StreamEventV1(TypedDict):
    """A stream value (schema `stream/1`): event_id is the message id, device_id the stream."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    event_id: UUID
    device_id: DeviceId
    event_type: Literal["value"]
    occurred_at: Rfc3339
    stream: StreamV1
    attributes: NotRequired[Attributes | None]


# --- registry of versions ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventSchema:
    """How to validate and tokenize the events of one `schema_version`."""

    version: str
    adapter: TypeAdapter[Any]
    sensitive_fields: tuple[tuple[str, str], ...]
    description: str = ""


SCHEMAS: dict[str, EventSchema] = {
    "mobile/1": EventSchema(
        version="mobile/1",
        adapter=TypeAdapter(EventV1),
        sensitive_fields=SENSITIVE_FIELDS,
        description="Mobile device telemetry, first version.",
    ),
    "fleet/1": EventSchema(
        version="fleet/1",
        adapter=TypeAdapter(FleetEventV1),
        sensitive_fields=SENSITIVE_FIELDS,
        description="Fleet machines (ATM, CC, PD, PC): heartbeats and inventory records.",
    ),
    "store/1": EventSchema(
        version="store/1",
        adapter=TypeAdapter(StoreEventV1),
        sensitive_fields=SENSITIVE_FIELDS,
        description="Store door sensors: visitors counted per sensor and hour.",
    ),
    "iot/1": EventSchema(
        version="iot/1",
        adapter=TypeAdapter(IotEventV1),
        sensitive_fields=SENSITIVE_FIELDS,
        description="IoT sensor readings (temperature and others) with their unit and type.",
    ),
    "stream/1": EventSchema(
        version="stream/1",
        adapter=TypeAdapter(StreamEventV1),
        sensitive_fields=SENSITIVE_FIELDS,
        description="A value stream: one value per message.",
    ),
}

# The section each source's events carry, by schema family (the part before the '/').
SOURCE_SECTIONS: dict[str, str] = {
    "fleet": "fleet",
    "store": "store",
    "iot": "reading",
    "stream": "stream",
}


# --- the envelope -----------------------------------------------------------------------------


class Envelope(TypedDict):
    """A batch as parsed: events stay raw here and are validated one by one afterwards."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    sent_at: Rfc3339Utc
    schema_version: NotRequired[Text32]
    events: Annotated[list[Any], Field(min_length=1)]


ENVELOPE = TypeAdapter(Envelope)


class EnvelopeV1(TypedDict):
    """A batch of `mobile/1` events, as documented in OpenAPI."""

    __pydantic_config__ = _FORBID  # type: ignore[misc]
    sent_at: Annotated[AwareDatetime, Field(description="When the client sent the batch")]
    schema_version: NotRequired[
        Annotated[Literal["mobile/1"], Field(description="Event schema; default mobile/1")]
    ]
    events: Annotated[list[EventV1], Field(min_length=1)]


def envelope_json_schema() -> dict[str, Any]:
    """JSON schema of the request body with every `$ref` inlined (for `openapi_extra`)."""
    schema = TypeAdapter(EnvelopeV1).json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


# --- responses (documentation of what the route returns) ------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="Dotted path inside the event, or `event` for the whole")
    message: str


class EventResult(BaseModel):
    index: int = Field(description="0-based position of the event in the batch")
    event_id: str | None = Field(description="Canonical event id, when one could be read")
    status: Literal["accepted", "rejected"]
    errors: list[FieldError]


class IngestReceipt(BaseModel):
    batch_id: UUID
    object_key: str | None = Field(description="Raw object holding the accepted events")
    accepted: int
    rejected: int
    results: list[EventResult]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(description="Machine-readable reason, snake_case")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
