"""The origin sources end to end on the real stack: posted to the API, through bronze and
silver into their own tables, into gold and the PostgreSQL analytics tables and views; a re-run
changes nothing; the online-share monitor alerts on a fleet outage.

Events are dated on a day of their own far in the past (the stack is shared with the other
modules), and assertions read only that day.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from lake_config.settings import Settings
from monitoring.online_share import check
from spark_jobs import pipeline

pytestmark = pytest.mark.integration

DAY = datetime(2023, 3, 1, 10, tzinfo=UTC)
DEVICES = [f"AT{n:06d}" for n in range(900001, 900009)] + ["CC900009", "PD900010"]


def _rfc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _post(api_url: str, key: str, version: str, events: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(events), 500):
        body = {
            "sent_at": _rfc(datetime.now(UTC)),
            "schema_version": version,
            "events": list(events[start : start + 500]),
        }
        response = httpx.post(
            f"{api_url}/v1/events",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        assert response.json()["rejected"] == 0, response.text


def _event(device: str, event_type: str, at: datetime, **section: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": device,
        "event_type": event_type,
        "occurred_at": _rfc(at),
        **section,
    }


def _fleet(device: str, event_type: str, at: datetime, online: bool = True) -> dict[str, Any]:
    kind = {"AT": "ATM", "CC": "CC", "PD": "PD", "PC": "PC"}[device[:2]]
    return _event(
        device,
        event_type,
        at,
        fleet={
            "status": "online" if online else "offline",
            "machine_type": kind,
            "state": "SP" if device < "AT900005" else "RJ",
            "supplier": "Diebold",
            "operating_system": "Ubuntu",
            "os_version": "22.0",
            "network_address": f"10.1.0.{int(device[2:]) % 250}",
        },
    )


def _query(settings: Settings, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def landed(settings: Settings, api_url: str, write_key: str) -> Iterator[pipeline.RunSummary]:
    # Fleet: the inventory at 10:00, then a heartbeat per snapshot; at 10:25 half go silent.
    fleet = [_fleet(d, "inventory", DAY) for d in DEVICES]
    for n in range(6):
        at = DAY + timedelta(minutes=5 * n, seconds=30)
        online = DEVICES if n < 5 else DEVICES[:5]
        fleet += [_fleet(d, "heartbeat", at) for d in online]
    fleet.append(_fleet("PD900010", "heartbeat", DAY + timedelta(minutes=26), online=False))
    _post(api_url, write_key, "fleet/1", fleet)

    store = []
    for sensor, visits in ((1, [0, 400, 500, None, 40]), (2, [0, 300, 350, 330, 310])):
        for hour, v in enumerate(visits, start=7):
            reading = {"store": "Lisboa", "sensor_id": sensor, "status": "ok", "visits": v}
            if v is None:
                reading = {"store": "Lisboa", "sensor_id": sensor, "status": "failed"}
            store.append(
                _event(f"Lisboa-{sensor:02d}", "door_count", DAY.replace(hour=hour), store=reading)
            )
    _post(api_url, write_key, "store/1", store)

    iot = [
        _event(
            "probe-kitchen",
            "reading",
            DAY + timedelta(seconds=s),
            reading={
                "value": float(20 + s % 3) if s != 61 else 99.0,
                "unit": "C",
                "type": "temperature",
                "location": "Kitchen",
                "range_min": -10.0,
                "range_max": 60.0,
            },
        )
        for s in range(120)
    ]
    _post(api_url, write_key, "iot/1", iot)

    stream = [
        _event("stream-test", "value", DAY + timedelta(seconds=s), stream={"value": float(s)})
        for s in range(0, 90, 3)
    ]
    _post(api_url, write_key, "stream/1", stream)

    summary = pipeline.run_once(settings)
    assert summary.objects > 0
    yield summary


def test_fleet_inventory_segments_and_online_share(
    settings: Settings, landed: pipeline.RunSummary
) -> None:
    devices = _query(
        settings,
        "select * from analytics.fleet_devices where device_id = any(%s) order by device_id",
        DEVICES,
    )
    assert [d["device_id"] for d in devices] == sorted(DEVICES)
    pd = next(d for d in devices if d["device_id"] == "PD900010")
    assert pd["last_status"] == "offline"
    assert pd["first_seen_at"] == DAY
    assert "network_address" not in devices[0]  # the inventory does not carry even the token

    online = _query(
        settings,
        "select * from analytics.fleet_online where ts >= %s and ts < %s order by ts",
        DAY,
        DAY + timedelta(hours=1),
    )
    assert [(o["ts"] - DAY, o["online"], o["inventory"]) for o in online] == [
        (timedelta(minutes=5 * n), 10 if n < 5 else 5, 10) for n in range(6)
    ]
    assert online[-1]["online_share"] == pytest.approx(0.5)
    assert online[-1]["reporting"] == 6  # five online and PD900010 reporting offline

    segments = _query(
        settings,
        """select segment, dim1_value, dim2_value, count from analytics.fleet_segments
           where ts = %s and segment in ('Type', 'State and Type') order by 1, 2, 3""",
        DAY,
    )
    assert [(s["segment"], s["dim1_value"], s["dim2_value"], s["count"]) for s in segments] == [
        ("State and Type", "RJ", "ATM", 4),
        ("State and Type", "RJ", "CC", 1),
        ("State and Type", "RJ", "PD", 1),
        ("State and Type", "SP", "ATM", 4),
        ("Type", "ATM", "", 8),
        ("Type", "CC", "", 1),
        ("Type", "PD", "", 1),
    ]


def test_silver_keeps_tokens_never_the_network_address(
    settings: Settings, landed: pipeline.RunSummary, spark: Any
) -> None:
    from lake_config.spark import table_uri
    from lake_config.tables import SILVER_FLEET_STATUS

    rows = (
        spark.read.format("delta")
        .load(table_uri(settings, SILVER_FLEET_STATUS))
        .where("device_id = 'AT900001'")
        .select("network_address")
        .distinct()
        .collect()
    )
    (token,) = [r["network_address"] for r in rows]
    assert token.startswith(f"{settings.token_key_id}:") and "10.1.0." not in token


def test_store_resolutions_keep_failures_apart_from_zero_traffic(
    settings: Settings, landed: pipeline.RunSummary
) -> None:
    hourly = _query(
        settings,
        """select sensor_id, extract(hour from hour_start at time zone 'UTC')::int as h, visits,
                  failed, anomaly
           from analytics.store_sensor_hourly where store = 'Lisboa' order by 1, 2""",
    )
    by_key = {(r["sensor_id"], r["h"]): r for r in hourly}
    assert len(by_key) == 10
    assert (by_key[(1, 7)]["visits"], by_key[(1, 7)]["failed"]) == (0, False)
    assert (by_key[(1, 10)]["visits"], by_key[(1, 10)]["failed"]) == (None, True)
    assert by_key[(1, 11)]["anomaly"] is True  # 40 against a mean of ~304 open-hour visits
    assert sum(r["anomaly"] for r in hourly) == 1

    (daily,) = _query(settings, "select * from analytics.store_daily where store = 'Lisboa'")
    assert (daily["visits"], daily["failed_readings"], daily["readings_ok"]) == (2230, 1, 9)
    (sensor1,) = _query(
        settings,
        "select * from analytics.store_sensor_daily where store = 'Lisboa' and sensor_id = 1",
    )
    assert (sensor1["visits"], sensor1["failed_readings"], sensor1["anomalies"]) == (940, 1, 1)
    ten = _query(
        settings,
        "select * from analytics.store_hourly where store = 'Lisboa' and hour_start = %s",
        DAY,
    )
    assert [(r["visits"], r["sensors_ok"], r["failed_readings"]) for r in ten] == [(330, 1, 1)]


def test_iot_minutes_and_stream_rolling_averages(
    settings: Settings, landed: pipeline.RunSummary
) -> None:
    minutes = _query(
        settings,
        """select * from analytics.iot_sensor_minute where device_id = 'probe-kitchen'
           order by minute_start""",
    )
    assert [(m["minute_start"], m["readings"]) for m in minutes] == [
        (DAY, 60),
        (DAY + timedelta(minutes=1), 60),
    ]
    assert minutes[0]["avg_value"] == pytest.approx(21.0)
    assert (minutes[1]["max_value"], minutes[1]["out_of_range"]) == (99.0, 1)
    assert (minutes[0]["unit"], minutes[0]["type"], minutes[0]["location"]) == (
        "C",
        "temperature",
        "Kitchen",
    )

    rolling = _query(
        settings,
        """select occurred_at, value, rolling_avg_short, rolling_avg_long
           from analytics.stream_rolling where device_id = 'stream-test' order by occurred_at""",
    )
    assert len(rolling) == 30
    at_60 = next(r for r in rolling if r["occurred_at"] == DAY + timedelta(seconds=60))
    assert at_60["rolling_avg_short"] == pytest.approx((51 + 54 + 57 + 60) / 4)  # (50 s, 60 s]
    assert at_60["rolling_avg_long"] == pytest.approx(sum(range(3, 61, 3)) / 20)  # (0 s, 60 s]
    melted = _query(
        settings,
        """select variable, value from analytics.stream_melted
           where device_id = 'stream-test' and occurred_at = %s order by variable""",
        DAY + timedelta(seconds=60),
    )
    assert [m["variable"] for m in melted] == ["rolling_avg_long", "rolling_avg_short", "value"]
    (pivot,) = _query(
        settings,
        "select by_stream from analytics.stream_pivot where ts = %s and variable = 'value'",
        DAY + timedelta(seconds=60),
    )
    assert pivot["by_stream"]["stream-test"] == 60.0


def test_a_second_run_changes_nothing_and_the_monitor_alerts_once(
    settings: Settings, landed: pipeline.RunSummary
) -> None:
    before = _query(
        settings,
        "select count(*) as n, max(updated_at) as at from analytics.fleet_segments where ts >= %s "
        "and ts < %s",
        DAY,
        DAY + timedelta(hours=1),
    )
    assert pipeline.run_once(settings).objects == 0  # nothing new: nothing claimed
    assert (
        _query(
            settings,
            "select count(*) as n, max(updated_at) as at from analytics.fleet_segments "
            "where ts >= %s and ts < %s",
            DAY,
            DAY + timedelta(hours=1),
        )
        == before
    )

    at = DAY + timedelta(minutes=29)
    verdict = check(settings, at=at)
    assert verdict is not None
    assert verdict.ts == DAY + timedelta(minutes=25)
    assert verdict.baseline_share == pytest.approx(1.0)
    assert verdict.breached and verdict.alert_id is not None
    again = check(settings, at=at)
    assert again is not None and again.alert_id == verdict.alert_id  # one alert per snapshot
    (alert,) = _query(
        settings, "select * from analytics.alerts where alert_id = %s", verdict.alert_id
    )
    assert (alert["source"], alert["severity"]) == ("fleet-monitor", "critical")
    assert "50.0% online" in alert["message"]
    calm = check(settings, at=DAY + timedelta(minutes=24))
    assert calm is not None and not calm.breached
