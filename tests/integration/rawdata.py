"""Raw objects for tests that start below the API: written by the API's own landing code.

Tests that need input the API would refuse (malformed lines, out-of-range values, exact keys
and bytes) land it here, through `ingest_api.landing`'s writer, so there is one writer of the
raw-object contract (docs/CONTRACTS.md) and tests cannot drift from it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from ingest_api.landing import compress, raw_key, raw_lines
from lake_config.registry import RawObject, Registry
from lake_config.storage import ObjectStore

SCHEMA_VERSION = "mobile/1"


def raw_object(
    events: Sequence[dict[str, Any]],
    *,
    received_at: datetime,
    batch_id: uuid.UUID | None = None,
    source: str = "mobile",
    sent_at: datetime | None = None,
    extra_lines: Sequence[str] = (),
    schema_version: str = SCHEMA_VERSION,
) -> tuple[str, uuid.UUID, bytes]:
    """Key, batch id and gzip body of one raw object; `extra_lines` are appended verbatim."""
    batch_id = batch_id or uuid.uuid4()
    key = raw_key(source, received_at, batch_id)
    body = raw_lines(
        [orjson.dumps(e) for e in events],
        object_key=key,
        batch_id=batch_id,
        source=source,
        schema_version=schema_version,
        received_at=received_at,
        sent_at=sent_at,
    )
    body += "".join(f"{line}\n" for line in extra_lines).encode()
    return key, batch_id, compress(body)


def land(
    store: ObjectStore,
    registry: Registry,
    events: Sequence[dict[str, Any]],
    *,
    received_at: datetime,
    source: str = "mobile",
    **options: Any,
) -> str:
    """PUT one raw object and register it, as the API does; returns its key."""
    key, batch_id, body = raw_object(events, received_at=received_at, source=source, **options)
    store.put(key, body)
    registry.register(RawObject(key, source, batch_id, len(body), len(events), received_at))
    return key
