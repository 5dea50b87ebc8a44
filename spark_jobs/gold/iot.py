"""IoT gold (002): one-minute aggregates per sensor (readings, avg, min, max, out of range).

A run recomputes every minute of the (sensor, hour)s its readings touch, from silver, so a late
reading lands in the right minute and a minute's figures never depend on how readings were
split into runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake_config.settings import Settings
from lake_config.tables import GOLD_IOT_SENSOR_MINUTE, SILVER_IOT_READINGS
from spark_jobs import lake
from spark_jobs.gold.common import NOTHING, GoldCounts, Touched
from spark_jobs.serving import serve

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FAMILY = "iot"


def transform(readings_df: DataFrame) -> DataFrame:
    """silver.iot_readings rows -> gold.iot_sensor_minute rows."""
    from pyspark.sql import functions as F

    value = F.col("value")
    outside = (value < F.col("range_min")) | (value > F.col("range_max"))
    minutes = readings_df.groupBy(
        "device_id", F.date_trunc("minute", F.col("occurred_at")).alias("minute_start")
    ).agg(
        F.count(F.lit(1)).alias("readings"),
        F.avg(value).alias("avg_value"),
        F.min(value).alias("min_value"),
        F.max(value).alias("max_value"),
        F.sum(F.coalesce(outside, F.lit(False)).cast("long")).alias("out_of_range"),
        F.max("unit").alias("unit"),
        F.max("type").alias("type"),
        F.max("location").alias("location"),
    )
    return lake.conform(minutes, GOLD_IOT_SENSOR_MINUTE)


def load(spark: SparkSession, settings: Settings, touched: Touched) -> GoldCounts:
    """Recompute the minutes of the (sensor, hour)s the run touches; Delta, then PostgreSQL."""
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    touched = touched.of(FAMILY)
    lake.ensure_created(spark, settings, GOLD_IOT_SENSOR_MINUTE)
    if touched.empty:
        return NOTHING
    readings = (
        lake.read(spark, settings, SILVER_IOT_READINGS)
        .where(F.col("event_date").isin(touched.dates()))
        .withColumn("event_hour", F.date_trunc("hour", F.col("occurred_at")))
    )
    affected = readings.join(
        touched.frame(spark, "device_id", "event_hour"), ["device_id", "event_hour"], "left_semi"
    )
    rows = transform(affected).toArrow()
    if rows.num_rows == 0:
        return NOTHING
    written = lake.merge(
        spark, settings, GOLD_IOT_SENSOR_MINUTE, spark.createDataFrame(rows), update=True
    )
    served = serve(settings.database_url, GOLD_IOT_SENSOR_MINUTE, rows)
    events = int(pc.sum(rows.column("readings")).as_py())
    return GoldCounts(events, rows.num_rows, written, served)
