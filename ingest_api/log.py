"""Structured logs: one JSON line per request, through the stdlib `logging` module.

Handlers add fields to the request's line with `log_fields(request)[name] = value`; the line is
written by `ingest_api.edge.Edge` when the response has been sent (or the request failed). Only
counts, ids, codes and timings are logged: never a value from a request body, and never the text
of an exception that may quote one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import HTTPConnection

LOGGER = "ingest_api"
REQUEST_LOGGER = "ingest_api.requests"
FIELDS = "log_fields"  # the key of a request's fields in its scope["state"]


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
    fields: dict[str, Any] = state.setdefault(FIELDS, {})
    return fields
