"""The DAGs' failure callback: one bounded line per failed task, and it never raises.

The registry here is a closed port on loopback, set through the environment exactly as a
deployment would set it; the integration test of the DAG run checks the row that lands.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lake_config.alerts import MAX_MESSAGE_CHARS, alert_on_failure, message_of, record_failure
from lake_config.errors import StorageError
from lake_config.settings import get_settings


@dataclass(frozen=True)
class TaskInstance:
    """The attributes of Airflow's task instance that the callback reads."""

    dag_id: str = "telemetry_lake"
    run_id: str = "manual__2026-01-01T00:00:00+00:00"
    task_id: str = "bronze"
    try_number: int = 3


@pytest.fixture
def registry_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TLAKE_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/tlake")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_message_is_the_first_line_with_the_type() -> None:
    exc = StorageError("bucket 'raw' missing\n  row: {'ip': '10.0.0.1'}")
    assert message_of(exc) == "StorageError: bucket 'raw' missing"


def test_message_is_bounded() -> None:
    assert len(message_of(RuntimeError("x" * 5000))) == MAX_MESSAGE_CHARS


def test_a_missing_exception_still_gives_a_message() -> None:
    assert message_of(None) == "task failed without an exception"


def test_an_unreachable_registry_is_logged_not_raised(
    registry_down: None, caplog: pytest.LogCaptureFixture
) -> None:
    context = {"ti": TaskInstance(), "exception": StorageError("bucket missing")}

    with caplog.at_level(logging.ERROR, logger="tlake.alerts"):
        recorded = record_failure(context, severity="critical")
        alert_on_failure(context)  # the DAG's callback: returns, whatever happened

    assert recorded is False
    messages = [r.getMessage() for r in caplog.records if r.name == "tlake.alerts"]
    assert messages[0] == (
        "critical task failed: dag=telemetry_lake dag_run=manual__2026-01-01T00:00:00+00:00 "
        "task=bronze try=3 error=StorageError: bucket missing"
    )
    assert messages[1].startswith(
        "could not record the alert of telemetry_lake.bronze: registry unavailable"
    ), messages
    assert len(messages) == 4
