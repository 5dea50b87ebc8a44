"""The maintenance DAG loads in Airflow's DagBag: daily, optimize then vacuum, per lake table."""

from __future__ import annotations

from typing import Any

import pytest

from lake_config.airflow import check_dags
from lake_config.settings import Settings


@pytest.fixture(scope="module")
def maintenance_dag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(
        env="test",
        home=tmp_path_factory.mktemp("dagbag-home"),
        database_url="postgresql://postgres@127.0.0.1:9/no_database_here",
    )
    report = check_dags(settings)
    assert report.import_errors == {}
    return report.dags["tlake_maintenance"]


def test_vacuum_follows_optimize_once_a_day(maintenance_dag: dict[str, Any]) -> None:
    assert maintenance_dag["tasks"] == ["optimize", "vacuum", "prune_idempotency", "sweep_staging"]
    assert maintenance_dag["upstream"] == {
        "optimize": [],
        "prune_idempotency": [],
        "sweep_staging": [],
        "vacuum": ["optimize"],
    }
    assert maintenance_dag["operators"] == {
        "optimize": "DecoratedMappedOperator",
        "prune_idempotency": "_PythonDecoratedOperator",
        "sweep_staging": "_PythonDecoratedOperator",
        "vacuum": "DecoratedMappedOperator",
    }
    assert (maintenance_dag["schedule"], maintenance_dag["max_active_runs"]) == ("@daily", 1)
    assert maintenance_dag["catchup"] is False


def test_a_table_whose_upkeep_fails_for_good_raises_an_alert(
    maintenance_dag: dict[str, Any],
) -> None:
    assert maintenance_dag["on_failure_callback"] == {
        "optimize": True,
        "prune_idempotency": True,
        "sweep_staging": True,
        "vacuum": True,
    }
