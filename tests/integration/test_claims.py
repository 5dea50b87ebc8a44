"""Session-tied claims against the real registry, and `tlake files` on top of them.

Objects here are registered only (no bytes in the bucket, no Spark) unless a test runs the
pipeline; each test uses its own keys and asserts on those only.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from lake_config.errors import RegistryError
from lake_config.registry import RawObject, Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from spark_jobs import pipeline
from tlake.cli import app

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="module")
def drained(settings: Settings, registry: Registry) -> Registry:
    """The registry with nothing left pending by other modules, so claims take only ours."""
    while pipeline.run_once(settings).objects:
        pass
    return registry


def _register(registry: Registry, n: int) -> list[str]:
    keys = []
    for _ in range(n):
        batch = uuid.uuid4()
        key = f"raw/source=claims/dt={NOW:%Y-%m-%d}/hour={NOW:%H}/{batch}.jsonl.gz"
        registry.register(RawObject(key, "claims", batch, 10, 1, NOW))
        keys.append(key)
    return keys


def _state(registry: Registry, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select object_key, status, attempts, claimed_by, last_error "
            "from registry.raw_objects where object_key = any(%s)",
            (list(keys),),
        ).fetchall()
    return {r.pop("object_key"): r for r in rows}


def test_a_dead_runs_session_tied_claims_are_taken_at_once(drained: Registry) -> None:
    keys = _register(drained, 2)
    hold = drained.hold("run-dies")
    assert [c.object_key for c in drained.claim("run-dies", hold=hold)] == keys
    # While the holder lives, nobody else gets its objects, 15-minute lease or not.
    assert drained.claim("run-waits") == []

    hold.release()  # what PostgreSQL does when the process is SIGKILLed
    taken = drained.claim("run-next")

    assert [(c.object_key, c.attempts) for c in taken] == [(k, 2) for k in keys]
    assert {k: (s["claimed_by"], s["last_error"]) for k, s in _state(drained, keys).items()} == {
        k: ("run-next", "run run-dies abandoned it: its session ended") for k in keys
    }
    drained.mark_processed("run-next")


def test_a_live_run_whose_lease_ran_out_sees_its_claims_gone(
    settings: Settings, drained: Registry
) -> None:
    keys = _register(drained, 1)
    short = settings.model_copy(update={"claim_lease_seconds": 1})
    with Registry(short, max_size=1) as reg, reg.hold("run-slow") as hold:
        assert len(reg.claim("run-slow", hold=hold)) == 1
        assert hold.heartbeat() == 1  # renewed: still its own
        time.sleep(1.5)  # a stage longer than the lease
        assert [c.attempts for c in drained.claim("run-fast")] == [2]

        assert hold.heartbeat() == 0  # run_once stops here instead of committing
    state = _state(drained, keys)[keys[0]]
    assert state["last_error"] == "run run-slow abandoned it: lease expired"
    drained.mark_processed("run-fast")


def test_leased_claims_wait_for_their_lease(drained: Registry) -> None:
    keys = _register(drained, 1)
    assert len(drained.claim("run-leased")) == 1  # no hold: an Airflow-style claim

    assert drained.claim("run-other") == []
    drained.mark_processed("run-leased")
    assert _state(drained, keys)[keys[0]]["status"] == "processed"


def test_a_run_id_is_held_by_one_session_only(drained: Registry) -> None:
    with drained.hold("run-twice"), drained.hold("run-twice-b") as other:
        with pytest.raises(RegistryError, match="run 'run-twice' is already held by a live"):
            drained.hold("run-twice")
        with pytest.raises(
            ValueError, match="hold of run 'run-twice-b' cannot tie claims of run 'run-other'"
        ):
            drained.claim("run-other", hold=other)


def test_objects_abandoned_max_attempts_times_fail_with_the_reason(
    settings: Settings, drained: Registry
) -> None:
    keys = _register(drained, 1)
    for attempt in range(1, settings.max_attempts + 1):
        with drained.hold(f"run-crash-{attempt}") as hold:
            assert [c.attempts for c in drained.claim(f"run-crash-{attempt}", hold=hold)] == [
                attempt
            ]

    assert drained.claim("run-after") == []
    state = _state(drained, keys)[keys[0]]
    assert (state["status"], state["attempts"]) == ("failed", settings.max_attempts)
    assert state["last_error"] == (
        f"gave up after attempt {settings.max_attempts} of {settings.max_attempts}: "
        f"run run-crash-{settings.max_attempts} abandoned it: its session ended"
    )

    assert drained.retry_failed(keys) == 1
    assert (
        _state(drained, keys)[keys[0]]["status"],
        _state(drained, keys)[keys[0]]["attempts"],
    ) == (
        "pending",
        0,
    )
    assert [c.attempts for c in drained.claim("run-retried")] == [1]
    drained.mark_processed("run-retried")


def test_tlake_files_lists_and_retries_failed_objects(
    settings: Settings, drained: Registry
) -> None:
    keys = _register(drained, 2)
    drained.claim("run-broken")
    with drained.connection() as conn, conn.transaction():  # as after max_attempts failures
        conn.execute(
            "update registry.raw_objects set attempts = %s where object_key = any(%s)",
            (settings.max_attempts, keys),
        )
    assert drained.mark_failed("run-broken", "silver: Spark failed: boom") == 2
    runner = CliRunner()

    listed = runner.invoke(app, ["files", "list", "--status", "failed", "--json"])
    assert listed.exit_code == 0, listed.output
    failed = {r["object_key"]: r for r in json.loads(listed.output)}
    assert {k: (failed[k]["attempts"], failed[k]["last_error"]) for k in keys} == {
        k: (settings.max_attempts, "silver: Spark failed: boom") for k in keys
    }
    table = runner.invoke(app, ["files", "list", "--status", "failed"])
    assert table.exit_code == 0 and "silver: Spark failed: boom" in table.output

    refused = runner.invoke(app, ["files", "retry"])
    assert refused.exit_code == 2
    assert "name object keys or pass --failed" in refused.output

    retried = runner.invoke(app, ["files", "retry", "--failed"])
    assert retried.exit_code == 0, retried.output
    assert "objects back to pending" in retried.output
    assert {k: (s["status"], s["attempts"]) for k, s in _state(drained, keys).items()} == {
        k: ("pending", 0) for k in keys
    }
    bad = runner.invoke(app, ["files", "list", "--status", "stuck"])
    assert bad.exit_code == 2 and "unknown status 'stuck'" in bad.output
    with drained.hold("run-cleanup") as hold:
        drained.claim("run-cleanup", hold=hold)
        drained.mark_processed("run-cleanup")


def test_two_concurrent_runs_share_the_objects_and_both_finish(
    settings: Settings, store: ObjectStore, drained: Registry
) -> None:
    keys = []
    for n in range(6):
        batch = uuid.uuid4()
        key = f"raw/source=mobile/dt={NOW:%Y-%m-%d}/hour={NOW:%H}/{batch}.jsonl.gz"
        line = {
            "object_key": key,
            "line_no": 0,
            "batch_id": str(batch),
            "source": "mobile",
            "schema_version": "mobile/1",
            "received_at": NOW.isoformat().replace("+00:00", "Z"),
            "sent_at": None,
            "event": {
                "event_id": f"{batch}-e",
                "device_id": f"claims-{batch}",
                "event_type": "heartbeat",
                "occurred_at": (NOW - timedelta(minutes=n)).isoformat().replace("+00:00", "Z"),
            },
        }
        body = gzip.compress((json.dumps(line) + "\n").encode())
        store.put(key, body)
        drained.register(RawObject(key, "mobile", batch, len(body), 1, NOW))
        keys.append(key)
    env = {**os.environ, **settings.as_env(), "TLAKE_RUN_BATCH_OBJECTS": "3"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "tlake.cli", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=600) for r in runs]

    assert [r.returncode for r in runs] == [0, 0], outputs
    state = _state(drained, keys)
    assert {k: (s["status"], s["attempts"]) for k, s in state.items()} == {
        k: ("processed", 1) for k in keys
    }
    holders: dict[str, int] = {}
    for s in state.values():
        holders[s["claimed_by"]] = holders.get(s["claimed_by"], 0) + 1
    assert sorted(holders.values()) == [3, 3]
