"""`Idempotency-Key`: a retried ingest request lands nothing new and gets the original answer.

Per source, a key names one batch for good:

- `batch_id = uuid5(NAMESPACE, "<source>:<key>")`, so the raw and quarantine object keys of the
  batch are fixed by the key (and by the first attempt's `received_at`, kept in the row).
- Before anything is written, the request *claims* `registry.idempotency` (source, key): a row
  `in_progress` with a lease of `LEASE_S` seconds and the SHA-256 of the body (after gzip).
- Objects are PUT with `If-None-Match: *`. The bytes are a function of the body, the source,
  the batch id and `received_at`, so an object found already written was written by an earlier
  attempt of the same request (same settings assumed) and is used as it is.
- The answer (status and JSON body) is stored in the same transaction that registers the batch,
  fenced by the claim's attempt number: a completed row always means a registered batch.

A later request with the same key and the same body gets the stored answer again (header
`Idempotent-Replayed: true`); with a different body, 422 `idempotency_key_reused`; while the
first attempt is still in flight, 409 `idempotency_key_in_progress` with `Retry-After: 1`. An
attempt that died (crash, lost connection) is taken over once its lease has run out; one that
failed (503) gives its lease up at once. Answers given before the claim (400, 401, 413, 429,
...) store nothing: fix the request and reuse the key. After a claim the key stays bound to
its body, since objects of a failed attempt may already be at the batch's keys.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

import psycopg
from psycopg.types.json import Jsonb

from ingest_api.errors import (
    IdempotencyKeyInProgressError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
    RegistryUnavailableError,
)
from lake_config.errors import RegistryError
from lake_config.registry import Registry

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
NAMESPACE = UUID("5b1d2c3e-7a0f-4e58-9d61-2f7c0a9e4b10")  # fixed forever: batch ids depend on it
LEASE_S = 60  # longer than any landing can take (S3 and registry time out well before)
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_CHARS}}}")  # visible ASCII, as HTTP tokens are


@dataclass(frozen=True)
class Claim:
    """This request owns (source, key) for `attempt`; land under `batch_id` at `received_at`."""

    source: str
    key: str
    batch_id: UUID
    received_at: datetime
    attempt: int


@dataclass(frozen=True)
class StoredAnswer:
    """The answer a completed request with this key got."""

    status_code: int
    body: dict[str, Any]


class ClaimLostError(Exception):
    """The claim's lease ran out and another attempt took it over (registration rolled back)."""


def parse_key(header: str | None) -> str | None:
    """The Idempotency-Key header's value (None when absent); 400 unless 1-255 visible ASCII."""
    if header is None:
        return None
    if not _KEY.fullmatch(header):
        raise InvalidIdempotencyKeyError(
            f"Idempotency-Key must be 1-{MAX_KEY_CHARS} visible ASCII characters"
        )
    return header


def batch_id_for(source: str, key: str) -> UUID:
    """The batch id an Idempotency-Key stands for, per source."""
    return uuid5(NAMESPACE, f"{source}:{key}")


def fingerprint(body: bytes) -> str:
    """SHA-256 hex of the decoded body: a retry must send the same bytes (before any gzip)."""
    return hashlib.sha256(body).hexdigest()


def claim(
    registry: Registry,
    *,
    source: str,
    key: str,
    body_sha256: str,
    received_at: datetime,
    lease_s: int = LEASE_S,
) -> Claim | StoredAnswer:
    """Claim (source, key) for this request, or return the answer stored for it.

    Raises IdempotencyKeyReusedError (different body), IdempotencyKeyInProgressError (another
    attempt holds a live lease) or RegistryUnavailableError.
    """
    batch_id = batch_id_for(source, key)
    try:
        with registry.connection() as conn, conn.transaction():
            row = conn.execute(
                """
                insert into registry.idempotency
                    (source, idempotency_key, batch_id, fingerprint, received_at, locked_until)
                values (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))
                on conflict (source, idempotency_key) do nothing
                returning received_at, attempt
                """,
                (source, key, batch_id, body_sha256, received_at, lease_s),
            ).fetchone()
            if row is not None:
                return Claim(source, key, batch_id, _utc(row["received_at"]), row["attempt"])
            row = conn.execute(
                """
                select fingerprint, status, status_code, response, received_at,
                       locked_until > now() as locked
                from registry.idempotency
                where source = %s and idempotency_key = %s
                for update
                """,
                (source, key),
            ).fetchone()
            assert row is not None  # the insert found it, and rows are never deleted
            if row["fingerprint"] != body_sha256:
                raise IdempotencyKeyReusedError(
                    "Idempotency-Key was already used with a different body; use a new key"
                )
            if row["status"] == "completed":
                return StoredAnswer(row["status_code"], row["response"])
            if row["locked"]:
                raise IdempotencyKeyInProgressError(
                    "a request with this Idempotency-Key is in progress; retry shortly"
                )
            taken = conn.execute(
                """
                update registry.idempotency
                set attempt = attempt + 1, locked_until = now() + make_interval(secs => %s)
                where source = %s and idempotency_key = %s
                returning attempt
                """,
                (lease_s, source, key),
            ).fetchone()
            assert taken is not None  # the row is locked by this transaction
            return Claim(source, key, batch_id, _utc(row["received_at"]), taken["attempt"])
    except RegistryError as exc:
        raise RegistryUnavailableError(
            "the registry is unavailable; nothing was accepted, retry the batch",
            cause=type(exc.__cause__ or exc).__name__,
        ) from exc


def _utc(value: datetime) -> datetime:
    # psycopg returns timestamptz in the session's time zone; object keys and lines use UTC.
    return value.astimezone(UTC)


def complete(
    conn: psycopg.Connection[Any], owned: Claim, status_code: int, body: dict[str, Any]
) -> None:
    """Store the answer, inside the registration's transaction; ClaimLostError if taken over."""
    cur = conn.execute(
        """
        update registry.idempotency
        set status = 'completed', status_code = %s, response = %s, completed_at = now(),
            locked_until = null
        where source = %s and idempotency_key = %s and attempt = %s and status = 'in_progress'
        """,
        (status_code, Jsonb(body), owned.source, owned.key, owned.attempt),
    )
    if cur.rowcount != 1:
        raise ClaimLostError(f"idempotency claim attempt {owned.attempt} was taken over")


def release(registry: Registry, owned: Claim) -> None:
    """End an unfinished claim's lease after a failed landing, so a retry need not wait for it.

    The row stays, with its body fingerprint and `received_at`: objects of the failed attempt
    may already be in the bucket at the batch's keys, so the key stays bound to this body.
    Best effort: if the registry is down too, the lease runs out on its own.
    """
    try:
        with registry.connection() as conn, conn.transaction():
            conn.execute(
                """
                update registry.idempotency
                set locked_until = now()
                where source = %s and idempotency_key = %s and attempt = %s
                  and status = 'in_progress'
                """,
                (owned.source, owned.key, owned.attempt),
            )
    except RegistryError:
        pass
