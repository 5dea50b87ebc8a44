"""Square the bucket with the registry, so a crash between a PUT and its registration loses nothing.

Three kinds of drift are repaired, and running it again changes nothing:

* an object under `raw/` with no registry row (the ingest API PUT it, then crashed or lost the
  registry before its INSERT) is read and registered `pending`: its line count, source and batch
  come from its lines and key. An object that is not gzip JSON Lines is registered `failed`, with
  `last_error` saying why, so it is visible instead of invisible;
* a `pending` row whose object is not in the bucket is marked `failed`, `last_error` saying so
  (confirmed with a HEAD first). Rows past `pending` are history and are left alone: their objects
  may have been expired on purpose;
* a quarantine object (`quarantine/.../<batch_id>.jsonl.gz`) whose batch has no
  `registry.quarantine` row is read back into rows, so events rejected by a landing that crashed
  before its registration still show in `tlake quarantine list` and can be replayed.

Objects younger than `min_age_s` are not adopted: the API may be between its PUT and its INSERT
right now. Adopting one anyway would be harmless (its INSERT does nothing on conflict), but the
client may then get a 503 and resend the batch, and silver would have to drop the duplicates.

Cost: one LIST of `prefix` (the whole raw area by default) and of `quarantine/` per call, one
registry lookup per 5,000 keys, and a GET per orphan. Narrow `prefix` (e.g.
`raw/source=mobile/dt=2026-11-23/`) when the lake grows large.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson

from lake_config.registry import QuarantineRecord, Registry
from lake_config.storage import ObjectInfo, ObjectStore

RAW_PREFIX = "raw/"
QUARANTINE_PREFIX = "quarantine/"
DEFAULT_MIN_AGE_S = 300
MISSING_ERROR = "object missing from the bucket (found by reconcile)"
_LOOKUP_CHUNK = 5_000
_KEY = re.compile(r"(?:^|/)source=(?P<source>[^/]+)/.*?(?P<stem>[^/]+?)(?:\.jsonl\.gz)?$")


@dataclass(frozen=True)
class Adoption:
    """A registry row for an unregistered object; `error` set means it is registered failed."""

    object_key: str
    source: str
    batch_id: UUID
    size_bytes: int
    event_count: int
    received_at: datetime
    error: str | None = None


@dataclass
class ReconcileResult:
    """What one reconcile pass changed (all empty on a second pass over the same state)."""

    adopted: list[str] = field(default_factory=list)
    adopted_failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantine_adopted: list[str] = field(default_factory=list)
    skipped_young: int = 0

    @property
    def changed(self) -> int:
        return (
            len(self.adopted)
            + len(self.adopted_failed)
            + len(self.missing)
            + len(self.quarantine_adopted)
        )

    def render(self) -> str:
        return (
            f"reconcile: adopted {len(self.adopted)} unregistered object(s) as pending, "
            f"{len(self.adopted_failed)} unreadable as failed; marked {len(self.missing)} "
            f"missing object(s) failed; registered {len(self.quarantine_adopted)} unregistered "
            f"quarantine object(s); {self.skipped_young} too recent to judge"
        )


def adoption(info: ObjectInfo, body: bytes, *, now: datetime) -> Adoption:
    """The registry row for an unregistered raw object, from its key and its bytes.

    Source and batch come from the key (`raw/source=<s>/.../<batch_id>.jsonl.gz`), else from the
    first line, else `unknown` and a batch id derived from the key. `event_count` is the number
    of non-empty lines, which is what bronze reads and checks; `received_at` is the first line's,
    else the object's last-modified time.
    """
    match = _KEY.search(info.key)
    source = match.group("source") if match else None
    batch_id = _uuid(match.group("stem")) if match else None
    try:
        lines = [line for line in gzip.decompress(body).splitlines() if line.strip()]
    except (OSError, EOFError, zlib.error) as exc:
        return _failed(info, source, batch_id, now, f"not a gzip object ({type(exc).__name__})")
    first = _first_object(lines)
    source = source or _str(first.get("source")) or "unknown"
    batch_id = batch_id or _uuid(_str(first.get("batch_id"))) or uuid5(NAMESPACE_URL, info.key)
    received_at = _timestamp(first.get("received_at")) or info.last_modified or now
    return Adoption(info.key, source, batch_id, info.size_bytes, len(lines), received_at)


def unregistered(
    listed: Iterable[ObjectInfo], registered: set[str], *, now: datetime, min_age_s: int
) -> tuple[list[ObjectInfo], int]:
    """Listed objects with no registry row and old enough to judge; and how many were too young."""
    cutoff = now - timedelta(seconds=min_age_s)
    orphans, young = [], 0
    for info in listed:
        if info.key in registered:
            continue
        if min_age_s > 0 and (info.last_modified is None or info.last_modified > cutoff):
            young += 1
            continue
        orphans.append(info)
    return orphans, young


def reconcile(
    store: ObjectStore,
    registry: Registry,
    *,
    prefix: str = RAW_PREFIX,
    quarantine_prefix: str | None = QUARANTINE_PREFIX,
    min_age_s: int = DEFAULT_MIN_AGE_S,
    now: datetime | None = None,
) -> ReconcileResult:
    """Adopt unregistered objects under `prefix` and fail pending rows whose object is gone;
    then register quarantine objects under `quarantine_prefix` (None: skip) that have no rows.

    Pending rows are read BEFORE the bucket is listed: an object is always PUT before its row is
    inserted, so a row seen first has its object in the listing that follows, and a row inserted
    during the pass is simply not judged. Raises StorageError or RegistryError.
    """
    now = now or datetime.now(UTC)
    pending = _pending_keys(registry, prefix)
    listed = list(store.list(prefix))
    in_bucket = {info.key for info in listed}
    result = ReconcileResult()

    registered = _registered(registry, [info.key for info in listed])
    orphans, result.skipped_young = unregistered(listed, registered, now=now, min_age_s=min_age_s)
    adoptions = [adoption(info, store.get(info.key), now=now) for info in orphans]
    for adopted in _register(registry, adoptions):
        (result.adopted_failed if adopted.error else result.adopted).append(adopted.object_key)

    gone = [key for key in pending if key not in in_bucket and not store.exists(key)]
    result.missing = _mark_missing(registry, gone)

    if quarantine_prefix is not None:
        # Only objects named like the API's (`<batch_id>.jsonl.gz`): the name says which batch
        # the rows would belong to, so registered ones are skipped without a GET.
        q_listed = [i for i in store.list(quarantine_prefix) if _uuid(_stem(i.key))]
        q_batches = _quarantined_batches(registry, [_uuid(_stem(i.key)) for i in q_listed])
        q_orphans, q_young = unregistered(
            [i for i in q_listed if _uuid(_stem(i.key)) not in q_batches],
            set(),
            now=now,
            min_age_s=min_age_s,
        )
        result.skipped_young += q_young
        for info in q_orphans:
            records = quarantine_rows(store.get(info.key))
            if records:
                registry.register(None, records)
                result.quarantine_adopted.append(info.key)
    return result


def quarantine_rows(body: bytes) -> list[QuarantineRecord]:
    """The registry rows of a quarantine object (docs: ingest_api/README.md, "What is written").

    Lines that cannot be read are skipped: the object itself stays in the bucket, and a row
    needs at least its batch, index, source, reasons and time.
    """
    try:
        lines = gzip.decompress(body).splitlines()
    except (OSError, EOFError, zlib.error):
        return []
    records = []
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(doc, dict):
            continue
        batch_id = _uuid(_str(doc.get("batch_id")))
        received_at = _timestamp(doc.get("received_at"))
        index, source = doc.get("event_index"), _str(doc.get("source"))
        if batch_id is None or received_at is None or not isinstance(index, int) or not source:
            continue
        reasons = doc.get("reasons")
        payload, payload_text = doc.get("payload"), None
        if payload is not None and b"\\u0000" in line:  # jsonb refuses U+0000
            payload, payload_text = None, orjson.dumps(doc["payload"]).decode()
        records.append(
            QuarantineRecord(
                batch_id=batch_id,
                source=source,
                event_index=index,
                event_id=_str(doc.get("event_id")),
                component=_str(doc.get("component")) or "unknown",
                reasons=reasons if isinstance(reasons, list) else [],
                payload=payload,
                payload_text=payload_text,
                received_at=received_at,
            )
        )
    return records


# --- registry I/O -----------------------------------------------------------------------------


def _pending_keys(registry: Registry, prefix: str) -> list[str]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select object_key from registry.raw_objects "
            "where status = 'pending' and starts_with(object_key, %s) order by object_id",
            (prefix,),
        ).fetchall()
    return [r["object_key"] for r in rows]


def _quarantined_batches(registry: Registry, batch_ids: Sequence[UUID | None]) -> set[UUID]:
    wanted = [b for b in batch_ids if b is not None]
    found: set[UUID] = set()
    with registry.connection() as conn:
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            rows = conn.execute(
                "select distinct batch_id from registry.quarantine where batch_id = any(%s)",
                (wanted[start : start + _LOOKUP_CHUNK],),
            ).fetchall()
            found.update(r["batch_id"] for r in rows)
    return found


def _registered(registry: Registry, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    with registry.connection() as conn:
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            rows = conn.execute(
                "select object_key from registry.raw_objects where object_key = any(%s)",
                (list(keys[start : start + _LOOKUP_CHUNK]),),
            ).fetchall()
            found.update(r["object_key"] for r in rows)
    return found


def _register(registry: Registry, adoptions: Sequence[Adoption]) -> list[Adoption]:
    """Insert the rows; returns those actually inserted (a concurrent INSERT wins quietly)."""
    inserted = []
    with registry.connection() as conn, conn.transaction():
        for a in adoptions:
            cur = conn.execute(
                """
                insert into registry.raw_objects
                    (object_key, source, batch_id, size_bytes, event_count, received_at,
                     status, last_error)
                values (%s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (object_key) do nothing
                """,
                (
                    a.object_key,
                    a.source,
                    a.batch_id,
                    a.size_bytes,
                    a.event_count,
                    a.received_at,
                    "failed" if a.error else "pending",
                    a.error,
                ),
            )
            if cur.rowcount == 1:
                inserted.append(a)
    return inserted


def _mark_missing(registry: Registry, keys: Sequence[str]) -> list[str]:
    if not keys:
        return []
    with registry.connection() as conn, conn.transaction():
        rows = conn.execute(
            """
            update registry.raw_objects
            set status = 'failed', last_error = %s, lease_expires_at = null
            where object_key = any(%s) and status = 'pending'
            returning object_key
            """,
            (MISSING_ERROR, list(keys)),
        ).fetchall()
    return sorted(r["object_key"] for r in rows)


# --- parsing helpers --------------------------------------------------------------------------


def _failed(
    info: ObjectInfo, source: str | None, batch_id: UUID | None, now: datetime, why: str
) -> Adoption:
    return Adoption(
        info.key,
        source or "unknown",
        batch_id or uuid5(NAMESPACE_URL, info.key),
        info.size_bytes,
        0,
        info.last_modified or now,
        error=f"adopted by reconcile, unreadable: {why}",
    )


def _first_object(lines: Sequence[bytes]) -> dict[str, Any]:
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            return doc
    return {}


def _stem(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".jsonl.gz")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
