"""Segment's official Python library against the real API, then the pipeline into silver."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from pyspark.sql import SparkSession
from segment.analytics import Client
from segment.analytics.request import APIError

from ingest_api.segment import NAMESPACE
from ingest_api.tokenize import Tokenizer
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.tables import SILVER_DEVICE_EVENTS
from spark_jobs import pipeline

pytestmark = pytest.mark.integration

SOURCE = "segment-it"  # this module's own source: other modules share the session's stack
CLIENT_IP = "198.51.100.23"


@pytest.fixture(scope="module")
def segment_key(registry: Registry) -> str:
    return registry.create_key(SOURCE)


def context(device_id: str) -> dict[str, Any]:
    return {
        "app": {"name": "tlake-demo", "version": "2.0.0", "build": "9"},
        "os": {"name": "Android", "version": "14"},
        "device": {"id": device_id, "model": "Pixel 8", "manufacturer": "Google"},
        "network": {"wifi": False, "cellular": True, "carrier": "T-Mobile"},
        "ip": CLIENT_IP,
        "locale": "en-US",
    }


@pytest.fixture(scope="module")
def sent(api_url: str, segment_key: str, settings: Settings) -> dict[str, Any]:
    """Send through Segment's library (sync: /v1/batch of one; async: batches on flush),
    then run the pipeline once."""
    at = datetime.now(UTC) - timedelta(minutes=3)
    ids = {name: str(uuid.uuid4()) for name in ("track", "screen", "identify", "page")}
    errors: list[Exception] = []

    sync = Client(write_key=segment_key, host=api_url, sync_mode=True, gzip=True, max_retries=1)
    sync.track(
        user_id="user-7",
        event="Song Played",
        properties={"title": "Intro", "seconds": 31},
        context=context("seg-device-1"),
        timestamp=at,
        message_id=ids["track"],
        anonymous_id="install-1",
    )
    with pytest.raises(APIError) as refused:  # every event rejected: 422, not retried
        sync.track(
            user_id="user-7",
            event="Cart Viewed",
            properties={"cart": {"items": 2}},
            timestamp=at,
        )

    queued = Client(
        write_key=segment_key, host=api_url, on_error=lambda e, _: errors.append(e), max_retries=1
    )
    queued.screen(
        anonymous_id="install-2",
        name="Home",
        properties={"tab": "feed"},
        context=context("seg-device-2"),
        timestamp=at,
        message_id=ids["screen"],
    )
    queued.identify(
        user_id="user-9", traits={"plan": "pro"}, timestamp=at, message_id=ids["identify"]
    )
    queued.page(
        anonymous_id="install-3", name="Docs", timestamp=at, message_id="page-" + ids["page"]
    )
    queued.flush()
    queued.join()
    summary = pipeline.run_once(settings)
    return {"ids": ids, "refused": refused.value, "errors": errors, "summary": summary}


def silver(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    table = spark.read.format("delta").load(table_uri(settings, SILVER_DEVICE_EVENTS))
    return {r.event_id: r for r in table.where(f"source = '{SOURCE}'").collect()}


def test_segment_library_messages_reach_silver(
    sent: dict[str, Any], spark: SparkSession, settings: Settings
) -> None:
    assert sent["errors"] == []
    ids = sent["ids"]
    rows = silver(spark, settings)
    page_id = str(uuid.uuid5(NAMESPACE, f"{SOURCE}:page-{ids['page']}"))
    assert set(rows) == {ids["track"], ids["screen"], ids["identify"], page_id}

    track = rows[ids["track"]]
    assert (track.device_id, track.event_type) == ("seg-device-1", "Song Played")
    assert (track.app_name, track.app_version, track.os, track.os_version) == (
        "tlake-demo",
        "2.0.0",
        "Android",
        "14",
    )
    assert (track.device_model, track.network_type, track.network_carrier) == (
        "Pixel 8",
        "cellular",
        "T-Mobile",
    )
    assert track.network_ip_token == Tokenizer.for_settings(settings).token(CLIENT_IP)
    assert orjson.loads(track.attributes_json) == {"title": "Intro", "seconds": 31}
    assert track.sent_at is not None

    screen, identify, page = rows[ids["screen"]], rows[ids["identify"]], rows[page_id]
    assert (screen.event_type, screen.device_id) == ("screen", "seg-device-2")
    assert orjson.loads(screen.attributes_json) == {"name": "Home", "tab": "feed"}
    assert (identify.event_type, identify.device_id) == ("identify", "user-9")
    assert orjson.loads(identify.attributes_json) == {"plan": "pro"}
    assert (page.event_type, page.device_id) == ("page", "install-3")


def test_rejected_message_is_422_to_the_library_and_quarantined(
    sent: dict[str, Any], registry: Registry
) -> None:
    refused: APIError = sent["refused"]
    assert refused.status == 422
    receipt = refused.response.json()
    assert receipt["accepted"] == 0
    assert receipt["results"][0]["errors"] == [
        {
            "field": "attributes.cart",
            "message": "must be a string, number, boolean or null (no objects or arrays)",
        }
    ]
    with registry.connection() as conn:
        row = conn.execute(
            "select payload from registry.quarantine where batch_id = %s",
            (receipt["batch_id"],),
        ).fetchone()
    assert row is not None
    assert row["payload"]["properties"] == {"cart": {"items": 2}}  # the message as sent
    assert row["payload"]["type"] == "track"


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def test_single_track_endpoint_with_basic_auth(api_url: str, segment_key: str) -> None:
    message = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "anonymousId": "install-4",
        "event": "Opened",
        "timestamp": "2024-05-01T12:00:00Z",
        "context": {"ip": CLIENT_IP},
    }

    response = httpx.post(
        f"{api_url}/v1/track",
        content=orjson.dumps(message),
        headers={"Authorization": basic(f"{segment_key}:")},
    )

    assert response.status_code == 202, response.text
    assert response.json()["results"] == [
        {"index": 0, "event_id": message["messageId"], "status": "accepted", "errors": []}
    ]
    assert CLIENT_IP not in response.text


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "missing_api_key"),
        (basic("tlk_00000000_unknown:"), 401, "invalid_api_key"),
        (basic("user:password"), 401, "invalid_api_key"),
    ],
)
def test_segment_endpoints_refuse_bad_credentials(
    api_url: str, authorization: str | None, status: int, code: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = httpx.post(f"{api_url}/v1/batch", content=b'{"batch": [{}]}', headers=headers)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_read_key_is_403_on_segment_endpoints(api_url: str, read_key: str) -> None:
    response = httpx.post(
        f"{api_url}/v1/batch",
        content=b'{"batch": [{}]}',
        headers={"Authorization": basic(f"{read_key}:")},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
