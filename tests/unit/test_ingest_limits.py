"""The per-key token bucket, the in-flight cap and the metrics labels, without services."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from ingest_api.edge import Edge
from ingest_api.errors import RateLimitedError
from ingest_api.intake import IngestRoute
from ingest_api.limits import RateLimiter
from ingest_api.metrics import IngestMetrics, rejection_reason, request_outcome
from ingest_api.responses import JsonResponse


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_lets_a_full_batch_through_then_refuses_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(10, min_capacity=50, clock=clock)

    limiter.take("k1", 50)  # capacity is one full batch even though the rate is lower
    with pytest.raises(RateLimitedError, match=r"^this API key sends more than 10 events") as exc:
        limiter.take("k1", 25)

    assert exc.value.headers == {"Retry-After": "3"}  # 25 tokens at 10/s
    assert exc.value.body()["error"]["limit_events_per_s"] == 10
    limiter.take("k2", 50)  # buckets are per key
    clock.now += 2.5
    limiter.take("k1", 25)


def test_zero_rate_disables_the_limit() -> None:
    limiter = RateLimiter(0, min_capacity=1)
    for _ in range(100):
        limiter.take("k1", 1_000)


def test_a_batch_is_counted_by_outcome_and_rejection_reason() -> None:
    metrics = IngestMetrics()
    battery = [{"field": "battery.level_pct", "message": "..."}]
    unknown = [{"field": "my_own_field", "message": "..."}]

    metrics.observe_batch(97, [battery, unknown, battery])
    metrics.observe_batch(0, [])

    def count(outcome: str, reason: str) -> float | None:
        return metrics.registry.get_sample_value(
            "tlake_ingest_events_total", {"outcome": outcome, "reason": reason}
        )

    assert count("accepted", "") == 97
    assert count("rejected", "battery") == 2
    assert count("rejected", "unknown_field") == 1


def test_rejection_reasons_come_from_a_fixed_set() -> None:
    assert rejection_reason([{"field": "battery.level_pct", "message": "..."}]) == "battery"
    assert rejection_reason([{"field": "attributes[key]", "message": "..."}]) == "attributes"
    assert rejection_reason([{"field": "my_own_field", "message": "..."}]) == "unknown_field"
    assert rejection_reason([{"field": "event", "message": "event exceeds max_event_bytes=1"}]) == (
        "event_too_large"
    )
    assert rejection_reason([{"field": "event", "message": "Input should be a valid dict"}]) == (
        "event"
    )


def test_request_outcome() -> None:
    assert request_outcome(202, {"accepted": 2, "rejected": 0}) == "accepted"
    assert request_outcome(422, {"accepted": 0, "rejected": 2}) == "all_rejected"
    assert request_outcome(202, {"idempotent_replay": True}) == "replayed"
    assert request_outcome(429, {"error": "rate_limited"}) == "rate_limited"
    assert request_outcome(200, {}) == "ok"
    assert request_outcome(500, {}) == "internal_error"


@pytest.mark.parametrize("ingest_route", [True, False], ids=["edge-answered", "router"])
def test_requests_past_the_inflight_limit_are_503_at_once(ingest_route: bool) -> None:
    """Both ways in count: an ingest route `Edge` answers itself and one the router matches."""
    release = asyncio.Event()
    app = FastAPI()

    async def slow(request: Request) -> Response:
        await release.wait()
        return JsonResponse({"status": "done"})

    route = IngestRoute("/v1/slow", slow, methods=["POST"])
    if ingest_route:
        app.router.routes.append(route)
    else:
        app.post("/v1/slow")(slow)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    metrics = IngestMetrics()
    app.add_middleware(
        Edge,
        site=app,
        ingest_routes=[route] if ingest_route else [],
        metrics=metrics,
        inflight_limit=2,
    )

    def inflight() -> float | None:
        return metrics.registry.get_sample_value("tlake_ingest_inflight_requests")

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = [asyncio.create_task(client.post("/v1/slow")) for _ in range(2)]
            while inflight() != 2:  # both are inside the app now
                await asyncio.sleep(0.01)
            refused = await client.post("/v1/slow")
            probe = await client.get("/healthz")  # never refused
            release.set()
            return [refused, probe, *await asyncio.gather(*held)]

    refused, probe, *done = asyncio.run(scenario())

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {
        "error": {
            "code": "overloaded",
            "message": "more than max_inflight_requests=2 requests in flight; retry after 1 s",
        }
    }
    assert probe.status_code == 200
    assert [r.status_code for r in done] == [200, 200]
    assert inflight() == 0
