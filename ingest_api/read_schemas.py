"""What the read API answers: the response models its OpenAPI documents.

`DeviceEvent` is generated from the `silver.device_events` declaration (lake_config.tables), so
its fields, types and descriptions are never spelled twice. Rows of the analytics datasets are
JSON objects keyed by column name: their columns are listed by `GET /v1/catalog`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from lake_config.tables import SILVER_DEVICE_EVENTS, Table

NEXT_CURSOR = Field(
    description="Pass as `cursor`, with the same other parameters, for the next page; null on "
    "the last page"
)

_PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "int": int,
    "bigint": int,
    "double": float,
    "boolean": bool,
    "timestamp": datetime,
    "date": date,
}


def row_model(table: Table, name: str) -> type[BaseModel]:
    """A pydantic model with one field per declared column of `table`."""
    fields: dict[str, Any] = {}
    for column in table.columns:
        kind = _PYTHON_TYPES[column.type]
        annotation: Any = kind if not column.nullable else kind | None
        fields[column.name] = (annotation, Field(description=column.description))
    return create_model(name, __doc__=f"A row of {table.name}: {table.grain}.", **fields)


DeviceEvent = row_model(SILVER_DEVICE_EVENTS, "DeviceEvent")


class DeviceEventsPage(BaseModel):
    """One page of a device's events, oldest first by (occurred_at, event_id)."""

    device_id: str
    events: list[DeviceEvent]  # type: ignore[valid-type]
    next_cursor: str | None = NEXT_CURSOR


class MetricsPage(BaseModel):
    """One page of an analytics dataset's rows, in `order`."""

    dataset: str
    order: list[str] = Field(description="Columns the rows are sorted and paged by")
    rows: list[dict[str, Any]] = Field(description="Rows keyed by column (see /v1/catalog)")
    next_cursor: str | None = NEXT_CURSOR


class LatestValues(BaseModel):
    """A source's newest values: one row per entity, and for fleet the latest snapshot."""

    source: str
    dataset: str = Field(description="The analytics dataset `rows` come from")
    entity: list[str] = Field(description="Columns that identify a row (one row per value)")
    snapshot: dict[str, Any] | None = Field(
        default=None, description="fleet: the newest analytics.fleet_online row; else null"
    )
    rows: list[dict[str, Any]]
    next_cursor: str | None = NEXT_CURSOR


class SensorSummary(BaseModel):
    """One IoT sensor over the requested range (002's `/data/summary/`)."""

    device_id: str = Field(description="Sensor id")
    readings: int = Field(description="Readings in the range")
    minutes: int = Field(description="Minutes with at least one reading")
    avg_value: float = Field(description="Mean of every reading")
    min_value: float
    max_value: float
    out_of_range: int = Field(description="Readings outside the sensor's declared range")
    first_minute: datetime
    last_minute: datetime
    unit: str | None = Field(description="Unit of the sensor's latest minute")
    type: str | None = Field(description="What the sensor measures (latest minute)")
    location: str | None = Field(description="Where the sensor is (latest minute)")


class SensorSummaryPage(BaseModel):
    sensors: list[SensorSummary]
    next_cursor: str | None = NEXT_CURSOR


class QualityResult(BaseModel):
    """The newest result of one rule on one table."""

    table_name: str
    rule: str
    column: str | None = Field(description="Column the declared rule checks; null if undeclared")
    run_id: str
    dimension: str
    action: Literal["warn", "quarantine", "fail"]
    rows_checked: int
    rows_failed: int
    passed: bool = Field(description="rows_failed == 0")
    checked_at: datetime


class QualityReport(BaseModel):
    results: list[QualityResult]


class CatalogColumn(BaseModel):
    name: str
    type: str = Field(description="Spark SQL type (Delta) or PostgreSQL type (analytics)")
    description: str
    nullable: bool


class CatalogExpectation(BaseModel):
    rule: str
    column: str
    dimension: str
    action: str


class CatalogTable(BaseModel):
    """One table: its declaration and, with a read key, its size and freshness."""

    name: str = Field(description="layer.table (bronze.events, analytics.device_hourly, ...)")
    layer: str = Field(description="bronze, silver, gold, quarantine or analytics")
    kind: Literal["delta", "table", "view"]
    description: str
    grain: str | None
    owner_stage: str | None = Field(description="The stage that writes it")
    location: str = Field(description="Delta path in the lake bucket, or the PostgreSQL name")
    columns: list[CatalogColumn]
    merge_keys: list[str]
    partition_by: list[str]
    expectations: list[CatalogExpectation]
    mirrors: str | None = Field(description="analytics: the gold table it mirrors")
    dataset: str | None = Field(description="analytics: its name under /v1/metrics/")
    exists: bool | None = Field(description="null when statistics were not asked for")
    row_count: int | None = Field(
        description="Delta: sum of numRecords of the live files; analytics: count(*)"
    )
    freshness: datetime | None = Field(
        description="Delta: time of the latest commit; analytics: see freshness_from"
    )
    freshness_from: str | None = Field(
        description="delta_log, or the column whose max() gave the freshness"
    )
    version: int | None = Field(description="Delta: the table version read")


class Catalog(BaseModel):
    generated_at: datetime
    with_statistics: bool = Field(
        description="Whether row counts and freshness were read (the HTML page shows them only "
        "with a read key)"
    )
    tables: list[CatalogTable]
