"""Declared expectations in a real run: counts in analytics.dq_results, and the `fail` gate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake_config.quality import RUN_CHECKS, Expectation
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import SILVER_DEVICE_EVENTS
from spark_jobs import pipeline
from spark_jobs.errors import QualityError
from spark_jobs.maintenance import delete_rows
from spark_jobs.silver import device_events
from tests.integration import rawdata

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(minute=20, second=0, microsecond=0) - timedelta(hours=2)


def _land(store: ObjectStore, registry: Registry, events: list[dict[str, Any]]) -> str:
    return rawdata.land(store, registry, events, received_at=NOW)


def _event(devices: str, n: int, **extra: Any) -> dict[str, Any]:
    at = (NOW - timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
    return {
        "event_id": f"{devices}-e{n}",
        "device_id": f"{devices}-d",
        "event_type": "heartbeat",
        "occurred_at": at,
        **extra,
    }


@pytest.fixture(scope="module")
def drained(settings: Settings, registry: Registry) -> Registry:
    while pipeline.run_once(settings).objects:
        pass
    return registry


def _dq(registry: Registry, run_id: str) -> dict[str, tuple[str, str, int, int]]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select rule, dimension, action, rows_checked, rows_failed from analytics.dq_results "
            "where run_id = %s and table_name = 'silver.device_events'",
            (run_id,),
        ).fetchall()
    return {
        r["rule"]: (r["dimension"], r["action"], r["rows_checked"], r["rows_failed"]) for r in rows
    }


def test_a_run_records_every_declared_rule_in_dq_results(
    settings: Settings, store: ObjectStore, drained: Registry
) -> None:
    devices = f"dq-{uuid.uuid4().hex[:6]}"
    _land(
        store,
        drained,
        [
            _event(devices, 0),
            _event(devices, 1, battery={"level_pct": 150.0}),
            _event(devices, 0, event_type="resent"),  # a re-sent copy
            _event(devices, 3, occurred_at=(NOW - timedelta(days=40)).isoformat()),
        ],
    )

    summary = pipeline.run_once(settings)

    got = _dq(drained, summary.run_id)
    assert set(got) == {e.rule for e in SILVER_DEVICE_EVENTS.expectations} | {
        c.rule for c in RUN_CHECKS if c.table == "silver.device_events"
    }
    assert got["battery_out_of_range"] == ("validity", "quarantine", 4, 1)
    assert got["duplicate_event_id"] == ("uniqueness", "warn", 4, 1)
    assert got["stale_event"] == ("timeliness", "warn", 4, 1)
    assert got["missing_event_id"] == ("completeness", "quarantine", 4, 0)
    assert summary.silver_rows == 2  # e0 (first copy) and the stale e3: warn keeps the row


def test_a_broken_fail_rule_stops_silver_before_its_commit(
    settings: Settings, store: ObjectStore, drained: Registry, spark: SparkSession
) -> None:
    devices = f"dq-{uuid.uuid4().hex[:6]}"
    key = _land(store, drained, [_event(devices, 0), _event(devices, 1, event_type="crash")])
    run_id = pipeline.new_run_id()
    pipeline.claim(settings, run_id)
    pipeline.bronze(settings, run_id)
    gate = (
        Expectation(
            "no_crashes", "allowed_values", "event_type", "validity", "fail", values=("heartbeat",)
        ),
    )

    with pytest.raises(
        QualityError,
        match=r"silver.device_events rule no_crashes \(validity\) failed for 1 of 2 rows; nothing",
    ):
        device_events.load(spark, settings, run_id, [key], expectations=gate)

    assert _dq(drained, run_id) == {"no_crashes": ("validity", "fail", 2, 1)}
    silver = spark.read.format("delta").load(table_uri(settings, SILVER_DEVICE_EVENTS))
    assert silver.where(F.col("device_id").startswith(devices)).count() == 0
    pipeline.fail(settings, run_id, "quality gate")
    assert pipeline.run_once(settings).silver_rows == 2  # the declared rules let both through


# --- the quality stage: run checks over what silver committed ----------------------------------


def _dq_run(registry: Registry, run_id: str) -> dict[str, tuple[str, int, int]]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select rule, action, rows_checked, rows_failed from analytics.dq_results "
            "where run_id = %s and rule = any(%s)",
            (run_id, [c.rule for c in RUN_CHECKS]),
        ).fetchall()
    return {r["rule"]: (r["action"], r["rows_checked"], r["rows_failed"]) for r in rows}


def _machine_event(machine: str, event_type: str, minutes: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": machine,
        "event_type": event_type,
        "occurred_at": (NOW - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        "fleet": {"status": "online", "machine_type": "ATM", "state": "SP"},
    }


def test_heartbeats_of_machines_missing_from_the_inventory_are_counted_not_dropped(
    settings: Settings, store: ObjectStore, drained: Registry
) -> None:
    n = uuid.uuid4().int % 1_000_000
    known, stray = f"AT{n:06d}", f"PC{n:06d}"

    def land_fleet(events: list[dict[str, Any]]) -> None:
        rawdata.land(
            store, drained, events, received_at=NOW, source="fleet", schema_version="fleet/1"
        )

    land_fleet([_machine_event(known, "inventory", 9), _machine_event(stray, "heartbeat", 8)])
    first = pipeline.run_once(settings)
    assert _dq_run(drained, first.run_id)["heartbeat_device_inventoried"] == ("warn", 1, 1)
    assert first.silver_rows == 2  # warn: the stray heartbeat is kept

    # Next run: the known machine's inventory record is in gold.fleet_devices by now.
    land_fleet([_machine_event(known, "heartbeat", 5), _machine_event(stray, "heartbeat", 4)])
    second = pipeline.run_once(settings)
    got = _dq_run(drained, second.run_id)
    assert got["heartbeat_device_inventoried"] == ("warn", 2, 1)
    assert got["silver_holds_accepted"] == ("fail", 2, 0)
    assert got["source_table_complete"] == ("fail", 2, 0)
    with drained.connection() as conn:
        inventoried = conn.execute(
            "select device_id, inventoried_at from analytics.fleet_devices "
            "where device_id = any(%s) order by device_id",
            ([known, stray],),
        ).fetchall()
    assert [(r["device_id"], r["inventoried_at"]) for r in inventoried] == [
        (known, NOW - timedelta(minutes=9)),
        (stray, None),
    ]


def test_the_quality_stage_stops_gold_when_silver_lost_an_event(
    settings: Settings, store: ObjectStore, drained: Registry, spark: SparkSession
) -> None:
    devices = f"dq-{uuid.uuid4().hex[:6]}"
    key = _land(store, drained, [_event(devices, 0), _event(devices, 1), _event(devices, 2)])
    run_id = pipeline.new_run_id()
    pipeline.claim(settings, run_id)
    pipeline.bronze(settings, run_id)
    assert pipeline.silver(settings, run_id).rows_written == 3
    # A commit that went missing after the MERGE reported success (the fault the check exists
    # for): one accepted event is no longer in silver.
    assert delete_rows(settings, SILVER_DEVICE_EVENTS, f"event_id = '{devices}-e1'") == 1

    with pytest.raises(
        QualityError,
        match=r"silver.device_events rule silver_holds_accepted \(integrity\) failed for 1 of 3 "
        r"rows; gold did not run",
    ):
        pipeline.quality(settings, run_id)

    assert _dq_run(drained, run_id)["silver_holds_accepted"] == ("fail", 3, 1)
    pipeline.fail(settings, run_id, "quality gate")
    # The released object is redone: silver's insert-only MERGE restores what was missing.
    again = pipeline.run_once(settings)
    assert again.objects == 1 and again.silver_rows == 1
    assert _dq_run(drained, again.run_id)["silver_holds_accepted"] == ("fail", 3, 0)
    silver = spark.read.format("delta").load(table_uri(settings, SILVER_DEVICE_EVENTS))
    assert silver.where(F.col("device_id").startswith(devices)).count() == 3
    assert key in {o.object_key for o in drained.objects(status="processed")}


def _checked(settings: Settings, spark: SparkSession, key: str) -> Any:
    """Claim, bronze and silver for the objects pending (`key` among them), then the checks."""
    from spark_jobs import checks

    run_id = pipeline.new_run_id()
    claimed = [c.object_key for c in pipeline.claim(settings, run_id)]
    assert key in claimed
    pipeline.bronze(settings, run_id)
    pipeline.silver(settings, run_id)
    counts = checks.load(spark, settings, run_id, claimed)
    pipeline.gold(settings, run_id)
    pipeline.finish(settings, run_id)
    return counts


def test_the_checks_read_only_the_runs_own_files_unless_a_row_is_older(
    settings: Settings, store: ObjectStore, drained: Registry, spark: SparkSession
) -> None:
    devices = f"dq-{uuid.uuid4().hex[:6]}"
    first = _land(store, drained, [_event(devices, 0), _event(devices, 1)])
    # Found among the files this run wrote (by received_at): one pass.
    assert _checked(settings, spark, first).passes == 1
    # e1 again, received later: silver keeps the first copy, written by the earlier run, so the
    # narrow pass misses it and the second pass must find it (no failure recorded).
    later = rawdata.land(
        store,
        drained,
        [_event(devices, 1), _event(devices, 2)],
        received_at=NOW + timedelta(minutes=10),
    )

    counts = _checked(settings, spark, later)

    assert counts.passes == 2
    assert {r.rule: r.rows_failed for r in counts.results}["silver_holds_accepted"] == 0
    assert counts.failed == 0
