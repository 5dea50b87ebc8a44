"""The catalog generated from the declarations, and its HTML page (escaped, no script)."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest_api import catalog
from ingest_api.read_schemas import Catalog, CatalogColumn
from lake_config.settings import Settings
from lake_config.tables import SILVER_DEVICE_EVENTS, TABLES

AT = datetime(2024, 5, 1, tzinfo=UTC)


def _pg_columns(*names: str) -> list[dict[str, str]]:
    return [
        {"column_name": n, "data_type": "text", "is_nullable": "NO", "table_type": "BASE TABLE"}
        for n in names
    ]


def test_a_lake_entry_is_its_declaration() -> None:
    entry = catalog._lake_entry(Settings(), SILVER_DEVICE_EVENTS)

    assert (entry.name, entry.layer, entry.kind, entry.owner_stage) == (
        "silver.device_events",
        "silver",
        "delta",
        "silver",
    )
    assert entry.location.endswith("/silver/device_events")
    assert [c.name for c in entry.columns] == SILVER_DEVICE_EVENTS.column_names
    assert entry.columns[0].description == "Client-chosen event id, unique in this table"
    assert (entry.merge_keys, entry.partition_by) == (["event_id"], ["event_date"])
    assert {e.rule for e in entry.expectations} >= {"missing_event_id", "duplicate_event_id"}
    assert entry.exists is None  # no statistics asked for


def test_every_declared_lake_table_has_an_entry() -> None:
    names = [catalog._lake_entry(Settings(), t).name for t in TABLES]

    assert names == [t.name for t in TABLES]


def test_a_mirror_is_described_by_its_gold_declaration() -> None:
    entry = catalog._analytics_entry(
        "device_hourly", "table", _pg_columns("device_id", "events", "updated_at")
    )

    assert (entry.name, entry.layer, entry.mirrors, entry.dataset) == (
        "analytics.device_hourly",
        "analytics",
        "gold.device_hourly",
        "device_hourly",
    )
    assert entry.grain == "one row per (device_id, hour_start)"
    assert [c.description for c in entry.columns] == [
        "Device",
        "Events in the hour",
        "When the row was last written",
    ]


def test_a_view_is_described_by_its_dataset_and_an_undeclared_relation_is_still_listed() -> None:
    view = catalog._analytics_entry("store_daily", "view", _pg_columns("store", "day", "visits"))
    other = catalog._analytics_entry("scratch", "table", _pg_columns("x"))

    assert view.kind == "view"
    assert view.grain == "one row per (day, store)"
    assert [c.description for c in view.columns] == [
        "Store",
        "UTC day",
        "Visitors counted that day; failed readings count none",
    ]
    assert (other.name, other.dataset, other.description, other.columns[0].description) == (
        "analytics.scratch",
        None,
        "",
        "",
    )


def test_the_html_page_escapes_everything_and_runs_nothing() -> None:
    entry = catalog._lake_entry(Settings(), SILVER_DEVICE_EVENTS).model_copy(
        update={
            "description": '<script>alert("x")</script>',
            "columns": [CatalogColumn(name="a&b", type="string", description="<b>", nullable=True)],
            "row_count": 1234,
            "exists": True,
            "freshness": AT,
        }
    )

    page = catalog.render_html(Catalog(generated_at=AT, with_statistics=True, tables=[entry]))

    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<code>a&amp;b</code>" in page and "&lt;b&gt;" in page
    assert "<dt>rows</dt><dd>1,234</dd>" in page
    assert "<dt>freshness</dt><dd>2024-05-01T00:00:00+00:00</dd>" in page


def test_the_public_page_shows_no_statistics() -> None:
    entry = catalog._lake_entry(Settings(), SILVER_DEVICE_EVENTS)

    page = catalog.render_html(Catalog(generated_at=AT, with_statistics=False, tables=[entry]))

    assert "<dt>rows</dt>" not in page
    assert "send a read key" in page
    assert 'id="silver.device_events"' in page
