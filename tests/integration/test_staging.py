"""A run's staged frames (spark_jobs.staging) and bronze's append-on-first-load, on the real stack.

Staging is an accelerator: a frame is read only when its `.done` marker vouches for it, the run
clears its folder when it ends, and the daily sweep removes what dead runs left. Bronze appends
an object's lines only on the object's first load (Registry.begin_bronze); every later load
MERGEs, so a second load of the same lines writes nothing.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import BRONZE_EVENTS
from spark_jobs import maintenance, pipeline, staging
from tests.integration import rawdata

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(minute=15, second=0, microsecond=0) - timedelta(hours=1)


def _event(prefix: str, n: int) -> dict:
    return {
        "event_id": f"{prefix}-e{n}",
        "device_id": f"{prefix}-d0",
        "event_type": "heartbeat",
        "occurred_at": NOW.isoformat().replace("+00:00", "Z"),
    }


def _staged_keys(store: ObjectStore, run_id: str) -> list[str]:
    return [o.key for o in store.list(staging.folder(run_id))]


def test_a_staged_frame_is_read_only_with_its_marker(
    settings: Settings, store: ObjectStore, spark: SparkSession
) -> None:
    run_id = f"stage-{uuid.uuid4().hex[:8]}"
    frame = spark.createDataFrame([(1, "a"), (2, "b")], "n int, s string")

    staged = staging.write(spark, settings, run_id, "t", frame)

    assert sorted(tuple(r) for r in staged.collect()) == [(1, "a"), (2, "b")]
    assert f"{staging.folder(run_id)}t.done" in _staged_keys(store, run_id)
    store.delete_prefix(f"{staging.folder(run_id)}t.done")  # as if the writer died before it
    assert staging.read(spark, settings, run_id, "t") is None
    assert staging.clear(settings, run_id) > 0
    assert _staged_keys(store, run_id) == []


def test_an_empty_frame_reads_back_as_zero_rows_of_its_schema(
    settings: Settings, spark: SparkSession
) -> None:
    run_id = f"stage-{uuid.uuid4().hex[:8]}"
    empty = spark.createDataFrame([(1, "a")], "n int, s string").where(F.col("n") > 5)

    staged = staging.write(spark, settings, run_id, "empty", empty)

    assert (staged.columns, staged.count()) == (["n", "s"], 0)
    staging.clear(settings, run_id)


def test_the_sweep_removes_dead_runs_folders_and_keeps_live_ones(
    settings: Settings, store: ObjectStore, spark: SparkSession
) -> None:
    dead, live = (f"stage-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for run_id in (dead, live):
        staging.write(spark, settings, run_id, "t", spark.createDataFrame([(1,)], "n int"))

    assert staging.sweep(settings, older_than=timedelta(hours=1)) == 0  # both too recent
    time.sleep(1.1)
    removed = staging.sweep(settings, older_than=timedelta(seconds=1), keep={live})

    assert removed > 0
    assert _staged_keys(store, dead) == []
    assert _staged_keys(store, live) != []
    staging.clear(settings, live)


def test_a_run_clears_its_staged_frames_when_it_ends(
    settings: Settings, store: ObjectStore, registry: Registry
) -> None:
    prefix = f"stg{uuid.uuid4().hex[:6]}"
    key = rawdata.land(store, registry, [_event(prefix, n) for n in range(3)], received_at=NOW)
    run_id = pipeline.new_run_id()
    assert key in [c.object_key for c in pipeline.claim(settings, run_id)]

    pipeline.bronze(settings, run_id)
    silver = pipeline.silver(settings, run_id)
    staged = _staged_keys(store, run_id)
    pipeline.quality(settings, run_id)
    pipeline.gold(settings, run_id)
    processed = pipeline.finish(settings, run_id)

    # Both stages staged their rows (the later ones read them), and finishing removed them.
    folder = staging.folder(run_id)
    assert {f"{folder}bronze.done", f"{folder}silver.done"} <= set(staged)
    assert processed >= 1 and silver.rows_written >= 3
    assert _staged_keys(store, run_id) == []


def test_the_first_bronze_load_appends_and_a_second_merges_writing_nothing(
    settings: Settings, store: ObjectStore, registry: Registry, spark: SparkSession
) -> None:
    prefix = f"brz{uuid.uuid4().hex[:6]}"
    key = rawdata.land(store, registry, [_event(prefix, n) for n in range(4)], received_at=NOW)
    run_id = pipeline.new_run_id()
    assert key in [c.object_key for c in pipeline.claim(settings, run_id)]

    first = pipeline.bronze(settings, run_id)
    appended = maintenance.history(settings, BRONZE_EVENTS, limit=1)[0]
    again = pipeline.bronze(settings, run_id)  # a retried task of the same run
    merged = maintenance.history(settings, BRONZE_EVENTS, limit=1)[0]

    assert first.rows_written >= 4 and again.rows_written == 0
    assert appended.operation == "WRITE"
    # A MERGE that inserts nothing may commit nothing at all; it never appends again.
    assert merged.version == appended.version or merged.operation == "MERGE", merged
    bronze = spark.read.format("delta").load(table_uri(settings, BRONZE_EVENTS))
    assert bronze.where(F.col("object_key") == key).count() == 4
    pipeline.fail(settings, run_id, "test over")  # release the claims for later tests
    assert _staged_keys(store, run_id) == []


def test_quality_and_gold_derive_the_rows_again_when_the_staged_frames_are_gone(
    settings: Settings, store: ObjectStore, registry: Registry
) -> None:
    # A stage run on its own, or after the folder was swept: the later stages read the Delta
    # tables instead, and come to the same answer.
    prefix = f"gone{uuid.uuid4().hex[:6]}"
    key = rawdata.land(store, registry, [_event(prefix, n) for n in range(5)], received_at=NOW)
    run_id = pipeline.new_run_id()
    assert key in [c.object_key for c in pipeline.claim(settings, run_id)]
    pipeline.bronze(settings, run_id)
    silver = pipeline.silver(settings, run_id)
    assert staging.clear(settings, run_id) > 0

    checked = pipeline.quality(settings, run_id)
    gold = pipeline.gold(settings, run_id)
    pipeline.finish(settings, run_id)

    assert silver.rows_written >= 5 and checked.rows_in == silver.rows_in
    assert gold.rows_in >= 5  # the run's events reached gold
    with registry.connection() as conn:
        hours = conn.execute(
            "select events from analytics.device_hourly where device_id = %s", (f"{prefix}-d0",)
        ).fetchall()
        failed = conn.execute(
            "select coalesce(sum(rows_failed), 0) as n from analytics.dq_results "
            "where run_id = %s and rule in ('silver_holds_accepted', 'quarantine_holds_rejected')",
            (run_id,),
        ).fetchone()
    assert [h["events"] for h in hours] == [5]
    assert failed is not None and failed["n"] == 0
