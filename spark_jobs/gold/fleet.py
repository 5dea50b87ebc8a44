"""Fleet gold (000): the inventory, machines online per snapshot and segment, and the online
share the monitor watches.

- gold.fleet_devices: one row per machine, its latest metadata and status. A run folds the
  reports of its touched dates into what the table holds (earliest first_seen_at, latest
  report's values), so it never rereads a machine's history.
- gold.fleet_segments: 000's segment_timeseries: for each snapshot (fleet_snapshot_minutes
  windows) and segment (State, Type, Supplier, Type and OS and OS_version, ...), the machines
  that reported online, per combination of dimension values.
- gold.fleet_online: per snapshot, machines online, reporting and in error, against the
  inventory known then (machines first seen before the snapshot ended).

A run recomputes every snapshot of the hours its fleet events touch, from silver, over all
machines. Each table is mirrored to the PostgreSQL `analytics` table of the same name.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from lake_config.settings import Settings
from lake_config.tables import (
    GOLD_FLEET_DEVICES,
    GOLD_FLEET_ONLINE,
    GOLD_FLEET_SEGMENTS,
    SILVER_FLEET_STATUS,
)
from spark_jobs import lake
from spark_jobs.gold.common import NOTHING, GoldCounts, Touched
from spark_jobs.serving import serve

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

FAMILY = "fleet"
UNKNOWN = "unknown"  # a dimension the machine did not report
# (segment, dimensions) as 000's API named them; up to three dimensions each.
SEGMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("State", ("state",)),
    ("Type", ("machine_type",)),
    ("Supplier", ("supplier",)),
    ("Model", ("machine_model",)),
    ("OS", ("operating_system",)),
    ("Type and Model", ("machine_type", "machine_model")),
    ("Type and OS", ("machine_type", "operating_system")),
    ("State and Type", ("state", "machine_type")),
    ("Type and OS and OS_version", ("machine_type", "operating_system", "os_version")),
)
# Values of the latest report that gold.fleet_devices keeps.
LATEST = (
    "machine_type",
    "machine_model",
    "supplier",
    "state",
    "branch_id",
    "operating_system",
    "os_version",
    "acquisition_date",
    "last_status",
    "has_error",
)


def snapshot(occurred_at: Column, minutes: int) -> Column:
    """The start of the `minutes`-long window holding `occurred_at`."""
    from pyspark.sql import functions as F

    step = minutes * 60
    return F.timestamp_seconds(F.floor(F.unix_seconds(occurred_at) / step) * step)


def transform_devices(fleet_df: DataFrame) -> DataFrame:
    """silver.fleet_status rows -> one gold.fleet_devices row per machine (its latest report)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest_first = Window.partitionBy("device_id").orderBy(
        F.col("occurred_at").desc(), F.col("event_id").desc()
    )
    whole = Window.partitionBy("device_id")
    ranked = fleet_df.select(
        "*",
        F.row_number().over(newest_first).alias("n"),
        F.min("occurred_at").over(whole).alias("first_seen_at"),
        F.max("occurred_at").over(whole).alias("last_seen_at"),
        F.min(F.when(F.col("event_type") == "inventory", F.col("occurred_at")))
        .over(whole)
        .alias("inventoried_at"),
        F.col("status").alias("last_status"),
    )
    return lake.conform(ranked.where(F.col("n") == 1), GOLD_FLEET_DEVICES)


def online_reports(fleet_df: DataFrame, minutes: int) -> DataFrame:
    """One row per (snapshot, machine) that sent a heartbeat in it: its latest heartbeat's
    values, `online` and `error` (online and reporting an error)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    beats = fleet_df.where(F.col("event_type") == "heartbeat").withColumn(
        "ts", snapshot(F.col("occurred_at"), minutes)
    )
    newest_first = Window.partitionBy("ts", "device_id").orderBy(
        F.col("occurred_at").desc(), F.col("event_id").desc()
    )
    latest = beats.withColumn("n", F.row_number().over(newest_first)).where(F.col("n") == 1)
    online = F.col("status") == "online"
    return latest.select(
        "*",
        online.alias("online"),
        (online & F.coalesce(F.col("has_error"), F.lit(False))).alias("error"),
    )


def transform_segments(fleet_df: DataFrame, minutes: int) -> DataFrame:
    """silver.fleet_status rows -> gold.fleet_segments rows: online machines per snapshot,
    segment and dimension values ('' for dimensions a segment does not have)."""
    from functools import reduce

    from pyspark.sql import functions as F

    online = online_reports(fleet_df, minutes).where(F.col("online"))
    parts = []
    for segment, dims in SEGMENTS:
        padded = [*dims, *([None] * (3 - len(dims)))]
        named = []
        for n, dim in enumerate(padded, start=1):
            if dim is None:
                named += [F.lit("").alias(f"dim{n}_name"), F.lit("").alias(f"dim{n}_value")]
            else:
                value = F.coalesce(F.col(dim).cast("string"), F.lit(UNKNOWN))
                named += [F.lit(dim).alias(f"dim{n}_name"), value.alias(f"dim{n}_value")]
        parts.append(
            online.select("ts", F.lit(segment).alias("segment"), *named)
            .groupBy(
                "ts", "segment", *(f"dim{n}_{k}" for n in (1, 2, 3) for k in ("name", "value"))
            )
            .agg(F.count(F.lit(1)).alias("count"))
        )
    return lake.conform(reduce(lambda a, b: a.unionByName(b), parts), GOLD_FLEET_SEGMENTS)


def transform_online(fleet_df: DataFrame, devices_df: DataFrame, minutes: int) -> DataFrame:
    """silver.fleet_status rows and the inventory (gold.fleet_devices) -> gold.fleet_online."""
    from pyspark.sql import functions as F

    per_snapshot = (
        online_reports(fleet_df, minutes)
        .groupBy("ts")
        .agg(
            F.sum(F.col("online").cast("long")).alias("online"),
            F.count(F.lit(1)).alias("reporting"),
            F.sum(F.col("error").cast("long")).alias("errors"),
        )
    )
    ends = F.col("ts") + F.expr(f"interval {minutes} minutes")
    inventory = (
        per_snapshot.select("ts")
        .crossJoin(devices_df.select("first_seen_at"))
        .where(F.col("first_seen_at") < ends)
        .groupBy("ts")
        .agg(F.count(F.lit(1)).alias("inventory"))
    )
    joined = per_snapshot.join(inventory, "ts", "left").withColumn(
        "inventory", F.greatest(F.coalesce(F.col("inventory"), F.lit(0)), F.col("reporting"))
    )
    share = F.when(F.col("inventory") > 0, F.col("online") / F.col("inventory"))
    return lake.conform(joined.withColumn("online_share", share), GOLD_FLEET_ONLINE)


def with_vanished(segments: DataFrame, held: DataFrame) -> DataFrame:
    """Recomputed segment rows, plus a count of 0 for each combination `held` (the table's rows
    of the same snapshots) that the recompute no longer has: a machine's later heartbeat in a
    snapshot can move it to another combination (offline, new OS version), and the old
    combination must read 0, not keep its old count."""
    from pyspark.sql import functions as F

    keys = list(GOLD_FLEET_SEGMENTS.merge_keys)
    vanished = held.join(segments.select(*keys), keys, "left_anti").withColumn(
        "count", F.lit(0).cast("bigint")
    )
    return segments.unionByName(lake.conform(vanished, GOLD_FLEET_SEGMENTS))


# --- I/O ---------------------------------------------------------------------------------------

# gold.fleet_devices folds new reports into the row there: Delta MERGE (s = new, t = there) and
# the PostgreSQL upsert (excluded = new, t = there) say the same thing.
_NEWER = "{new}.last_seen_at >= t.last_seen_at"


def _fold(new: str) -> dict[str, str]:
    newer = _NEWER.format(new=new)
    return {
        "first_seen_at": f"least(t.first_seen_at, {new}.first_seen_at)",
        "last_seen_at": f"greatest(t.last_seen_at, {new}.last_seen_at)",
        # least() skips nulls on both engines and in PostgreSQL: the earliest record wins.
        "inventoried_at": f"least(t.inventoried_at, {new}.inventoried_at)",
        **{c: f"case when {newer} then {new}.{c} else t.{c} end" for c in LATEST},
    }


def snapshots_of(hours: list[datetime], minutes: int) -> list[datetime]:
    """Every snapshot start inside the given hours."""
    return [h + timedelta(minutes=m) for h in hours for m in range(0, 60, minutes)]


def load(spark: SparkSession, settings: Settings, touched: Touched) -> GoldCounts:
    """Fold the run's fleet reports into the inventory, then recompute the snapshots of the
    hours they touch (segments and online share); Delta first, then PostgreSQL."""
    from pyspark.sql import functions as F

    touched = touched.of(FAMILY)
    for table in (GOLD_FLEET_DEVICES, GOLD_FLEET_SEGMENTS, GOLD_FLEET_ONLINE):
        lake.ensure_created(spark, settings, table)
    if touched.empty:
        return NOTHING
    minutes = settings.fleet_snapshot_minutes
    fleet = lake.read(spark, settings, SILVER_FLEET_STATUS).where(
        F.col("event_date").isin(touched.dates())
    )

    reports = fleet.join(touched.frame(spark, "device_id"), "device_id", "left_semi")
    devices = transform_devices(reports).toArrow()
    counts = NOTHING
    if devices.num_rows:
        written = lake.merge(
            spark,
            settings,
            GOLD_FLEET_DEVICES,
            spark.createDataFrame(devices),
            update=True,
            assignments=_fold("s"),
        )
        served = serve(
            settings.database_url, GOLD_FLEET_DEVICES, devices, assignments=_fold("excluded")
        )
        counts += GoldCounts(reports.count(), devices.num_rows, written, served)

    snaps = snapshots_of(touched.hours(), minutes)
    in_snapshots = fleet.where(snapshot(F.col("occurred_at"), minutes).isin(snaps))
    inventory = lake.read(spark, settings, GOLD_FLEET_DEVICES)
    segments = transform_segments(in_snapshots, minutes)
    held = lake.read(spark, settings, GOLD_FLEET_SEGMENTS).where(F.col("ts").isin(snaps))
    for table, rows in (
        (GOLD_FLEET_SEGMENTS, with_vanished(segments, held).toArrow()),
        (GOLD_FLEET_ONLINE, transform_online(in_snapshots, inventory, minutes).toArrow()),
    ):
        if rows.num_rows:
            written = lake.merge(spark, settings, table, spark.createDataFrame(rows), update=True)
            counts += GoldCounts(
                0, rows.num_rows, written, serve(settings.database_url, table, rows)
            )
    return counts
