"""Future events are refused at the edge, by one rule, on every intake path, for real.

`/v1/events` and `/v1/batch` against the running API, and the MQTT bridge against the real
broker: an event whose occurred_at (corrected by Segment's skew rule) lies more than
`max_future_s` after its receipt is quarantined with a reason on `occurred_at` that never quotes
the value; the rest of its batch lands, with occurred_at stored as the client sent it.
"""

from __future__ import annotations

import base64
import gzip
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest

from ingest_mqtt.bridge import Bridge
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore

pytestmark = pytest.mark.integration


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mobile_event(occurred_at: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": "clock-device",
        "event_type": "heartbeat",
        "occurred_at": stamp(occurred_at),
    }


def quarantined(registry: Registry, batch_id: str) -> list[dict[str, Any]]:
    with registry.connection() as conn:
        return conn.execute(
            "select event_index, component, reasons, payload from registry.quarantine "
            "where batch_id = %s order by event_index",
            (batch_id,),
        ).fetchall()


def stored_events(store: ObjectStore, object_key: str) -> list[dict[str, Any]]:
    lines = gzip.decompress(store.get(object_key)).splitlines()
    return [orjson.loads(line)["event"] for line in lines]


def plain_reason(settings: Settings) -> dict[str, str]:
    return {
        "field": "occurred_at",
        "message": f"occurred_at is more than max_future_s={settings.max_future_s:g} s after "
        "received_at",
    }


def test_events_route_quarantines_a_future_event_and_lands_the_rest(
    api_url: str, write_key: str, registry: Registry, store: ObjectStore, settings: Settings
) -> None:
    now = datetime.now(UTC)
    # A device clock two hours behind: its "now" is two hours ago, its "in 2 h" is now.
    behind = timedelta(hours=2)
    on_time = mobile_event(now - behind)
    corrected_in_range = mobile_event(now - behind + timedelta(seconds=60))
    future = mobile_event(now - behind + timedelta(seconds=settings.max_future_s + 120))
    body = {"sent_at": stamp(now - behind), "events": [on_time, corrected_in_range, future]}

    response = httpx.post(
        f"{api_url}/v1/events",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {write_key}"},
    )

    assert response.status_code == 202, response.text
    receipt = response.json()
    assert [r["status"] for r in receipt["results"]] == ["accepted", "accepted", "rejected"]
    reason = {
        "field": "occurred_at",
        "message": "occurred_at plus the device clock skew (received_at - sent_at) is more than "
        f"max_future_s={settings.max_future_s:g} s after received_at",
    }
    assert receipt["results"][2]["errors"] == [reason]
    assert future["occurred_at"] not in response.text
    [row] = quarantined(registry, receipt["batch_id"])
    assert (row["event_index"], row["component"], row["reasons"]) == (2, "ingest_api", [reason])
    assert row["payload"]["occurred_at"] == future["occurred_at"]
    # Stored as sent: the skew is silver's to apply.
    landed = stored_events(store, receipt["object_key"])
    assert [datetime.fromisoformat(e["occurred_at"]) for e in landed] == [
        datetime.fromisoformat(e["occurred_at"]) for e in (on_time, corrected_in_range)
    ]


def test_segment_batch_quarantines_a_future_message(
    api_url: str, write_key: str, registry: Registry, settings: Settings
) -> None:
    now = datetime.now(UTC)
    message = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "anonymousId": "install-clock",
        "event": "Opened",
        "timestamp": stamp(now + timedelta(seconds=settings.max_future_s + 60)),
    }
    past = {**message, "messageId": str(uuid.uuid4()), "timestamp": stamp(now)}
    basic = base64.b64encode(f"{write_key}:".encode()).decode()

    response = httpx.post(
        f"{api_url}/v1/batch",
        content=orjson.dumps({"batch": [message, past], "sentAt": stamp(now)}),
        headers={"Authorization": f"Basic {basic}"},
    )

    assert response.status_code == 202, response.text
    receipt = response.json()
    assert [r["status"] for r in receipt["results"]] == ["rejected", "accepted"]
    assert receipt["results"][0]["errors"] == [plain_reason(settings)]
    [row] = quarantined(registry, receipt["batch_id"])
    assert row["payload"]["timestamp"] == message["timestamp"]  # the Segment message as sent


def test_mqtt_bridge_quarantines_a_future_event(
    settings: Settings, store: ObjectStore, registry: Registry
) -> None:
    run = secrets.token_hex(4)
    root, client_id = f"tlake-clock/{run}", f"tlake-clock-{run}"
    url = urlsplit(settings.mqtt_url)
    session = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )
    session.connect(url.hostname or "127.0.0.1", url.port or 1883)
    session.loop_start()
    session.subscribe(f"{root}/#", qos=1)
    time.sleep(0.5)  # the SUBACK; the broker then keeps the messages for this session
    session.loop_stop()
    session.disconnect()
    now = datetime.now(UTC)
    future = mobile_event(now + timedelta(days=1))
    present = mobile_event(now - timedelta(seconds=5))
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-pub")
    publisher.connect(url.hostname or "127.0.0.1", url.port or 1883)
    publisher.loop_start()
    for doc in (future, present):
        publisher.publish(f"{root}/mobile", orjson.dumps(doc), qos=1).wait_for_publish(timeout=10)
    publisher.loop_stop()
    publisher.disconnect()

    result = Bridge(
        settings, store, registry, topic=f"{root}/#", client_id=client_id, max_messages=2
    ).run()

    assert (result.messages, result.accepted, result.rejected) == (2, 1, 1)
    with registry.connection() as conn:
        row = conn.execute(
            "select component, reasons, payload from registry.quarantine where event_id = %s",
            (future["event_id"],),
        ).fetchone()
    assert row is not None
    assert (row["component"], row["reasons"]) == ("ingest_mqtt", [plain_reason(settings)])
    assert [e["event_id"] for e in stored_events(store, result.objects[0])] == [present["event_id"]]
