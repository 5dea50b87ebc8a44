"""The DAG files load in Airflow's own DagBag, with the shape the pipeline relies on.

The DagBag is filled in a child process started with the lake's Airflow environment
(`lake_config.airflow.check_dags`), exactly as the DAG processor would see the files, so this
process never imports Airflow. No service is needed: the database URL points at a closed port,
which proves that parsing the DAGs touches no database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lake_config.airflow import DAGS_FOLDER, DagBagReport, check_dags
from lake_config.settings import Settings
from lake_config.spark import DELTA_PACKAGE, HADOOP_AWS_PACKAGE

STAGES = ["bronze", "silver", "quality", "gold", "finish"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> DagBagReport:
    settings = Settings(
        env="test",
        home=tmp_path_factory.mktemp("dagbag-home"),
        database_url="postgresql://postgres@127.0.0.1:9/no_database_here",
    )
    return check_dags(settings)


@pytest.fixture(scope="module")
def pipeline_dag(report: DagBagReport) -> dict[str, Any]:
    return report.dags["telemetry_lake"]


def test_every_dag_file_imports_without_errors(report: DagBagReport) -> None:
    assert report.import_errors == {}


def test_both_dags_are_found_in_the_dags_folder(report: DagBagReport) -> None:
    assert sorted(report.dags) == ["telemetry_lake", "telemetry_lake_cluster", "tlake_maintenance"]
    assert {Path(d["fileloc"]).parent for d in report.dags.values()} == {DAGS_FOLDER}


def test_stages_run_in_order_after_reconcile_and_claim(pipeline_dag: dict[str, Any]) -> None:
    assert sorted(pipeline_dag["tasks"]) == sorted(
        ["reconcile", "claim", *STAGES, "monitor", "release"]
    )
    upstream = pipeline_dag["upstream"]
    assert upstream["reconcile"] == []
    assert upstream["claim"] == ["reconcile"]
    for before, stage in zip(["claim", *STAGES[:-1]], STAGES, strict=True):
        assert upstream[stage] == sorted({"claim", before}), stage


def test_the_monitor_follows_finish_and_never_retries(pipeline_dag: dict[str, Any]) -> None:
    assert pipeline_dag["upstream"]["monitor"] == ["finish"]
    assert pipeline_dag["trigger_rules"]["monitor"] == "all_success"
    assert pipeline_dag["retries"]["monitor"] == 0


def test_release_follows_every_stage_and_runs_only_when_one_failed(
    pipeline_dag: dict[str, Any],
) -> None:
    assert pipeline_dag["upstream"]["release"] == sorted(STAGES)
    rules = pipeline_dag["trigger_rules"]
    assert rules == {
        **{t: "all_success" for t in ["reconcile", *STAGES, "monitor"]},
        "claim": "all_done",  # a failed reconcile alerts but does not hold back the run
        "release": "one_failed",
    }


def test_one_run_at_a_time_every_fifteen_minutes_without_catchup(
    pipeline_dag: dict[str, Any],
) -> None:
    assert pipeline_dag["max_active_runs"] == 1
    assert pipeline_dag["schedule"] == "*/15 * * * *"
    assert pipeline_dag["catchup"] is False


def test_tasks_retry_with_exponential_backoff_and_alert_when_they_give_up(
    pipeline_dag: dict[str, Any],
) -> None:
    tasks = pipeline_dag["tasks"]
    assert pipeline_dag["retries"] == {**dict.fromkeys(tasks, 2), "release": 3, "monitor": 0}
    assert pipeline_dag["retry_delay_s"] == dict.fromkeys(tasks, 30.0)
    assert all(pipeline_dag["retry_exponential_backoff"].values())
    assert all(pipeline_dag["on_failure_callback"].values())


def test_cluster_dag_submits_the_spark_stages_with_delta_and_s3a(report: DagBagReport) -> None:
    cluster = report.dags["telemetry_lake_cluster"]
    assert cluster["tasks"] == [
        "claim",
        "bronze",
        "silver",
        "quality",
        "gold",
        "finish",
        "release",
    ]
    assert cluster["schedule"] == "None"
    assert cluster["max_active_runs"] == 1
    spark_stages = {t: op for t, op in cluster["operators"].items() if op == "SparkSubmitOperator"}
    assert sorted(spark_stages) == ["bronze", "gold", "quality", "silver"]
    # The same jar versions as the classic session of lake_config.spark.
    assert cluster["packages"] == dict.fromkeys(
        spark_stages, f"{DELTA_PACKAGE},{HADOOP_AWS_PACKAGE}"
    )
