"""Declared expectations compiled to Spark: every kind, every action, counts in one aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake_config.quality import Expectation
from lake_config.tables import SILVER_DEVICE_EVENTS
from spark_jobs import quality
from spark_jobs.errors import QualityError

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)

EXPECTATIONS = (
    Expectation("no_name", "not_null", "name", "completeness", when="checked"),
    Expectation("bad_when", "parseable", "when_ts", "validity", source="when_text"),
    Expectation("pct", "range", "pct", "validity", action="fail", minimum=0, maximum=100),
    Expectation("kind", "allowed_values", "kind", "validity", action="warn", values=("a", "b")),
    Expectation("dup", "unique", "name", "uniqueness", action="warn", order_by=("n",)),
    Expectation(
        "stale", "freshness", "at", "timeliness", reference="seen", max_age_hours=1, label="at"
    ),
)


def test_every_kind_flags_its_rows_and_counts_them_in_one_aggregate(spark: SparkSession) -> None:
    rows = [
        # n, checked, name, when_text, pct, kind, at, seen
        (0, True, "x", "2024-05-01", 50.0, "a", T0, T0),
        (1, True, " ", "soon", 101.0, "c", T0 - timedelta(hours=2), T0),
        (2, False, None, None, None, None, None, T0),
        (3, True, "x", "2024-05-02", -1.0, "b", T0, T0),
    ]
    df = spark.createDataFrame(
        rows,
        "n int, checked boolean, name string, when_text string, pct double, kind string, "
        "at timestamp, seen timestamp",
    ).withColumn("when_ts", F.try_to_timestamp(F.col("when_text")))

    annotated = quality.annotate(df, EXPECTATIONS)
    broken = {r["n"]: [(x["rule"], x["reason"]) for x in r["rules"]] for r in annotated.collect()}
    stats = annotated.agg(*quality.summary(EXPECTATIONS)).collect()
    found = quality.results("t", EXPECTATIONS, stats)

    # Only quarantining rules keep a row out; warn and fail rules are counted, not listed.
    assert broken == {
        0: [],
        1: [
            ("no_name", "name is missing"),
            ("bad_when", "when_ts soon does not parse"),
            ("stale", "at 2024-05-01 08:00:00 is more than 1 h before seen"),
        ],
        2: [],
        3: [],
    }
    assert [(r.rule, r.rows_checked, r.rows_failed) for r in found] == [
        ("no_name", 3, 1),
        ("bad_when", 4, 1),
        ("pct", 4, 2),
        ("kind", 4, 1),
        ("dup", 4, 1),
        ("stale", 4, 1),
    ]
    with pytest.raises(QualityError, match=r"quality gate: t rule pct \(validity\) failed for 2"):
        quality.enforce(found)
    quality.enforce([r for r in found if r.action != "fail"])  # warn and quarantine never raise


def test_an_incomplete_expectation_is_refused() -> None:
    with pytest.raises(ValueError, match="expectation 'r' of kind range is incomplete"):
        Expectation("r", "range", "c", "validity")
    with pytest.raises(ValueError, match="expectation 'r': unknown action 'drop'"):
        Expectation("r", "not_null", "c", "completeness", action="drop")  # type: ignore[arg-type]


def test_silver_declares_rules_for_five_dimensions_with_unique_names() -> None:
    rules = [e.rule for e in SILVER_DEVICE_EVENTS.expectations]
    assert len(rules) == len(set(rules))
    assert {e.dimension for e in SILVER_DEVICE_EVENTS.expectations} == {
        "completeness",
        "validity",
        "consistency",
        "timeliness",
        "uniqueness",
    }
