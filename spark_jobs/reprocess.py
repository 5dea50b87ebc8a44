"""`tlake reprocess --since D [--until D]`: rebuild silver and gold for a range of event dates.

After a fix to a transform, a rule or a setting (the clock-skew threshold), the events of a date
range are derived again from bronze, which keeps every line as it landed. One reprocess is a run
like any other, with its own run id, and goes through the registry:

1. Under the silver-writers lock (no silver stage can commit meanwhile), the objects behind the
   range are found: those with silver rows dated in it, and those received in it (events they
   sent to quarantine may pass today). Every one of them must be processed (one still being
   processed is refused, claiming nothing); they are claimed, session-tied, for this run.
2. Still under the lock: the range's rows go from silver.device_events and the source tables
   (whole date partitions), and those objects' silver-stage quarantine rows go too; then the
   silver stage derives the objects again with today's code and rules. Rows of those objects
   outside the range are already there and stay as they are (silver's MERGE is insert-only).
3. The quality stage checks the result; gold rows in the range are cleared (Delta and the
   PostgreSQL mirror) and every gold job recomputes the keys the range held before and holds
   now; the objects are marked processed again.

Idempotent: a second reprocess of the same range gives the same tables. Crash-safe through the
registry: if the process dies, its claims are abandoned at once, the next `tlake run` takes the
objects and its insert-only silver MERGE and gold recompute restore what was cleared; a second
reprocess then makes the range exact again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from lake_config.registry import commit_lock
from lake_config.settings import Settings
from lake_config.tables import QUARANTINE_EVENTS, SILVER_DEVICE_EVENTS, SOURCES, TABLES, Table
from spark_jobs import lake, maintenance
from spark_jobs.errors import RunError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_jobs.gold.common import Touched
    from spark_jobs.pipeline import StageResult

# Every silver stage holds this lock shared while it derives and commits; reprocess holds it
# exclusively from choosing its objects until their silver rows are back.
SILVER_WRITERS = "tlake.silver-writers"
SILVER_TABLES: tuple[Table, ...] = (SILVER_DEVICE_EVENTS, *(s.table for s in SOURCES))
GOLD_TIMED: tuple[Table, ...] = tuple(
    t for t in TABLES if t.layer == "gold" and t.time_column is not None
)


@dataclass(frozen=True)
class ReprocessResult:
    run_id: str
    since: date
    until: date
    objects: int
    dry_run: bool = False
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows cleared
    stages: tuple[StageResult, ...] = ()

    def render(self) -> str:
        span = f"{self.since.isoformat()} .. {self.until.isoformat()}"
        if self.dry_run:
            return f"reprocess {span}: would derive {self.objects} object(s) again (dry run)"
        if not self.objects:
            return f"reprocess {span}: nothing there"
        lines = [f"reprocess {span}: run {self.run_id}, {self.objects} object(s)"]
        lines += [f"  cleared {n:>9} row(s) of {t}" for t, n in self.deleted.items() if n]
        lines += [
            f"  {s.stage:<7} {s.rows_in:>9} in  {s.rows_written:>9} written  {s.duration_s:6.1f} s"
            for s in self.stages
        ]
        return "\n".join(lines)


def reprocess(
    settings: Settings,
    since: date,
    until: date | None = None,
    *,
    dry_run: bool = False,
    run_id: str | None = None,
) -> ReprocessResult:
    """Derive silver and gold of event dates [since, until] again (see the module doc)."""
    from spark_jobs import pipeline

    until = until or since
    if until < since:
        raise ValueError(f"--until {until} is before --since {since}")
    run_id = run_id or f"reprocess-{pipeline.new_run_id()}"
    crash_after = pipeline.crash_point()
    stage = "claim"
    with pipeline.opened(settings) as run:
        try:
            run.hold = run.registry.hold(run_id)
            with commit_lock(settings, SILVER_WRITERS):
                keys = _objects_in_range(run.spark, settings, since, until)
                if dry_run:
                    return ReprocessResult(run_id, since, until, len(keys), dry_run=True)
                claimed = run.registry.claim_for_reprocess(
                    run_id, keys, _received_window(since, until), run.hold
                )
                if not claimed:
                    return ReprocessResult(run_id, since, until, 0)
                run.claimed = len(claimed)
                run.registry.stage_started(run_id, "claim", len(claimed))
                run.registry.stage_finished(run_id, "claim", rows_out=len(claimed))
                before = _touched_in_range(run.spark, settings, since, until)
                stage = "clear"
                deleted = _clear_silver(settings, since, until, [c.object_key for c in claimed])
                pipeline.maybe_crash(crash_after, stage)
                stage = "silver"
                s = pipeline.silver_stage(run, run_id, lock=False)
            stage = "quality"
            run.heartbeat()
            q = pipeline.quality_stage(run, run_id)
            stage = "gold"
            run.heartbeat()
            deleted |= _clear_gold(settings, since, until)
            g = pipeline.gold_stage(run, run_id, also=before)
            stage = "finish"
            run.heartbeat()
            pipeline.finish_stage(run, run_id)
        except Exception as exc:
            pipeline.release(run, run_id, f"reprocess {stage}: {exc}", exc)
            raise RunError(run_id, stage, str(exc)) from exc
    return ReprocessResult(run_id, since, until, len(claimed), deleted=deleted, stages=(s, q, g))


def _received_window(since: date, until: date) -> tuple[datetime, datetime]:
    start = datetime.combine(since, time(), tzinfo=UTC)
    return start, datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC)


def _in_range(column: str, since: date, until: date) -> str:
    return f"{column} >= '{since.isoformat()}' and {column} <= '{until.isoformat()}'"


def _objects_in_range(
    spark: SparkSession, settings: Settings, since: date, until: date
) -> list[str]:
    """Raw objects holding silver rows dated in the range (partition-pruned, one action)."""
    from pyspark.sql import functions as F

    rows = (
        lake.read(spark, settings, SILVER_DEVICE_EVENTS)
        .where(F.col("event_date").between(since, until))
        .select("object_key")
        .distinct()
        .collect()
    )
    return sorted(r["object_key"] for r in rows if r["object_key"] is not None)


def _touched_in_range(spark: SparkSession, settings: Settings, since: date, until: date) -> Touched:
    """The gold keys the range holds before it is cleared: recomputed even if nothing is left."""
    from pyspark.sql import functions as F

    from spark_jobs.gold.common import Touched

    rows = (
        lake.read(spark, settings, SILVER_DEVICE_EVENTS)
        .where(F.col("event_date").between(since, until))
        .select(
            F.split("schema_version", "/")[0].alias("family"),
            "device_id",
            "event_date",
            "event_hour",
        )
        .distinct()
    )
    return Touched(rows.toArrow())


def _clear_silver(
    settings: Settings, since: date, until: date, object_keys: list[str]
) -> dict[str, int]:
    """Delete the range's silver rows and the objects' silver-stage quarantine rows."""
    deleted = {
        t.name: maintenance.delete_rows(settings, t, _in_range("event_date", since, until))
        for t in SILVER_TABLES
    }
    quoted = ", ".join("'" + k.replace("'", "''") + "'" for k in object_keys)
    deleted[QUARANTINE_EVENTS.name] = maintenance.delete_rows(
        settings, QUARANTINE_EVENTS, f"stage = 'silver' and object_key in ({quoted})"
    )
    return deleted


def _clear_gold(settings: Settings, since: date, until: date) -> dict[str, int]:
    """Delete the gold rows placed in the range, in Delta and in the PostgreSQL mirror."""
    import psycopg

    from spark_jobs.serving import serving_table

    start, end = _received_window(since, until)
    deleted = {}
    for t in GOLD_TIMED:
        column = t.time_column
        deleted[t.name] = maintenance.delete_rows(
            settings,
            t,
            f"{column} >= '{start:%Y-%m-%d %H:%M:%S}' and {column} < '{end:%Y-%m-%d %H:%M:%S}'",
        )
    # The mirrors in one transaction: readers see the range either whole or cleared.
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn, conn.transaction():
        for t in GOLD_TIMED:
            conn.execute(
                f"delete from {serving_table(t)} "
                f"where {t.time_column} >= %s and {t.time_column} < %s",
                (start, end),
            )
    return deleted
