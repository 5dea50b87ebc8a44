"""Structured logs: one JSON line per request, through the stdlib `logging` module.

Handlers add fields to the request's line with `log_fields(request)[name] = value`; the line is
written by `RequestLogMiddleware` when the response has been sent (or the request failed). Only
counts, ids, codes and timings are logged: never a value from a request body, and never the text
of an exception that may quote one.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOGGER = "ingest_api"
REQUEST_LOGGER = "ingest_api.requests"
_FIELDS = "log_fields"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...fields}`; fields come from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: an exception's text may quote the input that caused it.
            doc["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(doc, option=orjson.OPT_UTC_Z, default=str).decode()


def configure_logging(level: int | str = logging.INFO) -> None:
    """Send `ingest_api` logs to stderr as JSON lines (idempotent; other loggers untouched)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def log_fields(conn: HTTPConnection) -> dict[str, Any]:
    """The mutable fields of this request's log line."""
    state: dict[str, Any] = conn.scope.setdefault("state", {})
    fields: dict[str, Any] = state.setdefault(_FIELDS, {})
    return fields


class RequestLogMiddleware:
    """Pure ASGI middleware writing one JSON line per HTTP request: method, path, status,
    duration and whatever the handlers added (batch_id, source, accepted, rejected, error)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = logging.getLogger(REQUEST_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        scope.setdefault("state", {})[_FIELDS] = fields
        status = 500  # unless a response starts: an unhandled exception is answered 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            line = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                **fields,
            }
            self.logger.info("request", extra={"fields": line})
