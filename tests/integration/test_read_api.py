"""The read API against the real stack: uvicorn, SeaweedFS, PostgreSQL, Sail.

Device events are landed through the ingest API and run through the pipeline, so
`/v1/devices/{id}/events` reads the real silver.device_events Delta table. The analytics
endpoints read PostgreSQL, so their rows are seeded there directly, under ids (and, where a
source has no entity, times) no other module uses; rows that would change what other modules
see as "latest" are deleted when the module ends.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from pyspark.sql import SparkSession

from ingest_api.main import create_app
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import SILVER_DEVICE_EVENTS, TABLES
from spark_jobs import pipeline

pytestmark = pytest.mark.integration

TOKEN = secrets.token_hex(4)
DEVICE = f"ra-{TOKEN}-d0"
OTHER = f"ra-{TOKEN}-d1"
# 23:00 two days ago: the device's events run past midnight, across two event_date partitions.
BASE = (datetime.now(UTC) - timedelta(days=2)).replace(hour=23, minute=0, second=0, microsecond=0)
# Seeded analytics rows that have no entity of their own live in a year nothing else writes.
PAST = datetime(2001, 2, 3, tzinfo=UTC)
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)  # newer than anything real: "latest" for fleet/quality
READ_URLS = [
    f"/v1/devices/{DEVICE}/events",
    "/v1/latest?source=mobile",
    "/v1/metrics/device_hourly",
    "/v1/metrics/iot_sensor_minute/summary",
    "/v1/quality",
    "/v1/catalog",
]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _event(device: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": device,
        "event_type": "heartbeat",
        "occurred_at": _iso(at),
        "battery": {"level_pct": 55.0, "charging": False},
    }


def _post(api_url: str, key: str, events: list[dict[str, Any]]) -> None:
    body = {"sent_at": _iso(datetime.now(UTC)), "events": events}
    response = httpx.post(
        f"{api_url}/v1/events", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 202, response.text
    assert response.json()["rejected"] == 0


@pytest.fixture(scope="module")
def landed(settings: Settings, api_url: str, write_key: str) -> dict[str, list[dict[str, Any]]]:
    """30 events of DEVICE (pairs share a timestamp) and 5 of OTHER, in two batches, the second
    sent twice; then the pipeline, until nothing is left to claim."""
    events = [_event(DEVICE, BASE + timedelta(minutes=7 * (i // 2))) for i in range(30)]
    others = [_event(OTHER, BASE + timedelta(minutes=5 * i)) for i in range(5)]
    _post(api_url, write_key, events[:15] + others)
    _post(api_url, write_key, events[15:])
    _post(api_url, write_key, events[15:])  # a client retry: silver keeps one copy
    while pipeline.run_once(settings).objects:
        pass
    return {"device": events, "other": others}


@pytest.fixture(scope="module")
def client(api_url: str, read_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {read_key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as c:
        yield c


def _insert(registry: Registry, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    query = sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier("analytics", table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    )
    with registry.connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(query, [[r[c] for c in columns] for r in rows])


def _delete(registry: Registry, table: str, column: str, value: Any) -> None:
    with registry.connection() as conn, conn.transaction():
        conn.execute(
            sql.SQL("delete from {} where {} = %s").format(
                sql.Identifier("analytics", table), sql.Identifier(column)
            ),
            (value,),
        )


@pytest.fixture(scope="module")
def seeded(registry: Registry) -> Iterator[dict[str, Any]]:
    """Analytics rows of every source, under this module's ids."""
    store = f"Store-{TOKEN}"
    sensor_type = f"temperature-{TOKEN}"
    hours = [PAST + timedelta(hours=h) for h in range(9)]
    _insert(
        registry,
        "store_sensor_hourly",
        [
            {
                "store": store,
                "sensor_id": s,
                "hour_start": h,
                "visits": None if (s, i) == (2, 4) else 10 * s + i,
                "failed": (s, i) == (2, 4),
                "anomaly": False,
            }
            for s in (1, 2, 3)
            for i, h in enumerate(hours)
        ],
    )
    minutes = [PAST + timedelta(minutes=m) for m in range(4)]
    iot = []
    for n, unit in ((1, "C"), (2, "C"), (3, "F")):
        for i, m in enumerate(minutes):
            iot.append(
                {
                    "device_id": f"ra-{TOKEN}-s{n}",
                    "minute_start": m,
                    "readings": 60 if i else 30,
                    "avg_value": 20.0 + n + i,
                    "min_value": 10.0 + n + i,
                    "max_value": 30.0 + n + i,
                    "out_of_range": i % 2,
                    "unit": unit,
                    "type": sensor_type,
                    "location": f"Room {n}",
                }
            )
    _insert(registry, "iot_sensor_minute", iot)
    stream = f"ra-{TOKEN}-stream"
    _insert(
        registry,
        "stream_rolling",
        [
            {
                "event_id": f"ra-{TOKEN}-m{i}",
                "device_id": stream,
                "occurred_at": PAST + timedelta(seconds=i),
                "value": float(i),
                "rolling_avg_short": i / 2,
                "rolling_avg_long": i / 4,
            }
            for i in range(5)
        ],
    )
    segment = f"State-{TOKEN}"
    _insert(
        registry,
        "fleet_online",
        [
            {"ts": FUTURE - timedelta(minutes=m), "online": 90 - m, "reporting": 95, "errors": 1}
            | {"inventory": 100, "online_share": (90 - m) / 100}
            for m in (0, 10)
        ],
    )
    _insert(
        registry,
        "fleet_segments",
        [
            {
                "ts": ts,
                "segment": segment,
                "count": n,
                "dim1_name": "state",
                "dim1_value": state,
                "dim2_name": "",
                "dim2_value": "",
                "dim3_name": "",
                "dim3_value": "",
            }
            for ts in (FUTURE - timedelta(minutes=10), FUTURE)
            for n, state in enumerate(("AC", "BA", "MG", "RJ", "SP"))
        ],
    )
    run = f"ra-{TOKEN}-run"
    _insert(
        registry,
        "dq_results",
        [
            {
                "run_id": run,
                "table_name": "silver.device_events",
                "rule": rule,
                "dimension": "validity",
                "action": "quarantine",
                "rows_checked": 100,
                "rows_failed": failed,
                "checked_at": FUTURE,
            }
            for rule, failed in (("battery_out_of_range", 2), ("missing_event_id", 0))
        ],
    )
    try:
        yield {"store": store, "type": sensor_type, "stream": stream, "segment": segment}
    finally:
        _delete(registry, "fleet_online", "ts", FUTURE)
        _delete(registry, "fleet_online", "ts", FUTURE - timedelta(minutes=10))
        _delete(registry, "fleet_segments", "segment", segment)
        _delete(registry, "dq_results", "run_id", run)


def _pages(
    client: httpx.Client, url: str, params: dict[str, Any], field: str
) -> list[list[dict[str, Any]]]:
    """Every page of `url`, following next_cursor."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        response = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[field])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 200, "pagination does not end"


def _ordered_ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in sorted(events, key=lambda e: (e["occurred_at"], e["event_id"]))]


# --- /v1/devices/{device_id}/events ----------------------------------------------------------


def test_pages_return_every_event_of_the_device_exactly_once_in_order(
    client: httpx.Client, landed: dict[str, list[dict[str, Any]]]
) -> None:
    window = {"start": _iso(BASE - timedelta(hours=1)), "end": _iso(BASE + timedelta(days=1))}

    pages = _pages(client, f"/v1/devices/{DEVICE}/events", {**window, "limit": 4}, "events")

    ids = [e["event_id"] for page in pages for e in page]
    assert ids == _ordered_ids(landed["device"])
    assert [len(p) for p in pages] == [4] * 7 + [2]
    first = pages[0][0]
    assert (first["device_id"], first["event_type"], first["battery_pct"]) == (
        DEVICE,
        "heartbeat",
        55.0,
    )
    assert first["occurred_at"] == _iso(BASE)
    assert {e["event_date"] for page in pages for e in page} == {
        BASE.date().isoformat(),
        (BASE + timedelta(days=1)).date().isoformat(),
    }


def test_without_a_range_or_limit_one_page_of_100_holds_them_all(
    client: httpx.Client, landed: dict[str, list[dict[str, Any]]]
) -> None:
    body = client.get(f"/v1/devices/{OTHER}/events").json()

    assert [e["event_id"] for e in body["events"]] == _ordered_ids(landed["other"])
    assert body["next_cursor"] is None


def test_the_range_is_start_inclusive_end_exclusive(
    client: httpx.Client, landed: dict[str, list[dict[str, Any]]]
) -> None:
    start, end = BASE + timedelta(minutes=14), BASE + timedelta(minutes=35)

    pages = _pages(
        client, f"/v1/devices/{DEVICE}/events", {"start": _iso(start), "end": _iso(end)}, "events"
    )

    inside = [
        e for e in landed["device"] if start <= datetime.fromisoformat(e["occurred_at"]) < end
    ]
    assert len(inside) == 6
    assert [e["event_id"] for p in pages for e in p] == _ordered_ids(inside)


def test_an_unknown_device_has_no_events(client: httpx.Client, landed: object) -> None:
    body = client.get(f"/v1/devices/ra-{TOKEN}-nobody/events").json()

    assert body == {"device_id": f"ra-{TOKEN}-nobody", "events": [], "next_cursor": None}


def test_a_cursor_with_other_parameters_is_400(client: httpx.Client, landed: object) -> None:
    cursor = client.get(f"/v1/devices/{DEVICE}/events", params={"limit": 2}).json()["next_cursor"]

    response = client.get(f"/v1/devices/{OTHER}/events", params={"cursor": cursor})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.fixture(scope="module")
def empty_lake(settings: Settings) -> Settings:
    """This stack with a bucket of its own, where no table was ever written."""
    empty = settings.model_copy(update={"bucket": f"empty-{TOKEN}"})
    ObjectStore(empty).ensure_bucket()
    return empty


def test_a_lake_without_tables_answers_empty_not_500(empty_lake: Settings, read_key: str) -> None:
    headers = {"Authorization": f"Bearer {read_key}"}
    with TestClient(create_app(empty_lake)) as app:
        events = app.get(f"/v1/devices/{DEVICE}/events", headers=headers)
        catalog = app.get("/v1/catalog", headers=headers)

    assert events.status_code == 200, events.text
    assert events.json()["events"] == []
    lake = [t for t in catalog.json()["tables"] if t["kind"] == "delta"]
    assert [(t["name"], t["exists"], t["row_count"]) for t in lake] == [
        (t.name, False, 0) for t in TABLES
    ]


# --- keys and scopes -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", READ_URLS)
def test_a_write_key_cannot_read(api_url: str, write_key: str, url: str) -> None:
    response = httpx.get(f"{api_url}{url}", headers={"Authorization": f"Bearer {write_key}"})

    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["required_scope"]) == ("insufficient_scope", "read")
    assert error["message"].startswith("a write-scoped key cannot read")


@pytest.mark.parametrize("url", ["/v1/events", "/v1/batch", "/v1/track"])
def test_a_read_key_cannot_send_events(api_url: str, read_key: str, url: str) -> None:
    body = {"sent_at": _iso(datetime.now(UTC)), "events": [_event(DEVICE, BASE)]}

    response = httpx.post(
        f"{api_url}{url}", json=body, headers={"Authorization": f"Bearer {read_key}"}
    )

    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "insufficient_scope",
        "message": "a read-scoped key cannot send events",
    }


def test_no_key_is_401(api_url: str) -> None:
    response = httpx.get(f"{api_url}/v1/metrics/device_hourly")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


# --- /v1/metrics/{dataset} -----------------------------------------------------------------------


def test_metrics_pages_return_every_row_once_in_time_and_key_order(
    client: httpx.Client, seeded: dict[str, Any]
) -> None:
    pages = _pages(
        client, "/v1/metrics/store_sensor_hourly", {"store": seeded["store"], "limit": 5}, "rows"
    )

    rows = [r for p in pages for r in p]
    keys = [(r["hour_start"], r["sensor_id"]) for r in rows]
    assert len(rows) == 27
    assert keys == sorted(keys) and len(set(keys)) == 27
    assert [len(p) for p in pages] == [5] * 5 + [2]
    failed = [r for r in rows if r["failed"]]
    assert [(r["sensor_id"], r["visits"]) for r in failed] == [(2, None)]


def test_metrics_filters_and_range_narrow_the_rows(
    client: httpx.Client, seeded: dict[str, Any]
) -> None:
    params = {
        "store": seeded["store"],
        "sensor_id": "3",
        "start": _iso(PAST + timedelta(hours=2)),
        "end": _iso(PAST + timedelta(hours=5)),
    }

    body = client.get("/v1/metrics/store_sensor_hourly", params=params).json()

    assert [(r["sensor_id"], r["visits"]) for r in body["rows"]] == [(3, 32), (3, 33), (3, 34)]
    assert body["order"] == ["hour_start", "store", "sensor_id"]


def test_the_store_views_give_the_other_resolutions(
    client: httpx.Client, seeded: dict[str, Any]
) -> None:
    daily = client.get("/v1/metrics/store_daily", params={"store": seeded["store"]}).json()
    hourly = client.get(
        "/v1/metrics/store_hourly", params={"store": seeded["store"], "limit": 2}
    ).json()

    assert [(r["day"], r["visits"], r["failed_readings"]) for r in daily["rows"]] == [
        ("2001-02-03", sum(range(10, 19)) + sum(range(20, 29)) - 24 + sum(range(30, 39)), 1)
    ]
    assert [(r["visits"], r["sensors_ok"]) for r in hourly["rows"]] == [(60, 3), (63, 3)]
    assert hourly["next_cursor"] is not None


def test_the_stream_shapes_are_served_from_their_views(
    client: httpx.Client, seeded: dict[str, Any]
) -> None:
    melted = _pages(
        client, "/v1/metrics/stream_melted", {"device_id": seeded["stream"], "limit": 4}, "rows"
    )
    pivot = client.get(
        "/v1/metrics/stream_pivot",
        params={"variable": "value", "start": _iso(PAST), "end": _iso(PAST + timedelta(hours=1))},
    ).json()

    assert len([r for p in melted for r in p]) == 15
    assert [r["by_stream"][seeded["stream"]] for r in pivot["rows"]] == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/v1/metrics/weather", "unknown_dataset"),
        ("/v1/metrics/device_hourly?colour=red", "unknown_filter"),
        ("/v1/metrics/store_sensor_hourly?sensor_id=x", "invalid_filter"),
        ("/v1/metrics/device_hourly?start=2024-01-01", "invalid_timestamp"),
        (
            "/v1/metrics/device_hourly?start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z",
            "invalid_range",
        ),
        ("/v1/metrics/device_hourly?limit=5000", "invalid_limit"),
        ("/v1/metrics/device_hourly?cursor=bm90IGEgY3Vyc29y", "invalid_cursor"),
        ("/v1/latest?source=weather", "unknown_source"),
    ],
)
def test_bad_parameters_are_400_with_a_code(client: httpx.Client, url: str, code: str) -> None:
    response = client.get(url)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code


# --- /v1/latest ----------------------------------------------------------------------------------


def _latest(client: httpx.Client, source: str) -> list[dict[str, Any]]:
    return [
        r
        for p in _pages(client, "/v1/latest", {"source": source, "limit": 1000}, "rows")
        for r in p
    ]


def test_latest_mobile_is_the_newest_hour_of_each_device_from_the_pipeline(
    client: httpx.Client, landed: dict[str, list[dict[str, Any]]]
) -> None:
    rows = {r["device_id"]: r for r in _latest(client, "mobile")}

    newest = BASE + timedelta(minutes=7 * 14)
    assert rows[DEVICE]["hour_start"] == _iso(newest.replace(minute=0))
    assert rows[DEVICE]["events"] == sum(
        1 for e in landed["device"] if e["occurred_at"] >= _iso(newest.replace(minute=0))
    )
    assert OTHER in rows


def test_latest_per_entity_for_stores_iot_and_stream(
    client: httpx.Client, seeded: dict[str, Any]
) -> None:
    stores = [r for r in _latest(client, "stores") if r["store"] == seeded["store"]]
    iot = [r for r in _latest(client, "iot") if r["type"] == seeded["type"]]
    stream = [r for r in _latest(client, "stream") if r["device_id"] == seeded["stream"]]

    last_hour = _iso(PAST + timedelta(hours=8))
    assert [(r["sensor_id"], r["hour_start"]) for r in stores] == [
        (1, last_hour),
        (2, last_hour),
        (3, last_hour),
    ]
    assert [(r["device_id"], r["minute_start"]) for r in iot] == [
        (f"ra-{TOKEN}-s{n}", _iso(PAST + timedelta(minutes=3))) for n in (1, 2, 3)
    ]
    assert [(r["event_id"], r["value"]) for r in stream] == [(f"ra-{TOKEN}-m4", 4.0)]


def test_latest_fleet_is_the_newest_snapshot_and_its_segments(
    client: httpx.Client, seeded: dict[str, Any]
) -> None:
    pages = _pages(client, "/v1/latest", {"source": "fleet", "limit": 2}, "rows")
    first = client.get("/v1/latest", params={"source": "fleet"}).json()

    rows = [r for p in pages for r in p]
    assert [(r["dim1_value"], r["count"]) for r in rows] == [
        ("AC", 0),
        ("BA", 1),
        ("MG", 2),
        ("RJ", 3),
        ("SP", 4),
    ]
    assert {r["ts"] for r in rows} == {_iso(FUTURE)}
    assert (first["snapshot"]["ts"], first["snapshot"]["online"]) == (_iso(FUTURE), 90)
    assert first["entity"] == ["segment", "dim1_value", "dim2_value", "dim3_value"]


# --- summary and quality -------------------------------------------------------------------------


def test_the_sensor_summary_aggregates_each_sensors_minutes(
    client: httpx.Client, seeded: dict[str, Any]
) -> None:
    params = {"type": seeded["type"], "unit": "C", "start": _iso(PAST)}

    pages = _pages(
        client, "/v1/metrics/iot_sensor_minute/summary", {**params, "limit": 1}, "sensors"
    )

    sensors = [s for p in pages for s in p]
    assert [s["device_id"] for s in sensors] == [f"ra-{TOKEN}-s1", f"ra-{TOKEN}-s2"]
    s1 = sensors[0]
    # minute means 21, 22, 23, 24 over 30, 60, 60, 60 readings
    assert s1["avg_value"] == pytest.approx((21 * 30 + (22 + 23 + 24) * 60) / 210)
    assert (s1["readings"], s1["minutes"], s1["min_value"], s1["max_value"]) == (210, 4, 11, 34)
    assert (s1["out_of_range"], s1["unit"], s1["location"]) == (2, "C", "Room 1")
    assert (s1["first_minute"], s1["last_minute"]) == (
        _iso(PAST),
        _iso(PAST + timedelta(minutes=3)),
    )


def test_the_summary_range_and_device_filter(client: httpx.Client, seeded: dict[str, Any]) -> None:
    params = {
        "type": seeded["type"],
        "device_id": f"ra-{TOKEN}-s3",
        "start": _iso(PAST + timedelta(minutes=2)),
        "end": _iso(PAST + timedelta(minutes=3)),
    }

    sensors = client.get("/v1/metrics/iot_sensor_minute/summary", params=params).json()["sensors"]

    assert [(s["device_id"], s["readings"], s["unit"]) for s in sensors] == [
        (f"ra-{TOKEN}-s3", 60, "F")
    ]


def test_quality_gives_the_newest_result_of_each_rule(
    client: httpx.Client, seeded: dict[str, Any], landed: object
) -> None:
    body = client.get("/v1/quality", params={"table": "silver.device_events"}).json()

    results = {r["rule"]: r for r in body["results"]}
    assert {r["table_name"] for r in body["results"]} == {"silver.device_events"}
    seeded_run = f"ra-{TOKEN}-run"
    assert (
        results["battery_out_of_range"]["run_id"],
        results["battery_out_of_range"]["passed"],
    ) == (
        seeded_run,
        False,
    )
    assert results["battery_out_of_range"]["column"] == "battery_pct"
    assert results["missing_event_id"]["passed"] is True
    # Every declared rule has a result (the pipeline records them all on each run); other
    # modules of the session may add their own rules' results for this table too.
    declared = {e.rule for e in SILVER_DEVICE_EVENTS.expectations}
    assert declared <= set(results)


# --- catalog -------------------------------------------------------------------------------------


def test_the_catalog_lists_every_table_with_row_counts_that_match(
    client: httpx.Client,
    settings: Settings,
    spark: SparkSession,
    registry: Registry,
    landed: object,
    seeded: object,
) -> None:
    body = client.get("/v1/catalog").json()

    tables = {t["name"]: t for t in body["tables"]}
    assert body["with_statistics"] is True
    for declared in TABLES:
        entry = tables[declared.name]
        assert entry["columns"] == [
            {"name": c.name, "type": c.type, "description": c.description, "nullable": c.nullable}
            for c in declared.columns
        ]
        assert (entry["grain"], entry["owner_stage"]) == (
            declared.grain,
            declared.owner_stage or None,
        )
        if entry["exists"]:
            count = spark.read.format("delta").load(table_uri(settings, declared)).count()
            assert entry["row_count"] == count, declared.name
            assert entry["freshness_from"] == "delta_log"
    silver = tables["silver.device_events"]
    assert silver["exists"] is True and silver["row_count"] >= 35
    assert silver["partition_by"] == ["event_date"]
    with registry.connection() as conn:
        relations = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'analytics'"
        ).fetchall()
        for r in relations:
            entry = tables[f"analytics.{r['table_name']}"]
            (count,) = conn.execute(
                sql.SQL("select count(*) as n from {}").format(
                    sql.Identifier("analytics", r["table_name"])
                )
            ).fetchall()
            assert entry["row_count"] == count["n"], entry["name"]
    hourly = tables["analytics.device_hourly"]
    assert (hourly["mirrors"], hourly["dataset"], hourly["freshness_from"]) == (
        "gold.device_hourly",
        "device_hourly",
        "updated_at",
    )
    assert tables["analytics.store_daily"]["kind"] == "view"
    assert tables["analytics.store_daily"]["freshness"] is not None


def test_the_catalog_page_is_public_without_statistics(api_url: str) -> None:
    response = httpx.get(f"{api_url}/catalog")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    for t in TABLES:
        assert f'id="{t.name}"' in response.text
    assert 'id="analytics.iot_sensor_minute"' in response.text
    assert "<dt>rows</dt>" not in response.text
    assert "<script" not in response.text


def test_the_catalog_page_shows_statistics_to_a_read_key(
    api_url: str, read_key: str, write_key: str, landed: object
) -> None:
    page = httpx.get(f"{api_url}/catalog", headers={"Authorization": f"Bearer {read_key}"})
    refused = httpx.get(f"{api_url}/catalog", headers={"Authorization": f"Bearer {write_key}"})

    assert page.status_code == 200
    assert "<dt>rows</dt>" in page.text
    assert refused.status_code == 403


def test_openapi_documents_the_read_api(api_url: str) -> None:
    paths = httpx.get(f"{api_url}/openapi.json").json()["paths"]

    for path in (
        "/v1/devices/{device_id}/events",
        "/v1/latest",
        "/v1/metrics/{dataset}",
        "/v1/metrics/iot_sensor_minute/summary",
        "/v1/catalog",
        "/v1/quality",
        "/catalog",
    ):
        assert {"200", "401", "403", "503"} <= set(paths[path]["get"]["responses"]), path
