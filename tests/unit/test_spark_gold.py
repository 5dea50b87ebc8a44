"""gold.device_hourly transform: one row per (device_id, hour_start) with the right numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from lake_config.tables import GOLD_DEVICE_HOURLY, SILVER_DEVICE_EVENTS
from spark_jobs.gold import device_hourly

# assertDataFrameEqual imports pandas-on-Spark, which warns about an env var it alone needs.

H10 = datetime(2024, 5, 1, 10, tzinfo=UTC)
H11 = datetime(2024, 5, 1, 11, tzinfo=UTC)


def _silver(spark: SparkSession, *events: dict[str, Any]) -> DataFrame:
    rows = []
    for n, e in enumerate(events):
        occurred = e["at"]
        row = dict.fromkeys(SILVER_DEVICE_EVENTS.column_names)
        row.update(
            event_id=f"e{n}",
            device_id=e["device"],
            event_type=e.get("type", "heartbeat"),
            occurred_at=occurred,
            event_date=occurred.date(),
            event_hour=occurred.replace(minute=0, second=0, microsecond=0),
            session_id=e.get("session"),
            battery_pct=e.get("pct"),
            battery_temperature_c=e.get("temp"),
            network_type=e.get("net"),
            network_signal_dbm=e.get("dbm"),
        )
        rows.append(tuple(row.values()))
    return spark.createDataFrame(rows, SILVER_DEVICE_EVENTS.ddl)


def test_hourly_aggregates(spark: SparkSession) -> None:
    silver = _silver(
        spark,
        {
            "device": "d1",
            "at": H10.replace(minute=5),
            "session": "s1",
            "pct": 50.0,
            "temp": 30.0,
            "net": "wifi",
            "dbm": -50,
        },
        {
            "device": "d1",
            "at": H10.replace(minute=20),
            "session": "s1",
            "pct": 15.0,
            "temp": 32.0,
            "net": "cellular",
            "dbm": -90,
            "type": "crash",
        },
        {
            "device": "d1",
            "at": H10.replace(minute=59, second=59),
            "session": "s2",
            "pct": 5.0,
            "net": "wifi",
            "type": "app_open",
        },
        {"device": "d1", "at": H11, "session": None, "net": "none"},
        {
            "device": "d2",
            "at": H10.replace(minute=30),
            "session": "s9",
            "pct": 20.0,
            "net": "ethernet",
            "type": "crash",
        },
    )

    got = device_hourly.transform(silver)

    assert got.columns == GOLD_DEVICE_HOURLY.column_names
    expected = spark.createDataFrame(
        [
            (
                "d1",
                H10,
                3,
                2,
                3,
                1,
                70.0 / 3,
                5.0,
                31.0,
                2,
                -70.0,
                2,
                1,
                H10.replace(minute=5),
                H10.replace(minute=59, second=59),
            ),
            ("d1", H11, 1, 0, 1, 0, None, None, None, 0, None, 0, 0, H11, H11),
            (
                "d2",
                H10,
                1,
                1,
                1,
                1,
                20.0,
                20.0,
                None,
                0,
                None,
                0,
                0,
                H10.replace(minute=30),
                H10.replace(minute=30),
            ),
        ],
        GOLD_DEVICE_HOURLY.ddl,
    )
    assertDataFrameEqual(got, expected)


def test_empty_silver_gives_no_rows(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], SILVER_DEVICE_EVENTS.ddl)
    assert device_hourly.transform(empty).count() == 0
