"""Envelope errors (the whole request) and per-event results (one event at a time)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from ingest_api.batches import field_errors, parse_envelope, validate_batch, validate_events
from ingest_api.errors import (
    InvalidEnvelopeError,
    InvalidJsonError,
    PayloadTooLargeError,
    UnsupportedSchemaVersionError,
)
from ingest_api.schemas import SCHEMAS
from ingest_api.tokenize import MAX_PAYLOAD_DEPTH, Tokenizer
from lake_config.settings import Settings

TOKENIZER = Tokenizer(b"unit-test-key", "k1")
SECRET_IP = "198.51.100.99"
SECRET_SSID = "Home of the Smiths"


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4",
        "device_id": "device-1",
        "event_type": "heartbeat",
        "occurred_at": "2024-05-01T12:00:00Z",
        "network": {"type": "wifi", "ip": SECRET_IP, "ssid": SECRET_SSID},
        **overrides,
    }


def body(doc: Any) -> bytes:
    return orjson.dumps(doc)


def envelope(*events: Any, **extra: Any) -> dict[str, Any]:
    return {"sent_at": "2024-05-01T12:00:05+00:00", "events": list(events), **extra}


# --- the envelope -------------------------------------------------------------------------------


def test_parse_envelope_returns_the_envelope_and_default_schema() -> None:
    parsed, schema = parse_envelope(body(envelope(event())), max_events=10)

    assert schema is SCHEMAS["mobile/1"]
    assert parsed == {
        "sent_at": datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC),
        "schema_version": "mobile/1",
        "events": [event()],
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "body is not valid JSON (line 1, column 1)"),
        (b'{"sent_at": ', "body is not valid JSON (line 1, column 13)"),
        (b"\xff\xfe", "body is not valid JSON (line 1, column 1)"),
    ],
)
def test_body_that_is_not_json_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidJsonError, match=re.escape(message)):
        parse_envelope(raw, max_events=10)


@pytest.mark.parametrize(
    ("doc", "errors"),
    [
        ([event()], [{"field": "body", "message": "Input should be an object"}]),
        (
            {"events": [event()]},
            [{"field": "sent_at", "message": "Field required"}],
        ),
        (
            envelope(),
            [
                {
                    "field": "events",
                    "message": "List should have at least 1 item after validation, not 0",
                }
            ],
        ),
        (
            {"sent_at": "2024-05-01T12:00:00Z", "events": {"0": event()}},
            [{"field": "events", "message": "Input should be a valid list"}],
        ),
        (
            envelope(event(), sent_at="2024-05-01T12:00:00"),
            [
                {
                    "field": "sent_at",
                    "message": "must be an RFC 3339 timestamp with a time zone, "
                    "e.g. 2024-05-01T12:00:00Z",
                }
            ],
        ),
        (
            envelope(event(), device=SECRET_IP),
            [{"field": "device", "message": "Extra inputs are not permitted"}],
        ),
    ],
)
def test_body_that_is_not_the_envelope_is_refused_with_field_errors(
    doc: Any, errors: list[dict[str, str]]
) -> None:
    with pytest.raises(InvalidEnvelopeError, match="body") as info:
        parse_envelope(body(doc), max_events=10)

    assert info.value.code == "invalid_envelope"
    assert info.value.details == {"errors": errors}
    assert SECRET_IP not in orjson.dumps(info.value.body()).decode()


@pytest.mark.parametrize("version", ["mobile/2", 2, None, ["mobile/1"]])
def test_unknown_schema_version_is_refused(version: Any) -> None:
    supported = sorted(SCHEMAS)
    assert "mobile/1" in supported
    with pytest.raises(
        UnsupportedSchemaVersionError,
        match=re.escape(f"schema_version is not supported; supported: {', '.join(supported)}"),
    ) as info:
        parse_envelope(body(envelope(event(), schema_version=version)), max_events=10)
    assert info.value.status == 400
    assert info.value.details["supported"] == supported


def test_too_many_events_is_too_large() -> None:
    with pytest.raises(
        PayloadTooLargeError, match="batch of 4 events exceeds max_events_per_batch=3"
    ) as info:
        parse_envelope(body(envelope(*[{}] * 4)), max_events=3)
    assert info.value.details == {"limit": "max_events_per_batch", "max": 3}


# --- events ---------------------------------------------------------------------------------------


def validate(*events: Any, max_event_bytes: int = 32_000) -> Any:
    parsed, schema = parse_envelope(body(envelope(*events)), max_events=1000)
    return validate_events(parsed, schema, TOKENIZER, max_event_bytes=max_event_bytes)


def test_results_follow_request_order_with_reasons() -> None:
    batch = validate(
        event(), event(device_id=""), event(event_id="6F9619FF-8B86-D011-B42D-00C04FC964FF")
    )

    assert batch.results == [
        {
            "index": 0,
            "event_id": "0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4",
            "status": "accepted",
            "errors": [],
        },
        {
            "index": 1,
            "event_id": "0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4",
            "status": "rejected",
            "errors": [
                {"field": "device_id", "message": "String should have at least 1 character"}
            ],
        },
        {
            "index": 2,
            "event_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "status": "accepted",
            "errors": [],
        },
    ]
    assert batch.schema_version == "mobile/1"
    assert batch.sent_at == datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
    assert [r.index for r in batch.rejected] == [1]


def test_accepted_and_rejected_events_are_tokenized() -> None:
    batch = validate(event(), event(event_type=""))

    stored = orjson.loads(batch.accepted[0])
    assert stored["network"]["ip"] == TOKENIZER.token(SECRET_IP)
    assert stored["network"]["ssid"] == TOKENIZER.token(SECRET_SSID)
    rejected = batch.rejected[0]
    assert rejected.payload["network"]["ip"] == TOKENIZER.token(SECRET_IP)
    assert rejected.payload_json == orjson.dumps(rejected.payload)


def test_duplicate_event_ids_in_one_batch_are_all_accepted() -> None:
    batch = validate(event(), event(), event())

    assert len(batch.accepted) == 3
    assert not batch.rejected


def test_messages_never_quote_the_input() -> None:
    # The secret sits where pydantic would quote it if asked for `input`.
    wrong = event(
        device_id=SECRET_IP * 20,
        event_id=SECRET_IP * 5,  # too long to be echoed as the event's id
        occurred_at=SECRET_IP,
        battery={"level_pct": SECRET_IP},
        network={"type": SECRET_SSID, "ip": [SECRET_IP], "ssid": {"x": SECRET_SSID}},
        attributes={"k": [SECRET_IP]},
    )

    batch = validate(wrong, [SECRET_IP], SECRET_SSID)

    text = orjson.dumps(batch.results).decode()
    assert SECRET_IP not in text and SECRET_SSID not in text
    assert len(batch.rejected) == 3
    assert batch.rejected[0].payload["network"] == {
        "type": SECRET_SSID,  # not a sensitive field: kept as sent
        "ip": TOKENIZER.token(str([SECRET_IP])),
        "ssid": TOKENIZER.token(str({"x": SECRET_SSID})),
    }


def test_accepted_events_are_kept_as_their_stored_json() -> None:
    batch = validate(event(occurred_at="2024-05-01T14:00:00.25+02:00"))

    assert batch.accepted == [
        b'{"event_id":"0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4","device_id":"device-1",'
        b'"event_type":"heartbeat","occurred_at":"2024-05-01T12:00:00.250000Z",'
        b'"network":{"type":"wifi","ip":"' + TOKENIZER.token(SECRET_IP).encode() + b'",'
        b'"ssid":"' + TOKENIZER.token(SECRET_SSID).encode() + b'"}}'
    ]


@pytest.mark.parametrize(
    "sent",
    [
        "0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4",  # canonical: answered as sent
        "0D2B9C1E-3A4F-4B5C-8D6E-7F8091A2B3C4",
        "0d2b9c1e3a4f4b5c8d6e7f8091a2b3c4",
        "{0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4}",
        "urn:uuid:0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4",
    ],
)
def test_accepted_event_id_is_answered_and_stored_in_canonical_form(sent: str) -> None:
    batch = validate(event(event_id=sent))

    canonical = "0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4"
    assert [r["event_id"] for r in batch.results] == [canonical]
    assert orjson.loads(batch.accepted[0])["event_id"] == canonical


def test_digit_only_event_id_is_answered_as_sent() -> None:
    batch = validate(event(event_id="01234567-8901-4234-8567-890123456789"))

    assert batch.results[0]["event_id"] == "01234567-8901-4234-8567-890123456789"


def test_event_above_max_event_bytes_is_rejected_alone() -> None:
    big = event(attributes={"blob": "x" * 900})
    stored_size = len(validate(big).accepted[0])

    batch = validate(event(), big, max_event_bytes=stored_size - 1)

    assert [r["status"] for r in batch.results] == ["accepted", "rejected"]
    assert batch.results[1]["errors"] == [
        {"field": "event", "message": f"event exceeds max_event_bytes={stored_size - 1}"}
    ]
    assert batch.rejected[0].payload["attributes"] == {"blob": "x" * 900}


def test_validate_batch_applies_the_settings_limits() -> None:
    settings = Settings(max_event_bytes=500, max_events_per_batch=5)
    small, big = event(), event(attributes={"blob": "x" * 600})

    batch = validate_batch(body(envelope(small, big)), settings, TOKENIZER)

    assert [r["status"] for r in batch.results] == ["accepted", "rejected"]
    with pytest.raises(PayloadTooLargeError, match="max_events_per_batch=5"):
        validate_batch(body(envelope(*[small] * 6)), settings, TOKENIZER)


def test_event_nested_too_deeply_is_rejected_without_its_payload() -> None:
    deep: Any = SECRET_IP
    for _ in range(MAX_PAYLOAD_DEPTH + 10):
        deep = [deep]

    batch = validate(event(attributes={"k": deep}))

    rejection = batch.rejected[0]
    assert rejection.payload is None
    assert rejection.payload_json == b"null"
    assert rejection.reasons[-1] == {
        "field": "event",
        "message": f"event nests deeper than {MAX_PAYLOAD_DEPTH} levels; its payload is not kept",
    }


@pytest.mark.parametrize(
    ("raw", "event_id"),
    [
        (event(event_id="not-a-uuid", device_id=""), "not-a-uuid"),
        (event(event_id="x" * 65, device_id=""), None),
        (event(event_id=7), None),
        ({"event_id": "a\x00b"}, None),
        (17, None),
    ],
)
def test_rejected_event_id_is_kept_only_when_short_text(raw: Any, event_id: str | None) -> None:
    assert validate(raw).rejected[0].event_id == event_id


def test_field_paths_are_bounded_and_escape_nul() -> None:
    errors = [
        {"type": "extra_forbidden", "loc": ("k" * 300,), "msg": "Extra inputs are not permitted"},
        {"type": "extra_forbidden", "loc": ("a\x00b",), "msg": "Extra inputs are not permitted"},
        {"type": "string_too_short", "loc": ("attributes", "", "[key]"), "msg": "short"},
        {"type": "uuid_parsing", "loc": ("event_id",), "msg": "invalid character `x` at 0"},
    ]

    fields = field_errors(errors, "event")  # type: ignore[arg-type]

    assert fields == [
        {"field": "k" * 197 + "...", "message": "Extra inputs are not permitted"},
        {"field": "a\\u0000b", "message": "Extra inputs are not permitted"},
        {"field": "attributes[key]", "message": "short"},
        {"field": "event_id", "message": "Input should be a valid UUID"},
    ]
