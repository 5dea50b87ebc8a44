"""Telemetry Lake on a Spark cluster: the same run, with each Spark stage sent by spark-submit.

The shape is `telemetry_lake`'s: claim -> bronze -> silver -> quality -> gold -> finish, and
`release` when a stage failed for good. Claim, finish and release only touch the PostgreSQL
registry, so they run on the Airflow worker; the four Spark stages are submitted through the
`spark_default` connection (`TLAKE_SPARK_MASTER`: `spark://host:7077`, `yarn`, `k8s://...`) with
Delta and S3A on the classpath. Each stage job takes `--run-id` and builds a classic session
(TLAKE_SPARK_REMOTE empty) that reads the lake through `s3a://`.

Not scheduled (`schedule=None`): trigger it where a cluster exists. Job files are taken from the
Airflow Variable `tlake_jobs_dir` (default: this checkout's `spark_jobs/`), and the driver must be
able to import `lake_config` and `spark_jobs` (install the tlake package in the cluster image).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import TriggerRule, chain, dag, task

DAG_ID = "telemetry_lake_cluster"
# Same versions as lake_config.spark.DELTA_PACKAGE and HADOOP_AWS_PACKAGE (a DagBag test checks);
# spelled out here because importing lake_config.spark at parse time would load boto3.
PACKAGES = "io.delta:delta-spark_2.13:4.0.0,org.apache.hadoop:hadoop-aws:3.4.1"
_CHECKOUT_JOBS_DIR = Path(__file__).resolve().parent.parent / "spark_jobs"
JOBS_DIR = f"{{{{ var.value.get('tlake_jobs_dir', '{_CHECKOUT_JOBS_DIR}') }}}}"
# The job file of each Spark stage, named for the table it writes.
STAGE_JOBS = {
    "bronze": "bronze/events.py",
    "silver": "silver/device_events.py",
    "quality": "checks.py",
    "gold": "gold/device_hourly.py",
}


@dag(
    dag_id=DAG_ID,
    description="telemetry_lake with spark-submit to a cluster (manual trigger)",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "tlake",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    },
    tags=["tlake", "lake", "spark", "cluster"],
    doc_md=__doc__,
)
def telemetry_lake_cluster() -> None:
    @task.short_circuit
    def claim(*, dag_run=None) -> str | None:
        """Claim open raw objects; None (skip everything downstream) when there are none."""
        from lake_config.settings import get_settings
        from spark_jobs import pipeline

        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in dag_run.run_id)
        lake_run_id = f"airflow-cluster-{safe}"
        objects = pipeline.claim(get_settings(), lake_run_id)
        print(f"run {lake_run_id}: {len(objects)} object(s) claimed")
        return lake_run_id if objects else None

    @task
    def finish(lake_run_id: str) -> int:
        """Mark the run's objects processed, after every stage committed."""
        from lake_config.settings import get_settings
        from spark_jobs import pipeline

        return pipeline.finish(get_settings(), lake_run_id)

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=3)
    def release(*, dag_run=None, ti=None) -> None:
        """A stage failed for good: hand the claims back, then fail the run (see telemetry_lake)."""
        from airflow.sdk.exceptions import AirflowFailException

        from lake_config.settings import get_settings
        from spark_jobs import pipeline

        lake_run_id = ti.xcom_pull(task_ids="claim")
        if not lake_run_id:  # claim failed: its single transaction left nothing claimed
            raise AirflowFailException("claim failed before anything was claimed")
        error = f"airflow run {dag_run.run_id}: a stage failed"
        released = pipeline.fail(get_settings(), lake_run_id, error)
        raise AirflowFailException(f"{error}; {released} object(s) of {lake_run_id} released")

    lake_run_id = claim()
    stages = [
        SparkSubmitOperator(
            task_id=stage,
            conn_id="spark_default",
            application=f"{JOBS_DIR}/{job}",
            application_args=["--run-id", lake_run_id],
            packages=PACKAGES,
            name=f"tlake-{stage}",
            # The job builds a classic session inside spark-submit's context, not a Connect one.
            env_vars={"TLAKE_SPARK_REMOTE": ""},
        )
        for stage, job in STAGE_JOBS.items()
    ]
    done = finish(lake_run_id)
    chain(*stages, done)
    [*stages, done] >> release()


telemetry_lake_cluster()
