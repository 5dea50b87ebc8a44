"""`Edge`: ingest routes answered without the router, with the app's exception handlers, the
same metrics and log line as any request; everything else passed on to FastAPI."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ingest_api import errors
from ingest_api.edge import Edge
from ingest_api.intake import IngestRoute
from ingest_api.log import log_fields
from ingest_api.main import create_app
from ingest_api.metrics import IngestMetrics
from ingest_api.responses import JsonResponse
from lake_config.settings import Settings


async def ingest_ok(request: Request) -> Response:
    log_fields(request).update(accepted=2, rejected=0)
    return JsonResponse({"route": request.scope["route"].path}, status_code=202)


async def ingest_refused(request: Request) -> Response:
    raise errors.RateLimitedError("slow down", retry_after_s=3, limit_events_per_s=5)


async def ingest_broken(request: Request) -> Response:
    raise ZeroDivisionError


async def ingest_teapot(request: Request) -> Response:
    raise HTTPException(418, "short and stout")


async def ingest_value_error(request: Request) -> Response:
    raise ValueError("a value")


ROUTES = [
    IngestRoute("/v1/ok", ingest_ok, methods=["POST"]),
    IngestRoute("/v1/refused", ingest_refused, methods=["POST"]),
    IngestRoute("/v1/broken", ingest_broken, methods=["POST"]),
    IngestRoute("/v1/teapot", ingest_teapot, methods=["POST"]),
    IngestRoute("/v1/value", ingest_value_error, methods=["POST"]),
]


def value_error_handler(request: Request, exc: Exception) -> Response:
    """A plain `def` handler: Starlette runs it in the threadpool, and so does Edge."""
    return PlainTextResponse(f"handled {type(exc).__name__}", status_code=400)


async def teapot_handler(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("by status code", status_code=418)


def make_app(metrics: IngestMetrics) -> FastAPI:
    app = FastAPI()
    app.router.routes.extend(ROUTES)
    app.add_exception_handler(errors.IngestError, errors.handle_ingest_error)
    app.add_exception_handler(HTTPException, errors.handle_http_error)
    app.add_exception_handler(418, teapot_handler)
    app.add_exception_handler(ValueError, value_error_handler)
    app.add_middleware(Edge, site=app, ingest_routes=ROUTES, metrics=metrics, inflight_limit=8)
    return app


def post(app: FastAPI, path: str, *, reraised: bool = False, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=reraised)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, **kwargs)

    return asyncio.run(run())


def test_an_ingest_route_is_answered_without_the_app_behind_the_edge() -> None:
    async def behind(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the router was reached")

    app = FastAPI()
    edge = Edge(behind, site=app, ingest_routes=ROUTES, metrics=IngestMetrics(), inflight_limit=8)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/ok", "headers": [], "query_string": b""}
    asyncio.run(edge(scope, receive, send))

    assert sent[0]["status"] == 202
    assert orjson.loads(sent[1]["body"]) == {"route": "/v1/ok"}
    assert scope["route"] is ROUTES[0]


def test_the_answer_the_metrics_and_the_log_line_of_an_edge_answered_request(
    log_lines: list[dict[str, Any]],
) -> None:
    metrics = IngestMetrics()

    response = post(make_app(metrics), "/v1/ok", content=b"{}")

    assert (response.status_code, response.json()) == (202, {"route": "/v1/ok"})
    sample = metrics.registry.get_sample_value
    labels = {"route": "/v1/ok", "status": "202", "outcome": "accepted"}
    assert sample("tlake_ingest_requests_total", labels) == 1
    assert sample("tlake_ingest_request_duration_seconds_count", {"route": "/v1/ok"}) == 1
    assert sample("tlake_ingest_inflight_requests") == 0
    line = log_lines[-1]
    assert {k: line[k] for k in ("method", "path", "status", "accepted", "rejected")} == {
        "method": "POST",
        "path": "/v1/ok",
        "status": 202,
        "accepted": 2,
        "rejected": 0,
    }


def test_an_error_raised_by_an_ingest_route_is_answered_by_the_apps_handler(
    log_lines: list[dict[str, Any]],
) -> None:
    metrics = IngestMetrics()

    response = post(make_app(metrics), "/v1/refused")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "rate_limited"
    labels = {"route": "/v1/refused", "status": "429", "outcome": "rate_limited"}
    assert metrics.registry.get_sample_value("tlake_ingest_requests_total", labels) == 1
    assert (log_lines[-1]["status"], log_lines[-1]["error"]) == (429, "rate_limited")


def test_handlers_are_looked_up_as_starlette_does() -> None:
    app = make_app(IngestMetrics())

    teapot = post(app, "/v1/teapot")  # a status-code handler wins over the HTTPException one
    value = post(app, "/v1/value")  # a plain `def` handler

    assert (teapot.status_code, teapot.text) == (418, "by status code")
    assert (value.status_code, value.text) == (400, "handled ValueError")


def test_an_unhandled_error_is_a_500_counted_and_logged(log_lines: list[dict[str, Any]]) -> None:
    metrics = IngestMetrics()

    response = post(make_app(metrics), "/v1/broken")

    assert response.status_code == 500
    labels = {"route": "/v1/broken", "status": "500", "outcome": "internal_error"}
    assert metrics.registry.get_sample_value("tlake_ingest_requests_total", labels) == 1
    assert log_lines[-1]["status"] == 500
    assert metrics.registry.get_sample_value("tlake_ingest_inflight_requests") == 0


def test_other_methods_and_paths_go_through_the_router() -> None:
    app = make_app(IngestMetrics())

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.get("/v1/ok"),
                await client.post("/v1/ok/"),
                await client.post("/v1/nowhere"),
            ]

    wrong_method, slash, unknown = asyncio.run(run())

    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert slash.status_code == 307  # the router's redirect to the route without the slash
    assert unknown.json()["error"]["code"] == "not_found"


def test_under_a_root_path_the_router_matches_ingest_routes() -> None:
    app = make_app(IngestMetrics())
    app.root_path = "/api"

    response = post(app, "/api/v1/ok")

    assert (response.status_code, response.json()) == (202, {"route": "/v1/ok"})


def test_the_apps_ingest_routes_are_served_at_the_paths_the_edge_answers() -> None:
    """The edge answers each ingest route at its own path: the app must serve (and document)
    it at the same method and path, i.e. include its router without a prefix."""
    app = create_app(Settings())
    layer: Any = app.build_middleware_stack()
    while not isinstance(layer, Edge):
        layer = layer.app
    documented = app.openapi()["paths"]

    assert {("POST", "/v1/events"), ("POST", "/v1/batch"), ("POST", "/v1/track")} <= set(
        layer.routes
    )
    for method, path in layer.routes:
        assert method.lower() in documented[path], (method, path)


def test_a_handler_for_exception_stays_with_the_server_error_layer() -> None:
    """As in FastAPI: a handler registered for Exception (or 500) answers from the outermost
    layer, which then re-raises for the server to log; the edge does not answer with it."""
    app = make_app(IngestMetrics())

    async def on_any(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("server error handler", status_code=500)

    app.add_exception_handler(Exception, on_any)

    response = post(app, "/v1/broken")
    with pytest.raises(ZeroDivisionError):
        post(app, "/v1/broken", reraised=True)

    assert (response.status_code, response.text) == (500, "server error handler")
    assert post(app, "/v1/refused").status_code == 429  # the IngestError handler still answers
