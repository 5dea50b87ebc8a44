"""gold.device_hourly and its PostgreSQL mirror analytics.device_hourly.

Grain: one row per (device_id, hour_start). A run recomputes only the (device, hour) keys its
events touch, each from all of silver, so the result never depends on how events were split
into runs; then it MERGEs them into the Delta table and upserts the same rows into PostgreSQL.

    spark-submit spark_jobs/gold/device_hourly.py --run-id <run id>
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from lake_config.settings import Settings
from lake_config.tables import GOLD_DEVICE_HOURLY, SILVER_DEVICE_EVENTS
from spark_jobs import lake

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

STAGE = "gold"
LOW_BATTERY_PCT = 20.0
SERVING_TABLE = "analytics.device_hourly"


@dataclass(frozen=True)
class GoldCounts:
    events: int  # silver events behind the recomputed keys
    keys: int  # (device_id, hour_start) rows recomputed
    written: int  # gold Delta rows inserted or updated
    served: int  # PostgreSQL rows inserted or changed


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


def load(spark: SparkSession, settings: Settings, object_keys: Sequence[str]) -> GoldCounts:
    """Recompute the keys touched by `object_keys`, MERGE them into gold, upsert PostgreSQL.

    Three Spark actions: the event dates of the touched keys (to prune silver), the recomputed
    rows (collected once as Arrow, so Delta and PostgreSQL receive the very same rows), and
    the MERGE. The touched keys come from putting the run's bronze rows through the silver
    transform, which reads bronze pruned by date instead of scanning all of silver.
    """
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from spark_jobs.bronze.events import read_run_rows
    from spark_jobs.silver.device_events import transform as silver_transform

    if not object_keys:
        return GoldCounts(events=0, keys=0, written=0, served=0)
    lake.ensure_created(spark, settings, GOLD_DEVICE_HOURLY)  # readers may rely on it, even empty
    run_events = silver_transform(read_run_rows(spark, settings, object_keys)).rows
    touched = run_events.select("device_id", "event_hour", "event_date").distinct()
    dates = [r["event_date"] for r in touched.select("event_date").distinct().collect()]
    if not dates:
        return GoldCounts(events=0, keys=0, written=0, served=0)
    silver = lake.read(spark, settings, SILVER_DEVICE_EVENTS).where(F.col("event_date").isin(dates))
    affected = silver.join(
        touched.select("device_id", "event_hour"), ["device_id", "event_hour"], "left_semi"
    )
    table = transform(affected).toArrow()
    if table.num_rows == 0:
        return GoldCounts(events=0, keys=0, written=0, served=0)
    written = lake.merge(
        spark, settings, GOLD_DEVICE_HOURLY, spark.createDataFrame(table), update=True
    )
    served = serve(settings.database_url, table)
    events = int(pc.sum(table.column("events")).as_py())
    return GoldCounts(events=events, keys=table.num_rows, written=written, served=served)


def serve(database_url: str, table: pa.Table) -> int:
    """Upsert gold rows into analytics.device_hourly; returns rows inserted or changed.

    COPY into a temporary staging table, then one insert ... on conflict. A row whose values
    did not change is left alone (its updated_at included), so a re-run changes nothing.
    """
    columns = GOLD_DEVICE_HOURLY.column_names
    keys = GOLD_DEVICE_HOURLY.merge_keys
    values = [c for c in columns if c not in keys]
    column_list = ", ".join(columns)
    statement = f"""
        insert into {SERVING_TABLE} as t ({column_list})
        select {column_list} from device_hourly_staging
        on conflict ({", ".join(keys)}) do update
        set {", ".join(f"{c} = excluded.{c}" for c in values)}, updated_at = now()
        where ({", ".join(f"t.{c}" for c in values)})
            is distinct from ({", ".join(f"excluded.{c}" for c in values)})
    """
    with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
        conn.execute(
            f"create temporary table device_hourly_staging "
            f"(like {SERVING_TABLE} including defaults) on commit drop"
        )
        with conn.cursor() as cur:
            with cur.copy(f"copy device_hourly_staging ({column_list}) from stdin") as copy:
                for row in table.select(columns).to_pylist():
                    copy.write_row([row[c] for c in columns])
            cur.execute(statement)
            return cur.rowcount


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
