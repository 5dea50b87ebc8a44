"""The embedded stack as `tlake up` / `tlake status` see it."""

from __future__ import annotations

import gzip

import pytest

from lake_config.errors import ObjectExistsError
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
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
