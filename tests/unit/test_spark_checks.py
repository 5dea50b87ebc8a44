"""The quality stage's run checks: each anti-join counts what the committed tables lack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from lake_config.quality import RUN_CHECKS
from lake_config.tables import BRONZE_EVENTS
from spark_jobs import checks, quality
from spark_jobs.errors import QualityError
from spark_jobs.silver.device_events import classify

RECEIVED = datetime(2024, 5, 1, 10, 16, tzinfo=UTC)


def _line(n: int, schema: str, **event: Any) -> tuple:
    event = {
        "event_type": "app_open",
        "occurred_at": (RECEIVED - timedelta(minutes=n)).isoformat(),
        **event,
    }
    event = {k: v for k, v in event.items() if v is not None}
    return (
        "k1",
        n,
        "batch",
        schema.split("/")[0],
        schema,
        RECEIVED,
        None,
        RECEIVED.date(),
        event.get("event_id"),
        event.get("device_id"),
        event.get("event_type"),
        json.dumps(event),
        "run-1",
    )


def _fleet(n: int, event_id: str, device: str, event_type: str) -> tuple:
    section = {"status": "online", "machine_type": "ATM", "state": "SP"}
    return _line(
        n, "fleet/1", event_id=event_id, device_id=device, event_type=event_type, fleet=section
    )


@pytest.fixture
def classified(spark: SparkSession) -> DataFrame:
    lines = [
        _line(0, "mobile/1", event_id="e1", device_id="d1"),  # in silver
        _line(1, "mobile/1", event_id="e2", device_id="d1"),  # lost: not in silver
        _line(2, "mobile/1", event_id="e3", device_id="d1", battery={"level_pct": 150.0}),
        _line(3, "mobile/1", event_id="e4", device_id=None),  # rejected, not in quarantine
        _fleet(4, "f1", "AT000001", "inventory"),
        _fleet(5, "f2", "AT000001", "heartbeat"),  # inventoried in this run; not in its table
        _fleet(6, "f3", "AT000002", "heartbeat"),  # inventoried in an earlier run
        _fleet(7, "f4", "AT000003", "heartbeat"),  # never inventoried
    ]
    return checks.subjects(classify(spark.createDataFrame(lines, BRONZE_EVENTS.ddl)))


def _found(
    spark: SparkSession, classified: DataFrame, *, lost: bool = True
) -> dict[str, tuple[int, int]]:
    silver = ["e1", "f1", "f2", "f3", "f4"] + ([] if lost else ["e2"])
    rows = checks.transform(
        classified,
        silver_ids=spark.createDataFrame([(e,) for e in silver], "event_id string"),
        quarantined=spark.createDataFrame(
            [("k1:2", "battery_out_of_range"), ("k1:3", "some_other_rule")],
            "record_key string, rule string",
        ),
        source_ids=spark.createDataFrame(
            [("fleet", "f1"), ("fleet", "f3"), ("fleet", "f4"), ("stream", "f2")],
            "family string, event_id string",
        ),
        inventoried=spark.createDataFrame([("AT000002",)], "device_id string"),
    ).collect()
    return {r.rule: (r.rows_checked, r.rows_failed) for r in checks.results(rows)}


def test_each_check_counts_what_the_tables_lack(spark: SparkSession, classified: DataFrame) -> None:
    assert _found(spark, classified) == {
        "silver_holds_accepted": (6, 1),  # e2
        "quarantine_holds_rejected": (2, 1),  # k1:3 under missing_device_id
        "source_table_complete": (4, 1),  # f2 is in another source's table
        "heartbeat_device_inventoried": (3, 1),  # AT000003
    }


def test_a_broken_fail_check_stops_gold_and_a_warn_check_does_not(
    spark: SparkSession, classified: DataFrame
) -> None:
    rows = checks.transform(
        classified,
        silver_ids=spark.createDataFrame([("e1",), ("e2",)], "event_id string"),
        quarantined=spark.createDataFrame([], "record_key string, rule string"),
        source_ids=spark.createDataFrame([], "family string, event_id string"),
        inventoried=spark.createDataFrame([], "device_id string"),
    ).collect()
    found = checks.results(rows)
    with pytest.raises(
        QualityError,
        match=r"silver.device_events rule silver_holds_accepted \(integrity\) failed for 4 of 6 "
        r"rows.*; gold did not run",
    ):
        quality.enforce(found, outcome="gold did not run")
    warned = [r for r in found if r.action == "warn"]
    assert [(r.rule, r.rows_failed) for r in warned] == [("heartbeat_device_inventoried", 2)]
    quality.enforce(warned)  # counted, never raised


def test_a_check_with_nothing_to_look_at_reports_zero() -> None:
    assert [(r.rule, r.rows_checked, r.rows_failed) for r in checks.results([])] == [
        (c.rule, 0, 0) for c in RUN_CHECKS
    ]


def test_run_checks_cover_integrity_and_consistency_with_unique_names() -> None:
    rules = [c.rule for c in RUN_CHECKS]
    assert len(rules) == len(set(rules))
    assert {c.dimension for c in RUN_CHECKS} == {"integrity", "consistency"}
    assert all(c.action in ("warn", "fail") for c in RUN_CHECKS)
