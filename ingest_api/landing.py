"""Landing a validated batch: gzip JSON Lines objects in the bucket, then one registry commit.

Order is what makes a 202 safe to trust and a retry safe to send:

1. PUT the raw object (accepted events) and the quarantine object (rejected events);
2. register the raw object and the quarantine rows in ONE registry transaction;
3. only then does the route answer 202 (or 422 when nothing was accepted).

If a PUT or the registration fails, the client (every client of a group) gets 503 and nothing
is acknowledged. An object PUT before a failed registration stays in the bucket unregistered
until `tlake reconcile` adopts it; the retried batch (a new batch_id) then lands its events a
second time, and silver keeps each event_id once.

Object formats are those of docs/CONTRACTS.md; `prepare_group` writes several batches of one
source and hour as one object of each kind and one registration (`ingest_api.groupcommit`), and
a group of one is exactly a batch landed alone. `land` does it all, blocking (the MQTT bridge,
quarantine replay). The API takes the same three steps apart so that no thread runs its CPU
work and nothing blocks its loop: `prepare` (serialize and gzip, on the event loop),
`put_objects_async` (the PUTs, on obstore's runtime), then `register_async` (psycopg's async
pool). Measured with bench/ingest.py, serializing and compressing in a threadpool thread cost a
worker more CPU than the rest of the request's framework work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from isal import igzip

from ingest_api.batches import Rejection, ValidatedBatch
from ingest_api.errors import RegistryUnavailableError, StorageUnavailableError
from lake_config.errors import ObjectExistsError, RegistryError, StorageError
from lake_config.registry import AsyncRegistrar, QuarantineRecord, RawObject, Registry
from lake_config.storage import ObjectStore

COMPONENT = "ingest_api"
# ISA-L's fastest level that still searches for matches: on a 100-event raw object (83 KB of
# lines) 44 us and 6,958 bytes, where zlib's level 5 took 402 us for 6,652 bytes (level 0 of
# ISA-L: 33 us, 9,883 bytes). The gzip is standard: every reader inflates it.
GZIP_LEVEL = 1
_JSON = orjson.OPT_UTC_Z
_NUL_ESCAPE = b"\\u0000"  # PostgreSQL jsonb cannot hold U+0000


@dataclass(frozen=True)
class Landing:
    """Where a batch went: its raw object (None when nothing was accepted) and quarantine."""

    batch_id: UUID
    object_key: str | None
    quarantine_key: str | None
    accepted: int
    rejected: int


@dataclass(frozen=True)
class Part:
    """One batch of a group landed together (`ingest_api.groupcommit`)."""

    batch: ValidatedBatch
    batch_id: UUID
    received_at: datetime


@dataclass(frozen=True)
class Prepared:
    """Batches ready to write: each object's key and gzip bytes, and their registry rows."""

    landings: tuple[Landing, ...]  # one per batch, in order
    objects: tuple[tuple[str, bytes], ...]  # the raw object first, then the quarantine object
    raw_object: RawObject | None
    records: list[QuarantineRecord]

    @property
    def landing(self) -> Landing:
        """The first batch's landing (the only one unless prepared as a group)."""
        return self.landings[0]


def raw_key(source: str, received_at: datetime, batch_id: UUID) -> str:
    """`raw/source=<source>/dt=<YYYY-MM-DD>/hour=<HH>/<batch_id>.jsonl.gz` (UTC received_at)."""
    return (
        f"raw/source={source}/dt={received_at:%Y-%m-%d}/hour={received_at:%H}/{batch_id}.jsonl.gz"
    )


def quarantine_key(source: str, received_at: datetime, batch_id: UUID) -> str:
    """`quarantine/source=<source>/dt=<YYYY-MM-DD>/<batch_id>.jsonl.gz` (UTC received_at)."""
    return f"quarantine/source={source}/dt={received_at:%Y-%m-%d}/{batch_id}.jsonl.gz"


def raw_lines(
    events: Sequence[bytes],
    *,
    object_key: str,
    batch_id: UUID,
    source: str,
    schema_version: str,
    received_at: datetime,
    sent_at: datetime | None,
    first_line_no: int = 0,
) -> bytes:
    """JSON Lines of the raw object: one line per accepted event (given as its JSON), each line
    ending in a newline, numbered from `first_line_no`."""
    batch = str(batch_id)
    return b"".join(
        orjson.dumps(
            {
                "object_key": object_key,
                "line_no": line_no,
                "batch_id": batch,
                "source": source,
                "schema_version": schema_version,
                "received_at": received_at,
                "sent_at": sent_at,
                "event": orjson.Fragment(event),
            },
            option=_JSON | orjson.OPT_APPEND_NEWLINE,
        )
        for line_no, event in enumerate(events, first_line_no)
    )


def quarantine_lines(
    rejected: Sequence[Rejection],
    *,
    batch_id: UUID,
    source: str,
    received_at: datetime,
    component: str = COMPONENT,
) -> bytes:
    """JSON Lines of the quarantine object: one line per rejected event, payload tokenized."""
    batch = str(batch_id)
    return b"".join(
        orjson.dumps(
            {
                "batch_id": batch,
                "event_index": r.index,
                "event_id": r.event_id,
                "component": component,
                "source": source,
                "received_at": received_at,
                "reasons": r.reasons,
                "payload": orjson.Fragment(r.payload_json),
            },
            option=_JSON | orjson.OPT_APPEND_NEWLINE,
        )
        for r in rejected
    )


def quarantine_records(
    rejected: Sequence[Rejection],
    *,
    batch_id: UUID,
    source: str,
    received_at: datetime,
    component: str = COMPONENT,
) -> list[QuarantineRecord]:
    """Registry rows for the rejected events.

    A payload holding U+0000 (which jsonb refuses) is stored as JSON text in `payload_text`
    instead of `payload`, so one odd event can never make the whole batch fail to register.
    """
    records = []
    for r in rejected:
        payload, payload_text = r.payload, None
        if _NUL_ESCAPE in r.payload_json:
            payload, payload_text = None, r.payload_json.decode()
        records.append(
            QuarantineRecord(
                batch_id=batch_id,
                source=source,
                event_index=r.index,
                event_id=r.event_id,
                component=component,
                reasons=r.reasons,
                payload=payload,
                payload_text=payload_text,
                received_at=received_at,
            )
        )
    return records


def compress(data: bytes) -> bytes:
    """gzip (ISA-L) with a zero mtime, so the same lines give the same bytes on the same build
    and CPU class (ISA-L picks its code for the CPU it runs on; the inflated lines are always
    the same)."""
    return igzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def land(
    store: ObjectStore,
    registry: Registry,
    batch: ValidatedBatch,
    *,
    batch_id: UUID,
    source: str,
    received_at: datetime,
    if_absent: bool = False,
    first: Callable[[psycopg.Connection[Any]], None] | None = None,
    component: str = COMPONENT,
) -> Landing:
    """PUT the batch's objects, then register them in one transaction (see module docstring).

    With `if_absent` (an idempotent request, `ingest_api.idempotency`), objects are PUT with
    `If-None-Match: *` and one found already written is taken as an earlier attempt's identical
    bytes. `first` runs at the start of the registration transaction (storing the answer).
    `component` names the edge that rejected the batch's invalid events in the quarantine.

    Raises StorageUnavailableError or RegistryUnavailableError; nothing is acknowledged then.
    """
    prepared = prepare(
        batch, batch_id=batch_id, source=source, received_at=received_at, component=component
    )
    put_objects(store, prepared, if_absent=if_absent)
    return register(registry, prepared, first=first)


def prepare(
    batch: ValidatedBatch,
    *,
    batch_id: UUID,
    source: str,
    received_at: datetime,
    component: str = COMPONENT,
) -> Prepared:
    """The batch's objects (serialized, gzipped) and registry rows: CPU work, no I/O."""
    return prepare_group([Part(batch, batch_id, received_at)], source=source, component=component)


def prepare_group(parts: Sequence[Part], *, source: str, component: str = COMPONENT) -> Prepared:
    """Several batches of one source and UTC hour as one raw object and one quarantine object.

    The objects are named by the first batch (`raw_key`), so a group of one is exactly the
    batch's own objects; every line keeps its own batch's id, times and schema version, and
    `line_no` counts on across the batches. `Prepared.landings` has one `Landing` per part, in
    order: the group's object keys where the batch has events in them. The registry row carries
    the first batch's id and received_at.
    """
    first = parts[0]
    object_key = raw_key(source, first.received_at, first.batch_id)
    q_key = quarantine_key(source, first.received_at, first.batch_id)
    lines: list[bytes] = []
    q_lines: list[bytes] = []
    records: list[QuarantineRecord] = []
    landings: list[Landing] = []
    accepted = 0
    for part in parts:
        batch = part.batch
        if batch.accepted:
            lines.append(
                raw_lines(
                    batch.accepted,
                    object_key=object_key,
                    batch_id=part.batch_id,
                    source=source,
                    schema_version=batch.schema_version,
                    received_at=part.received_at,
                    sent_at=batch.sent_at,
                    first_line_no=accepted,
                )
            )
            accepted += len(batch.accepted)
        if batch.rejected:
            q_lines.append(
                quarantine_lines(
                    batch.rejected,
                    batch_id=part.batch_id,
                    source=source,
                    received_at=part.received_at,
                    component=component,
                )
            )
            records += quarantine_records(
                batch.rejected,
                batch_id=part.batch_id,
                source=source,
                received_at=part.received_at,
                component=component,
            )
        landings.append(
            Landing(
                part.batch_id,
                object_key if batch.accepted else None,
                q_key if batch.rejected else None,
                len(batch.accepted),
                len(batch.rejected),
            )
        )
    objects: list[tuple[str, bytes]] = []
    raw_object = None
    if lines:
        body = compress(b"".join(lines))
        objects.append((object_key, body))
        raw_object = RawObject(
            object_key=object_key,
            source=source,
            batch_id=first.batch_id,
            size_bytes=len(body),
            event_count=accepted,
            received_at=first.received_at,
        )
    if q_lines:
        objects.append((q_key, compress(b"".join(q_lines))))
    return Prepared(tuple(landings), tuple(objects), raw_object, records)


def put_objects(store: ObjectStore, prepared: Prepared, *, if_absent: bool = False) -> None:
    """PUT the prepared objects (StorageUnavailableError when one fails)."""
    for key, body in prepared.objects:
        with _storage_errors():
            store.put(key, body, if_absent=if_absent)


async def put_objects_async(
    store: ObjectStore, prepared: Prepared, *, if_absent: bool = False
) -> None:
    """`put_objects` on the event loop: both PUTs at once, no thread (a lone object is awaited
    as is: gathering one would cost a task and a turn of the loop)."""

    async def put(key: str, body: bytes) -> None:
        with _storage_errors():
            await store.put_async(key, body, if_absent=if_absent)

    objects = prepared.objects
    if len(objects) == 1:
        await put(*objects[0])
    else:
        await asyncio.gather(*(put(key, body) for key, body in objects))


def register(
    registry: Registry,
    prepared: Prepared,
    *,
    first: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> Landing:
    """Register the raw object and the quarantine rows in one transaction (blocking)."""
    with _registry_errors():
        registry.register(prepared.raw_object, prepared.records, first=first)
    return prepared.landing


async def register_async(
    registrar: AsyncRegistrar,
    prepared: Prepared,
    *,
    first: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
) -> Landing:
    """`register` on the event loop (the API's path): awaited, no thread."""
    with _registry_errors():
        await registrar.register(prepared.raw_object, prepared.records, first=first)
    return prepared.landing


@contextmanager
def _registry_errors() -> Iterator[None]:
    """A failed registration as RegistryUnavailableError (503: nothing was acknowledged)."""
    try:
        yield
    except RegistryError as exc:
        raise RegistryUnavailableError(
            "the registry is unavailable; nothing was accepted, retry the batch",
            cause=_cause(exc),
        ) from exc


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A failed PUT as StorageUnavailableError; an object already there (`if_absent`) as done."""
    try:
        yield
    except ObjectExistsError:
        pass  # an earlier attempt of the same idempotent request wrote these very bytes
    except StorageError as exc:
        raise StorageUnavailableError(
            "object storage is unavailable; nothing was accepted, retry the batch",
            cause=str(exc),  # names the key and the S3 error code, never body content
        ) from exc


def _cause(exc: RegistryError) -> str:
    # psycopg's text can quote a value (e.g. a constraint violation): log the class and SQLSTATE.
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    name = type(cause).__name__ if cause is not None else type(exc).__name__
    return f"{name} sqlstate={sqlstate}" if sqlstate else name
