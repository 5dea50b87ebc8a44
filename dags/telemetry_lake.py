"""Telemetry Lake: reconcile, claim new raw objects, bronze -> silver -> quality -> gold, finish,
monitor.

One run claims what arrived, carries exactly those objects through the three layers and marks them
processed only after gold committed; between silver and gold, `quality` checks what silver
committed (spark_jobs.checks) and stops the run before gold when a `fail` check broke. Every task
calls one `spark_jobs.pipeline` stage with the same lake run id, and every stage is idempotent for
that id, so a retried or cleared task redoes its own work and nothing else. When nothing is
pending, `claim` short-circuits: the stages are skipped and the run still succeeds. When a stage
still fails after its retries, `release` hands the claimed objects back to the registry (pending
again, or failed after `max_attempts`) instead of letting them sit until their lease runs out.
`reconcile` runs first, so an object PUT but never registered (a crash between the two) is claimed
by this very run, and a pending row whose object is gone is marked failed instead of being claimed.

This file only declares: Spark, boto3, psycopg and our settings are imported inside the tasks, so
the DAG processor parses it in milliseconds and without any service.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import TriggerRule, chain, dag, task

DAG_ID = "telemetry_lake"


def to_lake_run_id(airflow_run_id: str) -> str:
    """The registry run id of an Airflow DAG run: stable across task retries, safe in keys and logs.

    Airflow run ids look like `scheduled__2026-01-01T00:15:00+00:00`; `:` and `+` are replaced so
    the id can appear in object keys, file names and log lines unquoted.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in airflow_run_id)
    return f"airflow-{safe}"


def alert_on_failure(context: dict) -> None:
    """Failure callback: a task failed for good (its retries are spent).

    Records one critical `analytics.alerts` row (lake_config.alerts) and never raises: an alert
    that cannot be recorded is logged, so it never masks the task's own failure.
    """
    import logging

    try:
        from lake_config.alerts import alert_on_failure as record

        record(context)
    except Exception:
        logging.getLogger("tlake.alerts").exception("telemetry_lake failure callback failed")


@dag(
    dag_id=DAG_ID,
    description="Raw objects -> bronze -> silver -> quality -> gold, exactly once per object",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "tlake",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "on_failure_callback": alert_on_failure,
    },
    tags=["tlake", "lake", "spark"],
    doc_md=__doc__,
)
def telemetry_lake() -> None:
    @task
    def reconcile() -> dict:
        """Register raw objects the registry lacks; fail pending rows whose object is gone.

        Housekeeping: when it fails for good it alerts (on_failure_callback) but `claim` still
        runs, so a broken repair never holds back what landed normally.
        """
        import dataclasses

        from lake_config.registry import Registry
        from lake_config.settings import get_settings
        from lake_config.storage import ObjectStore
        from recovery.reconcile import reconcile as reconcile_lake

        settings = get_settings()
        store = ObjectStore(settings)
        try:
            with Registry(settings, max_size=1) as registry:
                result = reconcile_lake(store, registry)
        finally:
            store.close()
        print(result.render())
        return dataclasses.asdict(result)

    @task.short_circuit(trigger_rule=TriggerRule.ALL_DONE)
    def claim(*, dag_run=None) -> str | None:
        """Claim open raw objects for this run; None (skip everything downstream) when none."""
        from lake_config.settings import get_settings
        from spark_jobs import pipeline

        lake_run_id = to_lake_run_id(dag_run.run_id)
        objects = pipeline.claim(get_settings(), lake_run_id)
        print(f"run {lake_run_id}: {len(objects)} object(s) claimed")
        return lake_run_id if objects else None

    @task
    def bronze(lake_run_id: str) -> dict:
        """Claimed raw objects -> bronze.events."""
        return _stage("bronze", lake_run_id)

    @task
    def silver(lake_run_id: str) -> dict:
        """This run's bronze rows -> silver.device_events (and quarantine)."""
        return _stage("silver", lake_run_id)

    @task
    def quality(lake_run_id: str) -> dict:
        """Run checks over what silver committed (dq_results); `fail` stops before gold."""
        return _stage("quality", lake_run_id)

    @task
    def gold(lake_run_id: str) -> dict:
        """Affected (device, hour) -> gold.device_hourly and analytics.device_hourly."""
        return _stage("gold", lake_run_id)

    @task
    def finish(lake_run_id: str) -> int:
        """Mark the run's objects processed, after every commit of the run succeeded."""
        from lake_config.settings import get_settings
        from spark_jobs import pipeline

        return pipeline.finish(get_settings(), lake_run_id)

    @task(retries=0)
    def monitor() -> dict | None:
        """The fleet online-share monitor over the refreshed analytics (monitoring.online_share).

        Never fails the run: a monitor that cannot run logs why and returns None.
        """
        import dataclasses

        from lake_config.settings import get_settings
        from monitoring.online_share import check_safely

        verdict = check_safely(get_settings())
        if verdict is None:
            return None
        print(verdict.render())
        return {k: str(v) for k, v in dataclasses.asdict(verdict).items()}

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=3)
    def release(*, dag_run=None, ti=None) -> None:
        """A stage failed for good: hand the run's claims back, then fail the DAG run.

        The run's state follows its leaf tasks and this is the only leaf, so it must end failed
        itself once it released the claims; AirflowFailException does that without a retry.
        A failure to release (the registry is down) raises normally and is retried.
        """
        from airflow.sdk.exceptions import AirflowFailException

        from lake_config.settings import get_settings
        from spark_jobs import pipeline

        states = ti.get_task_states(dag_id=DAG_ID, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
        failed = sorted(t for t, state in states.items() if state == "failed")
        lake_run_id = ti.xcom_pull(task_ids="claim")
        if not lake_run_id:  # claim failed: its single transaction left nothing claimed
            raise AirflowFailException(f"{failed} failed before anything was claimed")
        error = f"airflow run {dag_run.run_id}: {', '.join(failed)} failed"
        released = pipeline.fail(get_settings(), lake_run_id, error)
        raise AirflowFailException(f"{error}; {released} object(s) of {lake_run_id} released")

    lake_run_id = claim()
    reconcile() >> lake_run_id
    stages = [
        bronze(lake_run_id),
        silver(lake_run_id),
        quality(lake_run_id),
        gold(lake_run_id),
        finish(lake_run_id),
    ]
    chain(*stages)
    stages >> release()
    stages[-1] >> monitor()


def _stage(name: str, lake_run_id: str) -> dict:
    """Run one Spark stage of the pipeline; its StageResult (counts) becomes the task's XCom."""
    import dataclasses

    from lake_config.settings import get_settings
    from spark_jobs import pipeline

    result = getattr(pipeline, name)(get_settings(), lake_run_id)
    print(f"run {lake_run_id}: {result}")
    return dataclasses.asdict(result)


telemetry_lake()
