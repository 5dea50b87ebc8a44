"""The read API: a device's events from the lake, and the analytics datasets from PostgreSQL.

Every route needs a read-scoped key (a write key is 403 `insufficient_scope`), pages with an
opaque keyset cursor and answers a bad parameter with a 400 and its own code
(`ingest_api.readparams`). Blocking reads (delta-rs, psycopg) run in the threadpool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from ingest_api import datasets, lakeread
from ingest_api.datasets import DATASETS, LATEST, SUMMARY_FILTERS, fetch
from ingest_api.deps import AnalyticsDbDep, ReadKeyDep, SettingsDep
from ingest_api.errors import UnknownDatasetError, UnknownSourceError, UnknownTableError
from ingest_api.read_schemas import (
    DeviceEventsPage,
    LatestValues,
    MetricsPage,
    QualityReport,
    SensorSummaryPage,
)
from ingest_api.readparams import (
    COMMON,
    DEFAULT_LIMIT,
    Cursor,
    End,
    Limit,
    ReadRoute,
    Start,
    Window,
    decode_cursor,
    encode_cursor,
    filters_of,
    fingerprint,
    reject_unknown,
)
from ingest_api.schemas import ErrorBody
from lake_config.tables import TABLES, table

router = APIRouter(prefix="/v1", tags=["read"], route_class=ReadRoute)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "unknown_parameter, unknown_dataset, unknown_source, unknown_table, "
        "unknown_filter, invalid_filter, invalid_timestamp, invalid_range, invalid_limit, "
        "invalid_cursor (`parameter` names the culprit)",
    },
    401: {"model": ErrorBody, "description": "missing_api_key, invalid_api_key"},
    403: {"model": ErrorBody, "description": "insufficient_scope: not a read-scoped key"},
    503: {
        "model": ErrorBody,
        "description": "registry_unavailable, lake_unavailable, query_timeout, overloaded",
    },
    # Parameter errors are 400s (ReadRoute), never FastAPI's 422, which this keeps out.
    "4XX": {"model": ErrorBody, "description": "Any other client error, same shape"},
}


def _dataset_table() -> str:
    lines = ["| dataset | ordered by | filters |", "| --- | --- | --- |"]
    for d in DATASETS.values():
        filters = ", ".join(f"`{f}`" for f in d.filters) or "—"
        lines.append(f"| `{d.name}` | {', '.join(d.order)} | {filters} |")
    return "\n".join(lines)


def _filter_parameters() -> list[dict[str, Any]]:
    """Each filter name as an optional query parameter, saying which datasets take it."""
    names = sorted({f for d in DATASETS.values() for f in d.filters})
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": "Equality filter on datasets "
            + ", ".join(d.name for d in DATASETS.values() if name in d.filters),
            "schema": {"type": "string"},
        }
        for name in names
    ]


@router.get(
    # `:path`: a device id may contain '/' (sent as %2F), as ingest accepts it.
    "/devices/{device_id:path}/events",
    summary="A device's events from silver.device_events",
    response_model=DeviceEventsPage,
    responses=ERRORS,
)
async def device_events(
    request: Request,
    key: ReadKeyDep,
    settings: SettingsDep,
    device_id: Annotated[str, Path(max_length=128, description="Device id")],
    start: Start = None,
    end: End = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The device's events in [start, end), oldest first by (occurred_at, event_id).

    Read from the Delta table with delta-rs, pruned to the `event_date` partitions of the range
    and to files whose statistics may hold the device. No table yet means no events.
    """
    reject_unknown(request, COMMON)
    window = Window(start, end)
    query = fingerprint("device_events", device_id, window.as_key())
    after = decode_cursor(cursor, query, lakeread.EVENT_ORDER_KINDS) if cursor else None
    rows = await run_in_threadpool(
        lakeread.device_events, settings, device_id, window, after, limit + 1
    )
    rows, next_cursor = _page(rows, limit, query, lakeread.EVENT_ORDER)
    return {"device_id": device_id, "events": rows, "next_cursor": next_cursor}


@router.get(
    "/latest",
    summary="The latest processed values of a source",
    response_model=LatestValues,
    responses=ERRORS,
    description="\n".join(
        ["One row per entity, newest first in time, paged by entity:", ""]
        + [f"* `{s.source}`: {s.description}" for s in LATEST.values()]
    ),
)
async def latest(
    request: Request,
    key: ReadKeyDep,
    db: AnalyticsDbDep,
    source: Annotated[str, Query(description=f"One of: {', '.join(LATEST)}")],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The newest values per entity of a source, from the analytics tables."""
    reject_unknown(request, ("source", "limit", "cursor"))
    spec = LATEST.get(source)
    if spec is None:
        raise UnknownSourceError(
            "unknown source; use one of the known ones", parameter="source", known=list(LATEST)
        )
    query = fingerprint("latest", source)
    after = decode_cursor(cursor, query, spec.cursor_kinds) if cursor else None
    rows, snapshot = await run_in_threadpool(datasets.read_latest, db, spec, after, limit + 1)
    rows, next_cursor = _page(rows, limit, query, spec.cursor_columns)
    return {
        "source": source,
        "dataset": spec.dataset.name,
        "entity": list(spec.entity),
        "snapshot": snapshot,
        "rows": rows,
        "next_cursor": next_cursor,
    }


@router.get(
    "/metrics/iot_sensor_minute/summary",
    summary="Per IoT sensor over a range: readings, mean, min, max (002's /data/summary/)",
    response_model=SensorSummaryPage,
    responses=ERRORS,
)
async def sensor_summary(
    request: Request,
    key: ReadKeyDep,
    db: AnalyticsDbDep,
    start: Start = None,
    end: End = None,
    type: Annotated[str | None, Query(max_length=256, description="What is measured")] = None,
    unit: Annotated[str | None, Query(max_length=256, description="Unit (C, F, %, ...)")] = None,
    device_id: Annotated[str | None, Query(max_length=256, description="One sensor")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Each sensor's minutes in [start, end) matching the filters, summed up; by device_id."""
    reject_unknown(request, (*COMMON, *SUMMARY_FILTERS))
    window = Window(start, end)
    filters = {
        k: v for k, v in (("device_id", device_id), ("type", type), ("unit", unit)) if v is not None
    }
    query = fingerprint("summary", window.as_key(), filters)
    after = decode_cursor(cursor, query, ("text",))[0] if cursor else None
    (rows,) = await run_in_threadpool(
        fetch, db, datasets.summary_query(window, filters, after, limit + 1)
    )
    rows, next_cursor = _page(rows, limit, query, ("device_id",))
    return {"sensors": rows, "next_cursor": next_cursor}


@router.get(
    "/metrics/{dataset}",
    summary="Rows of an analytics table or view over a time range",
    response_model=MetricsPage,
    responses=ERRORS,
    description="Rows in [start, end) of the dataset's time column, with equality filters on "
    "its declared columns, ordered and paged by its time and key columns. Any other query "
    "parameter is `unknown_filter`.\n\n" + _dataset_table(),
    openapi_extra={"parameters": _filter_parameters()},
)
async def metrics(
    request: Request,
    key: ReadKeyDep,
    db: AnalyticsDbDep,
    dataset: Annotated[
        str, Path(description="Dataset name", json_schema_extra={"enum": list(DATASETS)})
    ],
    start: Start = None,
    end: End = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """A page of a dataset's rows in [start, end) matching the filters."""
    ds = DATASETS.get(dataset)
    if ds is None:
        raise UnknownDatasetError(
            "unknown dataset; use one of the known ones", parameter="dataset", known=list(DATASETS)
        )
    window = Window(start, end)
    filters = filters_of(request, ds.columns, ds.filters, dataset=ds.name)
    query = fingerprint(
        "metrics", ds.name, window.as_key(), {k: str(v) for k, v in filters.items()}
    )
    after = decode_cursor(cursor, query, ds.order_kinds) if cursor else None
    (rows,) = await run_in_threadpool(
        fetch, db, datasets.page_query(ds, window, filters, after, limit + 1)
    )
    rows, next_cursor = _page(rows, limit, query, ds.order)
    return {"dataset": ds.name, "order": list(ds.order), "rows": rows, "next_cursor": next_cursor}


@router.get(
    "/quality",
    summary="The latest data-quality result of every rule",
    response_model=QualityReport,
    responses=ERRORS,
)
async def quality(
    request: Request,
    key: ReadKeyDep,
    db: AnalyticsDbDep,
    table_name: Annotated[
        str | None,
        Query(alias="table", description="Only this lake table (e.g. silver.device_events)"),
    ] = None,
) -> dict[str, Any]:
    """For each (table, rule), its newest row of analytics.dq_results."""
    reject_unknown(request, ("table",))
    if table_name is not None and table_name not in {t.name for t in TABLES}:
        raise UnknownTableError(
            "unknown table; use a declared lake table",
            parameter="table",
            known=[t.name for t in TABLES],
        )
    (rows,) = await run_in_threadpool(fetch, db, datasets.quality_query(table_name))
    return {"results": [_quality_row(r) for r in rows]}


def _page(
    rows: list[dict[str, Any]], limit: int, query: str, order: Sequence[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """The first `limit` of `rows` (read with one extra to tell whether more follow) and the
    cursor after the last of them, or None when this is the last page."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(query, tuple(rows[-1][c] for c in order))


def _quality_row(row: dict[str, Any]) -> dict[str, Any]:
    column = None
    try:
        rules = {e.rule: e.column for e in table(row["table_name"]).expectations}
        column = rules.get(row["rule"])
    except KeyError:
        pass  # a table no longer declared
    return {**row, "column": column, "passed": row["rows_failed"] == 0}
