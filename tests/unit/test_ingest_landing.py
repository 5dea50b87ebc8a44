"""Object keys, the raw and quarantine line formats of docs/CONTRACTS.md, and landing order."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import pytest

from ingest_api.batches import Rejection, ValidatedBatch
from ingest_api.errors import RegistryUnavailableError, StorageUnavailableError
from ingest_api.landing import (
    Landing,
    Part,
    compress,
    land,
    prepare,
    prepare_group,
    put_objects_async,
    quarantine_key,
    quarantine_lines,
    quarantine_records,
    raw_key,
    raw_lines,
    register,
    register_async,
)
from lake_config.errors import ObjectExistsError, RegistryError, StorageError
from lake_config.registry import QuarantineRecord, RawObject

BATCH_ID = UUID("8c0b2f1e-2d7a-4c3b-9e5f-0a1b2c3d4e5f")
RECEIVED_AT = datetime(2024, 5, 1, 7, 5, 9, 123456, tzinfo=UTC)
SENT_AT = datetime(2024, 5, 1, 7, 5, 0, tzinfo=UTC)
EVENT_ID = UUID("0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4")


def accepted_event(**overrides: Any) -> bytes:
    event = {
        "event_id": EVENT_ID,
        "device_id": "device-1",
        "event_type": "heartbeat",
        "occurred_at": datetime(2024, 5, 1, 7, 4, 59, tzinfo=UTC),
        "network": {"type": "wifi", "ip": "k1:abc"},
        **overrides,
    }
    return orjson.dumps(event, option=orjson.OPT_UTC_Z)


def rejection(index: int = 1, payload: Any = None) -> Rejection:
    payload = {"device_id": ""} if payload is None else payload
    reasons = [{"field": "device_id", "message": "String should have at least 1 character"}]
    return Rejection(index, "e-1", reasons, payload, orjson.dumps(payload))


def test_keys_follow_the_contract() -> None:
    assert raw_key("mobile", RECEIVED_AT, BATCH_ID) == (
        "raw/source=mobile/dt=2024-05-01/hour=07/8c0b2f1e-2d7a-4c3b-9e5f-0a1b2c3d4e5f.jsonl.gz"
    )
    assert quarantine_key("mobile", RECEIVED_AT, BATCH_ID) == (
        "quarantine/source=mobile/dt=2024-05-01/8c0b2f1e-2d7a-4c3b-9e5f-0a1b2c3d4e5f.jsonl.gz"
    )


def test_raw_lines_follow_the_contract() -> None:
    key = raw_key("mobile", RECEIVED_AT, BATCH_ID)

    data = raw_lines(
        [accepted_event(), accepted_event(event_type="app_open")],
        object_key=key,
        batch_id=BATCH_ID,
        source="mobile",
        schema_version="mobile/1",
        received_at=RECEIVED_AT,
        sent_at=SENT_AT,
    )

    assert data.endswith(b"\n") and data.count(b"\n") == 2
    first, second = (orjson.loads(line) for line in data.splitlines())
    assert first == {
        "object_key": key,
        "line_no": 0,
        "batch_id": "8c0b2f1e-2d7a-4c3b-9e5f-0a1b2c3d4e5f",
        "source": "mobile",
        "schema_version": "mobile/1",
        "received_at": "2024-05-01T07:05:09.123456Z",
        "sent_at": "2024-05-01T07:05:00Z",
        "event": {
            "event_id": "0d2b9c1e-3a4f-4b5c-8d6e-7f8091a2b3c4",
            "device_id": "device-1",
            "event_type": "heartbeat",
            "occurred_at": "2024-05-01T07:04:59Z",
            "network": {"type": "wifi", "ip": "k1:abc"},
        },
    }
    assert second["line_no"] == 1
    assert second["event"]["event_type"] == "app_open"


def test_raw_lines_write_a_missing_sent_at_as_null() -> None:
    data = raw_lines(
        [accepted_event()],
        object_key="k",
        batch_id=BATCH_ID,
        source="s",
        schema_version="mobile/1",
        received_at=RECEIVED_AT,
        sent_at=None,
    )

    assert orjson.loads(data)["sent_at"] is None


def test_quarantine_lines_carry_reasons_and_payload() -> None:
    data = quarantine_lines(
        [rejection(3)], batch_id=BATCH_ID, source="mobile", received_at=RECEIVED_AT
    )

    assert orjson.loads(data) == {
        "batch_id": "8c0b2f1e-2d7a-4c3b-9e5f-0a1b2c3d4e5f",
        "event_index": 3,
        "event_id": "e-1",
        "component": "ingest_api",
        "source": "mobile",
        "received_at": "2024-05-01T07:05:09.123456Z",
        "reasons": [{"field": "device_id", "message": "String should have at least 1 character"}],
        "payload": {"device_id": ""},
    }


def test_quarantine_records_keep_a_nul_payload_as_text() -> None:
    plain, with_nul = rejection(0), rejection(1, {"device_id": "a\x00b"})

    records = quarantine_records(
        [plain, with_nul], batch_id=BATCH_ID, source="mobile", received_at=RECEIVED_AT
    )

    assert records[0] == QuarantineRecord(
        batch_id=BATCH_ID,
        source="mobile",
        event_index=0,
        event_id="e-1",
        component="ingest_api",
        reasons=plain.reasons,
        payload={"device_id": ""},
        payload_text=None,
        received_at=RECEIVED_AT,
    )
    assert (records[1].payload, records[1].payload_text) == (None, '{"device_id":"a\\u0000b"}')


def test_compress_is_gzip_and_deterministic() -> None:
    data = b'{"a":1}\n' * 100

    assert gzip.decompress(compress(data)) == data
    assert compress(data) == compress(data)


# --- landing order, with fakes for the two services -----------------------------------------------


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        if self.fail:
            raise StorageError(f"PUT {key!r} failed: connection refused")
        if if_absent and key in self.objects:
            raise ObjectExistsError(f"object {key!r} already exists")
        self.objects[key] = body

    async def put_async(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        self.put(key, body, if_absent=if_absent)


class FakeRegistry:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[RawObject | None, list[QuarantineRecord]]] = []

    def register(
        self, obj: RawObject | None, records: list[QuarantineRecord], *, first: Any = None
    ) -> None:
        if self.fail:
            raise RegistryError("registry unavailable: boom") from ConnectionRefusedError()
        if first is not None:
            first("conn")
        self.calls.append((obj, list(records)))


def batch(accepted: int, rejected: int) -> ValidatedBatch:
    return ValidatedBatch(
        schema_version="mobile/1",
        sent_at=SENT_AT,
        accepted=[accepted_event() for _ in range(accepted)],
        rejected=[rejection(i) for i in range(rejected)],
    )


def do_land(store: FakeStore, registry: FakeRegistry, b: ValidatedBatch) -> Any:
    return land(
        store,  # type: ignore[arg-type]
        registry,  # type: ignore[arg-type]
        b,
        batch_id=BATCH_ID,
        source="mobile",
        received_at=RECEIVED_AT,
    )


def test_land_puts_both_objects_then_registers_once() -> None:
    store, registry = FakeStore(), FakeRegistry()

    landing = do_land(store, registry, batch(2, 1))

    key = raw_key("mobile", RECEIVED_AT, BATCH_ID)
    q_key = quarantine_key("mobile", RECEIVED_AT, BATCH_ID)
    assert (landing.object_key, landing.quarantine_key) == (key, q_key)
    assert (landing.accepted, landing.rejected) == (2, 1)
    assert set(store.objects) == {key, q_key}
    [(obj, records)] = registry.calls
    assert obj == RawObject(key, "mobile", BATCH_ID, len(store.objects[key]), 2, RECEIVED_AT)
    assert [r.event_index for r in records] == [0]


def test_idempotent_retry_keeps_the_objects_an_earlier_attempt_wrote() -> None:
    store, registry = FakeStore(), FakeRegistry()
    with pytest.raises(RegistryUnavailableError):
        land(
            store,  # type: ignore[arg-type]
            FakeRegistry(fail=True),  # type: ignore[arg-type]
            batch(2, 1),
            batch_id=BATCH_ID,
            source="mobile",
            received_at=RECEIVED_AT,
            if_absent=True,
        )
    written = dict(store.objects)
    firsts: list[Any] = []

    landing = land(
        store,  # type: ignore[arg-type]
        registry,  # type: ignore[arg-type]
        batch(2, 1),
        batch_id=BATCH_ID,
        source="mobile",
        received_at=RECEIVED_AT,
        if_absent=True,
        first=firsts.append,
    )

    assert store.objects == written  # found already written: kept, not an error
    assert firsts == ["conn"]  # the answer is stored inside the registration
    [(obj, records)] = registry.calls
    assert obj is not None and obj.object_key == landing.object_key
    assert obj.size_bytes == len(written[obj.object_key]) and len(records) == 1


def test_land_without_accepted_events_registers_only_the_quarantine() -> None:
    store, registry = FakeStore(), FakeRegistry()

    landing = do_land(store, registry, batch(0, 2))

    assert landing.object_key is None
    assert list(store.objects) == [quarantine_key("mobile", RECEIVED_AT, BATCH_ID)]
    [(obj, records)] = registry.calls
    assert obj is None and len(records) == 2


def test_storage_failure_is_storage_unavailable_and_nothing_is_registered() -> None:
    registry = FakeRegistry()

    with pytest.raises(
        StorageUnavailableError,
        match="object storage is unavailable; nothing was accepted, retry the batch",
    ) as info:
        do_land(FakeStore(fail=True), registry, batch(1, 0))

    assert registry.calls == []
    assert info.value.status == 503
    assert info.value.headers == {"Retry-After": "5"}
    assert info.value.cause is not None and "connection refused" in info.value.cause


def test_registry_failure_is_registry_unavailable_with_a_safe_cause() -> None:
    with pytest.raises(
        RegistryUnavailableError,
        match="the registry is unavailable; nothing was accepted, retry the batch",
    ) as info:
        do_land(FakeStore(), FakeRegistry(fail=True), batch(1, 1))

    assert info.value.code == "registry_unavailable"
    assert info.value.cause == "ConnectionRefusedError"


# --- the API's split: prepare on the loop, PUT async, register ----------------------------------


def test_the_async_path_lands_what_land_does() -> None:
    sync_store, async_store = FakeStore(), FakeStore()
    do_land(sync_store, FakeRegistry(), batch(2, 1))

    prepared = prepare(batch(2, 1), batch_id=BATCH_ID, source="mobile", received_at=RECEIVED_AT)
    asyncio.run(put_objects_async(async_store, prepared))  # type: ignore[arg-type]
    registry = FakeRegistry()
    landing = register(registry, prepared)  # type: ignore[arg-type]

    assert async_store.objects == sync_store.objects  # the same bytes under the same keys
    assert landing == prepared.landing and landing.object_key in async_store.objects
    [(obj, records)] = registry.calls
    assert obj == prepared.raw_object and len(records) == 1


def test_the_async_put_keeps_an_earlier_attempts_objects_and_reports_a_failure() -> None:
    prepared = prepare(batch(1, 1), batch_id=BATCH_ID, source="mobile", received_at=RECEIVED_AT)
    store = FakeStore()
    asyncio.run(put_objects_async(store, prepared, if_absent=True))  # type: ignore[arg-type]
    written = dict(store.objects)
    asyncio.run(put_objects_async(store, prepared, if_absent=True))  # type: ignore[arg-type]
    assert store.objects == written and len(written) == 2

    with pytest.raises(StorageUnavailableError) as info:
        asyncio.run(put_objects_async(FakeStore(fail=True), prepared))  # type: ignore[arg-type]
    assert info.value.cause is not None and "connection refused" in info.value.cause


class FakeRegistrar:
    """`AsyncRegistrar`'s shape: awaited register, `first` awaited inside it."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[RawObject | None, list[QuarantineRecord]]] = []

    async def register(
        self, obj: RawObject | None, records: list[QuarantineRecord], *, first: Any = None
    ) -> None:
        if self.fail:
            raise RegistryError("registry unavailable: boom") from ConnectionRefusedError()
        if first is not None:
            await first("conn")
        self.calls.append((obj, list(records)))


def test_the_awaited_registration_registers_what_the_blocking_one_does() -> None:
    prepared = prepare(batch(2, 1), batch_id=BATCH_ID, source="mobile", received_at=RECEIVED_AT)
    blocking, awaited = FakeRegistry(), FakeRegistrar()
    firsts: list[Any] = []

    async def first(conn: Any) -> None:
        firsts.append(conn)

    register(blocking, prepared)  # type: ignore[arg-type]
    landing = asyncio.run(register_async(awaited, prepared, first=first))  # type: ignore[arg-type]

    assert landing == prepared.landing
    assert awaited.calls == blocking.calls and len(awaited.calls) == 1
    assert firsts == ["conn"]  # the idempotency answer is stored inside the registration


def test_the_awaited_registration_fails_as_registry_unavailable() -> None:
    prepared = prepare(batch(1, 0), batch_id=BATCH_ID, source="mobile", received_at=RECEIVED_AT)

    with pytest.raises(RegistryUnavailableError) as info:
        asyncio.run(register_async(FakeRegistrar(fail=True), prepared))  # type: ignore[arg-type]

    assert info.value.cause == "ConnectionRefusedError"


# --- a group: several batches in one object and one registration --------------------------------

OTHER_ID = UUID("1f3e5a7c-9b2d-4e6f-8a0b-c1d2e3f4a5b6")
LATER = datetime(2024, 5, 1, 7, 59, 59, tzinfo=UTC)


def test_a_group_is_one_object_whose_lines_keep_their_own_batch() -> None:
    first, second = batch(2, 1), batch(3, 0)
    second.schema_version, second.sent_at = "mobile/2", None

    prepared = prepare_group(
        [Part(first, BATCH_ID, RECEIVED_AT), Part(second, OTHER_ID, LATER)], source="mobile"
    )

    key = raw_key("mobile", RECEIVED_AT, BATCH_ID)  # named by the first batch
    q_key = quarantine_key("mobile", RECEIVED_AT, BATCH_ID)
    assert [k for k, _ in prepared.objects] == [key, q_key]
    lines = [orjson.loads(line) for line in gzip.decompress(prepared.objects[0][1]).splitlines()]
    assert [line["line_no"] for line in lines] == [0, 1, 2, 3, 4]
    assert {line["object_key"] for line in lines} == {key}
    assert [line["batch_id"] for line in lines] == [str(BATCH_ID)] * 2 + [str(OTHER_ID)] * 3
    assert [line["schema_version"] for line in lines] == ["mobile/1"] * 2 + ["mobile/2"] * 3
    assert [line["received_at"] for line in lines[1:3]] == [
        "2024-05-01T07:05:09.123456Z",
        "2024-05-01T07:59:59Z",
    ]
    assert [line["sent_at"] for line in lines[1:3]] == ["2024-05-01T07:05:00Z", None]
    assert prepared.raw_object == RawObject(
        key, "mobile", BATCH_ID, len(prepared.objects[0][1]), 5, RECEIVED_AT
    )
    assert [(r.batch_id, r.event_index) for r in prepared.records] == [(BATCH_ID, 0)]
    assert prepared.landings == (
        Landing(BATCH_ID, key, q_key, 2, 1),
        Landing(OTHER_ID, key, None, 3, 0),  # none of its events is in the quarantine object
    )


def test_a_group_without_accepted_events_has_only_a_quarantine_object() -> None:
    prepared = prepare_group(
        [Part(batch(0, 1), BATCH_ID, RECEIVED_AT), Part(batch(0, 2), OTHER_ID, LATER)],
        source="mobile",
    )

    assert prepared.raw_object is None
    assert [k for k, _ in prepared.objects] == [quarantine_key("mobile", RECEIVED_AT, BATCH_ID)]
    lines = gzip.decompress(prepared.objects[0][1]).splitlines()
    assert [orjson.loads(line)["batch_id"] for line in lines] == [str(BATCH_ID)] + [
        str(OTHER_ID)
    ] * 2
    assert [landing.object_key for landing in prepared.landings] == [None, None]
