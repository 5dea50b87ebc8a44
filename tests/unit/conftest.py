"""Unit-test fixtures: no external services. Spark transforms run on an in-process Sail server."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pyspark.sql import SparkSession

from ingest_api.log import REQUEST_LOGGER, JsonFormatter
from lake_config.settings import get_settings


@pytest.fixture(autouse=True)
def _default_settings_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unit tests see default settings, never the TLAKE_* an integration session exported.

    pydantic-settings deep-merges dict settings from the environment into keyword arguments, so
    a leaked TLAKE_SENSITIVE_FIELDS would change what `Settings(sensitive_fields=...)` means.
    """
    for name in list(os.environ):
        if name.startswith("TLAKE_") and name != "TLAKE_ENV":
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def sail_remote() -> Iterator[str]:
    """The URL of an in-process Sail Spark Connect server (no storage, pure transforms only)."""
    from pysail.spark import SparkConnectServer

    server = SparkConnectServer(ip="127.0.0.1", port=0)
    server.start(background=True)
    host, port = server.listening_address
    yield f"sc://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def spark(sail_remote: str) -> Iterator[SparkSession]:
    """A Spark Connect session on the in-process Sail server."""
    session = SparkSession.builder.remote(sail_remote).getOrCreate()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    yield session
    session.stop()


class _ListHandler(logging.Handler):
    """Keeps each record as the JSON document the API's formatter writes."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, Any]]]:
    """The ingest API's request log lines written during the test, parsed."""
    handler = _ListHandler()
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
