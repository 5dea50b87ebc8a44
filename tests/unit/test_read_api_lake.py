"""Device events and table statistics through delta-rs, on a local Delta table.

The table has the partitioning and sort columns of silver.device_events and is written in
several commits and files, so pages cross files, partitions and equal timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from ingest_api.lakeread import events_page, stats_of
from ingest_api.readparams import Window
from lake_config.tables import SILVER_DEVICE_EVENTS

T0 = datetime(2024, 5, 1, 22, 0, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("device_id", pa.string()),
        ("event_type", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.date32()),
    ]
)


def _rows(device: str, start: int, n: int, *, step_min: int = 30) -> list[dict[str, Any]]:
    rows = []
    for i in range(start, start + n):
        # pairs of events share a timestamp: event_id breaks the tie
        at = T0 + timedelta(minutes=step_min * (i // 2))
        rows.append(
            {
                "event_id": f"{device}-{i:03d}",
                "device_id": device,
                "event_type": "heartbeat",
                "occurred_at": at,
                "event_date": at.date(),
            }
        )
    return rows


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> DeltaTable:
    path = str(tmp_path_factory.mktemp("lake") / "device_events")
    for chunk in (_rows("a", 0, 10), _rows("b", 0, 6), _rows("a", 10, 8)):
        write_deltalake(
            path,
            pa.Table.from_pylist(chunk, schema=SCHEMA),
            partition_by=["event_date"],
            mode="append",
        )
    return DeltaTable(path)


def _all_pages(table: DeltaTable, window: Window, limit: int) -> list[list[str]]:
    """Pages as the route cuts them: one row more than the limit tells that more follow."""
    pages: list[list[str]] = []
    after = None
    while True:
        rows = events_page(table, "a", window, after, limit + 1)
        pages.append([r["event_id"] for r in rows[:limit]])
        if len(rows) <= limit:
            return pages
        after = (rows[limit - 1]["occurred_at"], rows[limit - 1]["event_id"])


@pytest.mark.parametrize("limit", [1, 3, 4, 17, 18, 100])
def test_pages_return_every_event_of_the_device_once_in_order(
    table: DeltaTable, limit: int
) -> None:
    pages = _all_pages(table, Window(), limit)

    assert [e for page in pages for e in page] == [f"a-{i:03d}" for i in range(18)]
    assert all(len(page) == limit for page in pages[:-1])


def test_the_window_is_start_inclusive_end_exclusive_across_days(table: DeltaTable) -> None:
    window = Window(T0 + timedelta(minutes=60), T0 + timedelta(minutes=150))

    pages = _all_pages(table, window, 2)

    # 23:00..00:00 next day: events 4..9 (two per timestamp); 00:30 is the end, excluded
    assert [e for page in pages for e in page] == [f"a-{i:03d}" for i in range(4, 10)]


def test_rows_carry_every_declared_column(table: DeltaTable) -> None:
    rows = events_page(table, "a", Window(), None, 1)

    assert set(rows[0]) == set(SILVER_DEVICE_EVENTS.column_names)
    assert rows[0]["occurred_at"] == T0
    assert rows[0]["battery_pct"] is None  # not in this table: null, not missing


def test_an_unknown_device_has_no_events(table: DeltaTable) -> None:
    assert events_page(table, "nobody", Window(), None, 10) == []


def test_statistics_come_from_the_delta_log(table: DeltaTable) -> None:
    stats = stats_of(table, SILVER_DEVICE_EVENTS)

    assert (stats.exists, stats.version, stats.row_count) == (True, 2, 24)
    assert stats.files is not None and stats.files >= 3
    assert stats.last_commit_at is not None
    assert abs(stats.last_commit_at - datetime.now(UTC)) < timedelta(minutes=5)
