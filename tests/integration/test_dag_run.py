"""The telemetry_lake DAG, run once with `dag.test()` against the real stack of the session.

Airflow runs in a child process (lake_config.airflow.run_dag) with its metadata in a PostgreSQL
database next to the session's registry; the tasks call spark_jobs.pipeline against the
session's SeaweedFS, Sail and registry. Raw objects are landed directly (ObjectStore.put and
Registry.register, in the docs/CONTRACTS.md format), so these tests need neither the ingest API
nor the simulator, and they assert only on their own objects and devices.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import lake_config.airflow as lake_airflow
from lake_config.airflow import drop_airflow_database, is_migrated, prepare_airflow, run_dag
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from spark_jobs import pipeline
from tests.integration import rawdata

pytestmark = pytest.mark.integration

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def _rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def land(store: ObjectStore, registry: Registry, devices: str, device: int, events: int) -> str:
    """Land one raw object of `events` heartbeats of one device, as the ingest API would."""
    heartbeats = [
        {
            "event_id": f"{devices}-{device}-e{n}",
            "device_id": f"{devices}-d{device}",
            "event_type": "heartbeat",
            "occurred_at": _rfc3339(HOUR + timedelta(minutes=n)),
            "battery": {"level_pct": 40.0 + n, "charging": False, "temperature_c": 31.0},
            "network": {"type": "wifi", "ip": "k1:iptoken", "signal_dbm": -60},
            "session": {"session_id": f"{devices}-s{device}", "duration_ms": 1000},
        }
        for n in range(events)
    ]
    return rawdata.land(store, registry, heartbeats, received_at=HOUR + timedelta(minutes=50))


def statuses(registry: Registry, keys: list[str]) -> dict[str, tuple[str, int, str | None]]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select object_key, status, attempts, last_error from registry.raw_objects "
            "where object_key = any(%s)",
            (keys,),
        ).fetchall()
    return {r["object_key"]: (r["status"], r["attempts"], r["last_error"]) for r in rows}


@pytest.fixture(scope="module")
def airflow(settings: Settings) -> Iterator[Settings]:
    """The session's stack with Airflow prepared, and nothing left pending by other modules."""
    prepare_airflow(settings)
    while pipeline.run_once(settings).objects:
        pass
    yield settings
    drop_airflow_database(settings)


@pytest.fixture
def devices() -> str:
    """A device-id prefix no other test uses."""
    return f"af-{secrets.token_hex(4)}"


def test_prepare_is_one_query_once_migrated(
    airflow: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(settings: Settings) -> float:
        raise AssertionError("migrated again")

    monkeypatch.setattr(lake_airflow, "migrate", refuse)

    assert is_migrated(airflow)
    env = prepare_airflow(airflow)
    assert env["AIRFLOW_HOME"] == str((airflow.home / "airflow").resolve())


def test_one_dag_run_carries_landed_objects_into_the_serving_table(
    airflow: Settings, store: ObjectStore, registry: Registry, devices: str
) -> None:
    keys = [land(store, registry, devices, 0, 3), land(store, registry, devices, 1, 2)]

    result = run_dag(airflow)

    assert result.state == "success", f"see {result.log_path}"
    stages = ["claim", "bronze", "silver", "quality", "gold", "finish"]
    assert result.task_states == {
        **dict.fromkeys(["reconcile", *stages, "monitor"], "success"),
        "release": "skipped",
    }
    lake_run_id = result.xcoms["claim"]
    assert lake_run_id.startswith("airflow-manual__")
    assert (result.xcoms["bronze"]["objects"], result.xcoms["bronze"]["rows_in"]) == (2, 5)
    assert result.xcoms["finish"] == 2
    assert statuses(registry, keys) == dict.fromkeys(keys, ("processed", 1, None))
    with registry.connection() as conn:
        hourly = conn.execute(
            "select device_id, hour_start, events from analytics.device_hourly "
            "where device_id like %s order by device_id",
            (f"{devices}-%",),
        ).fetchall()
        runs = conn.execute(
            "select stage, status from registry.pipeline_runs where run_id = %s",
            (lake_run_id,),
        ).fetchall()
    assert [(h["device_id"], h["hour_start"], h["events"]) for h in hourly] == [
        (f"{devices}-d0", HOUR, 3),
        (f"{devices}-d1", HOUR, 2),
    ]
    assert {r["stage"]: r["status"] for r in runs} == dict.fromkeys(stages, "succeeded")


def test_a_run_with_nothing_pending_skips_the_stages_and_succeeds(airflow: Settings) -> None:
    result = run_dag(airflow)

    assert result.state == "success", f"see {result.log_path}"
    assert result.task_states == {
        "reconcile": "success",
        "claim": "success",
        **dict.fromkeys(
            ["bronze", "silver", "quality", "gold", "finish", "monitor", "release"], "skipped"
        ),
    }
    assert result.xcoms["claim"] is None


def test_a_stage_that_fails_for_good_releases_the_claims_and_fails_the_run(
    airflow: Settings, store: ObjectStore, registry: Registry, devices: str
) -> None:
    key = land(store, registry, devices, 0, 2)
    # Bronze cannot read a bucket that does not exist; retries are off so the test does not sit
    # through the backoff (the DagBag test checks the real retry settings).
    nowhere = airflow.model_copy(update={"bucket": f"{devices}-no-such-bucket"})

    result = run_dag(nowhere, retries=0)

    assert result.state == "failed"
    assert result.task_states == {
        "reconcile": "failed",  # it cannot list the missing bucket either; claim runs anyway
        "claim": "success",
        "bronze": "failed",
        **dict.fromkeys(["silver", "quality", "gold", "finish", "monitor"], "upstream_failed"),
        "release": "failed",
    }
    status, attempts, error = statuses(registry, [key])[key]
    assert (status, attempts) == ("pending", 1)
    assert error == f"airflow run {result.run_id}: bronze, reconcile failed"
    # Each task that failed for good raised one alert, with the first line of its error.
    with registry.connection() as conn:
        alerts = conn.execute(
            "select dag_id, task_id, try_number, severity, message from analytics.alerts "
            "where dag_run_id = %s order by task_id",
            (result.run_id,),
        ).fetchall()
    assert [(a["dag_id"], a["task_id"], a["severity"]) for a in alerts] == [
        ("telemetry_lake", "bronze", "critical"),
        ("telemetry_lake", "reconcile", "critical"),
        ("telemetry_lake", "release", "critical"),
    ]
    bronze_alert, reconcile_alert, release_alert = (a["message"] for a in alerts)
    assert bronze_alert.startswith("QueryError: Spark failed: ")
    assert f"/{devices}-no-such-bucket?" in bronze_alert
    assert reconcile_alert.startswith("StorageError: LIST 'raw/' failed: ")
    assert "NoSuchBucket" in reconcile_alert
    assert release_alert.startswith(f"AirflowFailException: {error}; 1 object(s) of airflow-")
    assert [a["try_number"] for a in alerts] == [1, 1, 1]  # retries=0: the first try is the last

    # Released, the object is taken by the next run.
    assert pipeline.run_once(airflow).objects == 1
    assert statuses(registry, [key])[key][:2] == ("processed", 2)
