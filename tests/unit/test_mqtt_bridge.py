"""The pure half of the MQTT bridge: sources from topics, messages into items, one validation."""

from __future__ import annotations

import uuid

import orjson

from ingest_api.tokenize import Tokenizer
from ingest_mqtt.bridge import Item, items, source_of, validate_items

TOKENIZER = Tokenizer(b"unit-test-key", "k1")


def _event(**extra: object) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": "dev-1",
        "event_type": "heartbeat",
        "occurred_at": "2026-11-23T10:00:00Z",
        **extra,
    }


def test_the_source_is_the_level_the_wildcard_matched_or_the_option() -> None:
    assert source_of("telemetry/mobile/dev-1", "telemetry/#", None) == ("mobile", None)
    assert source_of("a/b/fleet", "a/+/fleet", None) == ("b", None)
    assert source_of("telemetry/mobile", "telemetry/mobile", None) == ("mobile", None)
    assert source_of("telemetry/anything", "telemetry/#", "cars") == ("cars", None)
    assert source_of("telemetry/we ird", "telemetry/#", None) == (
        "mqtt",
        "source from the topic must be 1-64 letters, digits, '_', '.' or '-'",
    )


def test_a_message_is_one_event_or_an_envelope_and_anything_else_is_rejected_whole() -> None:
    one = _event()
    assert items(orjson.dumps(one), max_events=10) == [Item(one, one)]

    two = [_event(), _event()]
    envelope = orjson.dumps({"sent_at": "2026-11-23T10:00:00Z", "events": two})
    assert [i.event["event_id"] for i in items(envelope, max_events=10)] == [
        e["event_id"] for e in two
    ]

    (bad_json,) = items(b'{"event_id": ', max_events=10)
    assert (bad_json.payload, bad_json.reasons) == (
        None,
        [
            {
                "field": "message",
                "message": "message is not valid JSON (line 1, column 14); its payload is not kept",
            }
        ],
    )
    (not_object,) = items(b"[1, 2]", max_events=10)
    assert not_object.reasons == [
        {"field": "message", "message": "must be a JSON object: an event or an envelope"}
    ]
    (too_many,) = items(envelope, max_events=1)
    assert too_many.reasons == [
        {"field": "message", "message": "batch of 2 events exceeds max_events_per_batch=1"}
    ]
    (bad_envelope,) = items(orjson.dumps({"events": two}), max_events=10)
    assert bad_envelope.reasons == [{"field": "sent_at", "message": "Field required"}]


def test_items_are_validated_and_tokenized_like_an_api_batch() -> None:
    good = _event(network={"type": "wifi", "ip": "10.0.0.1"})
    bad = _event(battery={"level_pct": 101.0}, network={"ip": "10.0.0.2"})
    rejected_before = Item(None, None, [{"field": "message", "message": "not JSON"}])

    batch = validate_items(
        [Item(good, good), Item(bad, bad), rejected_before], TOKENIZER, max_event_bytes=32_000
    )

    (accepted,) = (orjson.loads(e) for e in batch.accepted)
    assert accepted["network"]["ip"] == TOKENIZER.token("10.0.0.1")
    assert [(r.index, r.reasons) for r in batch.rejected] == [
        (
            1,
            [
                {
                    "field": "battery.level_pct",
                    "message": "Input should be less than or equal to 100",
                }
            ],
        ),
        (2, [{"field": "message", "message": "not JSON"}]),
    ]
    assert batch.rejected[0].payload["network"]["ip"] == TOKENIZER.token("10.0.0.2")
