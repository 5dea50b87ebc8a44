"""The ingest API end to end: real uvicorn, real SeaweedFS bucket, real PostgreSQL registry.

Fixtures (tests/conftest.py): `settings` of the test stack, `registry`, `store`, `api_url` of the
API running against it, and fresh `write_key` / `read_key` strings.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ingest_api.main import create_app
from ingest_api.tokenize import Tokenizer
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore

pytestmark = pytest.mark.integration

SECRET_IP = "203.0.113.77"
SECRET_SSID = "Flat-4B-PrivateWifi"
RAW_KEY = re.compile(
    r"raw/source=(?P<source>[^/]+)/dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/(?P<batch>[0-9a-f-]{36})"
    r"\.jsonl\.gz"
)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "device_id": "device-1",
        "event_type": "app_open",
        "occurred_at": "2024-05-01T12:00:00.250+02:00",
        "app": {"name": "tlake-demo", "version": "1.2.3"},
        "battery": {"level_pct": 42.5, "charging": False, "temperature_c": 31.0},
        "network": {"type": "wifi", "ip": SECRET_IP, "ssid": SECRET_SSID, "signal_dbm": -61},
        "attributes": {"screen": "home", "cold_start": True},
    }
    base.update(overrides)
    return base


def batch(*events: Any, **envelope: Any) -> dict[str, Any]:
    return {"sent_at": "2024-05-01T10:00:05Z", "events": list(events), **envelope}


@pytest.fixture
def client(api_url: str, write_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {write_key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture
def source(registry: Registry, write_key: str) -> str:
    key = registry.lookup_key(write_key)
    assert key is not None
    return key.source


def post(client: httpx.Client, body: Any, **headers: str) -> httpx.Response:
    return client.post("/v1/events", content=orjson.dumps(body), headers=headers)


def read_lines(store: ObjectStore, key: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in gzip.decompress(store.get(key)).splitlines()]


def raw_object_row(registry: Registry, object_key: str) -> dict[str, Any] | None:
    with registry.connection() as conn:
        return conn.execute(
            "select * from registry.raw_objects where object_key = %s", (object_key,)
        ).fetchone()


def quarantine_rows(registry: Registry, batch_id: str) -> list[dict[str, Any]]:
    with registry.connection() as conn:
        return conn.execute(
            "select *, payload::text as payload_json, reasons::text as reasons_json "
            "from registry.quarantine where batch_id = %s order by event_index",
            (batch_id,),
        ).fetchall()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- accepted batches ---------------------------------------------------------------------------


def test_batch_lands_as_one_registered_raw_object(
    client: httpx.Client, store: ObjectStore, registry: Registry, source: str
) -> None:
    first, second = event(), event(event_type="battery_status")
    first["event_id"] = first["event_id"].upper()  # any UUID spelling, stored canonical

    response = post(client, batch(first, second))

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 0)
    match = RAW_KEY.fullmatch(body["object_key"])
    assert match, body["object_key"]
    assert match["source"] == source
    assert match["batch"] == body["batch_id"]
    assert body["results"] == [
        {"index": 0, "event_id": first["event_id"].lower(), "status": "accepted", "errors": []},
        {"index": 1, "event_id": second["event_id"], "status": "accepted", "errors": []},
    ]

    lines = read_lines(store, body["object_key"])
    assert [line["line_no"] for line in lines] == [0, 1]
    head = lines[0]
    assert head["object_key"] == body["object_key"]
    assert head["batch_id"] == body["batch_id"]
    assert head["source"] == source
    assert head["schema_version"] == "mobile/1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", head["received_at"])
    assert head["sent_at"] == "2024-05-01T10:00:05Z"
    stored = head["event"]
    assert stored["event_id"] == first["event_id"].lower()
    assert stored["occurred_at"] == "2024-05-01T10:00:00.250000Z"
    assert stored["battery"] == first["battery"]
    assert stored["attributes"] == first["attributes"]
    assert "device" not in stored and "session" not in stored  # absent sections stay absent
    assert stored["network"]["ip"].startswith("k1:")

    row = raw_object_row(registry, body["object_key"])
    assert row is not None
    assert row["status"] == "pending"
    assert row["event_count"] == 2
    assert row["source"] == source
    assert str(row["batch_id"]) == body["batch_id"]
    assert row["size_bytes"] == len(store.get(body["object_key"]))


def test_concurrent_batches_share_objects_and_each_event_lands_once(
    api_url: str, write_key: str, store: ObjectStore, registry: Registry
) -> None:
    """Group commit: batches landed at the same time share a raw object and its registry row;
    each receipt names the object holding its events, every line keeps its own batch."""
    batches = [batch(*(event() for _ in range(20))) for _ in range(32)]
    rounds_before = group_commit_rounds(api_url)

    async def send_all() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {write_key}"}
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as c:
            return await asyncio.gather(
                *(c.post("/v1/events", content=orjson.dumps(b)) for b in batches)
            )

    responses = asyncio.run(send_all())

    assert [r.status_code for r in responses] == [202] * 32, [r.text for r in responses]
    receipts = [r.json() for r in responses]
    keys = {body["object_key"] for body in receipts}
    assert len(keys) < len(receipts)  # 32 at once on one worker: some rounds held several
    lines_by_key = {key: read_lines(store, key) for key in keys}
    for sent, body in zip(batches, receipts, strict=True):
        mine = [
            line
            for line in lines_by_key[body["object_key"]]
            if line["batch_id"] == body["batch_id"]
        ]
        assert [line["event"]["event_id"] for line in mine] == [
            e["event_id"] for e in sent["events"]
        ]
    for key, lines in lines_by_key.items():
        assert [line["line_no"] for line in lines] == list(range(len(lines)))
        assert {line["object_key"] for line in lines} == {key}
        row = raw_object_row(registry, key)
        assert row is not None and row["event_count"] == len(lines)
        match = RAW_KEY.fullmatch(key)
        assert match and str(row["batch_id"]) == match["batch"] == lines[0]["batch_id"]
    rounds, landed = (
        a - b for a, b in zip(group_commit_rounds(api_url), rounds_before, strict=True)
    )
    assert (rounds, landed) == (len(keys), 32)  # the metrics: rounds, and batches in them


def group_commit_rounds(api_url: str) -> tuple[float, float]:
    """The API's `tlake_ingest_batches_per_object` histogram: (rounds, batches) so far."""
    metrics = samples(httpx.get(f"{api_url}/metrics").text)
    return (
        value(metrics, "tlake_ingest_batches_per_object_count"),
        value(metrics, "tlake_ingest_batches_per_object_sum"),
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus exposition, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when it is not there yet)."""
    return metrics.get((name, frozenset(labels.items())), 0.0)


def test_gzip_body_is_accepted(client: httpx.Client, store: ObjectStore) -> None:
    payload = gzip.compress(orjson.dumps(batch(event())))

    response = client.post("/v1/events", content=payload, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 202, response.text
    assert len(read_lines(store, response.json()["object_key"])) == 1


def test_duplicate_event_ids_in_one_batch_are_both_accepted(
    client: httpx.Client, store: ObjectStore
) -> None:
    twin = event()

    response = post(client, batch(twin, dict(twin)))

    assert response.status_code == 202, response.text
    lines = read_lines(store, response.json()["object_key"])
    assert [line["event"]["event_id"] for line in lines] == [twin["event_id"]] * 2


# --- rejected events ----------------------------------------------------------------------------


def test_mixed_batch_quarantines_the_rejected_events_with_reasons(
    client: httpx.Client, store: ObjectStore, registry: Registry, source: str
) -> None:
    good = event()
    bad_type = event(battery={"level_pct": 140})
    unknown_field = event(extra_field=1)

    response = post(client, batch(good, bad_type, unknown_field))

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 2)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected"]
    assert body["results"][1]["errors"] == [
        {"field": "battery.level_pct", "message": "Input should be less than or equal to 100"}
    ]
    assert body["results"][2]["errors"] == [
        {"field": "extra_field", "message": "Extra inputs are not permitted"}
    ]
    assert [line["event"]["event_id"] for line in read_lines(store, body["object_key"])] == [
        good["event_id"]
    ]

    q_key = f"quarantine/source={source}/dt={body['object_key'].split('/dt=')[1][:10]}"
    q_key += f"/{body['batch_id']}.jsonl.gz"
    q_lines = read_lines(store, q_key)
    assert [(q["event_index"], q["event_id"]) for q in q_lines] == [
        (1, bad_type["event_id"]),
        (2, unknown_field["event_id"]),
    ]
    assert q_lines[0]["component"] == "ingest_api"
    assert q_lines[0]["batch_id"] == body["batch_id"]
    assert q_lines[0]["reasons"] == body["results"][1]["errors"]
    assert q_lines[0]["payload"]["battery"] == {"level_pct": 140}

    rows = quarantine_rows(registry, body["batch_id"])
    assert [(r["event_index"], r["event_id"], r["component"]) for r in rows] == [
        (1, bad_type["event_id"], "ingest_api"),
        (2, unknown_field["event_id"], "ingest_api"),
    ]
    assert rows[1]["reasons"] == body["results"][2]["errors"]
    assert rows[1]["payload"]["extra_field"] == 1
    assert all(r["source"] == source for r in rows)


def test_batch_with_no_valid_event_is_422_and_quarantined(
    client: httpx.Client, registry: Registry
) -> None:
    response = post(client, batch(event(event_id="nope"), {"just": "junk"}, 17))

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["object_key"] is None
    assert (body["accepted"], body["rejected"]) == (0, 3)
    assert body["results"][0]["errors"] == [
        {"field": "event_id", "message": "Input should be a valid UUID"}
    ]
    assert body["results"][2]["errors"] == [
        {"field": "event", "message": "Input should be a valid dictionary"}
    ]
    rows = quarantine_rows(registry, body["batch_id"])
    assert [r["event_index"] for r in rows] == [0, 1, 2]
    assert rows[2]["payload"] == 17
    with registry.connection() as conn:
        landed = conn.execute(
            "select count(*) as n from registry.raw_objects where batch_id = %s",
            (body["batch_id"],),
        ).fetchone()
    assert landed == {"n": 0}


def test_event_above_max_event_bytes_is_rejected_not_413(
    client: httpx.Client, settings: Settings
) -> None:
    per_value = 1000
    count = settings.max_event_bytes // per_value + 1
    huge = event(attributes={f"k{i}": "x" * per_value for i in range(count)})

    response = post(client, batch(event(), huge))

    assert response.status_code == 202, response.text
    assert response.json()["results"][1]["errors"] == [
        {"field": "event", "message": f"event exceeds max_event_bytes={settings.max_event_bytes}"}
    ]


def test_raw_ip_and_ssid_are_stored_nowhere(
    client: httpx.Client, store: ObjectStore, registry: Registry, settings: Settings
) -> None:
    tokenizer = Tokenizer.for_settings(settings)
    accepted = event()
    rejected = event(event_type="")  # invalid, still carries the sensitive values
    wrong_types = event(network={"ip": [SECRET_IP], "ssid": {"name": SECRET_SSID}})
    not_an_object = event(network=f"{SECRET_IP} {SECRET_SSID}")

    response = post(client, batch(accepted, rejected, wrong_types, not_an_object))

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert SECRET_IP not in response.text and SECRET_SSID not in response.text
    stored = [
        gzip.decompress(store.get(info.key)).decode()
        for prefix in ("raw/", "quarantine/")
        for info in store.list(prefix)
        if body["batch_id"] in info.key
    ]
    assert len(stored) == 2
    rows = quarantine_rows(registry, body["batch_id"])
    assert len(rows) == 3
    texts = [*stored, *(f"{r['payload_json']} {r['reasons_json']}" for r in rows)]
    for text in texts:
        assert SECRET_IP not in text and SECRET_SSID not in text
    raw_event = orjson.loads(stored[0].splitlines()[0])["event"]
    assert raw_event["network"]["ip"] == tokenizer.token(SECRET_IP)
    assert raw_event["network"]["ssid"] == tokenizer.token(SECRET_SSID)
    assert rows[0]["payload"]["network"]["ip"] == tokenizer.token(SECRET_IP)
    assert rows[1]["payload"]["network"]["ip"] == tokenizer.token(str([SECRET_IP]))


# --- refused requests ---------------------------------------------------------------------------


def test_missing_api_key_is_401(api_url: str) -> None:
    response = httpx.post(f"{api_url}/v1/events", content=orjson.dumps(batch(event())))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "missing_api_key"


@pytest.mark.parametrize("authorization", ["Bearer tlk_00000000_not-a-key", "Basic dXNlcjpwdw=="])
def test_bad_api_key_is_401(api_url: str, authorization: str) -> None:
    response = httpx.post(
        f"{api_url}/v1/events",
        content=orjson.dumps(batch(event())),
        headers={"Authorization": authorization},
    )

    assert response.status_code == 401
    expected = "invalid_api_key" if authorization.startswith("Bearer") else "missing_api_key"
    assert response.json()["error"]["code"] == expected


def test_revoked_api_key_is_401(api_url: str, registry: Registry) -> None:
    secret = registry.create_key("revoked-source")
    key = registry.lookup_key(secret)
    assert key is not None
    registry.revoke_key(key.key_id)

    response = httpx.post(
        f"{api_url}/v1/events",
        content=orjson.dumps(batch(event())),
        headers={"Authorization": f"Bearer {secret}"},
    )

    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "invalid_api_key", "message": "the API key is unknown or revoked"}
    }


def test_read_scoped_key_is_403(api_url: str, read_key: str) -> None:
    response = httpx.post(
        f"{api_url}/v1/events",
        content=orjson.dumps(batch(event())),
        headers={"Authorization": f"Bearer {read_key}"},
    )

    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "insufficient_scope",
            "message": "a read-scoped key cannot send events",
        }
    }


def test_body_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/events", content=b'{"sent_at": ')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["message"].startswith("body is not valid JSON (line 1")


def test_body_that_is_not_the_envelope_is_400_with_field_errors(client: httpx.Client) -> None:
    response = post(client, {"events": [event()], "sent_at": "yesterday", "meta": {}})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_envelope",
            "message": "body is not a batch envelope",
            "errors": [
                {
                    "field": "sent_at",
                    "message": "must be an RFC 3339 timestamp with a time zone, "
                    "e.g. 2024-05-01T12:00:00Z",
                },
                {"field": "meta", "message": "Extra inputs are not permitted"},
            ],
        }
    }


def test_unknown_schema_version_is_400(client: httpx.Client) -> None:
    response = post(client, batch(event(), schema_version="mobile/99"))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_schema_version"
    assert error["supported"] == ["fleet/1", "iot/1", "mobile/1", "store/1", "stream/1"]


def test_corrupt_gzip_is_400(client: httpx.Client) -> None:
    truncated = gzip.compress(orjson.dumps(batch(event())))[:-12]

    response = client.post("/v1/events", content=truncated, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_encoding",
        "message": "gzip body is truncated",
    }


def test_unsupported_content_encoding_is_415(client: httpx.Client) -> None:
    response = post(client, batch(event()), **{"Content-Encoding": "br"})

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_content_encoding"


def test_request_above_max_request_bytes_is_413(client: httpx.Client, settings: Settings) -> None:
    response = client.post("/v1/events", content=b" " * (settings.max_request_bytes + 1))

    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": f"request body exceeds max_request_bytes={settings.max_request_bytes}",
        "limit": "max_request_bytes",
        "max": settings.max_request_bytes,
    }


def test_chunked_request_above_max_request_bytes_is_413(
    client: httpx.Client, settings: Settings
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds on the stream itself
        for _ in range(settings.max_request_bytes // 65536 + 2):
            yield b" " * 65536

    response = client.post("/v1/events", content=chunks())

    assert response.status_code == 413
    assert response.json()["error"]["limit"] == "max_request_bytes"


def test_gzip_bomb_is_413(client: httpx.Client, settings: Settings) -> None:
    bomb = gzip.compress(b" " * (settings.max_decompressed_bytes * 4))
    assert len(bomb) < settings.max_request_bytes

    response = client.post("/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 413
    assert response.json()["error"]["limit"] == "max_decompressed_bytes"


def test_too_many_events_is_413(client: httpx.Client, settings: Settings) -> None:
    response = post(client, batch(*[{}] * (settings.max_events_per_batch + 1)))

    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": f"batch of {settings.max_events_per_batch + 1} events exceeds "
        f"max_events_per_batch={settings.max_events_per_batch}",
        "limit": "max_events_per_batch",
        "max": settings.max_events_per_batch,
    }


# --- unavailable dependencies -------------------------------------------------------------------


@contextmanager
def broken_store_app(settings: Settings) -> Iterator[TestClient]:
    """The app with its object store pointed at a closed port (swapped in after startup: the
    ingest routes and /readyz take their clients from the app's state)."""
    app = create_app(settings)
    broken = settings.model_copy(update={"s3_endpoint": f"http://127.0.0.1:{closed_port()}"})
    with TestClient(app) as client:
        app.state.store = ObjectStore(broken, timeout_s=2)
        yield client


def test_storage_unavailable_is_503_and_nothing_is_registered(
    settings: Settings, registry: Registry, write_key: str, source: str
) -> None:
    before = registry.counts()

    with broken_store_app(settings) as client:
        response = client.post(
            "/v1/events",
            content=orjson.dumps(batch(event(), event(event_type=""))),
            headers={"Authorization": f"Bearer {write_key}"},
        )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {
        "error": {
            "code": "storage_unavailable",
            "message": "object storage is unavailable; nothing was accepted, retry the batch",
        }
    }
    assert registry.counts() == before


def test_registry_unavailable_is_503(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{closed_port()}/tlake"}
    )
    broken = Registry(down, min_size=0, max_size=1)
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            # Swapped in after startup (the lifespan opened the real one, and closes it after).
            real, app.state.registry = app.state.registry, broken
            try:
                response = client.post(
                    "/v1/events",
                    content=orjson.dumps(batch(event())),
                    headers={"Authorization": "Bearer tlk_00000000_uncached"},
                )
            finally:
                app.state.registry = real
    finally:
        broken.close()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {
        "error": {
            "code": "registry_unavailable",
            "message": "the registry is unavailable; cannot check the API key, retry later",
        }
    }


def test_readyz_names_the_failed_dependency(settings: Settings, registry: Registry) -> None:
    with broken_store_app(settings) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["checks"] == {"storage": "unavailable", "registry": "ok"}
    assert response.json()["error"] == {"code": "not_ready", "message": "unavailable: storage"}


# --- probes and docs ----------------------------------------------------------------------------


def test_healthz_and_readyz(api_url: str) -> None:
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api_url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"storage": "ok", "registry": "ok"}}


def test_openapi_documents_the_event_schema(api_url: str) -> None:
    spec = httpx.get(f"{api_url}/openapi.json").json()
    operation = spec["paths"]["/v1/events"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]

    assert schema["required"] == ["sent_at", "events"]
    event_schema = schema["properties"]["events"]["items"]
    assert event_schema["additionalProperties"] is False
    assert set(event_schema["required"]) == {"event_id", "device_id", "event_type", "occurred_at"}
    assert {"202", "400", "401", "403", "413", "415", "422", "503"} <= set(operation["responses"])
    assert httpx.get(f"{api_url}/docs").status_code == 200
