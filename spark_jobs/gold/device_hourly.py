"""gold.device_hourly and its PostgreSQL mirror analytics.device_hourly.

Grain: one row per (device_id, hour_start), over the events of every source. A run recomputes
only the (device, hour) keys its events touch, each from all of silver, so the result never
depends on how events were split into runs; then it MERGEs them into the Delta table and
upserts the same rows into PostgreSQL.

    spark-submit spark_jobs/gold/device_hourly.py --run-id <run id>
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lake_config.settings import Settings
from lake_config.tables import GOLD_DEVICE_HOURLY, SILVER_DEVICE_EVENTS
from spark_jobs import lake
from spark_jobs.gold.common import NOTHING, GoldCounts, Touched
from spark_jobs.serving import serve

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

STAGE = "gold"
LOW_BATTERY_PCT = 20.0


def transform(silver_df: DataFrame) -> DataFrame:
    """silver.device_events rows -> gold.device_hourly rows, one per (device_id, hour_start)."""
    from pyspark.sql import functions as F

    def count_where(condition: Column) -> Column:
        return F.sum(F.when(condition, 1).otherwise(0))

    hourly = silver_df.groupBy(F.col("device_id"), F.col("event_hour").alias("hour_start")).agg(
        F.count(F.lit(1)).alias("events"),
        F.count_distinct("session_id").alias("sessions"),
        F.count_distinct("event_type").alias("event_types"),
        count_where(F.col("event_type") == "crash").alias("crash_events"),
        F.avg("battery_pct").alias("avg_battery_pct"),
        F.min("battery_pct").alias("min_battery_pct"),
        F.avg("battery_temperature_c").alias("avg_battery_temperature_c"),
        count_where(F.col("battery_pct") < LOW_BATTERY_PCT).alias("low_battery_events"),
        F.avg("network_signal_dbm").alias("avg_signal_dbm"),
        count_where(F.col("network_type") == "wifi").alias("wifi_events"),
        count_where(F.col("network_type") == "cellular").alias("cellular_events"),
        F.min("occurred_at").alias("first_event_at"),
        F.max("occurred_at").alias("last_event_at"),
    )
    return lake.conform(hourly, GOLD_DEVICE_HOURLY)


# --- I/O ---------------------------------------------------------------------------------------


def load(spark: SparkSession, settings: Settings, touched: Touched) -> GoldCounts:
    """Recompute the (device, hour) keys `touched`, MERGE them into gold, upsert PostgreSQL.

    Two Spark actions: the recomputed rows (collected once as Arrow, so Delta and PostgreSQL
    receive the very same rows) and the MERGE. Silver is read pruned to the touched dates.
    """
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    lake.ensure_created(spark, settings, GOLD_DEVICE_HOURLY)  # readers may rely on it, even empty
    if touched.empty:
        return NOTHING
    silver = lake.read(spark, settings, SILVER_DEVICE_EVENTS).where(
        F.col("event_date").isin(touched.dates())
    )
    affected = silver.join(
        touched.frame(spark, "device_id", "event_hour"), ["device_id", "event_hour"], "left_semi"
    )
    table = transform(affected).toArrow()
    if table.num_rows == 0:
        return NOTHING
    written = lake.merge(
        spark, settings, GOLD_DEVICE_HOURLY, spark.createDataFrame(table), update=True
    )
    served = serve(settings.database_url, GOLD_DEVICE_HOURLY, table)
    events = int(pc.sum(table.column("events")).as_py())
    return GoldCounts(events=events, keys=table.num_rows, written=written, served=served)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the gold stage for the objects a run holds."""
    parser = argparse.ArgumentParser(description="Recompute gold for a run's device hours.")
    parser.add_argument("--run-id", required=True, help="run that claimed the objects")
    args = parser.parse_args(argv)
    from lake_config.settings import get_settings
    from spark_jobs import pipeline

    print(pipeline.gold(get_settings(), args.run_id))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
