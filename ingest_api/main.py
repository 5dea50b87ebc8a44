"""The ingest API application: `uvicorn --factory ingest_api.main:create_app`."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException

from ingest_api.deps import lifespan
from ingest_api.edge import Edge
from ingest_api.errors import IngestError, handle_http_error, handle_ingest_error
from ingest_api.limits import RateLimiter
from ingest_api.log import configure_logging
from ingest_api.metrics import IngestMetrics
from ingest_api.responses import JsonResponse
from ingest_api.routes import catalog, events, health, metrics, read, segment
from lake_config.settings import Settings, get_settings

# FastAPI's native OpenTelemetry, all of it off (`TLAKE_API_OPENTELEMETRY=true` turns it on).
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: `get_settings()`), read when called."""
    configure_logging()
    settings = settings or get_settings()
    app = FastAPI(
        title="Telemetry Lake ingest API",
        version="1",
        lifespan=lifespan,
        default_response_class=JsonResponse,
        telemetry=None if settings.api_opentelemetry else NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.metrics = IngestMetrics()
    app.state.rate_limiter = RateLimiter(
        settings.rate_limit_events_per_s, min_capacity=settings.max_events_per_batch
    )
    # Load shedding, metrics and the log line of every request; the ingest routes' short way.
    app.add_middleware(
        Edge,
        site=app,
        ingest_routes=[*events.router.routes, *segment.router.routes],
        metrics=app.state.metrics,
        inflight_limit=settings.max_inflight_requests,
    )
    app.add_exception_handler(IngestError, handle_ingest_error)
    app.add_exception_handler(HTTPException, handle_http_error)
    # Routes are matched in this order: the ingest routes first (when the router matches
    # them: see `Edge`). Included without a prefix: `Edge` answers them at their own paths.
    app.include_router(events.router)
    app.include_router(segment.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(read.router)
    app.include_router(catalog.router)
    return app
