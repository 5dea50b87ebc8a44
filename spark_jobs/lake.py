"""Reading and merging the declared lake tables, the same way on Sail and on JVM Spark.

Every write is a MERGE on the table's declared keys (or an append of rows that cannot be there
yet, bronze's first load of an object), so a stage re-run for the same objects
writes nothing twice, and holds the table's commit lock (lake_config.registry.commit_lock), so
concurrent runs queue per table instead of failing each other's commits. A missing table is
created from its declaration through `lake_config.spark.ensure_table`; tables are then read and
merged by path, so a session whose catalog still names a table in another bucket fails loudly
instead of writing to the wrong lake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, NamedTuple

from lake_config.registry import commit_lock
from lake_config.settings import Settings
from lake_config.spark import ensure_table, table_uri
from lake_config.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# The date partition of a raw object key, `.../dt=YYYY-MM-DD/...` (docs/CONTRACTS.md).
_KEY_DATE = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")


class Split(NamedTuple):
    """What a transform accepted, and what it sent to quarantine (QUARANTINE_EVENTS rows)."""

    rows: DataFrame
    quarantine: DataFrame


def conform(df: DataFrame, table: Table) -> DataFrame:
    """`df` reduced to the table's columns, in declared order, cast to declared types."""
    from pyspark.sql import functions as F

    return df.select(*(F.col(c.name).cast(c.type).alias(c.name) for c in table.columns))


def read(spark: SparkSession, settings: Settings, table: Table) -> DataFrame:
    """The table as a DataFrame, created empty first if it does not exist yet."""
    return ensure_created(spark, settings, table)


def ensure_created(spark: SparkSession, settings: Settings, table: Table) -> DataFrame:
    """The table by path, after creating it from its declaration when no Delta log is there.

    An existing table is not declared again: Sail 0.7.2 reads a date partition column of an
    existing table back as a string and refuses `create table ... (columns)` over it, which
    would fail every run after the first. An existing table that lacks declared columns gains
    them (schema evolution, `maintenance.add_columns`): a new optional column appears without
    rewriting a file, and rows written before it read null.
    """
    from pyspark.errors import AnalysisException

    uri = table_uri(settings, table)
    try:
        df = spark.read.format("delta").load(uri)
        present = set(df.columns)  # resolving the schema is what proves the table exists
    except AnalysisException:
        with commit_lock(settings, uri):  # a concurrent run may be creating it too
            ensure_table(spark, settings, table)
        return spark.read.format("delta").load(uri)
    if set(table.column_names) <= present:
        return df
    from spark_jobs.maintenance import add_columns

    with commit_lock(settings, uri):  # schema evolution: declared columns the table lacks
        add_columns(settings, table, table.columns)
    return spark.read.format("delta").load(uri)


def merge(
    spark: SparkSession,
    settings: Settings,
    table: Table,
    source: DataFrame,
    *,
    update: bool = False,
    assignments: Mapping[str, str] | None = None,
    prune: Mapping[str, Iterable[date]] | None = None,
    filtered: bool = True,
) -> int:
    """MERGE `source` into `table` on its merge keys; returns the rows inserted or updated.

    Insert-only by default: a key already present keeps its row (first written wins). With
    `update`, matched rows are replaced; `assignments` then sets those columns with SQL over
    `t` (the row there) and `s` (the new one) instead, the others still taken from `s`.
    `prune` restricts the target side to the given values of partition columns; every source
    row must fall inside them, or it would be inserted again on a re-run.

    An insert-only MERGE whose source has no key in the (pruned) table inserts every source
    row, which an append does at a fraction of the cost: Sail's MERGE of 1M new rows into a
    day of 2M took 4.0-4.7 s, the key check (a semi join reading only the table's key
    columns) 0.45 s and the append 1.8 s. So under the commit lock the keys are checked first,
    and the MERGE runs only when some are there already (a re-run, a resent event).
    `filtered=False` tells, as for `append`, that `source`'s filters drop no row: that append
    then goes without the barrier below.
    """
    ensure_created(spark, settings, table)
    view = f"tlake_merge_source_{table.sql_name}"
    # Sail 0.7.2 checks NOT NULL columns on the source rows *before* the source's own filters
    # (a quarantined line with a null ingest_date fails the bronze MERGE although it was
    # filtered out). A shuffle on the merge keys is a barrier it does not plan across, and
    # costs little: the MERGE join partitions the source by these keys anyway.
    conform(source, table).repartition(*table.merge_keys).createOrReplaceTempView(view)
    pruned = []  # conditions on the target's partition columns, as SQL over its columns
    for column, values in (prune or {}).items():
        literals = ", ".join(sorted({f"date'{v.isoformat()}'" for v in values}))
        if not literals:  # `in ()` would match nothing and insert every row again
            raise ValueError(f"prune on {column!r} needs at least one value")
        pruned.append(f"{column} in ({literals})")
    on = [f"t.{key} = s.{key}" for key in table.merge_keys] + [f"t.{c}" for c in pruned]
    matched = ""
    if update:
        assigned = {c: f"s.{c}" for c in table.column_names if c not in table.merge_keys}
        assigned |= dict(assignments or {})
        matched = " when matched then update set " + ", ".join(
            f"t.{c} = {e}" for c, e in assigned.items()
        )
    statement = (
        f"merge into delta.`{table_uri(settings, table)}` as t using {view} as s"
        f" on {' and '.join(on)}{matched} when not matched then insert *"
    )
    # Both engines answer a MERGE with one row whose first column counts affected rows
    # (Sail: count; Delta on JVM: num_affected_rows). One writer per table at a time: Sail
    # fails a commit that races another instead of retrying it (see commit_lock).
    with commit_lock(settings, table_uri(settings, table)):
        if not update and not _any_key_present(spark, settings, table, source, pruned):
            inserted = spark.table(view).count()
            if inserted:
                appended = spark.table(view) if filtered else conform(source, table)
                _write_appended(appended, settings, table)
            spark.catalog.dropTempView(view)
            return inserted
        rows = spark.sql(statement).collect()
    spark.catalog.dropTempView(view)  # left behind on failure; the next MERGE replaces it
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _any_key_present(
    spark: SparkSession, settings: Settings, table: Table, source: DataFrame, pruned: Sequence[str]
) -> bool:
    """Whether any merge key of `source` is in `table` where the `pruned` conditions hold, as
    the MERGE would match it: a semi join of the key columns alone, on both sides (a read
    needs no barrier against Sail's early NOT NULL check, which only writes make)."""
    target = spark.read.format("delta").load(table_uri(settings, table))
    for condition in pruned:
        target = target.where(condition)
    ours = conform(source, table).select(*table.merge_keys)
    found = ours.join(target.select(*table.merge_keys), list(table.merge_keys), "left_semi")
    found = found.limit(1)
    return bool(found.collect())


def append(
    spark: SparkSession,
    settings: Settings,
    table: Table,
    source: DataFrame,
    *,
    filtered: bool = True,
) -> None:
    """Append `source` to `table` without reading it: only for rows the caller knows cannot be
    there yet (bronze's first load of an object, `Registry.begin_bronze`). Anything else MERGEs.

    `filtered=False` tells that `source`'s filters drop no row (the caller counted them), so
    Sail's early NOT NULL check cannot meet a row the filters would have dropped and the
    barrier below is left out (1M rows of staged Parquet: 1.7 s instead of 2.1).
    """
    ensure_created(spark, settings, table)
    # The same barrier as in `merge`: Sail checks NOT NULL columns before the source's filters.
    # On the keys too, not the partition columns alone: a load of one day would otherwise go
    # through one task, and one core, to one file.
    rows = conform(source, table)
    if filtered:
        rows = rows.repartition(*table.partition_by, *table.merge_keys)
    with commit_lock(settings, table_uri(settings, table)):
        _write_appended(rows, settings, table)


def _write_appended(rows: DataFrame, settings: Settings, table: Table) -> None:
    """Append conformed `rows` to the table (the caller holds its commit lock)."""
    writer = rows.write.format("delta").mode("append")
    if table.partition_by:
        writer = writer.partitionBy(*table.partition_by)
    writer.save(table_uri(settings, table))


def bounded_timestamp(text: Column) -> Column:
    """An RFC 3339 text column as a timestamp, null when unparseable or outside 1900-2199.

    Sail holds timestamps as 64-bit nanoseconds and fails the whole query on a value outside
    years 1677-2262 instead of answering null, so the year is checked on the text first.
    """
    from pyspark.sql import functions as F

    year = F.substring(text, 1, 4).try_cast("int")
    return F.when(year.between(1900, 2199), F.try_to_timestamp(text))


def key_dates(object_keys: Sequence[str]) -> list[date] | None:
    """The `dt=` dates of raw object keys, or None when any key lacks one (no pruning then)."""
    found: set[date] = set()
    for key in object_keys:
        match = _KEY_DATE.search(key)
        if match is None:
            return None
        found.add(date.fromisoformat(match.group(1)))
    return sorted(found)


def key_date_differs(object_key: Column, day: Column) -> Column:
    """Whether a raw object key column names a `dt=` day other than the date column `day`
    (false for a key without `dt=`): two substring searches per row, where parsing the key's
    date out of every line with a regular expression cost Sail 1.5-2.5 s per million lines.
    A `dt=` that is not a date is never `day`, so it differs."""
    from pyspark.sql import functions as F

    named = F.concat(F.lit("/dt="), day.cast("string"), F.lit("/"))
    return object_key.contains("/dt=") & ~object_key.contains(named)


def key_date_text(object_key: Column) -> Column:
    """What follows the first `/dt=` of a raw object key column, up to the next `/`."""
    from pyspark.sql import functions as F

    return F.substring_index(F.substring_index(object_key, "/dt=", -1), "/", 1)
