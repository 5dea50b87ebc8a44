"""Helpers shared by the jobs that need no Spark: key dates, run ids, error translation."""

from __future__ import annotations

import re
from datetime import date

import psycopg
import pytest
from pyspark.errors import AnalysisException

from spark_jobs import lake, pipeline
from spark_jobs.errors import QueryError, ServingError, SparkJobError, translated


def test_key_dates_are_the_dt_partitions_of_the_keys() -> None:
    keys = [
        "raw/source=mobile/dt=2024-05-02/hour=00/b.jsonl.gz",
        "raw/source=mobile/dt=2024-05-01/hour=23/a.jsonl.gz",
        "raw/source=other/dt=2024-05-01/hour=10/c.jsonl.gz",
    ]
    assert lake.key_dates(keys) == [date(2024, 5, 1), date(2024, 5, 2)]


def test_key_dates_give_up_when_a_key_has_no_date() -> None:
    assert lake.key_dates(["raw/source=m/dt=2024-05-01/hour=1/a.gz", "raw/b.gz"]) is None


def test_run_ids_are_unique_and_sort_by_time() -> None:
    a, b = pipeline.new_run_id(), pipeline.new_run_id()
    assert a != b
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", a)


def test_spark_errors_become_query_errors_with_the_first_line_of_the_message() -> None:
    with (
        pytest.raises(QueryError, match=r"^Spark failed: table not found$") as info,
        translated(),
    ):
        raise AnalysisException("table not found\n  at some.jvm.Frame")
    assert isinstance(info.value.__cause__, AnalysisException)


def test_postgres_errors_become_serving_errors() -> None:
    with (
        pytest.raises(ServingError, match=r"^PostgreSQL failed: connection refused$"),
        translated(),
    ):
        raise psycopg.OperationalError("connection refused")


def test_other_errors_pass_through_untranslated() -> None:
    with pytest.raises(KeyError), translated():
        raise KeyError("x")
    assert issubclass(QueryError, SparkJobError) and issubclass(ServingError, SparkJobError)


def test_a_run_summary_renders_totals_and_one_line_per_stage() -> None:
    summary = pipeline.RunSummary(
        run_id="r1",
        objects=2,
        lines=10,
        processed=2,
        quarantined=1,
        duration_s=3.04,
        stages=(
            pipeline.StageResult("r1", "bronze", 2, 10, 9, 1, 1.5),
            pipeline.StageResult("r1", "silver", 2, 9, 9, 0, 1.0),
        ),
    )
    assert summary.render().splitlines() == [
        "run r1: 2 object(s), 10 line(s), 2 processed, 1 quarantined in 3.0 s",
        "  bronze        10 in          9 written       1 quarantined     1.5 s",
        "  silver         9 in          9 written       0 quarantined     1.0 s",
    ]
    assert pipeline.RunSummary(run_id="r2").render() == "run r2: nothing pending (0.0 s)"
