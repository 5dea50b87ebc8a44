"""The origin-source profiles of `tlake simulate`: valid events, deliberate bad ones, seeds, the
origin documents' rules (store formula, fleet data dictionary), batching and the HTTP client."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from ingest_api.batches import parse_envelope
from ingest_api.schemas import BRAZIL_STATES, SCHEMAS
from ingest_api.tokenize import Tokenizer
from ingest_mqtt.bridge import items, validate_items
from tlake.errors import SimulationError, SimulatorConfigError
from tlake.simulators import Profile, batching, fleet, iot, profiles, stores, stream
from tlake.simulators.client import Batch, deliver

NOW = datetime(2026, 11, 23, 12, 7, 30, tzinfo=UTC)
HTTP = [Profile.ATM_FLEET, Profile.STORE_TRAFFIC, Profile.STREAM]
SMALL: dict[Profile, dict[str, Any]] = {
    Profile.ATM_FLEET: {"devices": 120, "minutes": 30},
    Profile.STORE_TRAFFIC: {"hours": 12},
    Profile.STREAM: {"minutes": 3, "streams": 3},
    Profile.IOT_TEMPERATURE: {"minutes": 2},
}
SCHEMA = {
    Profile.ATM_FLEET: "fleet/1",
    Profile.STORE_TRAFFIC: "store/1",
    Profile.STREAM: "stream/1",
    Profile.IOT_TEMPERATURE: "iot/1",
}


def _batches(profile: Profile, **options: Any) -> list[Batch]:
    opts = profiles.Options(**{"resend_rate": 0.0, **SMALL[profile], **options})
    return list(profiles.http_batches(profile, opts, now=NOW, run_id="run"))


def _events(profile: Profile, **options: Any) -> list[dict[str, Any]]:
    if profile is Profile.IOT_TEMPERATURE:
        opts = profiles.Options(**{**SMALL[profile], **options})
        return [orjson.loads(m.payload)["events"][0] for m in profiles.mqtt_messages(opts, now=NOW)]
    return [e for b in _batches(profile, **options) for e in b.envelope["events"]]


def _valid(profile: Profile, event: dict[str, Any]) -> bool:
    try:
        SCHEMAS[SCHEMA[profile]].adapter.validate_python(event)
    except ValidationError:
        return False
    return True


# --- every profile --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [*HTTP, Profile.IOT_TEMPERATURE])
def test_every_event_validates_against_its_schema(profile: Profile) -> None:
    events = _events(profile)
    assert events
    invalid = [e for e in events if not _valid(profile, e)]
    assert invalid == []
    assert all(e["occurred_at"] <= "2026-11-23T12:07:30.000Z" for e in events)


@pytest.mark.parametrize("profile", HTTP)
def test_envelopes_parse_as_the_api_parses_them(profile: Profile) -> None:
    for batch in _batches(profile):
        envelope, schema = parse_envelope(orjson.dumps(batch.envelope), max_events=1000)
        assert schema.version == SCHEMA[profile]
        assert 1 <= len(envelope["events"]) <= profiles.BATCH_SIZE


@pytest.mark.parametrize("profile", [*HTTP, Profile.IOT_TEMPERATURE])
def test_bad_events_are_the_spoiled_ones_and_each_fails_validation(profile: Profile) -> None:
    clean = _events(profile)
    dirty = _events(profile, bad_rate=0.2)
    assert len(clean) == len(dirty)
    spoiled = [d for c, d in zip(clean, dirty, strict=True) if c != d]
    kept = [d for c, d in zip(clean, dirty, strict=True) if c == d]
    assert 0.12 < len(spoiled) / len(dirty) < 0.28, len(spoiled) / len(dirty)
    assert not any(_valid(profile, e) for e in spoiled)
    assert all(_valid(profile, e) for e in kept)


@pytest.mark.parametrize("profile", [*HTTP, Profile.IOT_TEMPERATURE])
def test_same_seed_same_events_other_seed_other_events(profile: Profile) -> None:
    assert _events(profile, seed=11, bad_rate=0.1) == _events(profile, seed=11, bad_rate=0.1)
    assert _events(profile, seed=11) != _events(profile, seed=12)


@pytest.mark.parametrize("profile", HTTP)
def test_each_batch_has_its_own_key_and_a_resend_repeats_it_exactly(profile: Profile) -> None:
    out = _batches(profile, resend_rate=0.3)
    firsts = [b for b in out if not b.resent]
    resent = [b for b in out if b.resent]
    assert resent, "expected re-sends at resend_rate=0.3"
    keys = [b.idempotency_key for b in firsts]
    assert len(set(keys)) == len(keys)
    assert all(k and re.fullmatch(r"[\x21-\x7e]{1,255}", k) for k in keys)
    for b in resent:
        assert out[out.index(b) - 1] == dataclasses.replace(b, resent=False)


def test_sent_at_is_the_clock_when_the_batch_is_made_not_the_simulated_time() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    flushes = [[{"event_id": "x"}] * 3, [{"event_id": "y"}]]
    out = list(
        batching.batches(
            flushes,
            schema_version="stream/1",
            spoil=stream.spoil,
            seed=1,
            batch_size=2,
            clock=lambda: at,
            run_id="r",
        )
    )
    assert [len(b.envelope["events"]) for b in out] == [2, 1, 1]
    assert {b.envelope["sent_at"] for b in out} == {"2030-01-01T00:00:00.000Z"}
    assert [b.idempotency_key for b in out] == ["r-000000", "r-000001", "r-000002"]


# --- options ---------------------------------------------------------------------------------


def test_an_option_the_profile_does_not_take_is_refused_by_name() -> None:
    with pytest.raises(SimulatorConfigError, match=r"--hours applies to store-traffic only"):
        profiles.check(Profile.ATM_FLEET, profiles.Options(hours=3))
    with pytest.raises(SimulatorConfigError, match=r"--devices applies to atm-fleet, mobile only"):
        profiles.check(Profile.STREAM, profiles.Options(devices=3))
    with pytest.raises(SimulatorConfigError, match=r"--bad-rate must be between 0.0 and 1.0"):
        profiles.check(Profile.STREAM, profiles.Options(bad_rate=1.5))
    with pytest.raises(SimulatorConfigError, match=r"--topic-prefix must be a topic without"):
        profiles.check(Profile.IOT_TEMPERATURE, profiles.Options(topic_prefix="a/#"))


# --- atm-fleet (000) ------------------------------------------------------------------------


PREFIX = {"ATM": "AT", "CC": "CC", "PD": "PD", "PC": "PC"}


def test_fleet_inventory_follows_the_data_dictionary() -> None:
    flushes = list(fleet.flushes(500, 30, seed=4, now=NOW))
    inventory = flushes[0]
    assert len(inventory) == 500
    assert {e["event_type"] for e in inventory} == {"inventory"}
    assert len({e["device_id"] for e in inventory}) == 500
    for e in inventory:
        f = e["fleet"]
        assert re.fullmatch(r"(AT|CC|PD|PC)[0-9]{6}", e["device_id"])
        assert e["device_id"][:2] == PREFIX[f["machine_type"]]
        assert re.fullmatch(r"[0-9]{5}", f["branch_id"])
        acquired = date.fromisoformat(f["acquisition_date"])
        assert f["acquisition_sequence"] == f["branch_id"] + f"{acquired:%Y%m%d}"
        assert acquired <= NOW.date()
        assert f["state"] in BRAZIL_STATES
        address = ipaddress.ip_address(f["network_address"])
        assert address.version == 4 and address.is_private
        assert f["operating_system"] in {"Ubuntu", "Windows"}
        assert re.fullmatch(r"[0-9]+\.[0-9]", f["os_version"])
        assert f["machine_model"] and f["supplier"]
        assert f["status"] == "online" and f["has_error"] is False
    # A branch is in one state.
    states = {(e["fleet"]["branch_id"], e["fleet"]["state"]) for e in inventory}
    assert len(states) == len({b for b, _ in states})
    assert {e["fleet"]["machine_type"] for e in inventory} == set(PREFIX)


def _online_share(snapshot: list[dict[str, Any]], devices: int) -> float:
    return sum(e["fleet"]["status"] == "online" for e in snapshot) / devices


def test_fleet_heartbeats_one_per_reporting_device_in_each_snapshot_window() -> None:
    devices = 400
    flushes = list(fleet.flushes(devices, 60, seed=5, snapshot_minutes=5, now=NOW))
    start = datetime(2026, 11, 23, 11, 5, tzinfo=UTC)  # 12 windows ending at 12:05 <= NOW
    assert min(e["occurred_at"] for e in flushes[0]) >= "2026-11-23T11:05:00"
    record = {e["device_id"]: e["fleet"] for e in flushes[0]}
    snapshots = flushes[1:]
    assert len(snapshots) == 12
    for k, snapshot in enumerate(snapshots):
        lo = start + timedelta(minutes=5 * k)
        assert {e["event_type"] for e in snapshot} == {"heartbeat"}
        assert len({e["device_id"] for e in snapshot}) == len(snapshot)
        for e in snapshot:
            at = datetime.fromisoformat(e["occurred_at"])
            assert lo <= at < lo + timedelta(minutes=5)
            # The whole record every time (gold keeps a machine's latest values).
            status = {k: e["fleet"][k] for k in ("status", "has_error")}
            assert e["fleet"] == {**record[e["device_id"]], **status}
        assert 0.9 < _online_share(snapshot, devices) <= 1.0
    statuses = Counter(e["fleet"]["status"] for s in snapshots for e in s)
    assert statuses["offline"] > 0
    assert 0 < sum(e["fleet"]["has_error"] for s in snapshots for e in s) < 0.05 * statuses.total()


def _drops(snapshots: list[list[dict[str, Any]]], devices: int) -> list[float]:
    shares = [_online_share(s, devices) for s in snapshots]
    return [1 - shares[i] / (sum(shares[i - 4 : i]) / 4) for i in range(4, len(shares))]


def test_fleet_outage_silences_a_share_so_the_online_monitor_alerts() -> None:
    devices = 1000
    calm = list(fleet.flushes(devices, 60, seed=6, now=NOW))[1:]
    outage = list(
        fleet.flushes(devices, 60, seed=6, outage_after_minutes=30, outage_share=0.4, now=NOW)
    )[1:]
    assert max(_drops(calm, devices)) < 0.15
    drops = _drops(outage, devices)
    assert drops[6 - 4] > 0.15  # the 7th window (minute 30) is the first one of the outage
    assert max(drops[: 6 - 4]) < 0.15
    # The outage only removes reports: the same seed's other reports are unchanged.
    for before, during in zip(calm, outage, strict=True):
        assert all(e in before for e in during)
    silent = {e["device_id"] for e in calm[-1]} - {e["device_id"] for e in outage[-1]}
    assert 0.35 < len(silent) / devices < 0.45


# --- store-traffic (001) --------------------------------------------------------------------


def test_the_five_stores_of_the_document_with_its_capacity_and_probabilities() -> None:
    assert [(s.name, s.sensors, s.opened_on.year) for s in stores.STORES] == [
        ("Madrid", 1, 2024),
        ("Paris", 20, 2018),
        ("Berlin", 6, 2022),
        ("Roma", 4, 2019),
        ("London", 8, 2014),
    ]
    for s in stores.STORES:
        age = 2024 - s.opened_on.year + 1
        assert s.capacity == (age * 1000, age * 150)
        assert s.probs == pytest.approx((age * 0.01, age * 0.001))
    london = stores.STORES[-1]
    assert london.capacity == (11_000, 1_650) and london.probs == pytest.approx((0.11, 0.011))


def test_store_readings_are_reproducible_per_sensor_and_hour_whatever_the_window() -> None:
    long = {e["event_id"]: e for f in stores.flushes(48, seed=9, now=NOW) for e in f}
    earlier = NOW - timedelta(hours=20, minutes=31)
    short = [e for f in stores.flushes(5, seed=9, now=earlier) for e in f]
    assert len(short) == 5 * 39
    assert all(long[e["event_id"]] == e for e in short)
    paris_12 = datetime(2026, 11, 23, 9, tzinfo=UTC)
    one = stores.reading(stores.STORES[1], 12, paris_12, seed=9)
    assert one == long[one["event_id"]]
    assert one["device_id"] == "Paris-12" and one["occurred_at"] == "2026-11-23T09:00:00.000Z"
    assert stores.reading(stores.STORES[1], 12, paris_12, seed=10)["event_id"] == one["event_id"]


def test_store_readings_follow_opening_hours_failures_and_anomalies() -> None:
    paris = stores.STORES[1]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    open_readings: list[dict[str, Any]] = []
    closed: list[dict[str, Any]] = []
    for h in range(24 * 150):
        hour = start + timedelta(hours=h)
        r = stores.reading(paris, 3, hour, seed=1)["store"]
        (open_readings if stores.is_open(paris, hour) else closed).append(r)
    assert all(r == {**r, "status": "ok", "visits": 0} for r in closed)
    assert len(open_readings) == 150 * 10
    failed = [r for r in open_readings if r["status"] == "failed"]
    assert all("visits" not in r for r in failed)
    assert 0.04 < len(failed) / len(open_readings) < 0.10  # p_fail = 7 * 0.01
    visits = [r["visits"] for r in open_readings if r["status"] == "ok"]
    anomalies = [v for v in visits if v < 7000 - 5 * 1050]  # ~10% of the traffic
    normal = [v for v in visits if v >= 7000 - 5 * 1050]
    assert 0 < len(anomalies) < 0.03 * len(visits)  # p_anom = 7 * 0.001
    assert all(400 < v < 1100 for v in anomalies)
    assert abs(sum(normal) / len(normal) - 7000) < 150
    # 8:00 to 18:00 local time: Paris is UTC+1 in January.
    assert stores.is_open(paris, datetime(2025, 1, 1, 7, tzinfo=UTC))
    assert not stores.is_open(paris, datetime(2025, 1, 1, 17, tzinfo=UTC))


def test_store_batches_are_one_counted_hour_each() -> None:
    out = _batches(Profile.STORE_TRAFFIC, hours=6)
    assert len(out) == 6
    for b in out:
        assert len(b.envelope["events"]) == sum(s.sensors for s in stores.STORES)
        assert len({e["occurred_at"] for e in b.envelope["events"]}) == 1
    assert out[-1].envelope["events"][0]["occurred_at"] == "2026-11-23T11:00:00.000Z"


# --- iot-temperature (002) ------------------------------------------------------------------


def test_the_shipped_sensors_file_declares_the_five_sensors_of_the_document() -> None:
    sensors = iot.load_sensors()
    assert [s["location"] for s in sensors] == [
        "Main Entrance",
        "Kitchen",
        "Deposit",
        "Assembly Floor",
        "Offices",
    ]
    assert all(s["type"] == "temperature" and s["description"] for s in sensors)


def test_readings_are_one_per_sensor_and_second_and_stay_in_range() -> None:
    sensors = iot.load_sensors()
    events = list(iot.readings(sensors, 300, seed=2, now=NOW))
    assert len(events) == 300 * 5
    per_sensor = Counter((e["device_id"], e["occurred_at"]) for e in events)
    assert set(per_sensor.values()) == {1}
    for sensor in sensors:
        lo, hi = sensor["range"]
        values = [e["reading"]["value"] for e in events if e["device_id"] == sensor["id"]]
        assert all(lo <= v <= hi for v in values)
        steps = [abs(b - a) for a, b in itertools.pairwise(values)]
        assert max(steps) < 0.05 * (hi - lo)  # a walk, not noise
    assert events[0]["reading"]["location"] == "Main Entrance"


def test_readings_are_published_as_iot_envelopes_the_bridge_lands() -> None:
    opts = profiles.Options(minutes=1, bad_rate=0.1, topic_prefix="plant-7/telemetry")
    msgs = list(profiles.mqtt_messages(opts, now=NOW))
    assert {m.topic for m in msgs} == {
        f"plant-7/telemetry/iot/{s['id']}" for s in iot.load_sensors()
    }
    batch_items = [i for m in msgs for i in items(m.payload, max_events=10)]
    assert {i.schema_version for i in batch_items} == {"iot/1"}
    batch = validate_items(
        batch_items, Tokenizer(b"k", "k1"), max_event_bytes=32_000, schema_version="iot/1"
    )
    assert len(batch.rejected) == sum(m.bad for m in msgs) > 0
    assert len(batch.accepted) == len(msgs) - len(batch.rejected)
    assert {r.index for r in batch.rejected} == {i for i, m in enumerate(msgs) if m.bad}


def test_a_broken_sensors_file_is_refused_naming_the_problem(tmp_path: Path) -> None:
    spec = json.loads(iot.SENSORS_FILE.read_text())
    spec[2]["range"] = [30, 10]
    spec[3]["id"] = "floor/2"
    path = tmp_path / "sensors.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SimulatorConfigError, match=r"invalid sensors file .*2\.range.*min < max"):
        iot.load_sensors(path)
    with pytest.raises(SimulatorConfigError, match=r"cannot read the sensors file"):
        iot.load_sensors(tmp_path / "missing.json")


# --- stream (004) ---------------------------------------------------------------------------


def test_streams_emit_one_value_a_second_between_10_and_99_99() -> None:
    flushes = list(stream.flushes(3, 2, seed=1, now=NOW))
    events = [e for f in flushes for e in f]
    assert len(events) == 3 * 120
    assert {e["device_id"] for e in events} == {"stream-1", "stream-2", "stream-3"}
    assert all(10.0 <= e["stream"]["value"] <= 99.99 for e in events)
    assert all(len(f) == 10 and len({e["device_id"] for e in f}) == 1 for f in flushes)
    seconds = Counter(e["occurred_at"] for e in events)
    assert len(seconds) == 120 and set(seconds.values()) == {3}
    assert len({e["event_id"] for e in events}) == len(events)


# --- the HTTP client --------------------------------------------------------------------------


def test_the_client_retries_keeps_the_body_and_counts_replays_apart() -> None:
    seen: list[tuple[str | None, bytes]] = []
    answers = iter([503, 202, 409, 202])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("Idempotency-Key"), request.content))
        status = next(answers)
        if status == 202 and len(seen) == 4:  # the re-send: answered from the store
            return httpx.Response(
                202, json={"accepted": 2, "rejected": 1}, headers={"Idempotent-Replayed": "true"}
            )
        if status == 202:
            return httpx.Response(202, json={"accepted": 2, "rejected": 1})
        return httpx.Response(status, json={"error": {}}, headers={"Retry-After": "0"})

    envelope = {
        "sent_at": "2026-11-23T12:00:00Z",
        "schema_version": "stream/1",
        "events": [1, 2, 3],
    }
    batch = Batch(envelope, idempotency_key="k-1")
    result = deliver(
        "http://api",
        "key",
        [batch, Batch(envelope, "k-1", resent=True)],
        concurrency=1,
        transport=httpx.MockTransport(handler),
    )

    assert [k for k, _ in seen] == ["k-1"] * 4
    assert len({body for _, body in seen}) == 1
    assert (result.batches, result.events_sent, result.accepted, result.rejected) == (2, 6, 2, 1)
    assert (result.resent_batches, result.replayed, result.retries) == (1, 1, 2)
    assert result.statuses == {202: 2}


def test_the_client_names_a_refused_key() -> None:
    transport = httpx.MockTransport(lambda _r: httpx.Response(401, text="invalid_api_key"))
    with pytest.raises(SimulationError, match=r"API refused the key: invalid_api_key"):
        deliver("http://api", "key", [Batch({"events": [1]})], transport=transport)


def test_profiles_with_the_same_seed_never_share_an_event_id() -> None:
    """Silver deduplicates on event_id across sources: a shared seed must not mean shared ids."""
    from datetime import UTC, datetime

    from tlake.simulators import iot, stream

    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    streamed = {e["event_id"] for b in stream.flushes(2, 2, seed=7, now=now) for e in b}
    sensors = iot.load_sensors()
    readings = {e["event_id"] for e in iot.readings(sensors, 2, seed=7, now=now)}
    assert len(streamed) == 240 and readings
    assert not streamed & readings
