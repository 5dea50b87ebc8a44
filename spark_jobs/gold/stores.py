"""Store gold (001): door-sensor traffic per sensor and hour, failures apart from zero traffic.

gold.store_sensor_hourly holds one row per (store, sensor, hour): the visits counted, or
`failed` with no visits when the sensor reported a failed reading, and `anomaly` when an open
hour's traffic fell below a quarter of the store's mean open-hour traffic that day (001's
anomalies are a tenth of the expected traffic). The daily and per-store resolutions are views
over its PostgreSQL mirror (sql/migrations/0006_sources.sql), so all four always agree.

A run recomputes every (store, day) its readings touch: the anomaly rule needs the whole day.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake_config.settings import Settings
from lake_config.tables import GOLD_STORE_SENSOR_HOURLY, SILVER_STORE_COUNTS
from spark_jobs import lake
from spark_jobs.gold.common import NOTHING, GoldCounts, Touched
from spark_jobs.serving import serve

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FAMILY = "store"
ANOMALY_SHARE = 0.25  # of the store's mean open-hour traffic that day


def transform(counts_df: DataFrame) -> DataFrame:
    """silver.store_counts rows (whole store-days) -> gold.store_sensor_hourly rows.

    Two readings for the same sensor and hour (a re-sent count under a new id): the one
    received last wins.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    hour = F.date_trunc("hour", F.col("occurred_at"))
    latest = Window.partitionBy("store", "sensor_id", "hour_start").orderBy(
        F.col("received_at").desc_nulls_last(), F.col("event_id").desc()
    )
    readings = (
        counts_df.withColumn("hour_start", hour)
        .withColumn("n", F.row_number().over(latest))
        .where(F.col("n") == 1)
    )
    failed = F.col("status") == "failed"
    readings = readings.select(
        "store",
        "sensor_id",
        "hour_start",
        failed.alias("failed"),
        F.when(~failed, F.col("visits")).alias("visits"),
    )
    open_hours = F.when(~F.col("failed") & (F.col("visits") > 0), F.col("visits"))
    store_day = Window.partitionBy("store", F.to_date("hour_start"))
    mean_open = F.avg(open_hours).over(store_day)
    anomaly = F.coalesce(
        ~F.col("failed") & (F.col("visits") > 0) & (F.col("visits") < mean_open * ANOMALY_SHARE),
        F.lit(False),
    )
    return lake.conform(readings.withColumn("anomaly", anomaly), GOLD_STORE_SENSOR_HOURLY)


def load(spark: SparkSession, settings: Settings, touched: Touched) -> GoldCounts:
    """Recompute the (store, day)s the run's readings touch; Delta, then PostgreSQL."""
    from pyspark.sql import functions as F

    touched = touched.of(FAMILY)
    lake.ensure_created(spark, settings, GOLD_STORE_SENSOR_HOURLY)
    if touched.empty:
        return NOTHING
    counts = lake.read(spark, settings, SILVER_STORE_COUNTS).where(
        F.col("event_date").isin(touched.dates())
    )
    store_days = (
        counts.join(touched.frame(spark, "device_id", "event_date"), ["device_id", "event_date"])
        .select("store", "event_date")
        .distinct()
    )
    affected = counts.join(store_days, ["store", "event_date"], "left_semi")
    rows = transform(affected).toArrow()
    if rows.num_rows == 0:
        return NOTHING
    written = lake.merge(
        spark, settings, GOLD_STORE_SENSOR_HOURLY, spark.createDataFrame(rows), update=True
    )
    served = serve(settings.database_url, GOLD_STORE_SENSOR_HOURLY, rows)
    return GoldCounts(rows.num_rows, rows.num_rows, written, served)
