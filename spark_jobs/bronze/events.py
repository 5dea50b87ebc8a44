"""bronze.events: every line of the claimed raw objects, parsed but otherwise as landed.

Grain: one row per line of a raw object, (object_key, line_no). The event stays JSON text in
`payload`; only the ids bronze needs for lineage are lifted out. A line that is not the envelope
of docs/CONTRACTS.md goes to quarantine.events (stage bronze), never dropped. The parsed lines
are staged for the run's silver stage (spark_jobs.staging), which then need not scan bronze.

    spark-submit spark_jobs/bronze/events.py --run-id <run id>
"""

from __future__ import annotations

import argparse
import functools
import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lake_config.registry import ClaimedObject
from lake_config.settings import Settings
from lake_config.spark import lake_scheme
from lake_config.storage import lake_uri
from lake_config.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from spark_jobs import lake, staging
from spark_jobs.bronze.bundles import write as write_bundles
from spark_jobs.lake import Split

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

STAGE = "bronze"

# The raw line envelope. Timestamps are read as text and converted afterwards: Sail cannot
# parse RFC 3339 inside from_json. `event` typed string keeps the object's JSON text.
ENVELOPE_DDL = (
    "object_key string, line_no int, batch_id string, source string, schema_version string, "
    "received_at string, sent_at string, event string"
)
# Lifted out of the event for lineage, each by its JSON path: Sail finds a path by scanning the
# text, where a second from_json built a struct of the three (1M lines: bronze's classify 6.6 s
# instead of 8.6); JVM Spark, which tokenizes the event once per path, came out faster too
# (bench/engines.py: 22,002 events/s instead of 16,540).
EVENT_IDS = ("event_id", "device_id", "event_type")

RULE_MALFORMED = "malformed_line"
RULE_KEY_DATE = "key_date_mismatch"
RULE_MISSING_LINES = "missing_lines"
STAGED = "bronze"  # the run's parsed lines (spark_jobs.staging), read again by silver


@dataclass(frozen=True)
class BronzeCounts:
    lines: int
    written: int  # rows new to bronze.events; 0 when a re-run finds them all there
    quarantined: int  # quarantine rows new to quarantine.events


def classify(lines_df: DataFrame, run_id: str) -> DataFrame:
    """Each line (column `value`) parsed, with `rule`/`reason` set when it must be quarantined.

    A line is malformed when it is not JSON or lacks a usable object_key, line_no, received_at
    or event (or has a sent_at that is not a timestamp). A well-formed line whose received_at
    date differs from the `dt=` of its object key breaks the key contract that silver and gold
    rely on to prune bronze by date, so it is quarantined too rather than loaded where no
    later stage would look for it.
    """
    from pyspark.sql import functions as F

    env = F.from_json(F.col("value"), ENVELOPE_DDL)
    parsed = lines_df.select(F.col("value").alias("line"), env.alias("e")).select(
        "line",
        "e.*",
        lake.bounded_timestamp(F.col("e.received_at")).alias("received_ts"),
        lake.bounded_timestamp(F.col("e.sent_at")).alias("sent_ts"),
        # From the event's text: an event landed as a JSON string holding the object still
        # yields its ids, as silver's parse of the payload will.
        *(F.get_json_object(F.col("e.event"), f"$.{name}").alias(name) for name in EVENT_IDS),
    )
    # Sail yields a null struct for a malformed line, JVM Spark a struct of nulls: test fields.
    invalid = {
        "object_key": F.col("object_key").isNull(),
        "line_no": F.col("line_no").isNull(),
        "received_at": F.col("received_ts").isNull(),
        "sent_at": F.col("sent_at").isNotNull() & F.col("sent_ts").isNull(),
        "event": F.col("event").isNull(),
    }
    malformed = functools.reduce(operator.or_, invalid.values())
    ingest_date = F.to_date(F.col("received_ts"))
    key_mismatch = lake.key_date_differs(F.col("object_key"), ingest_date)
    rule = F.when(malformed, F.lit(RULE_MALFORMED)).when(key_mismatch, F.lit(RULE_KEY_DATE))
    reason = F.when(
        malformed,
        F.concat(
            F.lit("not a raw line envelope: missing or invalid "),
            F.concat_ws(", ", *(_flag(bad, name) for name, bad in invalid.items())),
        ),
    ).when(
        key_mismatch,
        F.concat(
            F.lit("received_at date "),
            ingest_date.cast("string"),
            F.lit(" differs from the object key's dt="),
            lake.key_date_text(F.col("object_key")),
        ),
    )
    return parsed.select(
        "line",
        "object_key",
        "line_no",
        "batch_id",
        "source",
        "schema_version",
        F.col("received_ts").alias("received_at"),
        F.col("sent_ts").alias("sent_at"),
        ingest_date.alias("ingest_date"),
        *EVENT_IDS,
        F.col("event").alias("payload"),
        F.lit(run_id).alias("run_id"),
        rule.alias("rule"),
        reason.alias("reason"),
    )


def split(classified: DataFrame) -> Split:
    """Rows for bronze.events and for quarantine.events from `classify`'s output."""
    from pyspark.sql import functions as F

    rows = lake.conform(classified.where(F.col("rule").isNull()), BRONZE_EVENTS)
    # object_key:line_no when the line told us where it came from, else a hash of the line
    # (Sail has no input_file_name): re-running the same line yields the same key.
    record_key = F.coalesce(
        F.concat(F.col("object_key"), F.lit(":"), F.col("line_no").cast("string")),
        F.sha2(F.col("line"), 256),
    )
    quarantine = classified.where(F.col("rule").isNotNull()).select(
        record_key.alias("record_key"),
        "rule",
        F.lit(STAGE).alias("stage"),
        "object_key",
        "event_id",
        "reason",
        F.col("line").alias("payload"),
        "run_id",
        F.current_timestamp().alias("quarantined_at"),
    )
    return Split(rows, lake.conform(quarantine, QUARANTINE_EVENTS))


def transform(lines_df: DataFrame, run_id: str) -> Split:
    """Raw text lines (column `value`) -> (bronze.events rows, quarantine.events rows)."""
    return split(classify(lines_df, run_id))


def _flag(condition: Column, name: str) -> Column:
    from pyspark.sql import functions as F

    return F.when(condition, F.lit(name))


# --- I/O ---------------------------------------------------------------------------------------


def read_lines(
    spark: SparkSession, settings: Settings, run_id: str, object_keys: Sequence[str]
) -> DataFrame:
    """The text lines of raw objects, read from the few bundles they were gathered into for
    the run (spark_jobs.bronze.bundles: ~5x faster than Sail opening each small object).

    Sail reads a gzip file as one partition, so several bundles spread the parse over the
    cores by themselves; a shuffle before parsing them cost ~0.4 s per 1M lines in 8
    bundles. Only a run whose lines fit in one bundle is redistributed by a hash of the line,
    so that its parse uses every core too (a run of one bundle is at most ~8 MB of gzip).
    """
    bundles = write_bundles(settings, run_id, object_keys)
    if not bundles:  # every object missing or empty: bronze quarantines them all
        return spark.createDataFrame([], "value string")
    scheme = lake_scheme(settings)
    lines = spark.read.text([lake_uri(settings, key, scheme=scheme) for key in bundles])
    return lines.repartition("value") if len(bundles) == 1 else lines


def read_run_rows(
    spark: SparkSession, settings: Settings, object_keys: Sequence[str], run_id: str | None = None
) -> DataFrame:
    """The bronze.events rows of `object_keys`.

    With `run_id`, from the lines that run's bronze stage staged (spark_jobs.staging), when it
    staged them: the same rows without scanning the table. Otherwise from bronze.events, by
    whichever run loaded them, pruned to the `dt=` dates of the keys; `classify` quarantines a
    line that disagrees with its key's date, so the pruning never hides a loaded row.
    """
    from pyspark.sql import functions as F

    if run_id is not None:
        staged = staging.read(spark, settings, run_id, STAGED)
        if staged is not None:
            return lake.conform(staged.where(F.col("rule").isNull()), BRONZE_EVENTS)
    rows = lake.read(spark, settings, BRONZE_EVENTS).where(
        F.col("object_key").isin(list(object_keys))
    )
    dates = lake.key_dates(object_keys)
    if dates is not None:
        rows = rows.where(F.col("ingest_date").isin(dates))
    return rows


def load(
    spark: SparkSession,
    settings: Settings,
    run_id: str,
    objects: Sequence[ClaimedObject],
    *,
    first_load: bool = False,
) -> BronzeCounts:
    """Parse the objects' lines once, then write them to bronze.events and quarantine.events.

    The parsed lines are staged as Parquet (spark_jobs.staging) and everything after reads
    that: one small aggregate (lines per object and ingest date), then the writes, skipped
    when they have nothing to write. With `first_load` (the registry counted this as every
    object's first bronze load, `Registry.begin_bronze`) no line can be in bronze yet, so they
    are appended without reading the table; otherwise they are MERGEd on (object_key,
    line_no), pruned to their ingest dates, and a line already there is not written twice.
    An object that yields fewer lines than the registry counted (missing from the bucket,
    empty, or with damaged gzip: spark_jobs.bronze.bundles) gets a `missing_lines` quarantine
    row instead of passing unnoticed.
    """
    from pyspark.sql import functions as F

    if not objects:
        return BronzeCounts(lines=0, written=0, quarantined=0)
    for table in (BRONZE_EVENTS, QUARANTINE_EVENTS):  # readers may rely on them, even empty
        lake.ensure_created(spark, settings, table)
    keys = [o.object_key for o in objects]
    classified = classify(read_lines(spark, settings, run_id, keys), run_id)
    # The raw line is only kept where quarantine needs it: good lines carry their payload.
    classified = classified.withColumn("line", F.when(F.col("rule").isNotNull(), F.col("line")))
    staged = staging.write(spark, settings, run_id, STAGED, classified)
    stats = (
        staged.groupBy(F.col("rule").isNull().alias("ok"), "object_key", "ingest_date")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    )
    lines = sum(int(r["n"]) for r in stats)
    good = sum(int(r["n"]) for r in stats if r["ok"])
    good_dates = sorted({r["ingest_date"] for r in stats if r["ok"]})
    seen = Counter[str]()
    for r in stats:
        seen[r["object_key"]] += int(r["n"])
    short = [o for o in objects if seen[o.object_key] < o.event_count]
    rows, quarantine = split(staged)
    if short:
        quarantine = quarantine.unionByName(_short_objects(spark, run_id, short, seen))
    written = quarantined = 0
    if good and first_load:
        lake.append(spark, settings, BRONZE_EVENTS, rows, filtered=good < lines)
        written = good
    elif good_dates:
        written = lake.merge(
            spark, settings, BRONZE_EVENTS, rows, prune={"ingest_date": good_dates}
        )
    if short or any(not r["ok"] for r in stats):
        quarantined = lake.merge(spark, settings, QUARANTINE_EVENTS, quarantine)
    return BronzeCounts(lines=lines, written=written, quarantined=quarantined)


def _short_objects(
    spark: SparkSession, run_id: str, short: Sequence[ClaimedObject], seen: Counter[str]
) -> DataFrame:
    """Quarantine rows for objects that gave fewer lines than registered (or none at all)."""
    now = datetime.now(UTC)
    rows = [
        (
            o.object_key,
            RULE_MISSING_LINES,
            STAGE,
            o.object_key,
            None,
            f"registered with {o.event_count} events, {seen[o.object_key]} lines read"
            + (" (object missing or empty)" if not seen[o.object_key] else ""),
            None,
            run_id,
            now,
        )
        for o in short
    ]
    return spark.createDataFrame(rows, QUARANTINE_EVENTS.ddl)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the bronze stage for the objects a run holds."""
    parser = argparse.ArgumentParser(description="Load a run's raw objects into bronze.events.")
    parser.add_argument("--run-id", required=True, help="run that claimed the objects")
    args = parser.parse_args(argv)
    from lake_config.settings import get_settings
    from spark_jobs import pipeline

    print(pipeline.bronze(get_settings(), args.run_id))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
