"""Schema evolution on the real lake: a column added to a table's declaration appears in the
existing Delta table without rewriting a file; rows written before it read null."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from pyspark.sql import SparkSession

from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.tables import Column, Table
from spark_jobs import lake, maintenance

pytestmark = pytest.mark.integration


def test_a_new_optional_column_appears_without_a_rewrite(
    settings: Settings, spark: SparkSession
) -> None:
    name = f"test_{uuid.uuid4().hex[:8]}"
    v1 = Table(
        name=f"gold.{name}",
        path=f"gold/{name}",
        grain="one row per k",
        columns=(Column("k", "string", "key", False), Column("a", "bigint", "a value")),
        merge_keys=("k",),
    )
    lake.merge(spark, settings, v1, spark.createDataFrame([("x", 1)], v1.ddl))
    files_before = set(maintenance._open(settings, v1).file_uris())  # type: ignore[union-attr]

    v2 = replace(v1, columns=(*v1.columns, Column("note", "string", "added later")))
    written = lake.merge(spark, settings, v2, spark.createDataFrame([("y", 2, "new")], v2.ddl))

    assert written == 1
    rows = {
        r["k"]: (r["a"], r["note"])
        for r in spark.read.format("delta").load(table_uri(settings, v2)).collect()
    }
    assert rows == {"x": (1, None), "y": (2, "new")}
    dt = maintenance._open(settings, v2)
    assert dt is not None
    assert files_before <= set(dt.file_uris())  # the old file is still the table's: no rewrite
    operations = [h["operation"] for h in dt.history(3)]
    # The new key's row is appended (lake.merge appends when no key is there yet).
    assert operations[:2] == ["WRITE", "ADD COLUMN"]


def test_a_new_not_null_column_is_refused_with_a_reason(
    settings: Settings, spark: SparkSession
) -> None:
    name = f"test_{uuid.uuid4().hex[:8]}"
    v1 = Table(
        name=f"gold.{name}",
        path=f"gold/{name}",
        grain="one row per k",
        columns=(Column("k", "string", "key", False),),
        merge_keys=("k",),
    )
    lake.merge(spark, settings, v1, spark.createDataFrame([("x",)], v1.ddl))
    v2 = replace(v1, columns=(*v1.columns, Column("must", "bigint", "required", False)))

    with pytest.raises(maintenance.MaintenanceError, match=r"\['must'\] are declared NOT NULL"):
        lake.ensure_created(spark, settings, v2)
