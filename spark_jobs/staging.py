"""A run's staged frames: what one stage parsed, written once as Parquet for the next stages.

Bronze parses the raw lines, silver parses the events, and quality and gold need the same
parsed rows again. Recomputing them means parsing the JSON once per Spark action (stats, each
MERGE, each check), and reading the run's rows back out of bronze means scanning the day's
partitions for the run's object keys — a cost that grows with the lake, not with the run.
Instead each stage writes its parsed frame once under the run's folder in the lake bucket,

    _scratch/runs/<run id>/<name>/part-*.parquet     the rows
    _scratch/runs/<run id>/<name>.done               written after them: the frame is whole

(bronze also gathers the run's raw objects there, `raw/part-*.jsonl.gz`, before parsing them:
spark_jobs.bronze.bundles)

and every later action of the run reads that Parquet. A frame without its `.done` marker (a
stage that died while writing it) is never read: `read` answers None and the caller derives
the rows from the Delta tables as before, so staging is an accelerator, not a source of truth.
The folder goes when the run finishes or is released (`clear`); folders of runs that died
are removed by the daily maintenance (`sweep`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lake_config.settings import Settings
from lake_config.spark import lake_scheme
from lake_config.storage import ObjectStore, lake_uri

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

PREFIX = "_scratch/runs"


def folder(run_id: str) -> str:
    """The key prefix of a run's staged frames."""
    if not run_id or "/" in run_id:
        raise ValueError(f"run id {run_id!r} cannot name a staging folder")
    return f"{PREFIX}/{run_id}/"


def write(
    spark: SparkSession, settings: Settings, run_id: str, name: str, frame: DataFrame
) -> DataFrame:
    """Write `frame` as the run's `name` (replacing an earlier try's), mark it whole, and
    return it read back from the Parquet."""
    key = f"{folder(run_id)}{name}"
    store = ObjectStore(settings)
    try:
        store.delete_prefix(f"{key}.done")  # an earlier try's marker must not vouch for this one
        frame.write.mode("overwrite").parquet(lake_uri(settings, key, scheme=lake_scheme(settings)))
        store.put(
            f"{key}.done", b"", content_type="application/octet-stream", content_encoding=None
        )
    finally:
        store.close()
    # The files' own schema, not `frame.schema`: resolving `frame` plans its source again, and
    # a source of raw objects costs a request per object (2.5 s for 3,000). Only a frame that
    # left no file to read a schema from (no rows) pays that.
    from pyspark.errors import AnalysisException

    try:
        staged = read(spark, settings, run_id, name)
    except AnalysisException:
        staged = None
    if staged is None or not staged.columns:  # no file, or (Sail) a folder read as no columns
        staged = read(spark, settings, run_id, name, schema=frame.schema)
    assert staged is not None  # just marked
    return staged


def read(
    spark: SparkSession,
    settings: Settings,
    run_id: str,
    name: str,
    *,
    schema: StructType | str | None = None,
) -> DataFrame | None:
    """The run's staged `name`, or None when no whole copy was written.

    `schema` (a StructType or DDL string) reads an empty frame — no Parquet file at all — as
    zero rows of that schema instead of failing.
    """
    from pyspark.errors import AnalysisException

    key = f"{folder(run_id)}{name}"
    store = ObjectStore(settings)
    try:
        if not store.exists(f"{key}.done"):
            return None
    finally:
        store.close()
    reader = spark.read if schema is None else spark.read.schema(schema)
    uri = lake_uri(settings, key, scheme=lake_scheme(settings))
    try:
        frame = reader.parquet(uri)
        frame.columns  # resolving the schema is what finds the files  # noqa: B018
    except AnalysisException:
        if schema is None:
            raise
        return spark.createDataFrame([], schema)
    return frame


def clear(settings: Settings, run_id: str) -> int:
    """Remove the run's staged frames; returns how many objects went."""
    store = ObjectStore(settings)
    try:
        return store.delete_prefix(folder(run_id))
    finally:
        store.close()


def sweep(settings: Settings, *, older_than: timedelta, keep: set[str] | None = None) -> int:
    """Remove staged frames last written more than `older_than` ago, except runs in `keep`
    (the live ones); returns how many objects went. The folders of runs that died."""
    cutoff = datetime.now(UTC) - older_than
    keep = keep or set()
    store = ObjectStore(settings)
    try:
        newest: dict[str, datetime] = {}
        for info in store.list(f"{PREFIX}/"):
            run_id = info.key[len(PREFIX) + 1 :].split("/", 1)[0]
            when = info.last_modified or datetime.now(UTC)
            newest[run_id] = max(newest.get(run_id, when), when)
        gone = 0
        for run_id, when in newest.items():
            if run_id not in keep and when < cutoff:
                gone += store.delete_prefix(folder(run_id))
        return gone
    finally:
        store.close()
