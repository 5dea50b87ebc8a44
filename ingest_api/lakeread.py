"""Reads of the lake's Delta tables through delta-rs, for the read API and the catalog.

Blocking calls (they read the Delta log and Parquet files from object storage): routes run
them in the threadpool. Each call opens the table at its latest version, so two pages of one
client may see two versions; the keyset cursor keeps them from repeating or skipping a row that
was there for both. A table nothing was written to yet is empty, not an error; any other
delta-rs or storage failure is the API's 503 `lake_unavailable`, raised here, at the one
boundary where delta-rs errors are mapped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from ingest_api.errors import LakeUnavailableError
from ingest_api.readparams import Kind, Window
from lake_config.settings import Settings
from lake_config.storage import delta_storage_options, lake_uri
from lake_config.tables import SILVER_DEVICE_EVENTS, Table

if TYPE_CHECKING:
    import pyarrow.dataset as pds
    from deltalake import DeltaTable

EVENTS = SILVER_DEVICE_EVENTS
EVENT_ORDER = ("occurred_at", "event_id")
EVENT_ORDER_KINDS: tuple[Kind, ...] = ("timestamptz", "text")
_T = TypeVar("_T")


def open_table(settings: Settings, table: Table) -> DeltaTable | None:
    """`table` at its latest version, or None when nothing was ever written there."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(
            lake_uri(settings, table.path), storage_options=delta_storage_options(settings)
        )
    except TableNotFoundError:
        return None
    except Exception as exc:  # delta-rs raises OSError, DeltaError, ... for storage failures
        raise LakeUnavailableError(
            f"cannot read {table.name}; retry later", cause=type(exc).__name__
        ) from exc


def _lake(table: Table, call: Callable[[], _T]) -> _T:
    try:
        return call()
    except Exception as exc:  # the one boundary where delta-rs and Arrow I/O errors are mapped
        raise LakeUnavailableError(
            f"cannot read {table.name}; retry later", cause=type(exc).__name__
        ) from exc


def device_events(
    settings: Settings,
    device_id: str,
    window: Window,
    after: Sequence[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to `limit` events of `device_id` from silver.device_events in `window`, after the
    `(occurred_at, event_id)` key `after`, in that order.

    Reads one `event_date` partition at a time, oldest first, stopping once the page is full:
    a page costs the device's rows of the days it spans (files without the device in their
    min/max statistics are skipped), not the whole range.
    """
    dt = open_table(settings, EVENTS)
    if dt is None:
        return []
    return events_page(dt, device_id, window, after, limit)


def events_page(
    dt: DeltaTable,
    device_id: str,
    window: Window,
    after: Sequence[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """As `device_events`, on an open table."""
    rows: list[dict[str, Any]] = []
    for day in _days(dt, window, after):
        rows.extend(_day_events(dt, day, device_id, window, after, limit - len(rows)))
        if len(rows) >= limit:
            break
    return rows


def _days(dt: DeltaTable, window: Window, after: Sequence[Any] | None) -> list[date]:
    """The event_date partitions that can hold rows of the window after the cursor, oldest
    first (event_date is the UTC date of occurred_at)."""
    first = window.start.astimezone(UTC).date() if window.start is not None else None
    if after is not None:
        cursor_day = after[0].astimezone(UTC).date()
        first = cursor_day if first is None else max(first, cursor_day)
    last = None
    if window.end is not None:
        last = (window.end.astimezone(UTC) - timedelta(microseconds=1)).date()
    partitions = _lake(EVENTS, dt.partitions)
    days = sorted({date.fromisoformat(p["event_date"]) for p in partitions if p.get("event_date")})
    return [d for d in days if (first is None or d >= first) and (last is None or d <= last)]


def _day_events(
    dt: DeltaTable,
    day: date,
    device_id: str,
    window: Window,
    after: Sequence[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        dataset = dt.to_pyarrow_dataset(
            file_pruning_predicate=[("event_date", "=", day), ("device_id", "=", device_id)]
        )
        columns = [c for c in EVENTS.column_names if c in dataset.schema.names]
        found = dataset.to_table(
            columns=columns, filter=_event_filter(dataset, device_id, window, after)
        )
        found = found.sort_by([(c, "ascending") for c in EVENT_ORDER]).slice(0, limit)
        missing = dict.fromkeys(c for c in EVENTS.column_names if c not in columns)
        return [{**row, **missing} for row in found.to_pylist()]

    return _lake(EVENTS, read)


def _event_filter(
    dataset: pds.Dataset,
    device_id: str,
    window: Window,
    after: Sequence[Any] | None,
) -> pc.Expression:
    ts_type = dataset.schema.field("occurred_at").type
    occurred = pc.field("occurred_at")
    condition = pc.field("device_id") == device_id
    if window.start is not None:
        condition = condition & (occurred >= _timestamp(window.start, ts_type))
    if window.end is not None:
        condition = condition & (occurred < _timestamp(window.end, ts_type))
    if after is not None:
        at = _timestamp(after[0], ts_type)
        condition = condition & (
            (occurred > at) | ((occurred == at) & (pc.field("event_id") > after[1]))
        )
    return condition


def _timestamp(at: datetime, ts_type: pa.DataType) -> pa.Scalar:
    """`at` as a scalar of the column's timestamp type (a naive column holds UTC)."""
    at = at.astimezone(UTC)
    if getattr(ts_type, "tz", None) is None:
        at = at.replace(tzinfo=None)
    return pa.scalar(at, type=ts_type)


@dataclass(frozen=True)
class TableStats:
    """What a table's Delta log says about it.

    `row_count` sums the `numRecords` statistics of the live files: null when a file carries
    no statistics, and higher than the rows a reader sees if files carry deletion vectors
    (the pipeline writes none). `last_commit_at` is the newest commit's timestamp.
    """

    exists: bool
    version: int | None = None
    files: int | None = None
    row_count: int | None = 0
    last_commit_at: datetime | None = None


def table_stats(settings: Settings, table: Table) -> TableStats:
    """Existence, version, file and row counts and last commit time of `table`."""
    dt = open_table(settings, table)
    if dt is None:
        return TableStats(exists=False)
    return stats_of(dt, table)


def stats_of(dt: DeltaTable, table: Table) -> TableStats:
    """As `table_stats`, on an open table."""

    def read() -> TableStats:
        actions = pa.table(dt.get_add_actions(flatten=True))
        records = actions.column("num_records") if "num_records" in actions.column_names else None
        row_count = None
        if records is not None and records.null_count == 0:
            row_count = int(pc.sum(records).as_py() or 0)
        history = dt.history(1)
        last = None
        if history:
            last = datetime.fromtimestamp(int(history[0]["timestamp"]) / 1000, tz=UTC)
        return TableStats(
            exists=True,
            version=dt.version(),
            files=actions.num_rows,
            row_count=row_count,
            last_commit_at=last,
        )

    return _lake(table, read)
