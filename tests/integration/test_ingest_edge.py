"""The edge of the ingest API for real: /metrics, the per-key rate limit, the in-flight cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST

from ingest_api.main import create_app
from lake_config.registry import Registry
from lake_config.settings import Settings
from tests.integration.test_ingest_api import batch, closed_port, event, samples, value

pytestmark = pytest.mark.integration


def test_metrics_count_requests_events_bytes_and_latency(api_url: str, write_key: str) -> None:
    headers = {"Authorization": f"Bearer {write_key}"}
    body = orjson.dumps(batch(event(), event(battery={"level_pct": 140}), event(extra=1)))
    before = samples(httpx.get(f"{api_url}/metrics").text)

    landed = httpx.post(f"{api_url}/v1/events", content=body, headers=headers)
    refused = httpx.post(f"{api_url}/v1/events", content=b"{", headers=headers)
    response = httpx.get(f"{api_url}/metrics")

    assert (landed.status_code, refused.status_code) == (202, 400)
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    after = samples(response.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/events"
    requests = "tlake_ingest_requests_total"
    assert delta(requests, route=route, status="202", outcome="accepted") == 1
    assert delta(requests, route=route, status="400", outcome="invalid_json") == 1
    assert delta("tlake_ingest_events_total", outcome="accepted", reason="") == 1
    assert delta("tlake_ingest_events_total", outcome="rejected", reason="battery") == 1
    assert delta("tlake_ingest_events_total", outcome="rejected", reason="unknown_field") == 1
    assert delta("tlake_ingest_request_bytes_total", route=route) == len(body) + 1
    assert delta("tlake_ingest_request_duration_seconds_count", route=route) == 2
    assert delta("tlake_ingest_batches_per_object_count") == 1  # one group-commit round
    assert delta("tlake_ingest_batches_per_object_sum") == 1  # of one batch
    assert value(after, "tlake_ingest_inflight_requests") == 0


def test_a_key_above_its_event_rate_is_429_with_retry_after(
    settings: Settings, registry: Registry
) -> None:
    limited = settings.model_copy(update={"rate_limit_events_per_s": 2, "max_events_per_batch": 3})
    key = registry.create_key("rate-limited")
    headers = {"Authorization": f"Bearer {key}"}
    body = orjson.dumps(batch(event(), event(), event()))

    with TestClient(create_app(limited)) as client:
        first = client.post("/v1/events", content=body, headers=headers)
        second = client.post("/v1/events", content=body, headers=headers)
        metrics = samples(client.get("/metrics").text)

    assert first.status_code == 202, first.text
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "2"
    assert second.json() == {
        "error": {
            "code": "rate_limited",
            "message": "this API key sends more than 2 events per second; retry after 2 s",
            "limit_events_per_s": 2.0,
        }
    }
    assert (
        value(
            metrics,
            "tlake_ingest_requests_total",
            route="/v1/events",
            status="429",
            outcome="rate_limited",
        )
        == 1
    )


@pytest.fixture
def one_inflight_api(settings: Settings) -> Iterator[str]:
    """The API in a real uvicorn (in a thread) that works on one ingest request at a time."""
    port = closed_port()
    app = create_app(settings.model_copy(update={"max_inflight_requests": 1}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_requests_past_max_inflight_are_503_overloaded(
    one_inflight_api: str, write_key: str
) -> None:
    url, headers = one_inflight_api, {"Authorization": f"Bearer {write_key}"}
    body = orjson.dumps(batch(event()))
    go = threading.Event()
    held: list[httpx.Response] = []

    def slow_body() -> Iterator[bytes]:
        yield body[:10]
        go.wait(timeout=60)  # the request stays in flight until the test lets it finish
        yield body[10:]

    def send_slowly() -> None:
        held.append(httpx.post(f"{url}/v1/events", content=slow_body(), headers=headers))

    sender = threading.Thread(target=send_slowly)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while (
            value(samples(httpx.get(f"{url}/metrics").text), "tlake_ingest_inflight_requests") != 1
        ):
            assert time.monotonic() < deadline, "the slow request never arrived"
            time.sleep(0.05)

        refused = httpx.post(f"{url}/v1/events", content=body, headers=headers)
        probe = httpx.get(f"{url}/readyz")
    finally:
        go.set()
        sender.join(timeout=60)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {
        "error": {
            "code": "overloaded",
            "message": "more than max_inflight_requests=1 requests in flight; retry after 1 s",
        }
    }
    assert probe.status_code == 200  # probes are never shed
    assert [r.status_code for r in held] == [202]
    after = httpx.post(f"{url}/v1/events", content=body, headers=headers)
    assert after.status_code == 202  # the slot is free again
