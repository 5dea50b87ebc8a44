"""The DAGs' failure callbacks: a task that failed for good becomes one `analytics.alerts` row.

Airflow calls `on_failure_callback` once a task's retries are spent, so each row is one failed
task of one DAG run. The callbacks never raise: an alert that cannot be recorded (the registry is
down, the migration is missing) is logged and dropped, so it can never mask the task's own
failure. Only the exception's first line is stored, cut to 2000 characters; later lines of an
error (tracebacks, quoted rows) may carry payload values and stay in the task log.

This module imports only the standard library at module level, so the DAG files may import it
and still parse without any service; psycopg and the settings are imported inside the callback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

SOURCE = "airflow"
MAX_MESSAGE_CHARS = 2000
# A callback runs inside the failing task's process: fail fast rather than hold the task slot.
REGISTRY_TIMEOUT_S = 5.0

log = logging.getLogger("tlake.alerts")


def message_of(exception: object) -> str:
    """The first line of an exception as `Type: text`, at most MAX_MESSAGE_CHARS characters."""
    if exception is None:
        return "task failed without an exception"
    if isinstance(exception, BaseException):
        lines = str(exception).strip().splitlines()
        text = f"{type(exception).__name__}: {lines[0]}" if lines else type(exception).__name__
    else:  # Airflow may hand over a string (e.g. a zombie task's reason)
        lines = str(exception).strip().splitlines()
        text = lines[0] if lines else "task failed"
    return text[:MAX_MESSAGE_CHARS]


def record_failure(context: Mapping[str, Any], *, severity: str) -> bool:
    """Record one alert for the failed task of `context`; False (logged) when it could not be."""
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None)
    run_id = getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None)
    task_id = getattr(ti, "task_id", None)
    try_number = getattr(ti, "try_number", None)
    message = message_of(context.get("exception"))
    log.error(
        "%s task failed: dag=%s dag_run=%s task=%s try=%s error=%s",
        severity,
        dag_id,
        run_id,
        task_id,
        try_number,
        message,
    )
    try:
        from lake_config.registry import Registry
        from lake_config.settings import get_settings

        with Registry(get_settings(), max_size=1, timeout_s=REGISTRY_TIMEOUT_S) as registry:
            registry.record_alert(
                source=SOURCE,
                severity=severity,
                message=message,
                dag_id=dag_id,
                dag_run_id=run_id,
                task_id=task_id,
                try_number=int(try_number) if try_number is not None else None,
            )
    except Exception as exc:  # never mask the task's own failure
        log.error("could not record the alert of %s.%s: %s", dag_id, task_id, exc)
        return False
    return True


def alert_on_failure(context: Mapping[str, Any]) -> None:
    """on_failure_callback of the pipeline DAG: a failed task is critical."""
    try:
        record_failure(context, severity="critical")
    except Exception:  # record_failure swallows; this guards even a broken context
        log.exception("failure callback failed")


def warn_on_failure(context: Mapping[str, Any]) -> None:
    """on_failure_callback of housekeeping (table upkeep): a failed task is a warning."""
    try:
        record_failure(context, severity="warning")
    except Exception:
        log.exception("failure callback failed")
