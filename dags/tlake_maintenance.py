"""Daily upkeep: compact then vacuum every lake table; expire Idempotency-Key records; sweep.

The pipeline's MERGEs leave a few small files per table and run; `optimize` bin-packs them, and
`vacuum` deletes the files no version of the last 7 days references (spark_jobs.maintenance,
through delta-rs, since Sail cannot run OPTIMIZE or VACUUM). Both queue behind the pipeline on
each table's commit lock, so they may run while telemetry_lake does. One mapped task per table:
a table that fails is retried alone and does not hold back the others.

`prune_idempotency` deletes the ingest API's Idempotency-Key records older than
`idempotency_ttl_hours` (ingest_api.idempotency.prune); it shares nothing with the tables and
runs beside them. Deleting only what has already expired, it is safe to run again.

`sweep_staging` deletes the staged Parquet (spark_jobs.staging) of runs that died before they
could clear it: folders untouched for a day whose run holds no claim.

This file only declares: delta-rs and our settings are imported inside the tasks. The table
list comes from lake_config.tables, which imports nothing but dataclasses.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from lake_config.tables import TABLES

DAG_ID = "tlake_maintenance"
RETENTION_HOURS = 168


def alert_on_failure(context: dict) -> None:
    """Failure callback: a table's upkeep failed for good; records one warning alert, never raises.

    Upkeep only tidies files, so its failures are warnings (lake_config.alerts), not critical.
    """
    import logging

    try:
        from lake_config.alerts import warn_on_failure

        warn_on_failure(context)
    except Exception:
        logging.getLogger("tlake.alerts").exception("tlake_maintenance failure callback failed")


@dag(
    dag_id=DAG_ID,
    description="Compact and vacuum every lake table (delta-rs); expire idempotency records",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "tlake",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "on_failure_callback": alert_on_failure,
    },
    tags=["tlake", "lake", "maintenance"],
    doc_md=__doc__,
)
def tlake_maintenance() -> None:
    @task
    def optimize(table_name: str) -> str:
        """Compact one table's small files."""
        from lake_config.settings import get_settings
        from spark_jobs import maintenance

        print(maintenance.optimize(get_settings(), maintenance.selected(table_name)))
        return table_name

    @task
    def vacuum(table_name: str) -> None:
        """Delete one table's files unreferenced for RETENTION_HOURS."""
        from lake_config.settings import get_settings
        from spark_jobs import maintenance

        selected = maintenance.selected(table_name)
        print(maintenance.vacuum(get_settings(), selected, retention_hours=RETENTION_HOURS))

    @task
    def prune_idempotency() -> int:
        """Delete expired Idempotency-Key records (`tlake idempotency prune`)."""
        from ingest_api import idempotency
        from lake_config.registry import Registry
        from lake_config.settings import get_settings

        settings = get_settings()
        with Registry(settings, max_size=1) as registry:
            deleted = idempotency.prune(registry, ttl_hours=settings.idempotency_ttl_hours)
        print(f"{deleted} idempotency record(s) older than {settings.idempotency_ttl_hours} h")
        return deleted

    @task
    def sweep_staging() -> int:
        """Delete staged frames of runs that died (`spark_jobs.staging.sweep`)."""
        from lake_config.settings import get_settings
        from spark_jobs import maintenance

        removed = maintenance.sweep_staging(get_settings())
        print(f"{removed} staged object(s) of dead runs removed")
        return removed

    vacuum.expand(table_name=optimize.expand(table_name=[t.name for t in TABLES]))
    prune_idempotency()
    sweep_staging()


tlake_maintenance()
