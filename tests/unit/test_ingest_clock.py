"""Device clocks: Segment's skew rule and the bound on future events, on every intake path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from ingest_api.batches import validate_batch
from ingest_api.clock import DeviceClock, skew
from ingest_api.errors import InvalidEnvelopeError
from ingest_api.segment import validate_segment
from ingest_api.tokenize import Tokenizer
from ingest_mqtt.bridge import Item, validate_items
from lake_config.settings import Settings

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]  # 60 s threshold, 300 s bound
TOKENIZER = Tokenizer(b"unit-test-key", "k1")
RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PLAIN = "occurred_at is more than max_future_s=300 s after received_at"
CORRECTED = (
    "occurred_at plus the device clock skew (received_at - sent_at) is more than "
    "max_future_s=300 s after received_at"
)


def at(seconds: float) -> datetime:
    """RECEIVED shifted by `seconds`."""
    return RECEIVED + timedelta(seconds=seconds)


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def event(occurred_at: datetime, n: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c{n}",
        "device_id": "device-1",
        "event_type": "heartbeat",
        "occurred_at": rfc3339(occurred_at),
        **overrides,
    }


# --- the rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent_at", "expected_s"),
    [
        (None, 0),  # unknown send time (MQTT, Segment without sentAt): nothing to correct
        (at(-60), 0),  # at the threshold: not corrected
        (at(60), 0),
        (at(-61), 61),  # the device clock is 61 s behind: its times move forward
        (at(3600), -3600),  # an hour ahead: its times move back
    ],
)
def test_skew_is_received_minus_sent_beyond_the_threshold_only(
    sent_at: datetime | None, expected_s: float
) -> None:
    assert skew(RECEIVED, sent_at, 60) == timedelta(seconds=expected_s)


@pytest.mark.parametrize(
    ("sent_at", "occurred_at", "rejected"),
    [
        (at(0), at(300), False),  # exactly max_future_s ahead: accepted
        (at(0), at(301), True),
        (None, at(301), True),
        (at(30), at(301), True),  # a 30 s skew is below the threshold: not corrected
        # The device clock runs an hour ahead: occurred_at + skew is 100 s after received_at.
        (at(3600), at(3700), False),
        (at(3600), at(3901), True),
        # The device clock runs a day behind: an event "yesterday" by its clock is now.
        (at(-86400), at(-86400 + 200), False),
        (at(-86400), at(-86400 + 301), True),
    ],
)
def test_effective_time_more_than_max_future_s_after_receipt_is_rejected(
    sent_at: datetime | None, occurred_at: datetime, rejected: bool
) -> None:
    bound = DeviceClock.for_settings(SETTINGS, RECEIVED).bound(sent_at)

    reason = bound.check(occurred_at)

    assert (reason is not None) == rejected
    if reason is not None:
        corrected = sent_at is not None and abs((RECEIVED - sent_at).total_seconds()) > 60
        assert reason == {"field": "occurred_at", "message": CORRECTED if corrected else PLAIN}


def test_client_timestamps_at_the_ends_of_time_never_overflow() -> None:
    clock = DeviceClock.for_settings(SETTINGS, RECEIVED)
    far_future = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    far_past = datetime(1, 1, 1, tzinfo=UTC)

    assert clock.bound(far_future).check(far_future) is None  # skew corrects it back to now
    assert clock.bound(far_past).check(far_future) is not None
    assert clock.bound(None).check(far_future) is not None


# --- every intake path --------------------------------------------------------------------------


def test_events_path_rejects_only_the_future_event_and_keeps_occurred_at_as_sent() -> None:
    doc = {
        "sent_at": rfc3339(at(-120)),  # device clock 2 min behind: corrected
        "events": [event(at(-180), 0), event(at(-120 + 301), 1)],
    }

    batch = validate_batch(orjson.dumps(doc), SETTINGS, TOKENIZER, received_at=RECEIVED)

    assert [r["status"] for r in batch.results] == ["accepted", "rejected"]
    assert batch.results[1]["errors"] == [{"field": "occurred_at", "message": CORRECTED}]
    assert batch.rejected[0].payload["occurred_at"] == doc["events"][1]["occurred_at"]
    # Stored as sent: silver applies the correction, the edge only rejects.
    assert orjson.loads(batch.accepted[0])["occurred_at"] == "2024-05-01T11:57:00Z"


def test_a_field_error_is_reported_instead_of_the_future_bound() -> None:
    doc = {"sent_at": rfc3339(RECEIVED), "events": [event(at(3600), battery={"level_pct": 140})]}

    batch = validate_batch(orjson.dumps(doc), SETTINGS, TOKENIZER, received_at=RECEIVED)

    assert [e["field"] for e in batch.results[0]["errors"]] == ["battery.level_pct"]


def test_the_bound_follows_the_settings() -> None:
    strict = Settings(_env_file=None, max_future_s=0, clock_skew_threshold_s=0)  # type: ignore[call-arg]
    doc = {"sent_at": rfc3339(RECEIVED), "events": [event(at(1))]}

    batch = validate_batch(orjson.dumps(doc), strict, TOKENIZER, received_at=RECEIVED)

    assert batch.results[0]["errors"] == [
        {
            "field": "occurred_at",
            "message": "occurred_at is more than max_future_s=0 s after received_at",
        }
    ]


def test_validate_batch_bounds_by_now_when_no_receipt_time_is_given() -> None:
    now = datetime.now(UTC)
    doc = {"sent_at": rfc3339(now), "events": [event(now), event(now + timedelta(days=1), 1)]}

    batch = validate_batch(orjson.dumps(doc), SETTINGS, TOKENIZER)

    assert [r["status"] for r in batch.results] == ["accepted", "rejected"]


def test_segment_path_applies_the_same_rule() -> None:
    message = {
        "type": "track",
        "messageId": "m-1",
        "anonymousId": "install-1",
        "event": "Song Played",
        "timestamp": rfc3339(at(400)),
    }
    past = {**message, "messageId": "m-2", "timestamp": rfc3339(at(-5))}
    body = orjson.dumps({"batch": [message, past], "sentAt": rfc3339(RECEIVED)})

    batch = validate_segment(body, SETTINGS, TOKENIZER, source="mobile", received_at=RECEIVED)

    assert [r["status"] for r in batch.results] == ["rejected", "accepted"]
    assert batch.results[0]["errors"] == [{"field": "occurred_at", "message": PLAIN}]
    assert batch.rejected[0].payload["timestamp"] == message["timestamp"]  # the message as sent


def test_segment_single_message_uses_its_own_sent_at_for_the_skew() -> None:
    message = {
        "type": "track",
        "messageId": "m-1",
        "anonymousId": "install-1",
        "event": "Song Played",
        "timestamp": rfc3339(at(3600)),  # a device clock an hour ahead ...
        "sentAt": rfc3339(at(3600 + 5)),  # ... says so with its sentAt
    }

    batch = validate_segment(
        orjson.dumps(message),
        SETTINGS,
        TOKENIZER,
        source="mobile",
        message_type="track",
        received_at=RECEIVED,
    )

    assert batch.results[0]["status"] == "accepted"


def test_mqtt_bridge_applies_the_same_rule_without_skew() -> None:
    future, now = event(at(301), 0), event(at(0), 1)
    clock = DeviceClock.for_settings(SETTINGS, RECEIVED)

    batch = validate_items(
        [Item(future, future), Item(now, now)],
        TOKENIZER,
        max_event_bytes=SETTINGS.max_event_bytes,
        clock=clock,
    )

    assert [r["status"] for r in batch.results] == ["rejected", "accepted"]
    assert batch.results[0]["errors"] == [{"field": "occurred_at", "message": PLAIN}]


# --- timestamps at the ends of time (an OverflowError was a 500) --------------------------------

OUT_OF_RANGE = "must lie between 1900-01-01 and 2199-12-31 (UTC)"


def test_an_envelope_sent_at_beyond_year_9999_in_utc_is_400() -> None:
    doc = {"sent_at": "9999-12-31T23:59:59-01:00", "events": [event(RECEIVED)]}

    with pytest.raises(InvalidEnvelopeError, match="body is not a batch envelope") as info:
        validate_batch(orjson.dumps(doc), SETTINGS, TOKENIZER, received_at=RECEIVED)
    assert info.value.details == {"errors": [{"field": "sent_at", "message": OUT_OF_RANGE}]}


def test_an_occurred_at_before_year_1_in_utc_rejects_that_event_only() -> None:
    early = {**event(RECEIVED, 1), "occurred_at": "0001-01-01T00:00:00+01:00"}
    doc = {"sent_at": rfc3339(RECEIVED), "events": [event(RECEIVED), early]}

    batch = validate_batch(orjson.dumps(doc), SETTINGS, TOKENIZER, received_at=RECEIVED)

    assert [r["status"] for r in batch.results] == ["accepted", "rejected"]
    assert batch.results[1]["errors"] == [{"field": "occurred_at", "message": OUT_OF_RANGE}]


@pytest.mark.parametrize("occurred_at", ["1899-12-31T23:59:59Z", "2200-01-01T00:00:00Z"])
def test_an_occurred_at_outside_what_the_lake_holds_rejects_that_event_only(
    occurred_at: str,
) -> None:
    odd = {**event(RECEIVED, 1), "occurred_at": occurred_at}
    doc = {"sent_at": rfc3339(RECEIVED), "events": [event(RECEIVED), odd]}

    batch = validate_batch(orjson.dumps(doc), SETTINGS, TOKENIZER, received_at=RECEIVED)

    assert [r["status"] for r in batch.results] == ["accepted", "rejected"]
    assert batch.results[1]["errors"] == [{"field": "occurred_at", "message": OUT_OF_RANGE}]


@pytest.mark.parametrize("message_type", [None, "track"])
def test_segment_sent_at_out_of_range_is_400(message_type: str | None) -> None:
    message = {"type": "track", "event": "x", "anonymousId": "a", "timestamp": rfc3339(RECEIVED)}
    sent_at = "0001-01-01T00:00:00+01:00"
    doc = (
        {"batch": [message], "sentAt": sent_at}
        if message_type is None
        else {**message, "sentAt": sent_at}
    )

    with pytest.raises(InvalidEnvelopeError) as info:
        validate_segment(
            orjson.dumps(doc), SETTINGS, TOKENIZER, source="m", message_type=message_type
        )
    assert info.value.details == {"errors": [{"field": "sentAt", "message": OUT_OF_RANGE}]}
