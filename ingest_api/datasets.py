"""The analytics datasets the read API serves, declared once, and the SQL that reads them.

A `Dataset` is a relation of PostgreSQL's `analytics` schema (sql/migrations): its time column,
the key columns that with the time column order its rows uniquely (keyset pagination), the
columns a client may filter on by equality, and the gold declaration it mirrors
(lake_config.tables) or the dataset it aggregates, which describe its columns in the catalog.
`LATEST` says how `/v1/latest` finds the newest values of each source.

Every query is built from these declarations with `psycopg.sql` identifiers and bound
parameters, runs in a read-only transaction with a statement timeout, and orders by the full
key, so a page never repeats or skips a row that existed when the first page was read.
Consequence: a row written between two pages appears only if its key sorts after the cursor,
and `fleet_devices`, whose time column (`last_seen_at`) moves when a machine reports again, may
show a machine on two pages or on none while it is being paged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg.errors
from psycopg import sql

from ingest_api.errors import QueryTimeoutError, RegistryUnavailableError
from ingest_api.readparams import Kind, Window
from lake_config.errors import RegistryError
from lake_config.registry import Registry
from lake_config.tables import (
    GOLD_DEVICE_HOURLY,
    GOLD_FLEET_DEVICES,
    GOLD_FLEET_ONLINE,
    GOLD_FLEET_SEGMENTS,
    GOLD_IOT_SENSOR_MINUTE,
    GOLD_STORE_SENSOR_HOURLY,
    GOLD_STREAM_ROLLING,
    Table,
)

SCHEMA = "analytics"
STATEMENT_TIMEOUT_MS = 15_000
UPDATED_AT = "When the row was last written"


@dataclass(frozen=True)
class Dataset:
    """A relation of the analytics schema, as `/v1/metrics/{name}` serves it.

    `columns` gives the kind of every time, key and filter column; rows are ordered by
    `(time, *keys)`, which must be unique and never null.
    """

    name: str
    description: str
    time: str
    columns: dict[str, Kind]
    keys: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    mirrors: Table | None = None
    derived_from: str | None = None
    owner_stage: str = "gold"
    notes: dict[str, str] = field(default_factory=dict)  # column descriptions

    def __post_init__(self) -> None:
        missing = {self.time, *self.keys, *self.filters} - set(self.columns)
        if missing:
            raise ValueError(f"dataset {self.name}: no kind for {sorted(missing)}")

    @property
    def order(self) -> tuple[str, ...]:
        return (self.time, *self.keys)

    @property
    def order_kinds(self) -> tuple[Kind, ...]:
        return tuple(self.columns[c] for c in self.order)

    @property
    def relation(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.name)


def _ts(*names: str) -> dict[str, Kind]:
    return dict.fromkeys(names, "timestamptz")


def _text(*names: str) -> dict[str, Kind]:
    return dict.fromkeys(names, "text")


_STORE_DAILY_NOTES = {
    "day": "UTC day",
    "visits": "Visitors counted that day; failed readings count none",
    "readings_ok": "Hourly readings that did not fail",
    "failed_readings": "Hourly readings that failed (not zero traffic)",
    "anomalies": "Hours flagged as anomalous",
}

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "device_hourly",
            GOLD_DEVICE_HOURLY.description,
            time="hour_start",
            keys=("device_id",),
            columns={**_ts("hour_start"), **_text("device_id")},
            filters=("device_id",),
            mirrors=GOLD_DEVICE_HOURLY,
        ),
        Dataset(
            "fleet_online",
            GOLD_FLEET_ONLINE.description,
            time="ts",
            columns=_ts("ts"),
            mirrors=GOLD_FLEET_ONLINE,
        ),
        Dataset(
            "fleet_segments",
            GOLD_FLEET_SEGMENTS.description,
            time="ts",
            keys=("segment", "dim1_value", "dim2_value", "dim3_value"),
            columns={
                **_ts("ts"),
                **_text("segment", *(f"dim{n}_{p}" for n in (1, 2, 3) for p in ("name", "value"))),
            },
            filters=(
                "segment",
                *(f"dim{n}_{p}" for n in (1, 2, 3) for p in ("name", "value")),
            ),
            mirrors=GOLD_FLEET_SEGMENTS,
        ),
        Dataset(
            "fleet_devices",
            GOLD_FLEET_DEVICES.description,
            time="last_seen_at",
            keys=("device_id",),
            columns={
                **_ts("last_seen_at"),
                **_text(
                    "device_id",
                    "machine_type",
                    "machine_model",
                    "supplier",
                    "state",
                    "branch_id",
                    "operating_system",
                    "os_version",
                    "last_status",
                ),
                "has_error": "bool",
            },
            filters=(
                "device_id",
                "machine_type",
                "machine_model",
                "supplier",
                "state",
                "branch_id",
                "operating_system",
                "os_version",
                "last_status",
                "has_error",
            ),
            mirrors=GOLD_FLEET_DEVICES,
        ),
        Dataset(
            "fleet_monitor",
            "The online-share monitor's verdict per fleet snapshot it checked (tlake monitor).",
            time="ts",
            columns={**_ts("ts"), "breached": "bool"},
            filters=("breached",),
            owner_stage="monitor",
            notes={
                "ts": "Snapshot checked",
                "online_share": "online / inventory of the snapshot (0..1)",
                "baseline_share": "Mean online share of the previous snapshots (the baseline)",
                "drop_fraction": "How far the share fell below the baseline (0..1)",
                "threshold": "Drop that raises an alert",
                "history": "Previous snapshots in the baseline",
                "breached": "Whether the drop exceeded the threshold",
                "alert_id": "The alert raised for it, if any",
                "checked_at": "When the monitor checked it",
            },
        ),
        Dataset(
            "store_sensor_hourly",
            GOLD_STORE_SENSOR_HOURLY.description,
            time="hour_start",
            keys=("store", "sensor_id"),
            columns={**_ts("hour_start"), **_text("store"), "sensor_id": "int"}
            | {"failed": "bool", "anomaly": "bool"},
            filters=("store", "sensor_id", "failed", "anomaly"),
            mirrors=GOLD_STORE_SENSOR_HOURLY,
        ),
        Dataset(
            "store_sensor_daily",
            "Door-sensor traffic per sensor and UTC day (view over store_sensor_hourly).",
            time="day",
            keys=("store", "sensor_id"),
            columns={"day": "date", **_text("store"), "sensor_id": "int"},
            filters=("store", "sensor_id"),
            derived_from="store_sensor_hourly",
            notes=_STORE_DAILY_NOTES,
        ),
        Dataset(
            "store_hourly",
            "Traffic per store and hour, all door sensors together (view).",
            time="hour_start",
            keys=("store",),
            columns={**_ts("hour_start"), **_text("store")},
            filters=("store",),
            derived_from="store_sensor_hourly",
            notes={
                "visits": "Visitors that hour over the store's sensors; failed ones count none",
                "sensors_ok": "Sensors whose reading did not fail",
                "failed_readings": "Sensors whose reading failed (not zero traffic)",
                "anomalies": "Sensors flagged as anomalous that hour",
            },
        ),
        Dataset(
            "store_daily",
            "Traffic per store and UTC day, all door sensors together (view).",
            time="day",
            keys=("store",),
            columns={"day": "date", **_text("store")},
            filters=("store",),
            derived_from="store_sensor_hourly",
            notes=_STORE_DAILY_NOTES,
        ),
        Dataset(
            "iot_sensor_minute",
            GOLD_IOT_SENSOR_MINUTE.description,
            time="minute_start",
            keys=("device_id",),
            columns={**_ts("minute_start"), **_text("device_id", "type", "unit", "location")},
            filters=("device_id", "type", "unit", "location"),
            mirrors=GOLD_IOT_SENSOR_MINUTE,
        ),
        Dataset(
            "stream_rolling",
            GOLD_STREAM_ROLLING.description,
            time="occurred_at",
            keys=("event_id",),
            columns={**_ts("occurred_at"), **_text("event_id", "device_id")},
            filters=("device_id",),
            mirrors=GOLD_STREAM_ROLLING,
        ),
        Dataset(
            "stream_melted",
            "004's melt shape: one row per (message, variable) (view over stream_rolling).",
            time="occurred_at",
            keys=("event_id", "variable"),
            columns={**_ts("occurred_at"), **_text("event_id", "device_id", "variable")},
            filters=("device_id", "variable"),
            derived_from="stream_rolling",
            notes={
                "variable": "value, rolling_avg_short or rolling_avg_long",
                "value": "The variable's value",
            },
        ),
        Dataset(
            "stream_pivot",
            "004's pivot shape: one row per (second, variable), a key per stream (view).",
            time="ts",
            keys=("variable",),
            columns={**_ts("ts"), **_text("variable")},
            filters=("variable",),
            derived_from="stream_rolling",
            notes={
                "ts": "The second (UTC)",
                "variable": "value, rolling_avg_short or rolling_avg_long",
                "by_stream": "Per stream (device_id) its mean of the variable that second",
            },
        ),
        Dataset(
            "alerts",
            "Tasks that failed for good and monitor breaches, newest last.",
            time="raised_at",
            keys=("alert_id",),
            columns={
                **_ts("raised_at"),
                "alert_id": "int",
                **_text("source", "severity", "dag_id", "task_id"),
            },
            filters=("source", "severity", "dag_id", "task_id"),
            owner_stage="airflow/monitor",
            notes={
                "alert_id": "Alert id",
                "raised_at": "When it was raised",
                "source": "What raised it (airflow, monitor, ...)",
                "dag_id": "DAG of the failed task",
                "dag_run_id": "DAG run of the failed task",
                "task_id": "The failed task",
                "try_number": "Attempt that failed for good",
                "severity": "warning or critical",
                "message": "First line of the error (at most 2000 characters)",
                "resolved_at": "When it was resolved, if it was",
            },
        ),
        Dataset(
            "dq_results",
            "Data-quality results: one row per run, lake table and declared rule.",
            time="checked_at",
            keys=("run_id", "table_name", "rule"),
            columns={
                **_ts("checked_at"),
                **_text("run_id", "table_name", "rule", "dimension", "action"),
            },
            filters=("run_id", "table_name", "rule", "dimension", "action"),
            owner_stage="bronze/silver (quality)",
            notes={
                "run_id": "Pipeline run that checked",
                "table_name": "Lake table checked (lake_config.tables)",
                "rule": "Declared rule (lake_config.quality)",
                "dimension": "Quality dimension the rule measures",
                "action": "warn, quarantine or fail",
                "rows_checked": "Rows the rule looked at",
                "rows_failed": "Rows that broke it",
                "checked_at": "When the check ran",
            },
        ),
    )
}


def dataset(name: str) -> Dataset | None:
    return DATASETS.get(name)


def column_description(ds: Dataset, column: str) -> str:
    """What a column of `ds` holds, from its notes, its gold declaration or its base dataset."""
    if column in ds.notes:
        return ds.notes[column]
    if column == "updated_at":
        return UPDATED_AT
    if ds.mirrors is not None:
        for c in ds.mirrors.columns:
            if c.name == column:
                return c.description
    if ds.derived_from is not None:
        return column_description(DATASETS[ds.derived_from], column)
    return ""


@dataclass(frozen=True)
class Latest:
    """How `/v1/latest?source=` finds a source's newest values.

    Per entity (default): the newest row of `dataset` for each value of `entity`. With
    `snapshot`: every row of `dataset` at its newest time, plus the newest row of `headline`.
    Rows are ordered and paged by `entity`.
    """

    source: str
    dataset: Dataset
    entity: tuple[str, ...]
    description: str
    snapshot: bool = False
    headline: Dataset | None = None

    @property
    def cursor_columns(self) -> tuple[str, ...]:
        """A snapshot's cursor carries its time too, so every page reads the same snapshot."""
        return (self.dataset.time, *self.entity) if self.snapshot else self.entity

    @property
    def cursor_kinds(self) -> tuple[Kind, ...]:
        return tuple(self.dataset.columns[c] for c in self.cursor_columns)


LATEST: dict[str, Latest] = {
    s.source: s
    for s in (
        Latest(
            "mobile",
            DATASETS["device_hourly"],
            ("device_id",),
            "The latest hour of every device (analytics.device_hourly).",
        ),
        Latest(
            "fleet",
            DATASETS["fleet_segments"],
            ("segment", "dim1_value", "dim2_value", "dim3_value"),
            "The latest fleet snapshot (analytics.fleet_online) and its segments "
            "(analytics.fleet_segments at their latest ts).",
            snapshot=True,
            headline=DATASETS["fleet_online"],
        ),
        Latest(
            "stores",
            DATASETS["store_sensor_hourly"],
            ("store", "sensor_id"),
            "The latest hour of every door sensor (analytics.store_sensor_hourly).",
        ),
        Latest(
            "iot",
            DATASETS["iot_sensor_minute"],
            ("device_id",),
            "The latest minute of every IoT sensor (analytics.iot_sensor_minute).",
        ),
        Latest(
            "stream",
            DATASETS["stream_rolling"],
            ("device_id",),
            "The latest message of every stream (analytics.stream_rolling).",
        ),
    )
}

SUMMARY_FILTERS: dict[str, Kind] = {"device_id": "text", "type": "text", "unit": "text"}


# --- SQL -----------------------------------------------------------------------------------------

Query = tuple[sql.Composed, list[Any]]


def _col(name: str) -> sql.Composed:
    return sql.SQL("t.") + sql.Identifier(name)


def _cols(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(_col(n) for n in names)


def _after(names: Sequence[str], values: Sequence[Any], params: list[Any]) -> sql.Composed:
    """`(a, b) > (%s, %s)`: the rows after a cursor in the order of `names`."""
    params.extend(values)
    marks = sql.SQL(", ").join(sql.Placeholder() for _ in names)
    return sql.SQL("({}) > ({})").format(_cols(names), marks)


def _where(conditions: Sequence[sql.Composed]) -> sql.Composed:
    if not conditions:
        return sql.Composed([])
    return sql.SQL("where ") + sql.SQL(" and ").join(conditions)


def _window(ds: Dataset, window: Window, params: list[Any]) -> list[sql.Composed]:
    """Conditions that keep the rows of `window`; a date column counts as its UTC midnight."""
    bounds: list[tuple[str, Any]]
    if ds.columns[ds.time] == "date":
        first, last = window.days()
        bounds = [(">=", first), ("<=", last)]
    else:
        bounds = [(">=", window.start), ("<", window.end)]
    conditions: list[sql.Composed] = []
    for op, value in bounds:
        if value is not None:
            params.append(value)
            conditions.append(sql.SQL("{} {} %s").format(_col(ds.time), sql.SQL(op)))
    return conditions


def _equal(filters: dict[str, Any], params: list[Any]) -> list[sql.Composed]:
    params.extend(filters.values())
    return [sql.SQL("{} = %s").format(_col(name)) for name in filters]


def page_query(
    ds: Dataset,
    window: Window,
    filters: dict[str, Any],
    after: Sequence[Any] | None,
    limit: int,
) -> Query:
    """Rows of `ds` in `window` matching `filters`, after the cursor key `after`, in
    `(time, *keys)` order; `limit` rows at most."""
    params: list[Any] = []
    conditions = [*_window(ds, window, params), *_equal(filters, params)]
    if after is not None:
        conditions.append(_after(ds.order, after, params))
    params.append(limit)
    query = sql.SQL("select t.* from {} as t {} order by {} limit %s").format(
        ds.relation, _where(conditions), _cols(ds.order)
    )
    return query, params


def latest_query(latest: Latest, after: Sequence[Any] | None, limit: int) -> Query:
    """The newest row per entity of a per-entity source, entities after `after`."""
    ds = latest.dataset
    params: list[Any] = []
    conditions = [] if after is None else [_after(latest.entity, after, params)]
    newest_first = sql.SQL(", ").join(
        sql.SQL("{} desc").format(_col(c)) for c in ds.order if c not in latest.entity
    )
    params.append(limit)
    query = sql.SQL(
        "select distinct on ({entity}) t.* from {relation} as t {where} "
        "order by {entity}, {newest} limit %s"
    ).format(
        entity=_cols(latest.entity),
        relation=ds.relation,
        where=_where(conditions),
        newest=newest_first,
    )
    return query, params


def snapshot_time_query(ds: Dataset) -> Query:
    """The newest time of `ds` (null when it is empty)."""
    return sql.SQL("select max(t.{}) as at from {} as t").format(
        sql.Identifier(ds.time), ds.relation
    ), []


def snapshot_query(latest: Latest, at: datetime, after: Sequence[Any] | None, limit: int) -> Query:
    """The rows of a snapshot source's dataset at time `at`, entities after `after`."""
    ds = latest.dataset
    params: list[Any] = [at]
    conditions = [sql.SQL("{} = %s").format(_col(ds.time))]
    if after is not None:
        conditions.append(_after(latest.entity, after, params))
    params.append(limit)
    query = sql.SQL("select t.* from {} as t {} order by {} limit %s").format(
        ds.relation, _where(conditions), _cols(latest.entity)
    )
    return query, params


def headline_query(ds: Dataset) -> Query:
    """The newest row of `ds`."""
    query = sql.SQL("select t.* from {} as t order by {} limit 1").format(
        ds.relation, sql.SQL(", ").join(sql.SQL("{} desc").format(_col(c)) for c in ds.order)
    )
    return query, []


def summary_query(window: Window, filters: dict[str, Any], after: str | None, limit: int) -> Query:
    """Per IoT sensor over `window`: readings, their mean (weighted by readings per minute, so
    the mean of every reading), min, max, out-of-range count, first and last minute; unit, type
    and location of its latest minute. Sensors after `after`, by device_id."""
    ds = DATASETS["iot_sensor_minute"]
    params: list[Any] = []
    conditions = [*_window(ds, window, params), *_equal(filters, params)]
    if after is not None:
        conditions.append(_after(("device_id",), (after,), params))
    params.append(limit)
    query = sql.SQL(
        """
        with minutes as (
            select t.* from {relation} as t {where}
        ),
        final as (
            select m.device_id,
                   sum(m.readings)::bigint as readings,
                   count(*)::bigint as minutes,
                   sum(m.avg_value * m.readings) / sum(m.readings) as avg_value,
                   min(m.min_value) as min_value,
                   max(m.max_value) as max_value,
                   sum(m.out_of_range)::bigint as out_of_range,
                   min(m.minute_start) as first_minute,
                   max(m.minute_start) as last_minute,
                   (array_agg(m.unit order by m.minute_start desc))[1] as unit,
                   (array_agg(m.type order by m.minute_start desc))[1] as type,
                   (array_agg(m.location order by m.minute_start desc))[1] as location
            from minutes as m
            group by m.device_id
        )
        select * from final order by device_id limit %s
        """
    ).format(relation=ds.relation, where=_where(conditions))
    return query, params


def quality_query(table_name: str | None) -> Query:
    """The newest result of every (table_name, rule) in analytics.dq_results."""
    params: list[Any] = []
    conditions: list[sql.Composed] = []
    if table_name is not None:
        params.append(table_name)
        conditions.append(sql.SQL("{} = %s").format(_col("table_name")))
    query = sql.SQL(
        "select distinct on (t.table_name, t.rule) t.table_name, t.rule, t.run_id, "
        "t.dimension, t.action, t.rows_checked, t.rows_failed, t.checked_at "
        "from {} as t {} order by t.table_name, t.rule, t.checked_at desc, t.run_id desc"
    ).format(DATASETS["dq_results"].relation, _where(conditions))
    return query, params


def read_latest(
    db: Registry, latest: Latest, after: Sequence[Any] | None, limit: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Up to `limit` rows of `latest` after the cursor key `after` (`latest.cursor_columns`),
    and for a snapshot source its headline row."""
    if not latest.snapshot:
        (rows,) = fetch(db, latest_query(latest, after, limit))
        return rows, None
    assert latest.headline is not None
    headline = headline_query(latest.headline)
    if after is None:
        found, heads = fetch(db, snapshot_time_query(latest.dataset), headline)
        at, entity_after = found[0]["at"], None
    else:
        (heads,) = fetch(db, headline)
        at, entity_after = after[0], after[1:]
    rows = []
    if at is not None:
        (rows,) = fetch(db, snapshot_query(latest, at, entity_after, limit))
    return rows, (heads[0] if heads else None)


def fetch(db: Registry, *queries: Query) -> list[list[dict[str, Any]]]:
    """Run `queries` in one read-only transaction (one snapshot), each bounded by the statement
    timeout; the rows of each. Registry failures become the API's 503s here."""
    try:
        with db.connection() as conn, conn.transaction():
            conn.execute("set transaction isolation level repeatable read, read only")
            conn.execute("set local time zone 'UTC'")  # timestamps come back in UTC
            conn.execute(
                sql.SQL("set local statement_timeout = {}").format(
                    sql.Literal(STATEMENT_TIMEOUT_MS)
                )
            )
            return [conn.execute(q, p).fetchall() for q, p in queries]
    except RegistryError as exc:
        cause = exc.__cause__
        if isinstance(cause, psycopg.errors.QueryCanceled):
            raise QueryTimeoutError(
                f"the query ran longer than {STATEMENT_TIMEOUT_MS // 1000} s; "
                "narrow start/end or add filters",
            ) from exc
        raise RegistryUnavailableError(
            "PostgreSQL is unavailable; retry later", cause=type(cause or exc).__name__
        ) from exc
