"""Errors raised by spark_jobs.

    SparkJobError           root of every error a Spark job or pipeline stage raises
    ├── QueryError          the Spark engine failed a read, a transform or a Delta commit
    ├── ServingError        PostgreSQL refused the analytics.device_hourly upsert
    ├── MaintenanceError    delta-rs could not optimize, vacuum or read the history of a table
    ├── QualityError        rows broke a data-quality expectation whose action is `fail`
    └── RunError            run_once gave up on a run; its claims were released (see __cause__)

lake_config errors (RegistryError, EngineError, StorageError) pass through a single stage
unchanged; `run_once` wraps whatever ended the run in a RunError. Third-party errors are mapped
in one place, `translated()`, which every stage enters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pyspark.errors import PySparkException


class SparkJobError(Exception):
    """Root of every error spark_jobs raises."""


class QueryError(SparkJobError):
    """The Spark engine failed a read, a transform or a Delta commit."""


class ServingError(SparkJobError):
    """PostgreSQL refused the upsert into analytics.device_hourly."""


class MaintenanceError(SparkJobError):
    """delta-rs could not optimize, vacuum or read the history of a table (or was misused)."""


class QualityError(SparkJobError):
    """Rows broke a `fail` expectation (lake_config.quality); the stage committed nothing."""


class RunError(SparkJobError):
    """A pipeline run failed in `stage`; its objects went back to the registry."""

    def __init__(self, run_id: str, stage: str, message: str) -> None:
        super().__init__(f"run {run_id} failed in stage {stage}: {message}")
        self.run_id = run_id
        self.stage = stage


def _engine_errors() -> tuple[type[BaseException], ...]:
    # A classic JVM session can also surface raw py4j errors (a dead gateway, a Java exception
    # pyspark does not convert); Spark Connect raises PySparkException subclasses only.
    try:
        from py4j.protocol import Py4JError
    except ImportError:  # pragma: no cover - py4j ships with pyspark
        return (PySparkException,)
    return (PySparkException, Py4JError)


@contextmanager
def translated() -> Iterator[None]:
    """Map pyspark/py4j and psycopg errors raised inside the block to this package's family."""
    try:
        yield
    except _engine_errors() as exc:
        raise QueryError(f"Spark failed: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise ServingError(f"PostgreSQL failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """Spark errors carry a JVM or server trace; the first line is the part worth logging."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
