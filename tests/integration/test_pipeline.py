"""The pipeline stages against the real SeaweedFS, PostgreSQL and Sail of the test stack.

Raw objects are landed here directly (ObjectStore.put + Registry.register, in the format of
docs/CONTRACTS.md), so these tests depend on neither the ingest API nor the simulator, and can
write lines the API would never accept. Each test uses its own device ids and object keys and
asserts on those only, since the stack is shared with the other integration modules.
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake_config.registry import RawObject, Registry
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
from spark_jobs.bronze.events import main as bronze_main
from spark_jobs.errors import RunError
from spark_jobs.gold.device_hourly import main as gold_main
from spark_jobs.silver.device_events import main as silver_main
from tests.integration import rawdata

pytestmark = pytest.mark.integration

# Whole seconds in the past: the hour is stable while a test runs, and received_at is after it.
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=2)


@dataclass(frozen=True)
class Lake:
    """The test stack, seen the way these tests use it."""

    settings: Settings
    store: ObjectStore
    registry: Registry
    spark: SparkSession

    def land(
        self,
        events: Sequence[dict[str, Any]],
        *,
        received_at: datetime = NOW,
        extra_lines: Sequence[str] = (),
    ) -> str:
        """Write one raw object as the ingest API would, plus `extra_lines`; register it."""
        return rawdata.land(
            self.store,
            self.registry,
            events,
            received_at=received_at,
            sent_at=received_at - timedelta(seconds=2),
            extra_lines=extra_lines,
        )

    def table(self, table: Table) -> DataFrame:
        return self.spark.read.format("delta").load(table_uri(self.settings, table))

    def rows(self, table: Table, devices: str, *, sort: Sequence[str]) -> list[dict[str, Any]]:
        """Rows of `table` for devices starting with `devices`, as Python values (UTC-aware)."""
        df = self.table(table).where(F.col("device_id").startswith(devices))
        return df.orderBy(*sort).toArrow().to_pylist()

    def serving(self, devices: str) -> list[dict[str, Any]]:
        with self.registry.connection() as conn:
            return conn.execute(
                "select * from analytics.device_hourly where device_id like %s "
                "order by device_id, hour_start",
                (devices + "%",),
            ).fetchall()

    def statuses(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        with self.registry.connection() as conn:
            rows = conn.execute(
                "select object_key, status, attempts from registry.raw_objects "
                "where object_key = any(%s)",
                (list(keys),),
            ).fetchall()
        return {r["object_key"]: (r["status"], r["attempts"]) for r in rows}

    def requeue(self, keys: Sequence[str]) -> None:
        """Put processed objects back to pending, as an operator replaying them would."""
        with self.registry.connection() as conn, conn.transaction():
            conn.execute(
                "update registry.raw_objects set status = 'pending', claimed_by = null "
                "where object_key = any(%s)",
                (list(keys),),
            )


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event(devices: str, n: int, *, device: int = 0, minute: int = 0, **extra: Any) -> dict:
    return {
        "event_id": f"{devices}-e{n}",
        "device_id": f"{devices}-d{device}",
        "event_type": "heartbeat",
        "occurred_at": _rfc3339(NOW.replace(minute=minute, second=n % 60)),
        "battery": {"level_pct": 50.0, "charging": False, "temperature_c": 30.0},
        "network": {"type": "wifi", "ip": "k1:iptoken", "signal_dbm": -60},
        "session": {"session_id": f"{devices}-s{device}", "duration_ms": 1000},
        **extra,
    }


@pytest.fixture(scope="module")
def lake(settings: Settings, store: ObjectStore, registry: Registry, spark: SparkSession) -> Lake:
    """The stack with nothing left pending by other modules, so each run takes only ours."""
    while pipeline.run_once(settings).objects:
        pass
    return Lake(settings, store, registry, spark)


@pytest.fixture
def devices() -> str:
    """A device-id prefix no other test uses."""
    return f"it-{secrets.token_hex(4)}"


def test_nothing_to_claim_gives_an_empty_summary(lake: Lake) -> None:
    summary = pipeline.run_once(lake.settings, run_id="idle-run")

    assert (summary.run_id, summary.objects, summary.lines, summary.stages) == (
        "idle-run",
        0,
        0,
        (),
    )


def test_a_run_loads_its_claimed_objects_and_marks_them_processed(lake: Lake, devices: str) -> None:
    keys = [
        lake.land([_event(devices, n) for n in range(3)]),
        lake.land([_event(devices, n, device=1) for n in range(3, 5)]),
    ]

    summary = pipeline.run_once(lake.settings)

    assert (summary.objects, summary.lines, summary.processed) == (2, 5, 2)
    assert (summary.bronze_rows, summary.silver_rows, summary.quarantined) == (5, 5, 0)
    assert lake.statuses(keys) == {k: ("processed", 1) for k in keys}
    bronze = lake.table(BRONZE_EVENTS).where(F.col("object_key").isin(keys))
    assert bronze.count() == 5
    silver = lake.rows(SILVER_DEVICE_EVENTS, devices, sort=["event_id"])
    assert [r["event_id"] for r in silver] == [f"{devices}-e{n}" for n in range(5)]
    gold = lake.rows(GOLD_DEVICE_HOURLY, devices, sort=["device_id"])
    assert [(g["device_id"], g["events"]) for g in gold] == [
        (f"{devices}-d0", 3),
        (f"{devices}-d1", 2),
    ]
    with lake.registry.connection() as conn:
        stages = conn.execute(
            "select stage, status, objects from registry.pipeline_runs where run_id = %s "
            "order by started_at",
            (summary.run_id,),
        ).fetchall()
    assert [(s["stage"], s["status"], s["objects"]) for s in stages] == [
        (stage, "succeeded", 2)
        for stage in ("claim", "bronze", "silver", "quality", "gold", "finish")
    ]


def test_duplicates_across_batches_appear_once_and_the_first_copy_wins(
    lake: Lake, devices: str
) -> None:
    first = lake.land([_event(devices, n) for n in range(3)])
    pipeline.run_once(lake.settings)
    resent = [_event(devices, n, event_type="resent") for n in (1, 2)]
    second = lake.land([*resent, _event(devices, 3)], received_at=NOW + timedelta(minutes=5))

    summary = pipeline.run_once(lake.settings)

    assert (summary.bronze_rows, summary.silver_rows) == (3, 1)
    silver = lake.rows(SILVER_DEVICE_EVENTS, devices, sort=["event_id"])
    assert [(r["event_id"], r["event_type"], r["object_key"]) for r in silver] == [
        (f"{devices}-e0", "heartbeat", first),
        (f"{devices}-e1", "heartbeat", first),
        (f"{devices}-e2", "heartbeat", first),
        (f"{devices}-e3", "heartbeat", second),
    ]
    assert [g["events"] for g in lake.rows(GOLD_DEVICE_HOURLY, devices, sort=["device_id"])] == [4]
    assert [r["events"] for r in lake.serving(devices)] == [4]


def test_a_replayed_run_changes_nothing(lake: Lake, devices: str) -> None:
    keys = [lake.land([_event(devices, n, device=n % 2, minute=n) for n in range(6)])]
    pipeline.run_once(lake.settings)
    before = _snapshot(lake, devices)

    lake.requeue(keys)
    replay = pipeline.run_once(lake.settings)

    assert replay.objects == 1
    assert (replay.bronze_rows, replay.silver_rows, replay.quarantined) == (0, 0, 0)
    assert _snapshot(lake, devices) == before
    assert lake.statuses(keys) == {keys[0]: ("processed", 2)}


def _snapshot(lake: Lake, devices: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "silver": lake.rows(SILVER_DEVICE_EVENTS, devices, sort=["event_id"]),
        "gold": lake.rows(GOLD_DEVICE_HOURLY, devices, sort=["device_id", "hour_start"]),
        "serving": lake.serving(devices),  # updated_at included: an unchanged row keeps it
    }


def test_a_crashed_run_is_redone_by_the_next_without_duplicates(lake: Lake, devices: str) -> None:
    short_lease = lake.settings.model_copy(update={"claim_lease_seconds": 1})
    keys = [
        lake.land([_event(devices, n) for n in range(4)]),
        lake.land([_event(devices, n) for n in range(2, 6)]),  # two re-sent events
    ]
    crashed = pipeline.new_run_id()
    assert [c.object_key for c in pipeline.claim(short_lease, crashed)] == keys
    assert pipeline.bronze(short_lease, crashed).rows_written == 8
    assert pipeline.silver(short_lease, crashed).rows_written == 6
    # A stage re-run for the same run id after a crash writes nothing again.
    assert pipeline.bronze(short_lease, crashed).rows_written == 0
    assert pipeline.silver(short_lease, crashed).rows_written == 0
    time.sleep(1.5)  # the crashed run never finishes; its lease runs out

    summary = pipeline.run_once(short_lease)

    assert (summary.objects, summary.bronze_rows, summary.silver_rows) == (2, 0, 0)
    assert lake.statuses(keys) == {k: ("processed", 2) for k in keys}
    assert lake.table(BRONZE_EVENTS).where(F.col("object_key").isin(keys)).count() == 8
    silver = lake.rows(SILVER_DEVICE_EVENTS, devices, sort=["event_id"])
    assert [r["event_id"] for r in silver] == [f"{devices}-e{n}" for n in range(6)]
    assert [r["events"] for r in lake.serving(devices)] == [6]
    # The crashed run's late finish finds nothing of its own left to mark.
    assert pipeline.finish(short_lease, crashed) == 0


def test_stage_entry_points_run_a_claimed_run(
    lake: Lake, devices: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `spark-submit spark_jobs/<layer>/<table>.py --run-id X` calls these mains; they read
    # get_settings(), which the stack fixture points at this stack.
    key = lake.land([_event(devices, n) for n in range(3)])
    run_id = pipeline.new_run_id()
    pipeline.claim(lake.settings, run_id)

    for main in (bronze_main, silver_main, gold_main):
        assert main(["--run-id", run_id]) == 0
    assert pipeline.finish(lake.settings, run_id) == 1

    printed = capsys.readouterr().out
    assert printed.count(f"run_id='{run_id}'") == 3
    assert lake.statuses([key]) == {key: ("processed", 1)}
    assert [r["events"] for r in lake.serving(devices)] == [3]


def test_bad_lines_and_events_are_quarantined_not_dropped(lake: Lake, devices: str) -> None:
    garbage = '{"object_key": "truncated'
    key = lake.land(
        [
            _event(devices, 0),
            _event(devices, 1, battery={"level_pct": 150.0}),
            _event(devices, 2, occurred_at="not a time"),
        ],
        extra_lines=[garbage],
    )

    summary = pipeline.run_once(lake.settings)

    assert (summary.lines, summary.bronze_rows, summary.silver_rows) == (4, 3, 1)
    assert summary.quarantined == 3
    quarantine = lake.table(QUARANTINE_EVENTS).where(
        F.col("object_key").eqNullSafe(key) | (F.col("payload") == garbage)
    )
    got = sorted((r["record_key"], r["rule"], r["stage"]) for r in quarantine.collect())
    assert got == sorted(
        [
            (hashlib.sha256(garbage.encode()).hexdigest(), "malformed_line", "bronze"),
            (f"{key}:1", "battery_out_of_range", "silver"),
            (f"{key}:2", "invalid_occurred_at", "silver"),
        ]
    )
    assert [r["event_id"] for r in lake.rows(SILVER_DEVICE_EVENTS, devices, sort=["event_id"])] == [
        f"{devices}-e0"
    ]


def test_a_registered_object_missing_from_the_bucket_is_quarantined(
    lake: Lake, devices: str
) -> None:
    missing = f"raw/source=mobile/dt={NOW:%Y-%m-%d}/hour={NOW:%H}/{devices}-gone.jsonl.gz"
    lake.registry.register(RawObject(missing, "mobile", uuid.uuid4(), 10, 7, NOW))
    present = lake.land([_event(devices, 0)])

    summary = pipeline.run_once(lake.settings)

    assert (summary.objects, summary.lines, summary.quarantined) == (2, 1, 1)
    assert lake.statuses([missing, present]) == {
        missing: ("processed", 1),
        present: ("processed", 1),
    }
    (row,) = lake.table(QUARANTINE_EVENTS).where(F.col("record_key") == missing).collect()
    assert (row["rule"], row["stage"], row["reason"]) == (
        "missing_lines",
        "bronze",
        "registered with 7 events, 0 lines read (object missing or empty)",
    )


def test_objects_without_a_final_newline_or_with_damaged_gzip_lose_nothing(
    lake: Lake, devices: str
) -> None:
    """Bronze reads a run's objects from bundles of gzip members (spark_jobs.bronze.bundles):
    an object's last line is never glued to the next object's first, and a damaged object
    gives the lines that inflate, its cut line quarantined and its missing lines counted."""
    unended_events = [_event(devices, n) for n in range(3)]
    key, batch_id, body = rawdata.raw_object(unended_events, received_at=NOW)
    unended = gzip.compress(gzip.decompress(body).rstrip(b"\n"))
    lake.store.put(key, unended)
    lake.registry.register(RawObject(key, "mobile", batch_id, len(unended), 3, NOW))
    damaged_events = [_event(devices, n, device=1) for n in range(100, 140)]
    damaged_key, damaged_batch, damaged_body = rawdata.raw_object(damaged_events, received_at=NOW)
    cut = damaged_body[: len(damaged_body) * 6 // 10]
    lake.store.put(damaged_key, cut)
    lake.registry.register(RawObject(damaged_key, "mobile", damaged_batch, len(cut), 40, NOW))
    lake.land([_event(devices, 200, device=2)])
    text = zlib.decompressobj(31).decompress(cut)  # what inflates before the cut
    whole = text.count(b"\n")
    assert 0 < whole < 40 and not text.endswith(b"\n")

    summary = pipeline.run_once(lake.settings)

    assert summary.objects == 3 and summary.processed == 3
    silver = lake.rows(SILVER_DEVICE_EVENTS, devices, sort=["event_id"])
    assert sorted(r["event_id"] for r in silver) == sorted(
        [f"{devices}-e{n}" for n in [0, 1, 2, 200, *range(100, 100 + whole)]]
    )
    quarantine = lake.table(QUARANTINE_EVENTS).where(
        (F.col("object_key") == damaged_key)
        | (F.col("payload") == text.rsplit(b"\n", 1)[1].decode())
    )
    got = {r["rule"]: r["reason"] for r in quarantine.collect()}
    assert got == {
        "malformed_line": "not a raw line envelope: missing or invalid object_key, line_no, "
        "received_at, event",
        "missing_lines": f"registered with 40 events, {whole} lines read",
    }


def test_a_failed_run_releases_its_claims_and_says_where_it_failed(
    lake: Lake, devices: str
) -> None:
    key = lake.land([_event(devices, 0)])
    nowhere = lake.settings.model_copy(update={"bucket": f"{devices}-no-such-bucket"})

    with pytest.raises(
        RunError, match=rf"failed in stage bronze: Spark failed: .*{devices}-no-such"
    ):
        pipeline.run_once(nowhere)

    with lake.registry.connection() as conn:
        row = conn.execute(
            "select status, attempts, claimed_by, last_error from registry.raw_objects "
            "where object_key = %s",
            (key,),
        ).fetchone()
    assert row is not None
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("bronze: Spark failed: ")
    with lake.registry.connection() as conn:
        (stage,) = conn.execute(
            "select status, error from registry.pipeline_runs "
            "where run_id = %s and stage = 'bronze'",
            (row["claimed_by"],),
        ).fetchall()
    assert stage["status"] == "failed"

    # Released, the object is taken by the next run, which succeeds.
    assert pipeline.run_once(lake.settings).objects == 1
    assert lake.statuses([key]) == {key: ("processed", 2)}


def test_serving_table_equals_gold(lake: Lake, devices: str) -> None:
    lake.land([_event(devices, n, device=n % 3, minute=n * 7 % 60) for n in range(30)])
    lake.land(
        [_event(devices, n, device=1, event_type="crash") for n in range(30, 35)],
        received_at=NOW + timedelta(hours=1),
    )
    pipeline.run_once(lake.settings)

    gold = lake.rows(GOLD_DEVICE_HOURLY, devices, sort=["device_id", "hour_start"])
    serving = [
        {c: row[c] for c in GOLD_DEVICE_HOURLY.column_names} for row in lake.serving(devices)
    ]
    assert len(gold) == 3
    assert serving == gold
