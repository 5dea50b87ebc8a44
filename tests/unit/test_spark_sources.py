"""The origin sources through silver and gold: flattening, device clock skew, and the fleet,
store, IoT and stream aggregates, on the pure transforms."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from lake_config.tables import (
    BRONZE_EVENTS,
    GOLD_FLEET_DEVICES,
    SILVER_FLEET_STATUS,
    SILVER_IOT_READINGS,
    SILVER_STORE_COUNTS,
    SILVER_STREAM_VALUES,
    SOURCES,
)
from spark_jobs.gold import fleet, iot, stores, stream
from spark_jobs.silver import device_events

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def _bronze(
    spark: SparkSession,
    *events: tuple[str, dict[str, Any]],
    received: datetime = T0,
    sent: datetime | None = None,
) -> DataFrame:
    rows = [
        (
            "raw/k",
            n,
            "batch",
            "test",
            version,
            received,
            sent,
            received.date(),
            e.get("event_id"),
            e.get("device_id"),
            e.get("event_type"),
            json.dumps(e),
            "run",
        )
        for n, (version, e) in enumerate(events)
    ]
    return spark.createDataFrame(rows, BRONZE_EVENTS.ddl)


def _fleet_event(n: int, **section: Any) -> dict[str, Any]:
    return {
        "event_id": f"f{n}",
        "device_id": "AT000001",
        "event_type": "heartbeat",
        "occurred_at": "2024-05-01T10:02:00Z",
        "fleet": {"status": "online", "machine_type": "ATM", "state": "SP", **section},
    }


def test_each_source_is_flattened_into_its_own_table(spark: SparkSession) -> None:
    bronze = _bronze(
        spark,
        ("fleet/1", _fleet_event(1, network_address="k1:" + "a" * 64, has_error=True)),
        (
            "store/1",
            {
                "event_id": "s1",
                "device_id": "Paris-03",
                "event_type": "door_count",
                "occurred_at": "2024-05-01T10:00:00Z",
                "store": {"store": "Paris", "sensor_id": 3, "status": "failed"},
            },
        ),
        (
            "iot/1",
            {
                "event_id": "i1",
                "device_id": "sensor-1",
                "event_type": "reading",
                "occurred_at": "2024-05-01T10:00:01Z",
                "reading": {"value": 21.5, "unit": "C", "type": "temperature", "range_max": 50.0},
            },
        ),
        (
            "stream/1",
            {
                "event_id": "v1",
                "device_id": "stream-1",
                "event_type": "value",
                "occurred_at": "2024-05-01T10:00:02Z",
                "stream": {"value": 42.25},
            },
        ),
        (
            "mobile/1",
            {
                "event_id": "m1",
                "device_id": "d1",
                "event_type": "app_open",
                "occurred_at": "2024-05-01T10:00:00Z",
            },
        ),
    )
    rows, quarantine = device_events.transform(bronze)
    assert quarantine.count() == 0
    details = {r["event_id"]: r["details_json"] for r in rows.collect()}
    assert details["m1"] is None
    assert json.loads(details["v1"]) == {"value": 42.25}

    flat = {s.family: device_events.flatten_source(rows, s).collect() for s in SOURCES}
    assert {f: [r["event_id"] for r in got] for f, got in flat.items()} == {
        "fleet": ["f1"],
        "store": ["s1"],
        "iot": ["i1"],
        "stream": ["v1"],
    }
    (f,) = flat["fleet"]
    assert (f["status"], f["machine_type"], f["state"], f["has_error"]) == (
        "online",
        "ATM",
        "SP",
        True,
    )
    assert f["network_address"] == "k1:" + "a" * 64
    (s,) = flat["store"]
    assert (s["store"], s["sensor_id"], s["status"], s["visits"]) == ("Paris", 3, "failed", None)
    (i,) = flat["iot"]
    assert (i["value"], i["unit"], i["range_min"], i["range_max"]) == (21.5, "C", None, 50.0)
    assert flat["stream"][0]["value"] == 42.25
    assert [r.name for r in (SILVER_FLEET_STATUS, SILVER_STORE_COUNTS)] == [
        SOURCES[0].table.name,
        SOURCES[1].table.name,
    ]


@pytest.mark.parametrize(
    ("sent_offset", "corrected"),
    [
        (timedelta(seconds=0), False),
        (timedelta(seconds=-59), False),  # within the 60 s threshold: left alone
        (timedelta(hours=-2), True),  # device clock two hours behind
        (timedelta(minutes=30), True),  # device clock half an hour ahead
    ],
)
def test_device_clock_skew_is_corrected_beyond_the_threshold(
    spark: SparkSession, sent_offset: timedelta, corrected: bool
) -> None:
    received = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    sent = received + sent_offset
    bronze = _bronze(spark, ("fleet/1", _fleet_event(1)), received=received, sent=sent)

    (row,) = device_events.transform(bronze).rows.collect()

    device_time = datetime(2024, 5, 1, 10, 2)  # collected in the session's UTC, naive
    assert row["device_occurred_at"] == device_time
    assert row["clock_skew_corrected"] is corrected
    expected = device_time + (received - sent) if corrected else device_time
    assert row["occurred_at"] == expected
    assert row["event_hour"] == expected.replace(minute=0, second=0)


def _fleet_rows(spark: SparkSession, *rows: dict[str, Any]) -> DataFrame:
    full = []
    for n, r in enumerate(rows):
        row = dict.fromkeys(SILVER_FLEET_STATUS.column_names)
        row.update({"event_id": f"e{n}", "event_type": "heartbeat", "status": "online", **r})
        row["event_date"] = row["occurred_at"].date()
        full.append(tuple(row.values()))
    return spark.createDataFrame(full, SILVER_FLEET_STATUS.ddl)


def test_fleet_segments_online_share_and_inventory(spark: SparkSession) -> None:
    at = T0 + timedelta(minutes=1)
    reports = _fleet_rows(
        spark,
        # snapshot 10:00: AT1 twice (counted once), CC2 online with an error, PD3 offline
        dict(device_id="AT000001", occurred_at=at, machine_type="ATM", state="SP"),
        dict(
            device_id="AT000001",
            occurred_at=at + timedelta(minutes=2),
            machine_type="ATM",
            state="SP",
        ),
        dict(device_id="CC000002", occurred_at=at, machine_type="CC", state="RJ", has_error=True),
        dict(device_id="PD000003", occurred_at=at, machine_type="PD", state="SP", status="offline"),
        # snapshot 10:05: only AT1
        dict(
            device_id="AT000001",
            occurred_at=at + timedelta(minutes=5),
            machine_type="ATM",
            state="SP",
        ),
        # an inventory record is not a heartbeat
        dict(
            device_id="PC000004",
            occurred_at=at,
            machine_type="PC",
            state="BA",
            event_type="inventory",
        ),
    )
    segments = {
        (r["ts"].minute, r["segment"], r["dim1_value"], r["dim2_value"]): r["count"]
        for r in fleet.transform_segments(reports, 5).collect()
    }
    assert segments[(0, "Type", "ATM", "")] == 1
    assert segments[(0, "Type", "CC", "")] == 1
    assert (0, "Type", "PD", "") not in segments  # offline machines are not online
    assert segments[(0, "State", "SP", "")] == 1
    assert segments[(0, "State and Type", "RJ", "CC")] == 1
    assert segments[(0, "Supplier", fleet.UNKNOWN, "")] == 2
    assert segments[(5, "Type", "ATM", "")] == 1
    assert sum(c for (m, s, *_), c in segments.items() if m == 0 and s == "Type") == 2

    devices = fleet.transform_devices(reports)
    assert devices.columns == GOLD_FLEET_DEVICES.column_names
    by_id = {r["device_id"]: r for r in devices.collect()}
    assert len(by_id) == 4
    naive = at.replace(tzinfo=None)  # collected in the session's UTC
    assert by_id["AT000001"]["first_seen_at"] == naive
    assert by_id["AT000001"]["last_seen_at"] == naive + timedelta(minutes=5)
    assert by_id["PD000003"]["last_status"] == "offline"
    assert by_id["PC000004"]["inventoried_at"] == naive  # its inventory record
    assert by_id["AT000001"]["inventoried_at"] is None  # heartbeats only: not inventoried

    online = {r["ts"].minute: r for r in fleet.transform_online(reports, devices, 5).collect()}
    assert (online[0]["online"], online[0]["reporting"], online[0]["errors"]) == (2, 3, 1)
    assert online[0]["inventory"] == 4
    assert online[0]["online_share"] == pytest.approx(0.5)
    assert online[5]["online_share"] == pytest.approx(0.25)


def test_a_combination_a_machine_left_reads_zero_after_the_recompute(spark: SparkSession) -> None:
    at = T0 + timedelta(minutes=1)
    first = _fleet_rows(spark, dict(device_id="AT000001", occurred_at=at, machine_type="ATM"))
    held = fleet.transform_segments(first, 5)
    # A later heartbeat in the same snapshot: the machine went offline.
    later = dict(
        device_id="AT000001",
        occurred_at=at + timedelta(minutes=2),
        machine_type="ATM",
        status="offline",
    )
    now = _fleet_rows(spark, dict(device_id="AT000001", occurred_at=at, machine_type="ATM"), later)

    rows = fleet.with_vanished(fleet.transform_segments(now, 5), held).collect()

    by_key = {(r["segment"], r["dim1_value"]): r["count"] for r in rows}
    assert by_key[("Type", "ATM")] == 0
    assert by_key[("State", fleet.UNKNOWN)] == 0
    assert len(rows) == held.count()  # every combination held before, now at zero


def test_fleet_snapshots_of_hours() -> None:
    snaps = fleet.snapshots_of([T0], 15)
    assert [s.minute for s in snaps] == [0, 15, 30, 45]


def _store_rows(
    spark: SparkSession, *rows: tuple[int, int, str, int | None, datetime]
) -> DataFrame:
    full = []
    for n, (sensor, hour, status, visits, received) in enumerate(rows):
        row = dict.fromkeys(SILVER_STORE_COUNTS.column_names)
        at = T0.replace(hour=hour)
        row.update(
            event_id=f"e{n}",
            device_id=f"Roma-{sensor:02d}",
            event_type="door_count",
            occurred_at=at,
            event_date=at.date(),
            received_at=received,
            store="Roma",
            sensor_id=sensor,
            status=status,
            visits=visits,
        )
        full.append(tuple(row.values()))
    return spark.createDataFrame(full, SILVER_STORE_COUNTS.ddl)


def test_store_hours_keep_failures_apart_and_flag_anomalies(spark: SparkSession) -> None:
    early, late = T0, T0 + timedelta(hours=1)
    counts = _store_rows(
        spark,
        (1, 9, "ok", 1000, early),
        (1, 10, "ok", 1200, early),
        (1, 11, "ok", 100, early),  # a tenth of the usual: anomaly
        (1, 12, "failed", None, early),
        (1, 20, "ok", 0, early),  # closed: zero visits, not failed, not an anomaly
        (2, 9, "ok", 900, early),
        (2, 9, "ok", 950, late),  # re-sent under a new id: the later one wins
    )
    got = {(r["sensor_id"], r["hour_start"].hour): r for r in stores.transform(counts).collect()}
    assert len(got) == 6
    assert (got[(1, 12)]["failed"], got[(1, 12)]["visits"]) == (True, None)
    assert (got[(1, 20)]["failed"], got[(1, 20)]["visits"], got[(1, 20)]["anomaly"]) == (
        False,
        0,
        False,
    )
    assert got[(1, 11)]["anomaly"] is True
    assert not any(r["anomaly"] for k, r in got.items() if k != (1, 11))
    assert got[(2, 9)]["visits"] == 950


def test_iot_minute_aggregates(spark: SparkSession) -> None:
    rows = []
    for n, (sensor, second, value) in enumerate(
        [("s1", 0, 20.0), ("s1", 30, 22.0), ("s1", 59, 60.0), ("s1", 60, 10.0), ("s2", 5, 5.0)]
    ):
        row = dict.fromkeys(SILVER_IOT_READINGS.column_names)
        at = T0 + timedelta(seconds=second)
        row.update(
            event_id=f"e{n}",
            device_id=sensor,
            event_type="reading",
            occurred_at=at,
            event_date=at.date(),
            value=value,
            unit="C",
            type="temperature",
            range_min=-10.0,
            range_max=50.0,
        )
        rows.append(tuple(row.values()))
    minutes = iot.transform(spark.createDataFrame(rows, SILVER_IOT_READINGS.ddl)).collect()
    got = {(r["device_id"], r["minute_start"].minute): r for r in minutes}
    first = got[("s1", 0)]
    assert (first["readings"], first["min_value"], first["max_value"]) == (3, 20.0, 60.0)
    assert first["avg_value"] == pytest.approx(34.0)
    assert first["out_of_range"] == 1
    assert (got[("s1", 1)]["readings"], got[("s2", 0)]["avg_value"]) == (1, 5.0)


def test_stream_rolling_averages_are_time_based(spark: SparkSession) -> None:
    rows = []
    for n, (second, value) in enumerate([(0, 10.0), (5, 20.0), (9, 30.0), (30, 40.0), (65, 50.0)]):
        row = dict.fromkeys(SILVER_STREAM_VALUES.column_names)
        at = T0 + timedelta(seconds=second)
        row.update(
            event_id=f"e{n}",
            device_id="stream-1",
            event_type="value",
            occurred_at=at,
            event_date=date(2024, 5, 1),
            value=value,
        )
        rows.append(tuple(row.values()))
    rolled = stream.transform(spark.createDataFrame(rows, SILVER_STREAM_VALUES.ddl), 10, 60)
    got = {r["occurred_at"].second + 60 * r["occurred_at"].minute: r for r in rolled.collect()}
    assert got[9]["rolling_avg_short"] == pytest.approx(20.0)  # 0, 5, 9
    assert got[30]["rolling_avg_short"] == pytest.approx(40.0)  # alone in its 10 s
    assert got[30]["rolling_avg_long"] == pytest.approx(25.0)  # 0, 5, 9, 30
    assert got[65]["rolling_avg_long"] == pytest.approx(40.0)  # (5 s .. 65 s]: 9, 30, 65
    assert got[65]["rolling_avg_short"] == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("occurred", "sent_offset"),
    [
        ("1900-01-01T00:30:00Z", timedelta(hours=2)),  # shifting back would leave 1900
        ("2199-12-31T23:00:00Z", timedelta(hours=-2)),  # shifting on would reach 2200
    ],
)
def test_a_clock_shift_never_leaves_the_years_silver_keeps(
    spark: SparkSession, occurred: str, sent_offset: timedelta
) -> None:
    event = {**_fleet_event(1), "occurred_at": occurred}
    received = datetime(2024, 5, 1, 12, tzinfo=UTC)
    bronze = _bronze(spark, ("fleet/1", event), received=received, sent=received + sent_offset)

    (row,) = device_events.transform(bronze).rows.collect()

    assert row["clock_skew_corrected"] is False
    assert row["occurred_at"] == row["device_occurred_at"]


@pytest.mark.parametrize("occurred", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_device_time_no_engine_can_hold_is_quarantined_not_a_failed_stage(
    spark: SparkSession, occurred: str
) -> None:
    # Landed before the API bounded timestamps: Sail would fail the whole query on it.
    odd = {**_fleet_event(1), "occurred_at": occurred}
    bronze = _bronze(spark, ("fleet/1", odd), ("fleet/1", _fleet_event(2)))

    rows, quarantine = device_events.transform(bronze)

    assert [r["event_id"] for r in rows.collect()] == ["f2"]
    assert [(q["event_id"], q["rule"]) for q in quarantine.collect()] == [
        ("f1", "invalid_occurred_at")
    ]
