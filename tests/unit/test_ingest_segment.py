"""Segment messages mapped onto mobile/1 events, then validated like /v1/events."""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID, uuid5

import orjson
import pytest

from ingest_api.errors import (
    InvalidApiKeyError,
    InvalidEnvelopeError,
    MissingApiKeyError,
    PayloadTooLargeError,
)
from ingest_api.keys import segment_secret
from ingest_api.segment import NAMESPACE, to_event, validate_segment
from ingest_api.tokenize import Tokenizer
from lake_config.settings import Settings

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
TOKENIZER = Tokenizer(b"unit-test-key", "k1")
MESSAGE_ID = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


def track(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "messageId": MESSAGE_ID,
        "anonymousId": "install-1",
        "userId": "user-1",
        "event": "Song Played",
        "timestamp": "2024-05-01T12:00:00.250+02:00",
        "properties": {"title": "Intro", "seconds": 31},
        "integrations": {},
        "context": {
            "library": {"name": "analytics-python", "version": "2.4.0"},
            "app": {"name": "tlake-demo", "version": "1.2.3", "build": "77"},
            "os": {"name": "Android", "version": "14"},
            "device": {"id": "device-9", "model": "Pixel 8", "manufacturer": "Google"},
            "network": {"wifi": True, "cellular": False, "carrier": "T-Mobile"},
            "ip": "203.0.113.77",
            "locale": "en-US",
        },
    }
    message.update(overrides)
    return message


def test_track_maps_every_documented_field() -> None:
    event, errors = to_event(track(), source="mobile")

    assert errors == []
    assert event == {
        "event_id": MESSAGE_ID,
        "device_id": "device-9",
        "event_type": "Song Played",
        "occurred_at": "2024-05-01T12:00:00.250+02:00",
        "app": {"name": "tlake-demo", "version": "1.2.3"},
        "device": {
            "os": "Android",
            "os_version": "14",
            "model": "Pixel 8",
            "manufacturer": "Google",
        },
        "network": {"type": "wifi", "carrier": "T-Mobile", "ip": "203.0.113.77"},
        "attributes": {"title": "Intro", "seconds": 31},
    }


@pytest.mark.parametrize(
    ("context_device", "anonymous_id", "user_id", "expected"),
    [
        ({"id": "dev"}, "anon", "user", "dev"),
        ({}, "anon", "user", "anon"),
        ({}, None, "user", "user"),
        ({"id": ""}, "", "user", "user"),
    ],
)
def test_device_id_precedence_is_device_then_anonymous_then_user(
    context_device: dict[str, Any], anonymous_id: Any, user_id: Any, expected: str
) -> None:
    message = track(anonymousId=anonymous_id, userId=user_id, context={"device": context_device})

    event, _ = to_event(message, source="mobile")

    assert event["device_id"] == expected


def test_non_uuid_message_id_becomes_a_uuid5_of_source_and_id() -> None:
    event, _ = to_event(track(messageId="ajs-42"), source="mobile")
    other, _ = to_event(track(messageId="ajs-42"), source="web")

    assert event["event_id"] == str(uuid5(NAMESPACE, "mobile:ajs-42"))
    assert other["event_id"] != event["event_id"]
    upper, _ = to_event(track(messageId=MESSAGE_ID.upper()), source="mobile")
    assert upper["event_id"] == MESSAGE_ID  # a UUID is kept, in canonical form


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_and_screen_use_the_type_and_keep_name_and_category(kind: str) -> None:
    message = track(type=kind, name="Home", category="Nav", properties={"name": "Start"})
    del message["event"]

    event, errors = to_event(message, source="mobile")

    assert errors == []
    assert event["event_type"] == kind
    assert event["attributes"] == {"name": "Start", "category": "Nav"}  # properties win


def test_identify_stores_traits_as_attributes() -> None:
    message = track(type="identify", traits={"plan": "pro"})
    del message["event"], message["properties"]

    event, errors = to_event(message, source="mobile")

    assert (errors, event["event_type"], event["attributes"]) == ([], "identify", {"plan": "pro"})


@pytest.mark.parametrize(
    ("message", "only", "errors"),
    [
        (
            track(type="group"),
            None,
            [{"field": "type", "message": "must be one of identify, page, screen, track"}],
        ),
        (
            track(type="page"),
            "track",
            [{"field": "type", "message": "must be track on this endpoint"}],
        ),
    ],
)
def test_other_types_are_rejected_with_a_reason(
    message: dict[str, Any], only: str | None, errors: list[dict[str, str]]
) -> None:
    assert to_event(message, source="mobile", only=only)[1] == errors


def batch_body(*messages: Any, **extra: Any) -> bytes:
    return orjson.dumps({"batch": list(messages), "sentAt": "2024-05-01T10:00:05Z", **extra})


def test_batch_validates_each_message_and_quarantines_the_original() -> None:
    nested = track(messageId="m-2", properties={"cart": {"items": 2}})
    unknown = track(messageId="m-3", groupId="g-1")

    batch = validate_segment(
        batch_body(track(), nested, unknown, 17), SETTINGS, TOKENIZER, source="mobile"
    )

    assert [r["status"] for r in batch.results] == ["accepted", "rejected", "rejected", "rejected"]
    assert batch.results[1]["event_id"] == str(uuid5(NAMESPACE, "mobile:m-2"))
    assert batch.results[1]["errors"] == [
        {
            "field": "attributes.cart",
            "message": "must be a string, number, boolean or null (no objects or arrays)",
        }
    ]
    assert batch.results[2]["errors"] == [
        {"field": "groupId", "message": "Extra inputs are not permitted"}
    ]
    assert batch.results[3]["errors"] == [
        {"field": "event", "message": "Input should be a valid dictionary"}
    ]
    accepted = orjson.loads(batch.accepted[0])
    assert accepted["network"]["ip"] == TOKENIZER.token("203.0.113.77")
    assert accepted["occurred_at"] == "2024-05-01T10:00:00.250000Z"
    assert batch.sent_at is not None and batch.sent_at.isoformat() == "2024-05-01T10:00:05+00:00"
    quarantined = batch.rejected[0].payload  # the Segment message as sent, IP tokenized
    assert quarantined["properties"] == {"cart": {"items": 2}}
    assert quarantined["context"]["ip"] == TOKENIZER.token("203.0.113.77")
    assert b"203.0.113.77" not in batch.rejected[0].payload_json


def test_batch_context_applies_to_every_message() -> None:
    message = track()
    del message["context"]

    batch = validate_segment(
        batch_body(message, context={"ip": "198.51.100.1"}), SETTINGS, TOKENIZER, source="mobile"
    )

    assert orjson.loads(batch.accepted[0])["network"]["ip"] == TOKENIZER.token("198.51.100.1")
    assert orjson.loads(batch.accepted[0])["device_id"] == "install-1"


def test_single_message_takes_its_own_sent_at() -> None:
    body = orjson.dumps({**track(), "sentAt": None, "writeKey": "ignored"})

    batch = validate_segment(body, SETTINGS, TOKENIZER, source="mobile", message_type="track")

    assert (len(batch.accepted), batch.sent_at) == (1, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "body must be a JSON object with a batch of messages"),
        (orjson.dumps({"batch": []}), "body is not a Segment batch"),
        (orjson.dumps({"batch": [track()], "extra": 1}), "body is not a Segment batch"),
    ],
)
def test_a_body_that_is_not_a_batch_is_400(body: bytes, message: str) -> None:
    with pytest.raises(InvalidEnvelopeError, match=f"^{message}$"):
        validate_segment(body, SETTINGS, TOKENIZER, source="mobile")


def test_too_many_messages_is_413() -> None:
    body = batch_body(*[{}] * (SETTINGS.max_events_per_batch + 1))

    with pytest.raises(PayloadTooLargeError, match="exceeds max_events_per_batch=1000"):
        validate_segment(body, SETTINGS, TOKENIZER, source="mobile")


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def test_segment_secret_takes_basic_with_an_empty_password_or_bearer() -> None:
    assert segment_secret(basic("tlk_key:")) == "tlk_key"
    assert segment_secret("Bearer tlk_key") == "tlk_key"


@pytest.mark.parametrize("header", [basic("user:pw"), basic(":"), "Basic %%%"])
def test_segment_secret_refuses_other_basic_credentials(header: str) -> None:
    with pytest.raises(InvalidApiKeyError, match=r"^Basic credentials must be the write key as"):
        segment_secret(header)


@pytest.mark.parametrize("header", [None, "", "Token abc", "Bearer "])
def test_segment_secret_without_a_key_is_missing(header: str | None) -> None:
    with pytest.raises(MissingApiKeyError, match=r"^send the write key as the HTTP Basic user"):
        segment_secret(header)


def test_uuid5_namespace_never_changes() -> None:
    assert UUID("0c5b7f4e-2d1a-4f3b-8e6c-9a7d5e3f1b20") == NAMESPACE
