"""The read API's dataset registry and the SQL it builds (no database: the SQL as text)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from psycopg import sql

from ingest_api.datasets import (
    DATASETS,
    LATEST,
    Dataset,
    column_description,
    headline_query,
    latest_query,
    page_query,
    quality_query,
    snapshot_query,
    summary_query,
)
from ingest_api.readparams import Window
from lake_config.tables import GOLD_DEVICE_HOURLY, TABLES

MIGRATIONS = Path(__file__).resolve().parents[2] / "sql" / "migrations"
START = datetime(2024, 5, 1, tzinfo=UTC)
END = datetime(2024, 5, 2, tzinfo=UTC)


def _text(query: sql.Composable) -> str:
    return " ".join(query.as_string(None).split())


def _migrations() -> str:
    return "\n".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")))


def test_every_dataset_is_a_relation_the_migrations_create() -> None:
    created = set(
        re.findall(r"create (?:table|view) analytics\.(\w+)", _migrations(), flags=re.IGNORECASE)
    )

    assert set(DATASETS) <= created
    assert {
        "device_hourly",
        "fleet_online",
        "fleet_segments",
        "fleet_devices",
        "store_sensor_hourly",
        "store_sensor_daily",
        "store_hourly",
        "store_daily",
        "iot_sensor_minute",
        "stream_rolling",
        "stream_melted",
        "stream_pivot",
        "alerts",
        "dq_results",
    } <= set(DATASETS)


@pytest.mark.parametrize(
    "ds", [d for d in DATASETS.values() if d.mirrors is not None], ids=lambda d: d.name
)
def test_a_mirrored_dataset_orders_by_columns_of_its_gold_declaration(ds: Dataset) -> None:
    assert ds.mirrors is not None
    declared = {c.name for c in ds.mirrors.columns}

    assert ds.mirrors.name == f"gold.{ds.name}"
    assert set(ds.order) <= declared
    assert set(ds.filters) <= declared
    assert set(ds.mirrors.merge_keys) <= set(ds.order)  # the order is unique


def test_a_dataset_needs_the_kind_of_every_column_it_orders_or_filters_by() -> None:
    with pytest.raises(ValueError, match=r"dataset broken: no kind for \['store'\]"):
        Dataset("broken", "", time="ts", columns={"ts": "timestamptz"}, filters=("store",))


def test_column_descriptions_come_from_notes_the_gold_declaration_or_the_base_dataset() -> None:
    assert column_description(DATASETS["device_hourly"], "events") == "Events in the hour"
    assert column_description(DATASETS["device_hourly"], "updated_at") == (
        "When the row was last written"
    )
    assert column_description(DATASETS["store_daily"], "day") == "UTC day"
    assert column_description(DATASETS["store_daily"], "store") == "Store"  # from the hourly base
    assert column_description(DATASETS["alerts"], "nope") == ""


def test_latest_sources_are_the_five_origins() -> None:
    assert list(LATEST) == ["mobile", "fleet", "stores", "iot", "stream"]
    for spec in LATEST.values():
        assert set(spec.entity) <= set(spec.dataset.columns)  # kinds for the cursor


def test_a_page_query_binds_every_value_and_orders_by_the_full_key() -> None:
    ds = DATASETS["store_sensor_hourly"]
    query, params = page_query(
        ds, Window(START, END), {"store": "Lisbon", "sensor_id": 2}, (START, "Lisbon", 1), 51
    )

    assert _text(query) == (
        'select t.* from "analytics"."store_sensor_hourly" as t '
        'where t."hour_start" >= %s and t."hour_start" < %s and t."store" = %s '
        'and t."sensor_id" = %s and (t."hour_start", t."store", t."sensor_id") > (%s, %s, %s) '
        'order by t."hour_start", t."store", t."sensor_id" limit %s'
    )
    assert params == [START, END, "Lisbon", 2, START, "Lisbon", 1, 51]


def test_a_filter_value_never_reaches_the_sql_text() -> None:
    evil = "x'; drop table analytics.alerts; --"
    query, params = page_query(DATASETS["alerts"], Window(), {"source": evil}, None, 10)

    assert evil not in _text(query)
    assert params == [evil, 10]


def test_an_unbounded_page_query_has_no_where_clause() -> None:
    query, params = page_query(DATASETS["fleet_online"], Window(), {}, None, 10)

    assert _text(query) == (
        'select t.* from "analytics"."fleet_online" as t order by t."ts" limit %s'
    )
    assert params == [10]


def test_a_date_dataset_keeps_the_days_whose_midnight_is_in_the_window() -> None:
    window = Window(datetime(2024, 5, 1, 6, tzinfo=UTC), datetime(2024, 5, 4, tzinfo=UTC))

    query, params = page_query(DATASETS["store_daily"], window, {}, None, 10)

    assert 't."day" >= %s and t."day" <= %s' in _text(query)
    assert params == [date(2024, 5, 2), date(2024, 5, 3), 10]


def test_latest_per_entity_takes_the_newest_row_of_each() -> None:
    query, params = latest_query(LATEST["stores"], ("Lisbon", 3), 11)

    assert _text(query) == (
        'select distinct on (t."store", t."sensor_id") t.* '
        'from "analytics"."store_sensor_hourly" as t '
        'where (t."store", t."sensor_id") > (%s, %s) '
        'order by t."store", t."sensor_id", t."hour_start" desc limit %s'
    )
    assert params == ["Lisbon", 3, 11]


def test_the_fleet_snapshot_pins_its_time_and_pages_by_segment() -> None:
    spec = LATEST["fleet"]
    query, params = snapshot_query(spec, START, ("State", "SP", "", ""), 5)

    assert _text(query) == (
        'select t.* from "analytics"."fleet_segments" as t where t."ts" = %s and '
        '(t."segment", t."dim1_value", t."dim2_value", t."dim3_value") > (%s, %s, %s, %s) '
        'order by t."segment", t."dim1_value", t."dim2_value", t."dim3_value" limit %s'
    )
    assert params == [START, "State", "SP", "", "", 5]
    assert spec.headline is not None
    assert _text(headline_query(spec.headline)[0]) == (
        'select t.* from "analytics"."fleet_online" as t order by t."ts" desc limit 1'
    )


def test_the_summary_weights_minute_means_by_their_readings() -> None:
    query, params = summary_query(Window(START, END), {"type": "temperature"}, "s-1", 101)
    text = _text(query)

    assert "sum(m.avg_value * m.readings) / sum(m.readings) as avg_value" in text
    assert (
        'where t."minute_start" >= %s and t."minute_start" < %s and t."type" = %s '
        'and (t."device_id") > (%s)'
    ) in text
    assert text.endswith("select * from final order by device_id limit %s")
    assert params == [START, END, "temperature", "s-1", 101]


def test_quality_takes_the_newest_result_per_table_and_rule() -> None:
    query, params = quality_query("silver.device_events")

    assert _text(query).startswith("select distinct on (t.table_name, t.rule)")
    assert 'where t."table_name" = %s' in _text(query)
    assert "order by t.table_name, t.rule, t.checked_at desc" in _text(query)
    assert params == ["silver.device_events"]


def test_every_gold_table_with_an_analytics_mirror_is_a_dataset() -> None:
    mirrored = {t.name.split(".", 1)[1] for t in TABLES if "analytics." in t.description}

    assert mirrored <= set(DATASETS)
    assert DATASETS["device_hourly"].mirrors is GOLD_DEVICE_HOURLY


def test_a_snapshot_cursor_carries_the_snapshot_time_an_entity_cursor_does_not() -> None:
    assert LATEST["fleet"].cursor_columns == (
        "ts",
        "segment",
        "dim1_value",
        "dim2_value",
        "dim3_value",
    )
    assert LATEST["fleet"].cursor_kinds == ("timestamptz", "text", "text", "text", "text")
    assert LATEST["stores"].cursor_columns == ("store", "sensor_id")
    assert LATEST["stores"].cursor_kinds == ("text", "int")
