"""`tlake reconcile` against the real bucket and registry of the test stack.

Each test writes under its own `raw/source=<unique>/` prefix and reconciles that prefix only, so
objects other modules left unregistered on purpose are not touched.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from typer.testing import CliRunner

from ingest_api.batches import Rejection
from ingest_api.landing import compress, quarantine_key, quarantine_lines, raw_key, raw_lines
from lake_config.registry import RawObject, Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from recovery.reconcile import reconcile
from tlake.cli import app

pytestmark = pytest.mark.integration


def _rows(registry: Registry, keys: list[str]) -> dict[str, dict]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select object_key, source, batch_id, event_count, size_bytes, status, last_error "
            "from registry.raw_objects where object_key = any(%s)",
            (keys,),
        ).fetchall()
    return {r.pop("object_key"): r for r in rows}


def test_reconcile_adopts_orphans_fails_missing_rows_and_then_changes_nothing(
    settings: Settings, store: ObjectStore, registry: Registry
) -> None:
    source = f"rec-{secrets.token_hex(4)}"
    received_at = datetime.now(UTC) - timedelta(minutes=1)
    # An object the API PUT and then crashed before registering.
    batch = uuid.uuid4()
    orphan = raw_key(source, received_at, batch)
    event = {"event_id": str(uuid.uuid4()), "device_id": "d", "event_type": "heartbeat"}
    body = compress(
        raw_lines(
            [orjson.dumps(event)] * 2,
            object_key=orphan,
            batch_id=batch,
            source=source,
            schema_version="mobile/1",
            received_at=received_at,
            sent_at=None,
        )
    )
    store.put(orphan, body)
    # A row whose object never reached (or has left) the bucket.
    missing = raw_key(source, received_at, uuid.uuid4())
    registry.register(RawObject(missing, source, uuid.uuid4(), 10, 3, received_at))
    prefix = f"raw/source={source}/"

    # The orphan is too young to judge: the API may be between its PUT and its INSERT.
    first = reconcile(store, registry, prefix=prefix, quarantine_prefix=None)

    assert (first.adopted, first.missing, first.skipped_young) == ([], [missing], 1)
    rows = _rows(registry, [orphan, missing])
    assert list(rows) == [missing]
    assert (rows[missing]["status"], rows[missing]["last_error"]) == (
        "failed",
        "object missing from the bucket (found by reconcile)",
    )

    second = reconcile(store, registry, prefix=prefix, quarantine_prefix=None, min_age_s=0)

    assert (second.adopted, second.adopted_failed, second.missing) == ([orphan], [], [])
    assert _rows(registry, [orphan])[orphan] == {
        "source": source,
        "batch_id": batch,
        "event_count": 2,
        "size_bytes": len(body),
        "status": "pending",
        "last_error": None,
    }

    again = CliRunner().invoke(
        app, ["reconcile", "--prefix", prefix, "--min-age-seconds", "0", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == {
        "adopted": [],
        "adopted_failed": [],
        "missing": [],
        "quarantine_adopted": [],
        "skipped_young": 0,
    }


def test_an_unreadable_orphan_is_registered_failed_with_the_reason(
    store: ObjectStore, registry: Registry
) -> None:
    source = f"rec-{secrets.token_hex(4)}"
    key = f"raw/source={source}/dt=2026-11-23/hour=10/{uuid.uuid4()}.jsonl.gz"
    store.put(key, b"this is not gzip")

    result = reconcile(
        store, registry, prefix=f"raw/source={source}/", quarantine_prefix=None, min_age_s=0
    )

    assert (result.adopted, result.adopted_failed) == ([], [key])
    row = _rows(registry, [key])[key]
    assert (row["status"], row["event_count"], row["last_error"]) == (
        "failed",
        0,
        "adopted by reconcile, unreadable: not a gzip object (BadGzipFile)",
    )


def test_an_unregistered_quarantine_object_is_read_back_into_rows_once(
    store: ObjectStore, registry: Registry
) -> None:
    source = f"rec-{secrets.token_hex(4)}"
    batch = uuid.uuid4()
    received_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    reasons = [{"field": "battery.level_pct", "message": "Input should be less than 100"}]
    lines = quarantine_lines(
        [Rejection(4, "ev-4", reasons, {"device_id": "d"}, b'{"device_id":"d"}')],
        batch_id=batch,
        source=source,
        received_at=received_at,
    )
    key = quarantine_key(source, received_at, batch)
    store.put(key, compress(lines))
    raw, quarantined = f"raw/source={source}/", f"quarantine/source={source}/"

    first = reconcile(store, registry, prefix=raw, quarantine_prefix=quarantined, min_age_s=0)
    again = reconcile(store, registry, prefix=raw, quarantine_prefix=quarantined, min_age_s=0)

    assert (first.quarantine_adopted, again.quarantine_adopted) == ([key], [])
    with registry.connection() as conn:
        rows = conn.execute(
            "select source, event_index, event_id, reasons, payload, received_at "
            "from registry.quarantine where batch_id = %s",
            (batch,),
        ).fetchall()
    assert rows == [
        {
            "source": source,
            "event_index": 4,
            "event_id": "ev-4",
            "reasons": reasons,
            "payload": {"device_id": "d"},
            "received_at": received_at,
        }
    ]
