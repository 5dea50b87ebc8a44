"""Table upkeep with delta-rs on tables Sail wrote: optimize, vacuum, history, then still usable.

After compaction and a vacuum down to zero hours, every table must read the same rows through
delta-rs, Sail and DuckDB, and the pipeline must keep merging on top of the versions delta-rs
wrote.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from lake_config import duck
from lake_config.airflow import run_dag
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore, delta_storage_options, lake_uri
from lake_config.tables import GOLD_DEVICE_HOURLY, SILVER_DEVICE_EVENTS, TABLES, Table
from spark_jobs import maintenance, pipeline
from spark_jobs.errors import MaintenanceError
from tests.integration import rawdata
from tlake.cli import app

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=2)


def _land_and_run(settings: Settings, store: ObjectStore, registry: Registry, n: int) -> None:
    """One raw object of three events, then one pipeline run: new small files in every table."""
    batch = uuid.uuid4()
    events = [
        {
            "event_id": f"maint-{batch}-{i}",
            "device_id": f"maint-d{n}",
            "event_type": "heartbeat",
            "occurred_at": (NOW - timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        }
        for i in range(3)
    ]
    rawdata.land(store, registry, events, received_at=NOW)
    assert pipeline.run_once(settings).objects >= 1


def _counts(settings: Settings, spark: SparkSession) -> dict[str, tuple[int, int, int]]:
    """Rows of every table as (delta-rs, Sail, DuckDB)."""

    def rs(t: Table) -> int:
        dt = DeltaTable(lake_uri(settings, t.path), storage_options=delta_storage_options(settings))
        return dt.to_pyarrow_dataset().count_rows()

    con = duck.connect(settings)
    try:
        return {
            t.name: (
                rs(t),
                spark.read.format("delta").load(table_uri(settings, t)).count(),
                con.sql(f"select count(*) from {duck.scan(settings, t)}").fetchall()[0][0],
            )
            for t in TABLES
        }
    finally:
        con.close()


def test_optimize_and_vacuum_keep_every_table_readable_by_delta_rs_sail_and_duckdb(
    settings: Settings, store: ObjectStore, registry: Registry, spark: SparkSession
) -> None:
    for n in range(3):
        _land_and_run(settings, store, registry, n)
    before = _counts(settings, spark)
    assert all(rs == sail == duckdb > 0 for rs, sail, duckdb in before.values() if rs), before

    compacted = {c.table: c for c in maintenance.optimize(settings)}
    assert set(compacted) == {t.name for t in TABLES}
    silver = compacted[SILVER_DEVICE_EVENTS.name]
    assert silver.files_removed >= 3 and silver.files_added < silver.files_removed
    with pytest.raises(MaintenanceError, match=r"retention 0 h is below 168 h; readers of older"):
        maintenance.vacuum(settings, retention_hours=0)
    vacuumed = {v.table: v for v in maintenance.vacuum(settings, retention_hours=0, force=True)}

    assert len(vacuumed[SILVER_DEVICE_EVENTS.name].files) >= silver.files_removed
    assert _counts(settings, spark) == before
    ops = [c.operation for c in maintenance.history(settings, SILVER_DEVICE_EVENTS, limit=3)]
    assert ops == ["VACUUM END", "VACUUM START", "OPTIMIZE"]
    # The pipeline (Sail) keeps merging on top of the versions delta-rs wrote.
    _land_and_run(settings, store, registry, 9)
    after = _counts(settings, spark)
    assert after[SILVER_DEVICE_EVENTS.name] == tuple(
        n + 3 for n in before[SILVER_DEVICE_EVENTS.name]
    )
    assert after[GOLD_DEVICE_HOURLY.name] == tuple(n + 1 for n in before[GOLD_DEVICE_HOURLY.name])


def test_tlake_tables_commands(settings: Settings) -> None:
    runner = CliRunner()

    history = runner.invoke(
        app, ["tables", "history", "--table", "gold.device_hourly", "--limit", "2", "--json"]
    )
    assert history.exit_code == 0, history.output
    commits = json.loads(history.output)
    assert [c["table"] for c in commits] == ["gold.device_hourly"] * len(commits)
    assert 1 <= len(commits) <= 2
    assert commits[0]["version"] > commits[-1]["version"] or len(commits) == 1

    optimized = runner.invoke(app, ["tables", "optimize", "--table", "gold.device_hourly"])
    assert optimized.exit_code == 0, optimized.output
    assert "gold.device_hourly" in optimized.output and "files compacted into" in optimized.output

    dry = runner.invoke(app, ["tables", "vacuum", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("would delete") == len(TABLES)

    unknown = runner.invoke(app, ["tables", "history", "--table", "gold.nope"])
    assert unknown.exit_code == 1
    assert "no lake table named 'gold.nope'" in unknown.output


def test_the_maintenance_dag_runs_on_the_stack(settings: Settings) -> None:
    result = run_dag(settings, "tlake_maintenance", retries=0)

    assert result.state == "success", f"see {result.log_path}"
    assert set(result.task_states) == {"optimize", "vacuum", "prune_idempotency", "sweep_staging"}
    assert set(result.task_states.values()) == {"success"}
