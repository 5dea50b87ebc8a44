"""The embedded stack as `tlake up` / `tlake status` see it."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import orjson
import pytest

from lake_config.errors import ObjectExistsError
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from tests.integration.test_ingest_api import (
    batch,
    closed_port,
    event,
    quarantine_rows,
    raw_object_row,
)
from tlake import stack


def test_up_is_idempotent_and_reports_running(settings: Settings) -> None:
    stack.up(settings, api=False)  # settles migrations added since the session started
    again = stack.up(settings, api=False)
    assert again == {"postgres": "up to date", "seaweedfs": "running", "sail": "running"}


def test_health_reports_each_component(settings: Settings) -> None:
    checks = {h.name: h for h in stack.health(settings)}
    assert checks["postgres"].ok, checks["postgres"].detail
    assert checks["s3"].ok, checks["s3"].detail
    assert checks["spark"].ok
    userinfo = checks["postgres"].endpoint.removeprefix("postgresql://").split("@")[0]
    assert ":" not in userinfo, "the database password must never be shown"


def test_bucket_accepts_conditional_put(store: ObjectStore) -> None:
    store.put("tests/conditional.txt", b"one", content_encoding=None, if_absent=True)
    with pytest.raises(ObjectExistsError, match="already exists"):
        store.put("tests/conditional.txt", b"two", content_encoding=None, if_absent=True)
    assert store.get("tests/conditional.txt") == b"one"


def test_put_stores_content_type_and_encoding(store: ObjectStore) -> None:
    body = gzip.compress(b'{"a": 1}\n')
    store.put("tests/typed.jsonl.gz", body)
    head = store._client.head_object(Bucket=store.bucket, Key="tests/typed.jsonl.gz")
    assert (head["ContentType"], head["ContentEncoding"]) == ("application/x-ndjson", "gzip")
    assert store.get("tests/typed.jsonl.gz") == body  # the stored bytes, not decompressed


def test_registry_counts_every_status(registry: Registry) -> None:
    assert set(registry.counts()) == {"pending", "processing", "processed", "failed"}


def test_the_mqtt_bridge_runs_under_the_stack_and_stops(settings: Settings) -> None:
    assert stack.start_bridge(settings) == "started"  # Mosquitto runs on this machine
    try:
        assert stack.start_bridge(settings) == "running"
        assert {h.name: h for h in stack.health(settings)}["mqtt-bridge"].ok
    finally:
        assert stack.Service(settings, "mqtt-bridge").stop() is True
    assert not {h.name: h for h in stack.health(settings)}["mqtt-bridge"].ok


def test_the_api_serves_with_two_workers_and_stops_with_all_of_them(
    settings: Settings, registry: Registry, write_key: str, tmp_path: Path
) -> None:
    served = settings.model_copy(
        update={"home": tmp_path, "api_workers": 2, "api_url": f"http://127.0.0.1:{closed_port()}"}
    )
    assert stack.start_api(served) == "started"
    svc = stack.Service(served, "api")
    pid = svc.pid()
    assert pid is not None
    try:
        # the server, its two workers and multiprocessing's resource tracker
        assert len(stack.group_members(pid)) >= 3
        headers = {"Authorization": f"Bearer {write_key}", "Content-Encoding": "gzip"}
        body = gzip.compress(orjson.dumps(batch(event(), event(device_id=""))))
        accepted = httpx.post(f"{served.api_url}/v1/events", content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        receipt = accepted.json()
        assert (receipt["accepted"], receipt["rejected"]) == (1, 1)
        row = raw_object_row(registry, receipt["object_key"])
        assert row is not None and row["event_count"] == 1
        assert len(quarantine_rows(registry, receipt["batch_id"])) == 1
    finally:
        assert svc.stop() is True
    # `tlake down` returns only once no worker is left holding the port or a connection
    assert stack.group_members(pid) == []
    assert not stack._port_open(served.api_host, served.api_port)
