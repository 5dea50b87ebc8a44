"""Read API routes in-process: keys and scopes, every 400 code, paging, and the OpenAPI.

The registry is a fake that knows two keys; the analytics database is one that fails the test
if a query reaches it (bad requests must be refused before any), or canned rows where a test
checks how a page is cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from ingest_api.deps import get_analytics_db, get_key_cache, get_registry, get_store
from ingest_api.intake import IngestRoute
from ingest_api.keys import KeyCache
from ingest_api.main import create_app
from ingest_api.readparams import decode_cursor, fingerprint
from ingest_api.routes import events, read, segment
from lake_config.registry import ApiKey
from lake_config.settings import Settings

READ = "tlk_read_secret"
WRITE = "tlk_write_secret"
READ_ROUTES = [
    "/v1/devices/dev-1/events",
    "/v1/latest?source=mobile",
    "/v1/metrics/device_hourly",
    "/v1/metrics/iot_sensor_minute/summary",
    "/v1/quality",
    "/v1/catalog",
]


class FakeRegistry:
    def lookup_key(self, secret: str) -> ApiKey | None:
        return {
            READ: ApiKey("k-read", "analysts", "read"),
            WRITE: ApiKey("k-write", "mobile", "write"),
        }.get(secret)


class NoDatabase:
    def connection(self) -> Any:
        raise AssertionError("a refused request must not query the database")


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(Settings())
    app.dependency_overrides[get_registry] = FakeRegistry
    app.dependency_overrides[get_key_cache] = KeyCache
    app.dependency_overrides[get_analytics_db] = NoDatabase
    app.dependency_overrides[get_store] = lambda: None
    # The ingest routes read their registry and key cache from the app's state.
    app.state.registry = FakeRegistry()
    app.state.key_cache = KeyCache()
    yield TestClient(app)


def _get(client: TestClient, url: str, key: str | None = READ) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.get(url, headers=headers)


@pytest.mark.parametrize("url", READ_ROUTES)
def test_read_routes_need_a_key(client: TestClient, url: str) -> None:
    response = _get(client, url, key=None)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


@pytest.mark.parametrize("url", READ_ROUTES)
def test_a_write_key_cannot_read(client: TestClient, url: str) -> None:
    response = _get(client, url, key=WRITE)

    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "insufficient_scope",
            "message": "a write-scoped key cannot read; create a read key with "
            "'tlake keys create --source <name> --scope read'",
            "required_scope": "read",
        }
    }


@pytest.mark.parametrize("url", ["/v1/events", "/v1/batch", "/v1/track"])
def test_a_read_key_cannot_send_events(client: TestClient, url: str) -> None:
    response = client.post(url, json={}, headers={"Authorization": f"Bearer {READ}"})

    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "insufficient_scope",
        "message": "a read-scoped key cannot send events",
    }


@pytest.mark.parametrize(
    "authorization", [None, "Basic " + WRITE, "Bearer", "Bearer ", "bearer" + WRITE]
)
def test_events_want_a_bearer_key(client: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post("/v1/events", json={}, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_events_accept_the_bearer_scheme_in_any_case(client: TestClient) -> None:
    response = client.post("/v1/events", json={}, headers={"Authorization": f"bEaReR {READ}"})

    assert response.status_code == 403  # the key was read: a read key may not send events


def test_events_declare_their_bearer_security_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    assert spec["paths"]["/v1/events"]["post"]["security"] == [{"HTTPBearer": []}]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_ingest_routes_call_their_endpoint_without_fastapis_resolver() -> None:
    ingest = {
        route.path: route
        for route in [*events.router.routes, *segment.router.routes]
        if isinstance(route, IngestRoute)
    }

    assert sorted(ingest) == [
        "/v1/batch",
        "/v1/events",
        "/v1/identify",
        "/v1/page",
        "/v1/screen",
        "/v1/track",
    ]
    assert all(route.get_route_handler() is route.endpoint for route in ingest.values())


def test_an_ingest_route_refuses_parameters_fastapi_would_resolve() -> None:
    async def with_query(request: Request, limit: int) -> Any:  # only `limit` is refused
        return None

    with pytest.raises(TypeError, match="takes only `request: Request`"):
        IngestRoute("/v1/x", with_query, methods=["POST"])


@pytest.mark.parametrize(
    ("url", "code", "parameter", "message"),
    [
        ("/v1/metrics/nope", "unknown_dataset", "dataset", "unknown dataset"),
        ("/v1/metrics/device_hourly?store=x", "unknown_filter", "store", "cannot be filtered"),
        (
            "/v1/metrics/store_sensor_hourly?sensor_id=two",
            "invalid_filter",
            "sensor_id",
            "sensor_id must be an integer",
        ),
        (
            "/v1/metrics/store_sensor_hourly?store=a&store=b",
            "invalid_filter",
            "store",
            "give the filter store once",
        ),
        (
            "/v1/metrics/device_hourly?start=2024-05-01T00:00:00",
            "invalid_timestamp",
            "start",
            "RFC 3339 timestamp with a time zone",
        ),
        (
            "/v1/metrics/device_hourly?end=yesterday",
            "invalid_timestamp",
            "end",
            "RFC 3339",
        ),
        (
            "/v1/metrics/device_hourly?start=2024-05-02T00:00:00Z&end=2024-05-01T00:00:00Z",
            "invalid_range",
            "start",
            "start must not be after end",
        ),
        ("/v1/metrics/device_hourly?limit=0", "invalid_limit", "limit", "greater than or equal"),
        ("/v1/metrics/device_hourly?limit=1001", "invalid_limit", "limit", "less than or equal"),
        ("/v1/metrics/device_hourly?limit=ten", "invalid_limit", "limit", "valid integer"),
        ("/v1/metrics/device_hourly?cursor=abc", "invalid_cursor", "cursor", "not one this API"),
        (
            f"/v1/metrics/device_hourly?cursor={'a' * 2049}",
            "invalid_cursor",
            "cursor",
            "at most 2048",
        ),
        ("/v1/latest?source=weather", "unknown_source", "source", "unknown source"),
        ("/v1/latest", "invalid_parameter", "source", "Field required"),
        ("/v1/devices/dev-1/events?strat=x", "unknown_parameter", "strat", "unknown query"),
        ("/v1/devices/dev-1/events?limit=-1", "invalid_limit", "limit", "greater than"),
        (
            "/v1/devices/dev-1/events?start=2024-05-01T00:00:00 02:00",
            "invalid_timestamp",
            "start",
            "%2B",
        ),
        (
            "/v1/metrics/iot_sensor_minute/summary?location=x",
            "unknown_parameter",
            "location",
            "unknown query",
        ),
        ("/v1/quality?table=silver.nope", "unknown_table", "table", "unknown table"),
        ("/v1/catalog?x=1", "unknown_parameter", "x", "unknown query"),
    ],
)
def test_bad_parameters_are_400_with_their_own_code(
    client: TestClient, url: str, code: str, parameter: str, message: str
) -> None:
    response = _get(client, url)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert message in error["message"]


def test_an_unknown_dataset_lists_the_known_ones(client: TestClient) -> None:
    error = _get(client, "/v1/metrics/nope").json()["error"]

    assert "device_hourly" in error["known"]
    assert "dq_results" in error["known"]


def test_an_unknown_source_lists_the_known_ones(client: TestClient) -> None:
    error = _get(client, "/v1/latest?source=weather").json()["error"]

    assert error["known"] == ["mobile", "fleet", "stores", "iot", "stream"]


def test_an_unknown_filter_lists_the_datasets_filters(client: TestClient) -> None:
    error = _get(client, "/v1/metrics/iot_sensor_minute?colour=red").json()["error"]

    assert error["filters"] == ["device_id", "type", "unit", "location"]


HOUR = datetime(2024, 5, 1, tzinfo=UTC)


def _hourly(n: int) -> list[dict[str, Any]]:
    return [
        {"device_id": f"d{i % 3}", "hour_start": HOUR + timedelta(hours=i // 3), "events": i}
        for i in range(n)
    ]


def test_a_full_page_gets_a_cursor_after_its_last_row(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[Any]] = []

    def fetch(db: Any, *queries: Any) -> list[list[dict[str, Any]]]:
        seen.append(queries[0][1])
        return [_hourly(4)]

    monkeypatch.setattr(read, "fetch", fetch)

    body = _get(client, "/v1/metrics/device_hourly?device_id=d1&limit=3").json()

    assert [r["events"] for r in body["rows"]] == [0, 1, 2]
    assert body["order"] == ["hour_start", "device_id"]
    assert seen == [["d1", 4]]  # one more than the limit, to know whether a page follows
    query = fingerprint("metrics", "device_hourly", [None, None], {"device_id": "d1"})
    assert decode_cursor(body["next_cursor"], query, ("timestamptz", "text")) == (HOUR, "d2")


def test_a_short_page_is_the_last(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "fetch", lambda db, *q: [_hourly(2)])

    body = _get(client, "/v1/metrics/device_hourly?limit=3").json()

    assert len(body["rows"]) == 2
    assert body["next_cursor"] is None


def test_a_cursor_is_bound_to_its_filters(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read, "fetch", lambda db, *q: [_hourly(4)])
    cursor = _get(client, "/v1/metrics/device_hourly?device_id=d1&limit=3").json()["next_cursor"]

    response = _get(client, f"/v1/metrics/device_hourly?device_id=d2&cursor={cursor}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_quality_rows_say_which_column_their_rule_checks(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = {
        "table_name": "silver.device_events",
        "run_id": "r1",
        "dimension": "validity",
        "action": "quarantine",
        "rows_checked": 10,
        "rows_failed": 0,
        "checked_at": HOUR,
    }
    monkeypatch.setattr(
        read,
        "fetch",
        lambda db, *q: [[{**row, "rule": "battery_out_of_range"}, {**row, "rule": "gone_rule"}]],
    )

    results = _get(client, "/v1/quality").json()["results"]

    assert [(r["rule"], r["column"], r["passed"]) for r in results] == [
        ("battery_out_of_range", "battery_pct", True),
        ("gone_rule", None, True),
    ]


def test_a_device_id_may_contain_a_slash(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def device_events(settings: Any, device_id: str, *args: Any) -> Any:
        asked.append(device_id)
        return []

    monkeypatch.setattr(read.lakeread, "device_events", device_events)

    body = _get(client, "/v1/devices/shop%2F7/events").json()

    assert asked == ["shop/7"]
    assert body == {"device_id": "shop/7", "events": [], "next_cursor": None}


def test_openapi_documents_every_read_route_with_its_model_and_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    models = {
        "/v1/devices/{device_id}/events": "DeviceEventsPage",
        "/v1/latest": "LatestValues",
        "/v1/metrics/{dataset}": "MetricsPage",
        "/v1/metrics/iot_sensor_minute/summary": "SensorSummaryPage",
        "/v1/quality": "QualityReport",
        "/v1/catalog": "Catalog",
    }
    for path, model in models.items():
        responses = paths[path]["get"]["responses"]
        schema = responses["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, path
        assert {"400", "401", "403", "503"} <= set(responses), path
        assert "422" not in responses, path
    assert "text/html" in paths["/catalog"]["get"]["responses"]["200"]["content"]
    parameters = {p["name"] for p in paths["/v1/metrics/{dataset}"]["get"]["parameters"]}
    assert {"start", "end", "limit", "cursor", "device_id", "store", "unit", "variable"} <= (
        parameters
    )
