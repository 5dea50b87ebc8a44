"""The MQTT bridge against the real Mosquitto broker (TLAKE_MQTT_URL) and the test stack.

A persistent session is opened first (client id, clean_session=False, QoS 1 subscription), then
25 messages are published while nobody is connected: the broker keeps them for the session, and
the bridge, connecting with the same client id, receives them. Every test uses its own topic and
client id, and asserts on its own devices only.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from typer.testing import CliRunner

from ingest_mqtt.bridge import Bridge
from lake_config.registry import Registry
from lake_config.settings import Settings, get_settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import SILVER_DEVICE_EVENTS
from spark_jobs import pipeline
from tlake.cli import app

pytestmark = pytest.mark.integration


def _client(settings: Settings, client_id: str, *, clean: bool) -> mqtt.Client:
    url = urlsplit(settings.mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    return client


def _event(device: str, n: int, **extra: object) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": f"{device}-d{n % 3}",
        "event_type": "heartbeat",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
        "network": {"type": "wifi", "ip": f"10.0.0.{n}"},
        **extra,
    }


def test_messages_land_like_api_batches_are_acked_and_reach_silver(
    settings: Settings, store: ObjectStore, registry: Registry, spark: SparkSession
) -> None:
    run = secrets.token_hex(4)
    root, client_id, device = f"tlake-it/{run}", f"tlake-it-{run}", f"mq-{run}"
    session = _client(settings, client_id, clean=False)
    session.subscribe(f"{root}/#", qos=1)[1]
    time.sleep(0.5)  # the SUBACK; then nobody is connected while the messages are published
    session.loop_stop()
    session.disconnect()

    valid, invalid = [], []
    payloads: list[bytes] = []
    for n in range(25):
        if n in {3, 12}:
            bad = _event(device, n, battery={"level_pct": 150.0})
            invalid.append(bad["event_id"])
            payloads.append(orjson.dumps(bad))
        elif n == 7:
            payloads.append(b'{"event_id": "not json')
        elif n == 20:
            pair = [_event(device, n), _event(device, n + 100)]
            valid += [e["event_id"] for e in pair]
            payloads.append(orjson.dumps({"sent_at": "2026-11-23T10:00:00Z", "events": pair}))
        else:
            event = _event(device, n)
            valid.append(event["event_id"])
            payloads.append(orjson.dumps(event))
    publisher = _client(settings, f"{client_id}-pub", clean=True)
    for body in payloads:
        publisher.publish(f"{root}/mobile", body, qos=1).wait_for_publish(timeout=10)
    publisher.loop_stop()
    publisher.disconnect()

    result = Bridge(
        settings,
        store,
        registry,
        topic=f"{root}/#",
        client_id=client_id,
        flush_events=10,
        flush_seconds=60,  # flushes by count only: 10, 10, then the last 5 at --max-messages
        max_messages=25,
    ).run()

    assert (result.messages, result.accepted, result.rejected) == (25, 23, 3)
    assert len(result.objects) == 3
    with registry.connection() as conn:
        objects = conn.execute(
            "select source, status, event_count, batch_id from registry.raw_objects "
            "where object_key = any(%s)",
            (result.objects,),
        ).fetchall()
        quarantined = conn.execute(
            "select event_id, source, reasons, payload, component from registry.quarantine "
            "where batch_id = any(%s) order by quarantine_id",
            ([o["batch_id"] for o in objects],),
        ).fetchall()
    assert sorted((o["source"], o["status"], o["event_count"]) for o in objects) == [
        ("mobile", "pending", 6),  # messages 20-24, one an envelope of two events
        ("mobile", "pending", 8),  # messages 0-9 less an invalid event and the bad JSON
        ("mobile", "pending", 9),  # messages 10-19 less an invalid event
    ]
    assert {q["component"] for q in quarantined} == {"ingest_mqtt"}
    assert [(q["event_id"], q["source"], q["reasons"]) for q in quarantined] == [
        (
            invalid[0],
            "mobile",
            [
                {
                    "field": "battery.level_pct",
                    "message": "Input should be less than or equal to 100",
                }
            ],
        ),
        (
            None,
            "mobile",
            [
                {
                    "field": "message",
                    "message": "message is not valid JSON (line 1, column 23); "
                    "its payload is not kept",
                }
            ],
        ),
        (
            invalid[1],
            "mobile",
            [
                {
                    "field": "battery.level_pct",
                    "message": "Input should be less than or equal to 100",
                }
            ],
        ),
    ]
    assert quarantined[0]["payload"]["network"]["ip"].startswith(f"{settings.token_key_id}:")
    assert quarantined[1]["payload"] is None

    # Every message was acknowledged: the session has nothing left to deliver.
    leftovers: list[bytes] = []
    again = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    again.on_message = lambda _c, _u, msg: leftovers.append(msg.payload)
    url = urlsplit(settings.mqtt_url)
    again.connect(url.hostname or "127.0.0.1", url.port or 1883)
    again.loop_start()
    time.sleep(2)
    again.loop_stop()
    again.disconnect()
    assert leftovers == []

    pipeline.run_once(settings)
    silver = (
        spark.read.format("delta")
        .load(table_uri(settings, SILVER_DEVICE_EVENTS))
        .where(F.col("device_id").startswith(device))
        .select("event_id")
        .collect()
    )
    assert sorted(r.event_id for r in silver) == sorted(valid)


def test_the_command_fails_naming_the_broker_it_cannot_reach(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLAKE_MQTT_URL", "mqtt://user:secret@127.0.0.1:9")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["mqtt-bridge", "--topic", "nowhere/#"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    assert result.exit_code == 1
    assert "cannot reach the MQTT broker at mqtt://127.0.0.1:9" in result.output
    assert "secret" not in result.output
