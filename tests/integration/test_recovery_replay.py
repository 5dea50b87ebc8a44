"""`tlake quarantine list` and `tlake quarantine replay` against the real stack.

The rejected event is sent through the real API; the replayable one is inserted as the API
inserts its quarantine rows (Registry.register with a QuarantineRecord), with a reason that no
longer applies, since making an event valid for today's schema after the fact is not possible.
Assertions are on this test's own rows and keys: other modules share the stack.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from typer.testing import CliRunner

from ingest_api.landing import raw_key
from ingest_api.tokenize import Tokenizer
from lake_config.registry import QuarantineRecord, Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import SILVER_DEVICE_EVENTS
from recovery.replay import replay, replay_batch_id
from spark_jobs import pipeline
from tests.integration.test_ingest_api import read_lines
from tlake.cli import app

pytestmark = pytest.mark.integration


def _event(device: str, **extra: object) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": device,
        "event_type": "heartbeat",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        **extra,
    }


def _quarantined(registry: Registry, events: list[dict]) -> tuple[uuid.UUID, datetime]:
    """`events` quarantined as one batch, as the API records them, for a reason that no longer
    applies; the batch id and received_at."""
    batch_id = uuid.uuid4()
    received_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    registry.register(
        None,
        [
            QuarantineRecord(
                batch_id=batch_id,
                source="mobile",
                event_index=i,
                event_id=event["event_id"],
                component="ingest_api",
                reasons=[{"field": "event_type", "message": "event type not allowed (old rule)"}],
                payload=event,
                payload_text=None,
                received_at=received_at,
            )
            for i, event in enumerate(events)
        ],
    )
    return batch_id, received_at


def _quarantine_row(registry: Registry, batch_id: uuid.UUID) -> dict:
    with registry.connection() as conn:
        row = conn.execute(
            "select quarantine_id, replayed_at, replayed_object_key from registry.quarantine "
            "where batch_id = %s",
            (batch_id,),
        ).fetchone()
    assert row is not None
    return row


def test_list_filters_by_reason_and_time(
    settings: Settings, registry: Registry, api_url: str, write_key: str
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    device = f"rq-{secrets.token_hex(4)}"
    bad = _event(device, battery={"level_pct": 150.0})
    answer = httpx.post(
        f"{api_url}/v1/events",
        json={"sent_at": datetime.now(UTC).isoformat(), "events": [_event(device), bad]},
        headers={"Authorization": f"Bearer {write_key}"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text

    runner = CliRunner()
    found = runner.invoke(
        app,
        ["quarantine", "list", "--reason", "LEVEL_PCT", "--since", started.isoformat(), "--json"],
    )
    assert found.exit_code == 0, found.output
    mine = [r for r in json.loads(found.output) if r["event_id"] == bad["event_id"]]
    assert [(r["source"], r["component"], r["reasons"], r["replayed_at"]) for r in mine] == [
        (
            "mobile",
            "ingest_api",
            [
                {
                    "field": "battery.level_pct",
                    "message": "Input should be less than or equal to 100",
                }
            ],
            None,
        )
    ]
    plain = runner.invoke(app, ["quarantine", "list", "--reason", "level_pct", "--limit", "1"])
    assert plain.exit_code == 0, plain.output
    assert "battery.level_pct:" in plain.output
    for other in (["--reason", "no-such-reason-anywhere"], ["--since", "2999-01-01T00:00:00Z"]):
        empty = runner.invoke(app, ["quarantine", "list", *other, "--json"])
        assert (empty.exit_code, json.loads(empty.output)) == (0, [])
    bad_since = runner.invoke(app, ["quarantine", "list", "--since", "yesterday"])
    assert bad_since.exit_code == 1
    assert "--since 'yesterday' is not an RFC 3339 timestamp" in bad_since.output


def test_replay_lands_what_now_passes_once_and_it_reaches_silver(
    settings: Settings, store: ObjectStore, registry: Registry, spark: SparkSession
) -> None:
    device = f"rp-{secrets.token_hex(4)}"
    ip_token = Tokenizer.for_settings(settings).token("10.9.8.7")
    event = _event(device, network={"type": "wifi", "ip": ip_token})
    batch_id, received_at = _quarantined(registry, [event])
    quarantine_id = _quarantine_row(registry, batch_id)["quarantine_id"]
    key = raw_key("mobile", received_at, replay_batch_id([quarantine_id]))

    dry = replay(settings, store, registry, dry_run=True)

    assert key in dry.objects
    assert not store.exists(key)
    assert _quarantine_row(registry, batch_id)["replayed_at"] is None

    done = CliRunner().invoke(app, ["quarantine", "replay", "--json"])

    assert done.exit_code == 0, done.output
    assert key in json.loads(done.output)["objects"]
    row = _quarantine_row(registry, batch_id)
    assert row["replayed_at"] is not None and row["replayed_object_key"] == key
    with registry.connection() as conn:
        registered = conn.execute(
            "select source, event_count, status from registry.raw_objects where object_key = %s",
            (key,),
        ).fetchall()
    assert registered == [{"source": "mobile", "event_count": 1, "status": "pending"}]

    again = replay(settings, store, registry)

    assert key not in again.objects
    assert _quarantine_row(registry, batch_id) == row

    pipeline.run_once(settings)
    silver = (
        spark.read.format("delta")
        .load(table_uri(settings, SILVER_DEVICE_EVENTS))
        .where(F.col("device_id") == device)
        .select("event_id", "object_key", "network_ip_token")
        .collect()
    )
    assert [r.asDict() for r in silver] == [
        {"event_id": event["event_id"], "object_key": key, "network_ip_token": ip_token}
    ]


def test_replay_reads_a_payload_number_as_the_api_parsed_it(
    settings: Settings, store: ObjectStore, registry: Registry
) -> None:
    """jsonb keeps a client's 1e20 as the numeral 100000000000000000000: read back, it is the
    float the API parsed (orjson), not an int over 64 bits that could not be written again —
    neither when the event now passes nor when it is still invalid."""
    device = f"rp-{secrets.token_hex(4)}"
    passes = _event(device, attributes={"big": 1e20})
    still_invalid = _event(device, attributes={"big": 1e20}, occurred_at="yesterday")
    batch_id, _ = _quarantined(registry, [passes, still_invalid])
    with registry.connection() as conn:
        numeral = conn.execute(
            "select payload -> 'attributes' ->> 'big' as big from registry.quarantine "
            "where batch_id = %s and event_index = 0",
            (batch_id,),
        ).fetchone()
    assert numeral == {"big": "100000000000000000000"}  # what makes the case

    result = replay(settings, store, registry)

    landed = [
        line["event"]
        for key in result.objects
        for line in read_lines(store, key)
        if line["event"]["device_id"] == device
    ]
    assert [(e["event_id"], e["attributes"]) for e in landed] == [
        (passes["event_id"], {"big": 1e20})
    ]
    with registry.connection() as conn:
        replayed = conn.execute(
            "select event_index, replayed_at is not null as replayed from registry.quarantine "
            "where batch_id = %s order by event_index",
            (batch_id,),
        ).fetchall()
    assert replayed == [
        {"event_index": 0, "replayed": True},
        {"event_index": 1, "replayed": False},
    ]
