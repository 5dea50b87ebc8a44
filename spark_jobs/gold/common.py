"""What every gold job shares: the keys a run touched, and what a job reports.

What a run's events touch is worked out once per gold stage and shared by every gold job.

The run's bronze rows go through the silver transform (reading bronze pruned by date, never all
of silver), and the distinct (family, device_id, event_date, event_hour) of the accepted events
come back to the driver as a small Arrow table: devices x hours, not events. Each gold job then
recomputes only its keys under those, reading silver pruned to the touched dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from lake_config.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

COLUMNS = ("family", "device_id", "event_date", "event_hour")


@dataclass(frozen=True)
class GoldCounts:
    """What one gold job did for a run (a re-run reports written = served = 0)."""

    events: int  # silver rows behind the recomputed keys
    keys: int  # gold rows recomputed
    written: int  # gold Delta rows inserted or updated
    served: int  # PostgreSQL rows inserted or changed

    def __add__(self, other: GoldCounts) -> GoldCounts:
        return GoldCounts(
            self.events + other.events,
            self.keys + other.keys,
            self.written + other.written,
            self.served + other.served,
        )


NOTHING = GoldCounts(events=0, keys=0, written=0, served=0)


@dataclass(frozen=True)
class Touched:
    """Distinct (family, device_id, event_date, event_hour) of a run's accepted events."""

    rows: pa.Table

    @property
    def empty(self) -> bool:
        return self.rows.num_rows == 0

    def __or__(self, other: Touched) -> Touched:
        """Both sets of keys (repeats are harmless: every use takes distinct values)."""
        import pyarrow as pa

        if other.empty:
            return self
        if self.empty:
            return other
        return Touched(pa.concat_tables([self.rows, other.rows.cast(self.rows.schema)]))

    def of(self, family: str | None) -> Touched:
        """Only the rows of one schema family (`mobile`, `fleet`, ...); None keeps them all."""
        import pyarrow.compute as pc

        if family is None:
            return self
        return Touched(self.rows.filter(pc.equal(self.rows.column("family"), family)))

    def dates(self, *, days_before: int = 0) -> list[date]:
        """The touched event dates, each with the `days_before` days preceding it."""
        found = set(self.rows.column("event_date").to_pylist())
        return sorted({d - timedelta(days=n) for d in found for n in range(days_before + 1)})

    def hours(self) -> list[datetime]:
        return sorted(set(self.rows.column("event_hour").to_pylist()))

    def devices(self) -> list[str]:
        return sorted(set(self.rows.column("device_id").to_pylist()))

    def frame(self, spark: SparkSession, *columns: str) -> DataFrame:
        """The distinct values of `columns` as a DataFrame, for a semi-join."""
        return spark.createDataFrame(self.rows.select(list(columns))).distinct()


def of_run(
    spark: SparkSession, settings: Settings, run_id: str, object_keys: Sequence[str]
) -> Touched:
    """What the events in `object_keys` touch (one Spark action, over the rows the run's
    silver stage staged when there are some: `device_events.run_rows`).

    The projection is collected as is and filtered and made distinct in Arrow: Sail re-parses
    the payload for every field when a filter on the accepted flag is pushed into it (3x the
    cost). The rows are one per line of the run, a few short columns each.
    """
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    from spark_jobs.silver.device_events import run_rows

    lines = run_rows(spark, settings, run_id, object_keys).select(
        "accepted",
        F.split("schema_version", "/")[0].alias("family"),
        "device_id",
        F.to_date("occurred_at").alias("event_date"),
        F.date_trunc("hour", F.col("occurred_at")).alias("event_hour"),
    )
    table = lines.toArrow()
    accepted = table.filter(pc.fill_null(table.column("accepted"), False)).select(list(COLUMNS))
    return Touched(accepted.group_by(list(COLUMNS)).aggregate([]))
