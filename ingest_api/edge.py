"""The app's edge: one pure ASGI middleware around every HTTP request, and the ingest routes'
short way in.

Every HTTP request passes `Edge` once, outermost of the app's own layers (inside Starlette's
server-error and FastAPI's telemetry layers):

- **in flight**: past `max_inflight_requests` ingest requests (`/v1/...`) in this worker, the
  request is answered 503 `overloaded` at once (`ingest_api.limits`);
- **metrics**: its duration, status and outcome (`ingest_api.metrics`);
- **log line**: one JSON line when it is answered (`ingest_api.log`).

An ingest request (`POST` to an `IngestRoute`'s path, nearly every request the API gets) is
then answered here: its endpoint is awaited with a `Request`, an exception it raises becomes
the answer of the app's handler for it, and the response is sent. Any other request goes on
through FastAPI's stack (exception middleware, router, dependencies) as usual. The ingest
endpoints resolve no dependency and take no path parameter (`IngestRoute` refuses both), so
the router's matching, exit stacks and exception wrappers did nothing for them but cost time
(with the changes made alongside, 0.3 M of a 100-event request's 14.2 M instructions and
0.74-0.77 x -> 0.79-0.82 x the ceiling in-process: bench/ingest.py, docs/BENCHMARKS.md).

Ingest routes are matched by exact method and path (their routers are included without a
prefix, so FastAPI serves them at the same paths); under a `root_path`, or when FastAPI's
OpenTelemetry tracing follows the request, the router matches them as usual.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api.errors import OverloadedError, handle_ingest_error
from ingest_api.intake import IngestRoute
from ingest_api.limits import INGEST_PREFIX
from ingest_api.log import FIELDS, REQUEST_LOGGER
from ingest_api.metrics import IngestMetrics, request_outcome

AsyncHandler = Callable[[Request, Exception], Awaitable[Response]]


class Edge:
    """Load shedding, metrics and the log line of every HTTP request; `ingest_routes` answered
    directly at their path, with the exception handlers of `site`, the FastAPI app that also
    serves them (at the same paths: included without a prefix)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        site: FastAPI,
        ingest_routes: Iterable[BaseRoute],
        metrics: IngestMetrics,
        inflight_limit: int,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.limit = inflight_limit
        self.inflight = 0
        self.logger = logging.getLogger(REQUEST_LOGGER)
        self.routes: dict[tuple[str, str], IngestRoute] = {
            (method, route.path): route
            for route in ingest_routes
            if isinstance(route, IngestRoute)
            for method in route.methods or ()
        }
        # Each handler as a coroutine function (Starlette runs a plain one in the threadpool).
        # One for 500 or Exception is the server-error layer's, above this one, as in FastAPI.
        self.handlers: Mapping[Any, AsyncHandler] = {
            key: handler if inspect.iscoroutinefunction(handler) else _in_thread(handler)
            for key, handler in site.exception_handlers.items()
            if key not in (500, Exception)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        scope.setdefault("state", {})[FIELDS] = fields
        status = 500  # unless a response starts: an unhandled exception is answered 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path: str = scope["path"]
        try:
            if not path.startswith(INGEST_PREFIX):
                await self.app(scope, receive, send_and_record)
            elif self.limit and self.inflight >= self.limit:
                status = await self._refuse(scope, receive, send)
            else:
                self.inflight += 1
                self.metrics.inflight.inc()
                try:
                    route = self._ingest_route(scope)
                    if route is None:
                        await self.app(scope, receive, send_and_record)
                    else:
                        response = await self._answer(route, scope, receive, send)
                        status = response.status_code
                        await response(scope, receive, send)
                finally:
                    self.inflight -= 1
                    self.metrics.inflight.dec()
        finally:
            self._record(scope, status, time.perf_counter() - started, fields)

    def _ingest_route(self, scope: Scope) -> IngestRoute | None:
        """The ingest route this request is for, if it is one. Not under a `root_path`, nor when
        FastAPI's OpenTelemetry tracing follows the request (its span names the route the
        router selects)."""
        if scope.get("root_path") or "fastapi.telemetry" in scope:
            return None
        return self.routes.get((scope["method"], scope["path"]))

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> int:
        """503 `overloaded` with `Retry-After: 1`, before the body is read (answered and logged
        by the one handler of the error family)."""
        error = OverloadedError(
            f"more than max_inflight_requests={self.limit} requests in flight; retry after 1 s"
        )
        response = await handle_ingest_error(Request(scope, receive, send), error)
        await response(scope, receive, send)
        return response.status_code

    async def _answer(
        self, route: IngestRoute, scope: Scope, receive: Receive, send: Send
    ) -> Response:
        """The route's endpoint's answer, or the app's handler's for what it raised (an
        exception without one goes up to the server-error layer: 500)."""
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        return response

    def _handler_for(self, exc: Exception) -> AsyncHandler | None:
        """The app's handler for `exc`, looked up as Starlette's exception middleware does: by
        status code for an HTTPException, then along the exception's class hierarchy."""
        if isinstance(exc, HTTPException) and exc.status_code in self.handlers:
            return self.handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        return None

    def _record(self, scope: Scope, status: int, seconds: float, fields: dict[str, Any]) -> None:
        """The request's metrics and its log line."""
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        m = self.metrics
        m.duration.labels(route).observe(seconds)
        m.requests.labels(route, str(status), request_outcome(status, fields)).inc()
        if "bytes_in" in fields:
            m.bytes_in.labels(route).inc(fields["bytes_in"])
        line = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            **fields,
        }
        self.logger.info("request", extra={"fields": line})


def _in_thread(handler: Callable[[Request, Exception], Any]) -> AsyncHandler:
    async def run(request: Request, exc: Exception) -> Response:
        return cast(Response, await run_in_threadpool(handler, request, exc))

    return run
