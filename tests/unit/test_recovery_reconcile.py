"""The pure half of reconcile: what row an unregistered object gets, and which objects qualify."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from ingest_api.batches import Rejection
from ingest_api.landing import compress, quarantine_lines
from lake_config.storage import ObjectInfo
from recovery.reconcile import adoption, quarantine_rows, unregistered

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _body(lines: list[dict | str]) -> bytes:
    raw = b"".join(
        (line.encode() if isinstance(line, str) else orjson.dumps(line)) + b"\n" for line in lines
    )
    return gzip.compress(raw)


def test_an_api_object_is_adopted_from_its_key_and_lines() -> None:
    batch = uuid.uuid4()
    key = f"raw/source=mobile/dt=2026-11-23/hour=10/{batch}.jsonl.gz"
    line = {"batch_id": str(batch), "source": "mobile", "received_at": "2026-11-23T10:05:00Z"}
    body = _body([line, line, "not json at all"])

    a = adoption(ObjectInfo(key, len(body), NOW), body, now=NOW)

    assert (a.source, a.batch_id, a.event_count, a.size_bytes, a.error) == (
        "mobile",
        batch,
        3,  # every line counts: bronze reads and quarantines the bad one
        len(body),
        None,
    )
    assert a.received_at == datetime(2026, 11, 23, 10, 5, tzinfo=UTC)


def test_source_and_batch_fall_back_to_the_first_line_when_the_key_lacks_them() -> None:
    batch = uuid.uuid4()
    body = _body([{"batch_id": str(batch), "source": "fleet"}])
    modified = NOW - timedelta(hours=1)

    a = adoption(ObjectInfo("raw/odd-name.jsonl.gz", len(body), modified), body, now=NOW)

    assert (a.source, a.batch_id, a.event_count, a.received_at) == ("fleet", batch, 1, modified)


def test_an_object_that_is_not_gzip_is_adopted_as_failed_with_the_reason() -> None:
    key = "raw/source=mobile/dt=2026-11-23/hour=10/not-a-uuid.jsonl.gz"

    a = adoption(ObjectInfo(key, 5, None), b"plain", now=NOW)

    assert (a.source, a.event_count, a.received_at) == ("mobile", 0, NOW)
    assert a.batch_id == uuid.uuid5(uuid.NAMESPACE_URL, key)
    assert a.error == "adopted by reconcile, unreadable: not a gzip object (BadGzipFile)"


def test_only_unregistered_objects_old_enough_are_adopted() -> None:
    old, young = NOW - timedelta(minutes=10), NOW - timedelta(seconds=30)
    listed = [
        ObjectInfo("raw/a", 1, old),
        ObjectInfo("raw/b", 1, old),
        ObjectInfo("raw/c", 1, young),
        ObjectInfo("raw/d", 1, None),
    ]

    orphans, too_young = unregistered(listed, {"raw/a"}, now=NOW, min_age_s=300)
    assert ([o.key for o in orphans], too_young) == (["raw/b"], 2)

    orphans, too_young = unregistered(listed, {"raw/a"}, now=NOW, min_age_s=0)
    assert ([o.key for o in orphans], too_young) == (["raw/b", "raw/c", "raw/d"], 0)


def test_a_quarantine_object_reads_back_into_its_registry_rows() -> None:
    batch = uuid.uuid4()
    rejected = [
        Rejection(0, "e-0", [{"field": "battery", "message": "bad"}], {"a": 1}, b'{"a":1}'),
        Rejection(2, None, [{"field": "x", "message": "y"}], {"s": "\x00"}, b'{"s":"\\u0000"}'),
    ]
    body = compress(
        quarantine_lines(rejected, batch_id=batch, source="mobile", received_at=NOW) + b"not json\n"
    )

    records = quarantine_rows(body)

    assert [
        (r.batch_id, r.event_index, r.event_id, r.component, r.reasons, r.payload, r.payload_text)
        for r in records
    ] == [
        (batch, 0, "e-0", "ingest_api", [{"field": "battery", "message": "bad"}], {"a": 1}, None),
        (batch, 2, None, "ingest_api", [{"field": "x", "message": "y"}], None, '{"s":"\\u0000"}'),
    ]
    assert {r.received_at for r in records} == {NOW}
    assert quarantine_rows(b"not gzip") == []
