"""The mobile/1 event schema: what passes, what is refused and with which message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
from pydantic import ValidationError

from ingest_api.batches import field_errors
from ingest_api.schemas import (
    DEFAULT_SCHEMA_VERSION,
    SCHEMAS,
    envelope_json_schema,
)

MOBILE_V1 = SCHEMAS["mobile/1"]
EVENT_ID = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
RFC3339_MESSAGE = "must be an RFC 3339 timestamp with a time zone, e.g. 2024-05-01T12:00:00Z"


def minimal(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "device_id": "device-1",
        "event_type": "app_open",
        "occurred_at": "2024-05-01T12:00:00Z",
        **overrides,
    }


def full() -> dict[str, Any]:
    return minimal(
        app={"name": "shop", "version": "3.2.1"},
        device={"os": "Android", "os_version": "14", "model": "Pixel 8", "manufacturer": "Google"},
        battery={"level_pct": 55, "charging": True, "temperature_c": 31.5},
        network={
            "type": "wifi",
            "ip": "192.0.2.1",
            "ssid": "HomeNet",
            "carrier": None,
            "signal_dbm": -60,
        },
        session={"session_id": "s-1", "duration_ms": 1234},
        attributes={"screen": "home", "load_ms": 120, "ratio": 0.5, "cold": False, "x": None},
    )


def errors_of(raw: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        MOBILE_V1.adapter.validate_python(raw)
    return field_errors(info.value.errors(include_input=False), "event")


def test_minimal_event_is_valid_and_keeps_its_offset() -> None:
    event = MOBILE_V1.adapter.validate_python(minimal(occurred_at="2024-05-01T14:00:00.5+02:00"))

    assert event == {
        "event_id": UUID(EVENT_ID),
        "device_id": "device-1",
        "event_type": "app_open",
        "occurred_at": datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC),  # the same instant
    }
    # The schema keeps the offset as sent (batches writes it in UTC: test_ingest_batches);
    # written with orjson, the id is canonical.
    assert event["occurred_at"].utcoffset() == timedelta(hours=2)
    assert orjson.dumps(event) == (
        b'{"event_id":"6f9619ff-8b86-d011-b42d-00c04fc964ff","device_id":"device-1",'
        b'"event_type":"app_open","occurred_at":"2024-05-01T14:00:00.500000+02:00"}'
    )


def test_full_event_keeps_every_section() -> None:
    raw = full()

    event = MOBILE_V1.adapter.validate_python(raw)

    for section in ("app", "device", "battery", "network", "session", "attributes"):
        assert event[section] == raw[section]


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (minimal(surprise=1), "surprise", "Extra inputs are not permitted"),
        (minimal(app={"name": "a", "build": 7}), "app.build", "Extra inputs are not permitted"),
        (minimal(network={"mac": "x"}), "network.mac", "Extra inputs are not permitted"),
        (minimal(device_id=""), "device_id", "String should have at least 1 character"),
        (minimal(device_id="d" * 129), "device_id", "String should have at most 128 characters"),
        (minimal(event_type="e" * 65), "event_type", "String should have at most 64 characters"),
        (minimal(device_id="a\x00b"), "device_id", "must not contain control characters"),
        (minimal(event_type="open\n"), "event_type", "must not contain control characters"),
        (minimal(event_id="nope"), "event_id", "Input should be a valid UUID"),
        (minimal(occurred_at="2024-05-01T12:00:00"), "occurred_at", RFC3339_MESSAGE),
        (minimal(occurred_at="1714564800"), "occurred_at", RFC3339_MESSAGE),
        (minimal(occurred_at=1714564800), "occurred_at", RFC3339_MESSAGE),
        (minimal(occurred_at="2024-05-01"), "occurred_at", RFC3339_MESSAGE),
        (
            minimal(battery={"level_pct": 100.5}),
            "battery.level_pct",
            "Input should be less than or equal to 100",
        ),
        (
            minimal(battery={"level_pct": "50"}),
            "battery.level_pct",
            "Input should be a valid number",
        ),
        (minimal(battery={"charging": 1}), "battery.charging", "Input should be a valid boolean"),
        (
            minimal(network={"type": "5g"}),
            "network.type",
            "Input should be 'wifi', 'cellular', 'ethernet' or 'none'",
        ),
        (
            minimal(network={"signal_dbm": 3}),
            "network.signal_dbm",
            "Input should be less than or equal to 0",
        ),
        (
            minimal(network={"signal_dbm": -151}),
            "network.signal_dbm",
            "Input should be greater than or equal to -150",
        ),
        (
            minimal(network={"signal_dbm": -60.5}),
            "network.signal_dbm",
            "Input should be a valid integer",
        ),
        (
            minimal(network={"ip": "1" * 65}),
            "network.ip",
            "String should have at most 64 characters",
        ),
        (
            minimal(session={"duration_ms": -1}),
            "session.duration_ms",
            "Input should be greater than or equal to 0",
        ),
        (minimal(app="shop"), "app", "Input should be a valid dictionary"),
        (
            minimal(attributes={f"k{i}": i for i in range(51)}),
            "attributes",
            "Dictionary should have at most 50 items after validation, not more",
        ),
        (
            minimal(attributes={"k": {"nested": 1}}),
            "attributes.k",
            "must be a string, number, boolean or null (no objects or arrays)",
        ),
        (
            minimal(attributes={"k": [1, 2]}),
            "attributes.k",
            "must be a string, number, boolean or null (no objects or arrays)",
        ),
        (
            minimal(attributes={"k": "v" * 1025}),
            "attributes.k",
            "String should have at most 1024 characters",
        ),
        (
            minimal(attributes={"k" * 65: 1}),
            "attributes[key]",
            "String should have at most 64 characters",
        ),
        ([minimal()], "event", "Input should be a valid dictionary"),
    ],
)
def test_invalid_event_is_refused_with_field_and_message(
    raw: Any, field: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=r"1 validation error for EventV1"):
        MOBILE_V1.adapter.validate_python(raw)
    assert errors_of(raw) == [{"field": field, "message": message}]


def test_every_missing_required_field_is_named() -> None:
    assert errors_of({}) == [
        {"field": name, "message": "Field required"}
        for name in ("event_id", "device_id", "event_type", "occurred_at")
    ]


def test_optional_fields_and_sections_accept_null() -> None:
    event = MOBILE_V1.adapter.validate_python(minimal(app=None, network={"ip": None}))

    assert event["app"] is None
    assert event["network"] == {"ip": None}


def test_registry_maps_versions_to_schemas() -> None:
    assert DEFAULT_SCHEMA_VERSION in SCHEMAS
    assert MOBILE_V1.version == "mobile/1"
    assert MOBILE_V1.sensitive_fields[:2] == (("network", "ip"), ("network", "ssid"))


def test_envelope_json_schema_is_inline_and_documents_the_event() -> None:
    schema = envelope_json_schema()

    assert "$ref" not in orjson.dumps(schema).decode()
    assert schema["required"] == ["sent_at", "events"]
    item = schema["properties"]["events"]["items"]
    assert item["additionalProperties"] is False
    assert item["required"] == ["event_id", "device_id", "event_type", "occurred_at"]
    network = item["properties"]["network"]["anyOf"][0]
    assert network["properties"]["signal_dbm"]["anyOf"][0] == {
        "maximum": 0,
        "minimum": -150,
        "type": "integer",
    }
