"""`Idempotency-Key`: a retried ingest request lands nothing new and gets the original answer.

Per source, a key names one batch until its record expires:

- `batch_id = uuid5(NAMESPACE, "<source>:<key>:<received_at>")` with the first attempt's
  `received_at`, kept in the row, so the raw and quarantine object keys of the batch are fixed
  by the key for every attempt, and a key used again after its record expired names a new
  batch (whose quarantine rows cannot collide with the old batch's).
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

Records expire `idempotency_ttl_hours` after they were created: from then on `claim` treats
the key as new (a retry that late lands again, as a new batch), and `prune` deletes expired
records (`tlake idempotency prune`, run daily by the tlake_maintenance DAG). A record whose
lease is still live is never expired or pruned under its holder.
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


def batch_id_for(source: str, key: str, received_at: datetime) -> UUID:
    """The batch id an Idempotency-Key stands for, per source, in the record whose first
    attempt was received at `received_at`."""
    return uuid5(NAMESPACE, f"{source}:{key}:{received_at.astimezone(UTC).isoformat()}")


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
    ttl_hours: int | None = None,
) -> Claim | StoredAnswer:
    """Claim (source, key) for this request, or return the answer stored for it.

    A record created more than `ttl_hours` ago (None: never) whose lease is not live counts as
    absent: it is replaced by a new one, for a new batch. Raises IdempotencyKeyReusedError
    (different body), IdempotencyKeyInProgressError (another attempt holds a live lease) or
    RegistryUnavailableError.
    """
    try:
        with registry.connection() as conn, conn.transaction():
            for _ in range(_CLAIM_TRIES):
                row = conn.execute(
                    """
                    insert into registry.idempotency
                        (source, idempotency_key, batch_id, fingerprint, received_at,
                         locked_until)
                    values (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))
                    on conflict (source, idempotency_key) do nothing
                    returning batch_id, received_at, attempt
                    """,
                    (
                        source,
                        key,
                        batch_id_for(source, key, received_at),
                        body_sha256,
                        received_at,
                        lease_s,
                    ),
                ).fetchone()
                if row is not None:
                    return Claim(
                        source, key, row["batch_id"], _utc(row["received_at"]), row["attempt"]
                    )
                row = conn.execute(
                    """
                    select batch_id, fingerprint, status, status_code, response, received_at,
                           locked_until > now() as locked,
                           %(ttl)s::integer is not null
                               and created_at < now() - make_interval(hours => %(ttl)s::integer)
                               as expired
                    from registry.idempotency
                    where source = %(source)s and idempotency_key = %(key)s
                    for update
                    """,
                    {"source": source, "key": key, "ttl": ttl_hours},
                ).fetchone()
                if row is None:
                    continue  # pruned since the insert saw it: claim it anew
                if row["expired"] and not row["locked"]:
                    conn.execute(
                        "delete from registry.idempotency"
                        " where source = %s and idempotency_key = %s",
                        (source, key),
                    )
                    continue
                return _existing(
                    conn, row, source=source, key=key, body_sha256=body_sha256, lease_s=lease_s
                )
    except RegistryError as exc:
        raise RegistryUnavailableError(
            "the registry is unavailable; nothing was accepted, retry the batch",
            cause=type(exc.__cause__ or exc).__name__,
        ) from exc
    # Expired and claimed anew by others, again and again within one request: let it settle.
    raise IdempotencyKeyInProgressError(
        "a request with this Idempotency-Key is in progress; retry shortly"
    )


_CLAIM_TRIES = 3


def _existing(
    conn: psycopg.Connection[Any],
    row: dict[str, Any],
    *,
    source: str,
    key: str,
    body_sha256: str,
    lease_s: int,
) -> Claim | StoredAnswer:
    """The answer for a live record (`row`, locked by this transaction), or its takeover."""
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
    return Claim(source, key, row["batch_id"], _utc(row["received_at"]), taken["attempt"])


def _utc(value: datetime) -> datetime:
    # psycopg returns timestamptz in the session's time zone; object keys and lines use UTC.
    return value.astimezone(UTC)


_COMPLETE = """
    update registry.idempotency
    set status = 'completed', status_code = %s, response = %s, completed_at = now(),
        locked_until = null
    where source = %s and idempotency_key = %s and attempt = %s and status = 'in_progress'
"""


def complete(
    conn: psycopg.Connection[Any], owned: Claim, status_code: int, body: dict[str, Any]
) -> None:
    """Store the answer, inside the registration's transaction; ClaimLostError if taken over."""
    cur = conn.execute(_COMPLETE, _complete_params(owned, status_code, body))
    if cur.rowcount != 1:
        raise ClaimLostError(f"idempotency claim attempt {owned.attempt} was taken over")


async def complete_async(
    conn: psycopg.AsyncConnection[Any], owned: Claim, status_code: int, body: dict[str, Any]
) -> None:
    """`complete` inside an `AsyncRegistrar.register` transaction."""
    cur = await conn.execute(_COMPLETE, _complete_params(owned, status_code, body))
    if cur.rowcount != 1:
        raise ClaimLostError(f"idempotency claim attempt {owned.attempt} was taken over")


def _complete_params(owned: Claim, status_code: int, body: dict[str, Any]) -> tuple[Any, ...]:
    return (status_code, Jsonb(body), owned.source, owned.key, owned.attempt)


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


def prune(registry: Registry, *, ttl_hours: int, batch_rows: int = 10_000) -> int:
    """Delete the records created more than `ttl_hours` ago, except one whose lease is live;
    return how many went. Deletes in transactions of at most `batch_rows` rows, so a large
    backlog never holds many row locks at once.

    Their keys may then be used again (`claim` already treats them as absent). Raises
    RegistryError.
    """
    deleted = 0
    while True:
        with registry.connection() as conn, conn.transaction():
            cur = conn.execute(
                """
                with expired as (
                    select source, idempotency_key
                    from registry.idempotency
                    where created_at < now() - make_interval(hours => %(ttl)s::integer)
                      and (locked_until is null or locked_until <= now())
                    limit %(rows)s
                    for update skip locked
                )
                delete from registry.idempotency as i
                using expired as e
                where i.source = e.source and i.idempotency_key = e.idempotency_key
                """,
                {"ttl": ttl_hours, "rows": batch_rows},
            )
            deleted += cur.rowcount
        if cur.rowcount < batch_rows:
            return deleted
