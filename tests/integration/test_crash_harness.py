"""Crash harness: a real `tlake run` SIGKILLed at each stage boundary, then a clean re-run.

Every test lands the same raw objects into two lakes on the test stack — the lake under test
and a control lake (own bucket, own database) — kills a `tlake run` subprocess in the first
right after one stage committed (the TLAKE_CRASH_AFTER fault hook of spark_jobs.pipeline),
lets a second `tlake run` take over, and runs the control lake once without a crash. Bronze,
silver, quarantine, gold and analytics.device_hourly must then hold the very same rows in both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake_config.registry import RawObject, Registry, drop_database
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import (
    BRONZE_EVENTS,
    GOLD_DEVICE_HOURLY,
    QUARANTINE_EVENTS,
    SILVER_DEVICE_EVENTS,
    Table,
)
from spark_jobs import pipeline
from tests.integration import rawdata
from tlake import stack

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=3)
# Columns a run stamps with its own id or clock: equal input gives different values there.
RUN_STAMPED = {"run_id", "quarantined_at", "updated_at"}


@dataclass(frozen=True)
class Side:
    """One lake: its settings, bucket and registry."""

    settings: Settings
    store: ObjectStore
    registry: Registry

    def tlake_run(self, **env: str) -> subprocess.CompletedProcess[str]:
        """`tlake run` in a child process against this lake."""
        return subprocess.run(
            [sys.executable, "-m", "tlake.cli", "run"],
            env={**os.environ, **self.settings.as_env(), **env},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def statuses(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        with self.registry.connection() as conn:
            rows = conn.execute(
                "select object_key, status, attempts from registry.raw_objects "
                "where object_key = any(%s)",
                (list(keys),),
            ).fetchall()
        return {r["object_key"]: (r["status"], r["attempts"]) for r in rows}

    def stages_of_holder(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        """(stage, status) recorded by the one run that holds `keys`, in order."""
        with self.registry.connection() as conn:
            rows = conn.execute(
                "select stage, status from registry.pipeline_runs where run_id = ("
                "  select distinct claimed_by from registry.raw_objects"
                "  where object_key = any(%s)) order by started_at",
                (list(keys),),
            ).fetchall()
        return [(r["stage"], r["status"]) for r in rows]

    def serving(self, devices: str) -> list[dict[str, Any]]:
        with self.registry.connection() as conn:
            rows = conn.execute(
                "select * from analytics.device_hourly where device_id like %s "
                "order by device_id, hour_start",
                (devices + "%",),
            ).fetchall()
        return [_unstamped(r) for r in rows]


@pytest.fixture(scope="module")
def crashed(settings: Settings, store: ObjectStore, registry: Registry) -> Side:
    """The lake under test, with nothing left pending by other modules."""
    while pipeline.run_once(settings).objects:
        pass
    return Side(settings, store, registry)


@pytest.fixture(scope="module")
def control(settings: Settings) -> Iterator[Side]:
    """A second lake on the same stack that never crashes: its own bucket and database."""
    cfg = settings.model_copy(
        update={
            "bucket": f"{settings.bucket}-control",
            "database_url": f"{settings.database_url}_control",
        }
    )
    stack.prepare_database(cfg)
    control_store = ObjectStore(cfg)
    control_store.ensure_bucket()
    with Registry(cfg, max_size=2) as reg:
        yield Side(cfg, control_store, reg)
    control_store.close()
    drop_database(cfg)


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _events(devices: str) -> list[list[dict[str, Any]]]:
    """Three raw objects: two devices over two hours, re-sent copies, one out-of-range event."""

    def event(n: int, *, device: int, minute: int, **extra: Any) -> dict[str, Any]:
        return {
            "event_id": f"{devices}-e{n}",
            "device_id": f"{devices}-d{device}",
            "event_type": "crash" if n % 5 == 0 else "heartbeat",
            "occurred_at": _rfc3339(NOW + timedelta(minutes=minute, seconds=n)),
            "battery": {"level_pct": 10.0 + n, "charging": n % 2 == 0, "temperature_c": 30.5},
            "network": {"type": "wifi" if n % 3 else "cellular", "signal_dbm": -50 - n},
            "session": {"session_id": f"{devices}-s{device}-{n // 4}", "duration_ms": 1000 * n},
            **extra,
        }

    first = [event(n, device=n % 2, minute=n * 3) for n in range(12)]
    resent = [event(n, device=n % 2, minute=n * 3, event_type="resent") for n in (3, 4, 5)]
    later = [event(n, device=n % 2, minute=40 + n) for n in range(12, 20)]
    bad = [event(20, device=0, minute=1, battery={"level_pct": 150.0})]
    return [first, resent + later[:4], later[4:] + bad]


def _land(sides: Sequence[Side], devices: str) -> list[str]:
    """The same raw objects, byte for byte, into every side's bucket and registry."""
    keys = []
    for n, events in enumerate(_events(devices)):
        received_at = NOW + timedelta(hours=1, minutes=n)
        batch_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{devices}/{n}")
        key, _, body = rawdata.raw_object(
            events,
            received_at=received_at,
            batch_id=batch_id,
            sent_at=received_at - timedelta(seconds=1),
        )
        for side in sides:
            side.store.put(key, body)
            side.registry.register(
                RawObject(key, "mobile", batch_id, len(body), len(events), received_at)
            )
        keys.append(key)
    return keys


def _unstamped(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in RUN_STAMPED}


def _lake_state(
    spark: SparkSession, side: Side, devices: str, keys: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every row the test's input produced, in every table, without run stamps."""

    def rows(table: Table, where: Any, sort: Sequence[str]) -> list[dict[str, Any]]:
        df = spark.read.format("delta").load(table_uri(side.settings, table)).where(where)
        return [_unstamped(r) for r in df.orderBy(*sort).toArrow().to_pylist()]

    by_key = F.col("object_key").isin(list(keys))
    by_device = F.col("device_id").startswith(devices)
    return {
        "bronze": rows(BRONZE_EVENTS, by_key, ["object_key", "line_no"]),
        "silver": rows(SILVER_DEVICE_EVENTS, by_device, ["event_id"]),
        "quarantine": rows(QUARANTINE_EVENTS, by_key, ["record_key", "rule"]),
        "gold": rows(GOLD_DEVICE_HOURLY, by_device, ["device_id", "hour_start"]),
        "serving": side.serving(devices),
    }


@pytest.mark.parametrize("stage", pipeline.CRASH_POINTS)
def test_a_run_killed_after_a_stage_commit_ends_like_a_run_that_never_crashed(
    spark: SparkSession, crashed: Side, control: Side, stage: str
) -> None:
    devices = f"crash-{stage}-{uuid.uuid4().hex[:6]}"
    keys = _land([crashed, control], devices)

    killed = crashed.tlake_run(TLAKE_CRASH_AFTER=stage)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert crashed.statuses(keys) == {k: ("processing", 1) for k in keys}
    # It died right after `stage` committed: every stage up to it succeeded, none after.
    assert crashed.stages_of_holder(keys) == [
        (s, "succeeded") for s in pipeline.CRASH_POINTS[: pipeline.CRASH_POINTS.index(stage) + 1]
    ]
    # No waiting: the killed run's session died with it, and its 15-minute leases do not matter.
    rerun = crashed.tlake_run()
    assert rerun.returncode == 0, rerun.stderr
    assert crashed.statuses(keys) == {k: ("processed", 2) for k in keys}

    clean = control.tlake_run()
    assert clean.returncode == 0, clean.stderr
    assert control.statuses(keys) == {k: ("processed", 1) for k in keys}

    got = _lake_state(spark, crashed, devices, keys)
    want = _lake_state(spark, control, devices, keys)
    assert got == want
    # And the control itself is what the input says: 20 distinct valid events, one quarantined.
    event_ids = [r["event_id"] for r in got["silver"]]
    assert event_ids == sorted({f"{devices}-e{n}" for n in range(20)})
    assert [(r["rule"], r["stage"]) for r in got["quarantine"]] == [
        ("battery_out_of_range", "silver")
    ]
    assert sum(r["events"] for r in got["gold"]) == 20
    assert sum(r["crash_events"] for r in got["gold"]) == 4
    assert [{k: r[k] for k in r if k in GOLD_DEVICE_HOURLY.column_names} for r in got["gold"]] == [
        {k: r[k] for k in GOLD_DEVICE_HOURLY.column_names} for r in got["serving"]
    ]


def test_an_unknown_crash_point_is_refused(crashed: Side, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pipeline.CRASH_AFTER_ENV, "finish")

    with pytest.raises(ValueError, match=r"TLAKE_CRASH_AFTER='finish' is not one of"):
        pipeline.run_once(crashed.settings)
