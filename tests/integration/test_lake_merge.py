"""lake.merge on the real lake: an insert-only MERGE appends when none of its keys is in the
table yet and MERGEs otherwise; either way a key present keeps its row, and within the pruned
partitions only."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from pyspark.sql import SparkSession

from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.tables import Column, Table
from spark_jobs import lake, maintenance

pytestmark = pytest.mark.integration

D1, D2 = date(2024, 5, 1), date(2024, 5, 2)


def _table() -> Table:
    name = f"test_{uuid.uuid4().hex[:8]}"
    return Table(
        name=f"silver.{name}",
        path=f"silver/{name}",
        grain="one row per k",
        columns=(
            Column("k", "string", "key", False),
            Column("v", "string", "value"),
            Column("d", "date", "day", False),
        ),
        merge_keys=("k",),
        partition_by=("d",),
    )


def _rows(spark: SparkSession, settings: Settings, table: Table) -> dict[str, tuple[str, date]]:
    found = spark.read.format("delta").load(table_uri(settings, table)).collect()
    assert len(found) == len({r["k"] for r in found}), "a key written twice"
    return {r["k"]: (r["v"], r["d"]) for r in found}


def _operations(settings: Settings, table: Table) -> list[str]:
    dt = maintenance._open(settings, table)
    assert dt is not None
    return [h["operation"] for h in dt.history()]


def test_new_keys_are_appended_and_known_keys_keep_their_rows(
    settings: Settings, spark: SparkSession
) -> None:
    table = _table()

    def merge(*rows: tuple[str, str, date]) -> int:
        source = spark.createDataFrame(list(rows), table.ddl)
        return lake.merge(spark, settings, table, source, prune={"d": sorted({r[2] for r in rows})})

    assert merge(("a", "first", D1), ("b", "first", D1)) == 2
    assert _operations(settings, table)[0] == "WRITE"  # no key there yet: appended
    assert merge(("c", "first", D1), ("a", "second", D1)) == 1  # a is there: MERGE, c only
    assert _operations(settings, table)[0] == "MERGE"
    assert merge(("a", "third", D1), ("b", "third", D1)) == 0  # a re-run: nothing new
    assert _rows(spark, settings, table) == {
        "a": ("first", D1),
        "b": ("first", D1),
        "c": ("first", D1),
    }


def test_a_key_outside_the_pruned_partitions_does_not_count_as_present(
    settings: Settings, spark: SparkSession
) -> None:
    table = _table()
    lake.merge(spark, settings, table, spark.createDataFrame([("a", "day 1", D1)], table.ddl))

    # The same key on another day, merged with the MERGE pruned to that day: the day 1 row is
    # outside what the MERGE would match, so the key check must not see it either.
    written = lake.merge(
        spark,
        settings,
        table,
        spark.createDataFrame([("a", "day 2", D2)], table.ddl),
        prune={"d": [D2]},
    )

    assert written == 1
    assert _operations(settings, table)[0] == "WRITE"
    found = spark.read.format("delta").load(table_uri(settings, table)).collect()
    assert sorted((r["k"], r["v"]) for r in found) == [("a", "day 1"), ("a", "day 2")]


def test_a_source_whose_filters_drop_nothing_is_appended_as_it_is(
    settings: Settings, spark: SparkSession
) -> None:
    table = _table()
    source = spark.createDataFrame([("a", "x", D1), ("b", "y", D1)], table.ddl)

    assert lake.merge(spark, settings, table, source, prune={"d": [D1]}, filtered=False) == 2
    assert _operations(settings, table)[0] == "WRITE"
    # A filter that drops a row breaking NOT NULL: the default keeps Sail's early check off it.
    dropped = spark.createDataFrame(
        [("c", "z", D1), (None, "no key", D1)], "k string, v string, d date"
    ).where("k is not null")
    assert lake.merge(spark, settings, table, dropped, prune={"d": [D1]}) == 1
    assert _rows(spark, settings, table) == {"a": ("x", D1), "b": ("y", D1), "c": ("z", D1)}
