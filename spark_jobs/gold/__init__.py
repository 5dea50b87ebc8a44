"""Gold jobs: aggregates of silver into Delta and their PostgreSQL `analytics` mirrors.

Every job has the same shape: pure `transform()`s, and `load(spark, settings, touched)` that
recomputes only the keys a run's events touched (spark_jobs.gold.common.Touched). The gold stage
runs them in this order: device_hourly covers every source's events; each source job skips at
once when the run holds none of its events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from spark_jobs.gold import device_hourly, fleet, iot, stores, stream

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lake_config.settings import Settings
    from spark_jobs.gold.common import GoldCounts, Touched

GoldJob = Callable[["SparkSession", "Settings", "Touched"], "GoldCounts"]

GOLD_JOBS: tuple[GoldJob, ...] = (
    device_hourly.load,
    fleet.load,
    stores.load,
    iot.load,
    stream.load,
)
