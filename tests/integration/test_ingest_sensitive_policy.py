"""A non-default sensitive-field policy, through the real app, object storage and registry."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import orjson
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ingest_api.main import create_app
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore

SECRET_IP = "203.0.113.77"
SECRET_SSID = "Flat-4B-PrivateWifi"
NOT_AN_IP = "home-router-77"


def event(**network: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": "device-1",
        "event_type": "app_open",
        "occurred_at": "2024-05-01T12:00:00Z",
        "network": {"type": "wifi", **network},
    }


def test_truncate_ip_and_drop_apply_before_anything_is_written(
    settings: Settings, store: ObjectStore, registry: Registry, write_key: str
) -> None:
    policed = settings.model_copy(
        update={
            "sensitive_fields": {"network.ip": "truncate_ip", "network.ssid": "drop"},
            "token_keys": {"k1": SecretStr("old-key"), "k2": SecretStr("new-key")},
            "token_key_id": "k2",
        }
    )
    doc = {
        "sent_at": "2024-05-01T12:00:05Z",
        "events": [
            event(ip=SECRET_IP, ssid=SECRET_SSID),
            event(ip=NOT_AN_IP, ssid=SECRET_SSID),
        ],
    }

    with TestClient(create_app(policed)) as client:
        response = client.post(
            "/v1/events",
            content=orjson.dumps(doc),
            headers={"Authorization": f"Bearer {write_key}"},
        )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["results"][1]["errors"] == [
        {"field": "network.ip", "message": "network.ip is not a valid IPv4 or IPv6 address"}
    ]
    raw = [
        orjson.loads(line) for line in gzip.decompress(store.get(body["object_key"])).splitlines()
    ]
    assert raw[0]["event"]["network"] == {"type": "wifi", "ip": "203.0.113.0"}
    with registry.connection() as conn:
        rows = conn.execute(
            "select payload, reasons::text as reasons_json from registry.quarantine "
            "where batch_id = %s",
            (body["batch_id"],),
        ).fetchall()
    assert [r["payload"]["network"] for r in rows] == [{"type": "wifi"}]
    quarantined = [
        gzip.decompress(store.get(info.key)).decode()
        for info in store.list("quarantine/")
        if body["batch_id"] in info.key
    ]
    assert len(quarantined) == 1
    for text in [response.text, *quarantined, *(r["reasons_json"] for r in rows)]:
        for value in (SECRET_IP, SECRET_SSID, NOT_AN_IP):
            assert value not in text
