"""The pure half of quarantine replay: re-validation keeps tokens as they are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest_api.tokenize import SENSITIVE_FIELDS, Tokenizer
from recovery.replay import (
    QuarantinedEvent,
    not_replayable,
    replay_batch_id,
    validate_again,
    with_placeholders,
)

TOKENIZER = Tokenizer(b"unit-test-key", "k1")
IP_TOKEN = TOKENIZER.token("10.1.2.3")
SSID_TOKEN = TOKENIZER.token("home-wifi")
RECEIVED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _event(**extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": "dev-1",
        "event_type": "heartbeat",
        "occurred_at": "2026-11-23T09:59:00Z",
        **extra,
    }


def _row(n: int, payload: Any, reasons: Any = None, payload_text: str | None = None):
    return QuarantinedEvent(
        quarantine_id=n,
        batch_id=uuid.UUID(int=1),
        source="mobile",
        event_index=n,
        event_id=None,
        component="ingest_api",
        reasons=reasons or [{"field": "event_type", "message": "unknown event type"}],
        payload=payload,
        payload_text=payload_text,
        received_at=RECEIVED,
        replayed_at=None,
        replayed_object_key=None,
    )


def test_tokens_are_swapped_for_placeholders_and_back_never_tokenized_twice() -> None:
    kept = _event(network={"type": "wifi", "ip": IP_TOKEN, "ssid": SSID_TOKEN})
    raw_value = _event(network={"type": "wifi", "ip": "192.168.0.9"})
    still_bad = _event(battery={"level_pct": 150.0})

    batch, passed = validate_again(
        [_row(1, kept), _row(2, raw_value), _row(3, still_bad)], TOKENIZER, max_event_bytes=32_000
    )

    assert [r.quarantine_id for r in passed] == [1, 2]
    first, second = (orjson.loads(e) for e in batch.accepted)
    assert first["network"] == {"type": "wifi", "ip": IP_TOKEN, "ssid": SSID_TOKEN}
    assert second["network"] == {"type": "wifi", "ip": TOKENIZER.token("192.168.0.9")}
    assert (batch.rejected, [r["status"] for r in batch.results]) == ([], ["accepted"] * 2)
    assert batch.sent_at is None


def test_placeholders_fit_the_schema_and_leave_the_stored_payload_alone() -> None:
    payload = {"network": {"ip": IP_TOKEN, "ssid": None}, "battery": {"level_pct": 3.0}}
    tokens: dict[str, str] = {}

    swapped = with_placeholders(payload, SENSITIVE_FIELDS, tokens)

    assert swapped == {
        "network": {"ip": "replay-token-0", "ssid": None},
        "battery": payload["battery"],
    }
    assert tokens == {"replay-token-0": IP_TOKEN}
    assert payload["network"]["ip"] == IP_TOKEN
    assert with_placeholders(["not", "an", "object"], SENSITIVE_FIELDS, tokens) == [
        "not",
        "an",
        "object",
    ]


def test_events_rejected_for_a_tokenized_field_or_without_payload_are_not_replayable() -> None:
    ip_reason = [{"field": "network.ip", "message": "Input should be a valid string"}]

    assert not_replayable(_row(1, _event(), ip_reason), SENSITIVE_FIELDS) == (
        "rejected for network.ip, a tokenized field: the original value is gone"
    )
    assert not_replayable(_row(2, None), SENSITIVE_FIELDS) == "its payload was not kept"
    assert not_replayable(_row(3, None, payload_text="{nope"), SENSITIVE_FIELDS) == (
        "its payload_text is not JSON"
    )
    assert not_replayable(_row(4, None, payload_text='{"a": "\\u0000"}'), SENSITIVE_FIELDS) is None
    assert not_replayable(_row(5, _event()), SENSITIVE_FIELDS) is None


def test_the_same_rows_always_replay_under_the_same_batch_id() -> None:
    assert replay_batch_id([3, 1, 2]) == replay_batch_id([1, 2, 3])
    assert replay_batch_id([1, 2]) != replay_batch_id([1, 2, 3])
