"""The error family's HTTP mapping (one handler) and the JSON request log line."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from ingest_api import errors
from ingest_api.edge import Edge
from ingest_api.log import REQUEST_LOGGER, JsonFormatter, log_fields
from ingest_api.metrics import IngestMetrics
from ingest_api.responses import JsonResponse

RAISED: dict[str, errors.IngestError] = {
    "missing": errors.MissingApiKeyError("send a key"),
    "scope": errors.InsufficientScopeError("read keys cannot write"),
    "large": errors.PayloadTooLargeError("too big", limit="max_request_bytes", max=10),
    "slow": errors.BodyTimeoutError("stalled", limit="body_timeout_s", max=10.0),
    "storage": errors.StorageUnavailableError("storage down", cause="PUT 'k' failed"),
    "in_progress": errors.IdempotencyKeyInProgressError("in flight"),
    "reused": errors.IdempotencyKeyReusedError("other body"),
    "rate": errors.RateLimitedError("slow down", retry_after_s=3, limit_events_per_s=5),
    "overloaded": errors.OverloadedError("busy"),
}


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.add_middleware(Edge, site=app, ingest_routes=[], metrics=IngestMetrics(), inflight_limit=0)
    app.add_exception_handler(errors.IngestError, errors.handle_ingest_error)
    app.add_exception_handler(HTTPException, errors.handle_http_error)

    @app.get("/raise/{name}")
    async def raise_(name: str) -> None:
        raise RAISED[name]

    @app.get("/ok")
    async def ok(request: Request) -> JsonResponse:
        log_fields(request).update(batch_id="b-1", accepted=3, rejected=1)
        return JsonResponse({"ok": True}, status_code=202)

    return TestClient(app)


@pytest.mark.parametrize(
    ("name", "status", "body", "header"),
    [
        (
            "missing",
            401,
            {"code": "missing_api_key", "message": "send a key"},
            ("www-authenticate", "Bearer"),
        ),
        ("scope", 403, {"code": "insufficient_scope", "message": "read keys cannot write"}, None),
        (
            "large",
            413,
            {
                "code": "payload_too_large",
                "message": "too big",
                "limit": "max_request_bytes",
                "max": 10,
            },
            None,
        ),
        (
            "slow",
            408,
            {"code": "body_timeout", "message": "stalled", "limit": "body_timeout_s", "max": 10.0},
            ("connection", "close"),
        ),
        (
            "storage",
            503,
            {"code": "storage_unavailable", "message": "storage down"},
            ("retry-after", "5"),
        ),
        (
            "in_progress",
            409,
            {"code": "idempotency_key_in_progress", "message": "in flight"},
            ("retry-after", "1"),
        ),
        ("reused", 422, {"code": "idempotency_key_reused", "message": "other body"}, None),
        (
            "rate",
            429,
            {"code": "rate_limited", "message": "slow down", "limit_events_per_s": 5},
            ("retry-after", "3"),
        ),
        (
            "overloaded",
            503,
            {"code": "overloaded", "message": "busy"},
            ("retry-after", "1"),
        ),
    ],
)
def test_one_handler_maps_every_error_to_status_and_body(
    client: TestClient,
    name: str,
    status: int,
    body: dict[str, object],
    header: tuple[str, str] | None,
) -> None:
    response = client.get(f"/raise/{name}")

    assert response.status_code == status
    assert response.json() == {"error": body}
    assert response.headers["content-type"] == "application/json"
    if header:
        assert response.headers[header[0]] == header[1]


def test_framework_errors_use_the_same_shape(client: TestClient) -> None:
    assert client.get("/nowhere").json() == {"error": {"code": "not_found", "message": "Not Found"}}
    response = client.post("/ok")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_every_error_class_has_a_status_and_a_snake_case_code() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.IngestError)
    ]
    assert errors.BodyTimeoutError in classes
    for cls in classes:
        assert 400 <= cls.status < 600, cls
        assert cls.code.isidentifier() and cls.code.islower(), cls
        assert cls.__doc__ is None or cls.__doc__.strip()
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"


def test_request_log_line_is_json_with_the_handler_fields(
    client: TestClient, log_lines: list[dict[str, Any]]
) -> None:
    client.get("/ok")

    line = log_lines[-1]
    assert line["logger"] == REQUEST_LOGGER
    assert line["msg"] == "request"
    assert line["ts"].endswith("Z")
    assert {
        k: line[k] for k in ("method", "path", "status", "batch_id", "accepted", "rejected")
    } == {
        "method": "GET",
        "path": "/ok",
        "status": 202,
        "batch_id": "b-1",
        "accepted": 3,
        "rejected": 1,
    }
    assert line["duration_ms"] >= 0


def test_error_log_line_names_the_code_and_the_cause_only(
    client: TestClient, log_lines: list[dict[str, Any]]
) -> None:
    client.get("/raise/storage")

    line = log_lines[-1]
    assert (line["status"], line["error"], line["cause"]) == (
        503,
        "storage_unavailable",
        "PUT 'k' failed",
    )


def test_formatter_logs_the_exception_type_not_its_text() -> None:
    try:
        raise ValueError("198.51.100.7 was here")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )

    line = JsonFormatter().format(record)

    assert "198.51.100.7" not in line
    assert orjson.loads(line)["exc_type"] == "ValueError"
