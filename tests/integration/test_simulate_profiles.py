"""The origin-source profiles of `tlake simulate` against the real stack.

HTTP profiles post a short window through the real API (uvicorn, SeaweedFS, PostgreSQL) under a
key of their own source, with deliberately bad events and re-sent batches; the registry must
hold exactly the valid events, the quarantine exactly the bad ones with their reasons, and every
re-send must be answered from the idempotency store. iot-temperature publishes to the real
Mosquitto broker (TLAKE_MQTT_URL) and the real bridge lands what it published.
"""

from __future__ import annotations

import gzip
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ingest_api.schemas import SCHEMAS
from ingest_mqtt.bridge import Bridge
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from tlake.cli import app
from tlake.simulators import Profile, iot, profiles
from tlake.simulators.client import SimulationResult

pytestmark = pytest.mark.integration

SHORT: dict[Profile, dict[str, Any]] = {
    Profile.ATM_FLEET: {"devices": 80, "minutes": 15},
    Profile.STORE_TRAFFIC: {"hours": 6},
    Profile.STREAM: {"minutes": 2, "streams": 2},
}


def _valid(schema_version: str, event: Any) -> bool:
    try:
        SCHEMAS[schema_version].adapter.validate_python(event)
    except ValidationError:
        return False
    return True


def _objects(registry: Registry, source: str) -> list[dict[str, Any]]:
    with registry.connection() as conn:
        return conn.execute(
            "select object_key, event_count, batch_id from registry.raw_objects "
            "where source = %s order by object_key",
            (source,),
        ).fetchall()


def _quarantine(registry: Registry, source: str) -> list[dict[str, Any]]:
    with registry.connection() as conn:
        return conn.execute(
            "select event_id, reasons, payload, component from registry.quarantine "
            "where source = %s order by quarantine_id",
            (source,),
        ).fetchall()


def _lines(store: ObjectStore, object_key: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in gzip.decompress(store.get(object_key)).splitlines()]


@pytest.mark.parametrize("profile", list(SHORT))
def test_a_profile_lands_its_valid_events_and_quarantines_its_bad_ones(
    profile: Profile,
    api_url: str,
    settings: Settings,
    registry: Registry,
    store: ObjectStore,
) -> None:
    source = f"{profiles.SOURCES[profile]}-it-{secrets.token_hex(3)}"
    key = registry.create_key(source)
    options = profiles.Options(seed=22, bad_rate=0.05, resend_rate=0.5, **SHORT[profile])
    now = datetime.now(UTC)
    planned = [b for b in profiles.http_batches(profile, options, now=now) if not b.resent]
    schema_version = planned[0].envelope["schema_version"]
    events = [e for b in planned for e in b.envelope["events"]]
    valid = [e for e in events if _valid(schema_version, e)]
    bad = [e for e in events if not _valid(schema_version, e)]
    assert bad, "the window is too short to hold a bad event at this seed"

    result = profiles.run(
        profile,
        options,
        api_url=api_url,
        api_key=key,
        mqtt_url=settings.mqtt_url,
        concurrency=3,
        now=now,
    )

    assert isinstance(result, SimulationResult)
    assert result.batches == len(planned) + result.resent_batches
    assert result.resent_batches > 0
    assert result.replayed == result.resent_batches  # every re-send answered from the store
    assert (result.accepted, result.rejected) == (len(valid), len(bad))
    assert set(result.statuses) <= {202, 422}

    objects = _objects(registry, source)
    assert sum(o["event_count"] for o in objects) == len(valid)
    landed = [line for o in objects for line in _lines(store, o["object_key"])]
    assert {line["schema_version"] for line in landed} == {schema_version}
    assert sorted(line["event"]["event_id"] for line in landed) == sorted(
        e["event_id"] for e in valid
    )

    quarantined = _quarantine(registry, source)
    assert sorted(q["event_id"] for q in quarantined) == sorted(e["event_id"] for e in bad)
    assert {q["component"] for q in quarantined} == {"ingest_api"}
    for q in quarantined:
        assert q["reasons"] and all(set(r) == {"field", "message"} for r in q["reasons"])

    if profile is Profile.ATM_FLEET:  # network_address is sensitive: a token, wherever it lands
        token = f"{settings.token_key_id}:"
        addresses = [line["event"]["fleet"].get("network_address") for line in landed]
        addresses += [
            (q["payload"] or {}).get("fleet", {}).get("network_address") for q in quarantined
        ]
        assert [a for a in addresses if a is not None and not a.startswith(token)] == []
        assert sum(a is not None for a in addresses) == len(events)


def test_iot_temperature_goes_through_mosquitto_and_the_bridge(
    settings: Settings, store: ObjectStore, registry: Registry
) -> None:
    run = secrets.token_hex(4)
    prefix, client_id = f"tlake-it/{run}", f"tlake-it-iot-{run}"
    url = urlsplit(settings.mqtt_url)
    # The bridge's persistent session exists before anything is published, as in production.
    session = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )
    session.connect(url.hostname or "127.0.0.1", url.port or 1883)
    session.loop_start()
    session.subscribe(f"{prefix}/#", qos=1)
    time.sleep(0.5)
    session.loop_stop()
    session.disconnect()

    options = profiles.Options(seed=4, minutes=1, bad_rate=0.05, topic_prefix=prefix)
    published = profiles.run(
        Profile.IOT_TEMPERATURE,
        options,
        api_url="http://unused",
        api_key=None,
        mqtt_url=settings.mqtt_url,
    )
    assert isinstance(published, iot.PublishResult)
    sensors = iot.load_sensors()
    assert published.messages == 60 * len(sensors)
    assert published.topics == {f"{prefix}/iot/{s['id']}" for s in sensors}
    assert published.bad_events > 0

    landed = Bridge(
        settings,
        store,
        registry,
        topic=f"{prefix}/#",
        client_id=client_id,
        flush_events=100,
        flush_seconds=60,
        max_messages=published.messages,
    ).run()

    good = published.messages - published.bad_events
    assert (landed.messages, landed.accepted, landed.rejected) == (
        published.messages,
        good,
        published.bad_events,
    )
    lines = [line for key in landed.objects for line in _lines(store, key)]
    assert len(lines) == good
    assert {(line["source"], line["schema_version"]) for line in lines} == {("iot", "iot/1")}
    assert {line["event"]["device_id"] for line in lines} == {s["id"] for s in sensors}
    with registry.connection() as conn:
        quarantined = conn.execute(
            "select q.source, q.component, q.reasons from registry.quarantine q "
            "join registry.raw_objects o using (batch_id) where o.object_key = any(%s)",
            (landed.objects,),
        ).fetchall()
    assert len(quarantined) == published.bad_events
    assert {(q["source"], q["component"]) for q in quarantined} == {("iot", "ingest_mqtt")}
    assert all(q["reasons"] for q in quarantined)


def test_the_command_runs_a_profile_and_prints_its_summary(api_url: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--profile",
            "store-traffic",
            "--hours",
            "2",
            "--bad-rate",
            "0.1",
            "--resend-rate",
            "0",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "(created a write key for source 'store')" in result.output
    assert "store-traffic: sent 78 events in" in result.output
    assert "rejected" in result.output and "statuses 202=" in result.output


def test_the_command_refuses_an_option_of_another_profile(api_url: str) -> None:
    result = CliRunner().invoke(app, ["simulate", "--profile", "stream", "--hours", "3"])

    assert result.exit_code == 1
    assert "--hours applies to store-traffic only, not stream" in result.output
