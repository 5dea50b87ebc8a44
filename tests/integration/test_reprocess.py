"""`tlake reprocess`: a range of event dates derived again from bronze, idempotently."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import GOLD_DEVICE_HOURLY, SILVER_DEVICE_EVENTS
from spark_jobs import pipeline
from spark_jobs.errors import RunError
from spark_jobs.maintenance import delete_rows
from spark_jobs.reprocess import reprocess
from tests.integration import rawdata

pytestmark = pytest.mark.integration

DAY = date(2025, 2, 3)
RECEIVED = datetime(2025, 2, 3, 10, 0, 30, tzinfo=UTC)
# The device's clock runs two minutes fast: what it stamps 10:00:10 happened at 09:58:10.
SENT = RECEIVED + timedelta(minutes=2)


def _event(device: str, n: int, at: datetime) -> dict[str, Any]:
    return {
        "event_id": f"{device}-e{n}",
        "device_id": device,
        "event_type": "heartbeat",
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
    }


@pytest.fixture(scope="module")
def drained(settings: Settings, registry: Registry) -> Registry:
    while pipeline.run_once(settings).objects:
        pass
    return registry


def _silver(spark: SparkSession, settings: Settings, device: str) -> list[tuple[str, datetime]]:
    rows = (
        spark.read.format("delta")
        .load(table_uri(settings, SILVER_DEVICE_EVENTS))
        .where(F.col("device_id") == device)
        .select("event_id", "occurred_at")
        .orderBy("event_id")
        .collect()
    )
    return [(r["event_id"], r["occurred_at"].replace(tzinfo=UTC)) for r in rows]


def _hourly(registry: Registry, device: str) -> list[tuple[datetime, int]]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select hour_start, events from analytics.device_hourly where device_id = %s "
            "order by hour_start",
            (device,),
        ).fetchall()
    return [(r["hour_start"], r["events"]) for r in rows]


def _gold_delta(spark: SparkSession, settings: Settings, device: str) -> list[tuple[datetime, int]]:
    rows = (
        spark.read.format("delta")
        .load(table_uri(settings, GOLD_DEVICE_HOURLY))
        .where(F.col("device_id") == device)
        .orderBy("hour_start")
        .collect()
    )
    return [(r["hour_start"].replace(tzinfo=UTC), r["events"]) for r in rows]


def test_a_changed_setting_rederives_silver_and_moves_gold_keys(
    settings: Settings, store: ObjectStore, drained: Registry, spark: SparkSession
) -> None:
    device = f"rp-{uuid.uuid4().hex[:6]}"
    stamped = datetime(2025, 2, 3, 10, 0, 10, tzinfo=UTC)
    key = rawdata.land(
        store,
        drained,
        [_event(device, 0, stamped), _event(device, 1, stamped + timedelta(seconds=5))],
        received_at=RECEIVED,
        sent_at=SENT,
    )
    assert pipeline.run_once(settings).objects == 1
    corrected = stamped - timedelta(minutes=2)
    assert _silver(spark, settings, device) == [
        (f"{device}-e0", corrected),
        (f"{device}-e1", corrected + timedelta(seconds=5)),
    ]
    assert _hourly(drained, device) == [(datetime(2025, 2, 3, 9, tzinfo=UTC), 2)]

    # The operator decides two minutes of skew is normal, and rebuilds that day.
    lenient = settings.model_copy(update={"clock_skew_threshold_s": 600.0})
    first = reprocess(lenient, DAY)

    assert first.objects >= 1 and not first.dry_run
    assert first.deleted[SILVER_DEVICE_EVENTS.name] >= 2
    assert _silver(spark, settings, device) == [
        (f"{device}-e0", stamped),
        (f"{device}-e1", stamped + timedelta(seconds=5)),
    ]
    ten = datetime(2025, 2, 3, 10, tzinfo=UTC)
    # The 09:00 key lost its events: gone from Delta and PostgreSQL, not left stale.
    assert _hourly(drained, device) == [(ten, 2)]
    assert _gold_delta(spark, settings, device) == [(ten, 2)]
    assert key in {o.object_key for o in drained.objects(status="processed")}

    # Idempotent: the same reprocess again changes nothing.
    second = reprocess(lenient, DAY)
    assert second.objects == first.objects
    assert _silver(spark, settings, device) == [
        (f"{device}-e0", stamped),
        (f"{device}-e1", stamped + timedelta(seconds=5)),
    ]
    assert _hourly(drained, device) == [(ten, 2)]
    assert second.render().startswith(f"reprocess {DAY} .. {DAY}: run reprocess-")


def test_a_lost_silver_row_comes_back_and_a_dry_run_touches_nothing(
    settings: Settings, store: ObjectStore, drained: Registry, spark: SparkSession
) -> None:
    device = f"rp-{uuid.uuid4().hex[:6]}"
    at = datetime(2025, 2, 4, 15, 30, tzinfo=UTC)
    rawdata.land(
        store,
        drained,
        [_event(device, n, at + timedelta(minutes=n)) for n in range(3)],
        received_at=at + timedelta(minutes=5),
    )
    pipeline.run_once(settings)
    delete_rows(settings, SILVER_DEVICE_EVENTS, f"event_id = '{device}-e1'")
    assert len(_silver(spark, settings, device)) == 2

    dry = reprocess(settings, date(2025, 2, 4), dry_run=True)
    assert dry.dry_run and dry.objects >= 1
    assert "would derive" in dry.render()
    assert len(_silver(spark, settings, device)) == 2

    reprocess(settings, date(2025, 2, 4), date(2025, 2, 4))
    assert [e for e, _ in _silver(spark, settings, device)] == [f"{device}-e{n}" for n in range(3)]
    assert _hourly(drained, device) == [(datetime(2025, 2, 4, 15, tzinfo=UTC), 3)]


def test_reprocess_refuses_a_range_whose_objects_are_still_being_processed(
    settings: Settings, store: ObjectStore, drained: Registry
) -> None:
    device = f"rp-{uuid.uuid4().hex[:6]}"
    at = datetime(2025, 2, 5, 8, tzinfo=UTC)
    key = rawdata.land(store, drained, [_event(device, 0, at)], received_at=at)
    run_id = pipeline.new_run_id()
    pipeline.claim(settings, run_id)
    pipeline.bronze(settings, run_id)
    pipeline.silver(settings, run_id)  # silver committed; gold and finish not yet

    busy = re.escape(f"not processed yet: {key} (processing by {run_id})")
    with pytest.raises(RunError, match=busy):
        reprocess(settings, date(2025, 2, 5))

    assert [o.status for o in drained.objects() if o.object_key == key] == ["processing"]
    pipeline.quality(settings, run_id)
    pipeline.gold(settings, run_id)
    assert pipeline.finish(settings, run_id) == 1
    assert reprocess(settings, date(2025, 2, 5)).objects == 1


def test_a_reprocess_killed_after_clearing_is_repaired_by_the_next_run(
    settings: Settings, store: ObjectStore, drained: Registry, spark: SparkSession
) -> None:
    device = f"rp-{uuid.uuid4().hex[:6]}"
    at = datetime(2025, 2, 6, 12, tzinfo=UTC)
    key = rawdata.land(
        store,
        drained,
        [_event(device, n, at + timedelta(minutes=n)) for n in range(3)],
        received_at=at + timedelta(minutes=5),
    )
    pipeline.run_once(settings)
    silver_before, hourly_before = _silver(spark, settings, device), _hourly(drained, device)
    assert len(silver_before) == 3 and hourly_before == [(at, 3)]

    killed = subprocess.run(
        [sys.executable, "-m", "tlake.cli", "reprocess", "--since", "2025-02-06"],
        env={**os.environ, **settings.as_env(), "TLAKE_CRASH_AFTER": "clear"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _silver(spark, settings, device) == []  # died between clearing and deriving again
    assert [o.status for o in drained.objects() if o.object_key == key] == ["processing"]
    # Its claims died with it: the next run takes the object at once and puts silver back.
    again = pipeline.run_once(settings)
    assert again.objects == 1
    assert _silver(spark, settings, device) == silver_before
    assert _hourly(drained, device) == hourly_before
    assert [o.status for o in drained.objects() if o.object_key == key] == ["processed"]


def test_until_before_since_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="--until 2025-02-01 is before --since 2025-02-03"):
        reprocess(settings, DAY, date(2025, 2, 1))
