"""Daily upkeep of every declared lake table: compact small files, then vacuum old ones.

The pipeline's MERGEs leave a few small files per table and run; `optimize` bin-packs them, and
`vacuum` deletes the files no version of the last 7 days references (spark_jobs.maintenance,
through delta-rs, since Sail cannot run OPTIMIZE or VACUUM). Both queue behind the pipeline on
each table's commit lock, so they may run while telemetry_lake does. One mapped task per table:
a table that fails is retried alone and does not hold back the others.

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
    description="Compact and vacuum every lake table (delta-rs)",
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

    vacuum.expand(table_name=optimize.expand(table_name=[t.name for t in TABLES]))


tlake_maintenance()
