"""Stream gold (004): every value with time-based rolling averages per stream.

`rolling_avg_short` and `rolling_avg_long` average the stream's values in the
`stream_rolling_short_s` and `stream_rolling_long_s` seconds ending at each message (both ends
by timestamp, not by message count, so a gap in the stream shortens the window's content).
004's melt and pivot shapes are views over the PostgreSQL mirror.

A run recomputes the messages of the (stream, hour)s it touches, reading the touched days and
the day before each, so the windows of a day's first messages are complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake_config.settings import Settings
from lake_config.tables import GOLD_STREAM_ROLLING, SILVER_STREAM_VALUES
from spark_jobs import lake
from spark_jobs.gold.common import NOTHING, GoldCounts, Touched
from spark_jobs.serving import serve

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.window import WindowSpec

FAMILY = "stream"


def transform(values_df: DataFrame, short_s: int, long_s: int) -> DataFrame:
    """silver.stream_values rows -> gold.stream_rolling rows (one per message)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def window(seconds: int) -> WindowSpec:
        # Messages in (t - seconds, t], by millisecond timestamp.
        return (
            Window.partitionBy("device_id")
            .orderBy(F.unix_millis(F.col("occurred_at")))
            .rangeBetween(-(seconds * 1000 - 1), 0)
        )

    rolled = values_df.select(
        "*",
        F.avg("value").over(window(short_s)).alias("rolling_avg_short"),
        F.avg("value").over(window(long_s)).alias("rolling_avg_long"),
    )
    return lake.conform(rolled, GOLD_STREAM_ROLLING)


def load(spark: SparkSession, settings: Settings, touched: Touched) -> GoldCounts:
    """Recompute the messages of the (stream, hour)s the run touches; Delta, then PostgreSQL."""
    from pyspark.sql import functions as F

    touched = touched.of(FAMILY)
    lake.ensure_created(spark, settings, GOLD_STREAM_ROLLING)
    if touched.empty:
        return NOTHING
    values = lake.read(spark, settings, SILVER_STREAM_VALUES).where(
        F.col("event_date").isin(touched.dates(days_before=1))
        & F.col("device_id").isin(touched.devices())
    )
    rolled = transform(
        values, settings.stream_rolling_short_s, settings.stream_rolling_long_s
    ).withColumn("event_hour", F.date_trunc("hour", F.col("occurred_at")))
    affected = rolled.join(
        touched.frame(spark, "device_id", "event_hour"), ["device_id", "event_hour"], "left_semi"
    )
    rows = lake.conform(affected, GOLD_STREAM_ROLLING).toArrow()
    if rows.num_rows == 0:
        return NOTHING
    written = lake.merge(
        spark, settings, GOLD_STREAM_ROLLING, spark.createDataFrame(rows), update=True
    )
    served = serve(settings.database_url, GOLD_STREAM_ROLLING, rows)
    return GoldCounts(rows.num_rows, rows.num_rows, written, served)
