"""The quality stage: run checks (lake_config.quality.RUN_CHECKS) after silver, before gold.

Row expectations are judged inside the silver stage, before its commit. What only the committed
tables can answer is checked here, for the objects of one run:

- silver_holds_accepted: every event of the run that passed the row rules is in silver;
- quarantine_holds_rejected: every line that broke a quarantining rule is in quarantine.events;
- source_table_complete: every origin-source event of the run is in its source's silver table;
- heartbeat_device_inventoried (referential): a fleet heartbeat's machine has an inventory
  record, in this run or already in gold.fleet_devices.

The run's rows as its silver stage staged them (or, without those, its bronze rows through
silver's row rules again: pure, so they give what silver decided) give the few columns the
checks need, materialized once as scratch Parquet; then every check is one anti-join against
the tables, first narrowed to the files this run wrote, and only if that misses a row, pruned
to the run's event dates and objects (`_check`). Counts go to analytics.dq_results; a
broken `fail` check raises QualityError, so gold never runs on a run whose silver is incomplete
and the run's claims are released for the next run to redo.

    spark-submit spark_jobs/checks.py --run-id <run id>
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from lake_config.quality import RUN_CHECKS, RunCheck
from lake_config.settings import Settings
from lake_config.tables import (
    GOLD_FLEET_DEVICES,
    QUARANTINE_EVENTS,
    SILVER_DEVICE_EVENTS,
    SOURCES,
)
from spark_jobs import lake, quality, staging

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

STAGE = "quality"
STAGED = "quality"  # the checks' columns, staged when silver staged nothing for the run
SUBJECTS_DDL = (
    "valid boolean, event_id string, device_id string, event_type string, family string, "
    "event_date date, record_key string, rule_names array<string>, received_at timestamp"
)
# The checks that look rows up in the committed tables (the referential one reads a small
# per-device table whole).
LOOKUP_CHECKS = frozenset(
    {"silver_holds_accepted", "quarantine_holds_rejected", "source_table_complete"}
)
FLEET = "fleet"


@dataclass(frozen=True)
class CheckCounts:
    rows_checked: int  # the run's lines (every check looks at a subset of them)
    failed: int  # rows failing any check, warn included
    results: tuple[quality.RuleResult, ...] = ()
    passes: int = 1  # 2 when rows were looked up beyond this run's own files (`_check`)


def subjects(classified: DataFrame) -> DataFrame:
    """What the checks look at, one row per line of the run: whether it passed the row rules,
    its ids, its date, its record key and the names of the rules it broke.

    `classified` is `silver.device_events.check` (or `classify`) of the run's bronze rows. The
    load collects this projection once (a plain projection: Sail re-parses the payload for
    every field when a filter is pushed into it, which cost 3x as much)."""
    from pyspark.sql import functions as F

    return classified.select(
        (F.size("rules") == 0).alias("valid"),
        "event_id",
        "device_id",
        "event_type",
        F.split("schema_version", "/")[0].alias("family"),
        F.to_date("occurred_at").alias("event_date"),
        F.concat(F.col("object_key"), F.lit(":"), F.col("line_no").cast("string")).alias(
            "record_key"
        ),
        F.col("rules.rule").alias("rule_names"),
        "received_at",
    )


def transform(
    lines: DataFrame,
    silver_ids: DataFrame,
    quarantined: DataFrame,
    source_ids: DataFrame,
    inventoried: DataFrame,
    checks: Sequence[RunCheck] = RUN_CHECKS,
) -> DataFrame:
    """Rows checked and failed per run check: (rule, rows_checked, rows_failed).

    `lines` is `subjects(...)` of the run's lines; the others are what the tables hold:
    `silver_ids` (event_id), `quarantined` (record_key, rule), `source_ids` (family, event_id)
    of the source tables, `inventoried` (device_id) of machines with an inventory record.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    valid = lines.where(F.col("valid"))
    rejected = lines.where(~F.col("valid")).select(
        "record_key", F.explode("rule_names").alias("rule")
    )
    sourced = valid.where(F.col("family").isin([s.family for s in SOURCES]))
    beats = valid.where((F.col("family") == FLEET) & (F.col("event_type") == "heartbeat"))
    known = inventoried.select("device_id").unionByName(
        valid.where((F.col("family") == FLEET) & (F.col("event_type") == "inventory")).select(
            "device_id"
        )
    )
    subjects: dict[str, tuple[DataFrame, DataFrame, list[str]]] = {
        "silver_holds_accepted": (valid, silver_ids.select("event_id"), ["event_id"]),
        "quarantine_holds_rejected": (rejected, quarantined, ["record_key", "rule"]),
        "source_table_complete": (sourced, source_ids, ["family", "event_id"]),
        "heartbeat_device_inventoried": (beats, known, ["device_id"]),
    }
    parts = []
    for check in checks:
        rows, present, on = subjects[check.rule]
        hits = present.select(*on).distinct().withColumn("_present", F.lit(True))
        parts.append(
            rows.select(*on)
            .join(hits, on, "left")
            .select(
                F.lit(check.rule).alias("rule"),
                F.col("_present").isNull().cast("long").alias("failed"),
            )
        )
    counts = reduce(lambda a, b: a.unionByName(b), parts)
    return counts.groupBy("rule").agg(
        F.count(F.lit(1)).alias("rows_checked"), F.sum("failed").alias("rows_failed")
    )


def results(
    rows: Sequence[dict[str, object]] | Sequence[object], checks: Sequence[RunCheck] = RUN_CHECKS
) -> list[quality.RuleResult]:
    """Every check's RuleResult from `transform`'s collected rows (0/0 for a check with none)."""
    found = {r["rule"]: r for r in rows}  # type: ignore[index]
    return [
        quality.RuleResult(
            table=c.table,
            rule=c.rule,
            dimension=c.dimension,
            action=c.action,
            rows_checked=int(found[c.rule]["rows_checked"] or 0) if c.rule in found else 0,  # type: ignore[index]
            rows_failed=int(found[c.rule]["rows_failed"] or 0) if c.rule in found else 0,  # type: ignore[index]
        )
        for c in checks
    ]


# --- I/O ---------------------------------------------------------------------------------------


def load(
    spark: SparkSession,
    settings: Settings,
    run_id: str,
    object_keys: Sequence[str],
    *,
    checks: Sequence[RunCheck] = RUN_CHECKS,
) -> CheckCounts:
    """Check what silver committed for `object_keys`; record the counts, then enforce `fail`."""
    from pyspark.errors import AnalysisException

    from spark_jobs.bronze.events import read_run_rows
    from spark_jobs.silver.device_events import STAGED as SILVER_STAGED
    from spark_jobs.silver.device_events import check

    if not object_keys:
        return CheckCounts(rows_checked=0, failed=0)
    # The rows silver staged for the run (Parquet already: a plain projection of it is cheap),
    # or else the row rules without silver's deduplication window (only `rules` matters here)
    # over the run's bronze rows, their few needed columns staged once (spark_jobs.staging): a
    # plain projection, materialized, so no check filters into the parsed payload (Sail
    # re-parses the JSON for every field then, 3x the cost), and nothing as large as the run
    # passes through the driver.
    staged = staging.read(spark, settings, run_id, SILVER_STAGED)
    if staged is not None:
        lines = subjects(staged)
    else:
        checked = check(
            read_run_rows(spark, settings, object_keys),
            SILVER_DEVICE_EVENTS.expectations,
            settings.clock_skew_threshold_s,
        )
        lines = staging.write(spark, settings, run_id, STAGED, subjects(checked))
    try:
        line_count, dates, received = _lines_and_dates(lines)
    except AnalysisException:  # no file written: the objects hold no line at all
        lines = spark.createDataFrame([], SUBJECTS_DDL)
        line_count, dates, received = 0, [], None
    return _check(spark, settings, run_id, object_keys, lines, line_count, dates, received, checks)


def _check(
    spark: SparkSession,
    settings: Settings,
    run_id: str,
    object_keys: Sequence[str],
    lines: DataFrame,
    line_count: int,
    dates: list[date],
    received: tuple[datetime, datetime] | None,
    checks: Sequence[RunCheck],
) -> CheckCounts:
    """Run the checks, looking first only where this run's rows are, then, if that missed
    any, everywhere they could be.

    What this run's silver stage wrote has its lines' received_at, and what its stages
    quarantined has its run_id, so the first pass reads only the files whose statistics admit
    those (Delta data skipping): a cost of the run, not of the lake. A row the first pass does
    not find may still be there, written by an earlier run — an event re-sent across runs, or
    a crashed run's work taken over — so only then does a second pass read the tables pruned
    to the run's event dates and objects, and its answer is the one recorded.
    """
    narrow = _lookups(spark, settings, run_id, object_keys, dates, received)
    found = results(transform(lines, *narrow, checks).collect(), checks)
    passes = 1
    if received is not None and any(r.rows_failed for r in found if r.rule in LOOKUP_CHECKS):
        wide = _lookups(spark, settings, run_id, object_keys, dates, None)
        found = results(transform(lines, *wide, checks).collect(), checks)
        passes = 2
    quality.record(settings.database_url, run_id, found, datetime.now(UTC))
    quality.enforce(found, outcome="gold did not run")
    return CheckCounts(
        rows_checked=line_count,
        failed=sum(r.rows_failed for r in found),
        results=tuple(found),
        passes=passes,
    )


def _lookups(
    spark: SparkSession,
    settings: Settings,
    run_id: str,
    object_keys: Sequence[str],
    dates: list[date],
    received: tuple[datetime, datetime] | None,
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """`transform`'s table frames: silver ids, quarantined keys, source ids, inventoried
    devices. With `received` (the run's received_at range), narrowed to this run's rows."""
    from pyspark.sql import functions as F

    def pruned(table_df: DataFrame) -> DataFrame:
        # No valid event: nothing to look up (and `in ()` is not SQL every engine accepts).
        if not dates:
            return table_df.where(F.lit(False))
        table_df = table_df.where(F.col("event_date").isin(dates))
        if received is not None:
            low, high = received
            table_df = table_df.where(F.col("received_at").between(low, high))
        return table_df

    silver_ids = pruned(lake.read(spark, settings, SILVER_DEVICE_EVENTS))
    quarantined = lake.read(spark, settings, QUARANTINE_EVENTS)
    if received is not None:
        quarantined = quarantined.where(F.col("run_id") == run_id)
    quarantined = quarantined.where(F.col("object_key").isin(list(object_keys)))
    source_ids = None
    for source in SOURCES:
        ids = pruned(lake.read(spark, settings, source.table)).select(
            F.lit(source.family).alias("family"), "event_id"
        )
        source_ids = ids if source_ids is None else source_ids.unionByName(ids)
    inventoried = (
        lake.read(spark, settings, GOLD_FLEET_DEVICES)
        .where(F.col("inventoried_at").isNotNull())
        .select("device_id")
    )
    assert source_ids is not None  # SOURCES is never empty
    return silver_ids, quarantined, source_ids, inventoried


def _lines_and_dates(
    lines: DataFrame,
) -> tuple[int, list[date], tuple[datetime, datetime] | None]:
    """The run's line count, the event dates of its valid lines (where silver and the source
    tables hold them) and the range of its lines' received_at, in one small aggregation."""
    from pyspark.sql import functions as F

    rows = (
        lines.groupBy(F.when(F.col("valid"), F.col("event_date")).alias("d"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.min("received_at").alias("low"),
            F.max("received_at").alias("high"),
        )
        .collect()
    )
    lows = [r["low"] for r in rows if r["low"] is not None]
    highs = [r["high"] for r in rows if r["high"] is not None]
    received = (min(lows), max(highs)) if lows and highs else None
    dates = sorted(r["d"] for r in rows if r["d"] is not None)
    return sum(int(r["n"]) for r in rows), dates, received


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the quality stage for the objects a run holds."""
    parser = argparse.ArgumentParser(description="Check what silver committed for a run.")
    parser.add_argument("--run-id", required=True, help="run that claimed the objects")
    args = parser.parse_args(argv)
    from lake_config.settings import get_settings
    from spark_jobs import pipeline

    print(pipeline.quality(get_settings(), args.run_id))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
