"""The PostgreSQL registry: raw objects and their processing state, API keys, quarantine, runs.

Claiming follows one protocol: a run takes `pending` objects (and `processing` objects whose lease
ran out) with `for update skip locked`, stamps them with its run id and a lease, processes exactly
those, and marks them `processed` only after every Delta commit of the run succeeded. Two runs at
once never take the same object; a crashed run's objects come back when its lease expires.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from lake_config.errors import RegistryError
from lake_config.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
STATUSES = ("pending", "processing", "processed", "failed")


@dataclass(frozen=True)
class RawObject:
    """A landed raw object, as the ingest API registers it."""

    object_key: str
    source: str
    batch_id: UUID
    size_bytes: int
    event_count: int
    received_at: datetime


@dataclass(frozen=True)
class QuarantineRecord:
    """One rejected event: where it came from, why, and its (tokenized) payload."""

    batch_id: UUID
    source: str
    event_index: int
    event_id: str | None
    component: str
    reasons: list[dict[str, str]]
    payload: Any
    payload_text: str | None
    received_at: datetime


@dataclass(frozen=True)
class ClaimedObject:
    object_id: int
    object_key: str
    source: str
    event_count: int
    attempts: int


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    source: str
    scope: str


def hash_key(secret: str) -> str:
    """SHA-256 of an API key; keys carry 256 random bits, so a fast hash is the right one."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _admin_url(database_url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(database_url)._replace(path="/postgres").geturl()


def ensure_database(settings: Settings) -> bool:
    """Create the configured database if it is missing; True when it was created."""
    name = settings.database_name
    try:
        with psycopg.connect(_admin_url(settings.database_url), autocommit=True) as conn:
            found = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if found:
                return False
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            return True
    except psycopg.Error as exc:
        raise RegistryError(f"cannot reach PostgreSQL to create {name!r}: {exc}") from exc


def drop_database(settings: Settings) -> None:
    """Drop the configured database (tests use a throwaway one)."""
    name = settings.database_name
    with psycopg.connect(_admin_url(settings.database_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def apply_migrations(settings: Settings) -> list[str]:
    """Apply pending `sql/migrations` with yoyo; returns the ids applied now."""
    from yoyo import get_backend, read_migrations

    url = settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        backend = get_backend(url)
        migrations = read_migrations(str(MIGRATIONS_DIR))
        with backend.lock():
            todo = backend.to_apply(migrations)
            backend.apply_migrations(todo)
        return [m.id for m in todo]
    except psycopg.Error as exc:
        raise RegistryError(f"migrations failed: {exc}") from exc


class Registry:
    """Registry operations over a small psycopg connection pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self._pool = ConnectionPool(
            settings.database_url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row},
            open=False,
            timeout=timeout_s,
        )
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a transaction; psycopg errors become RegistryError."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise RegistryError(f"registry unavailable: {exc}") from exc
        except TimeoutError as exc:  # the pool found no connection in time
            raise RegistryError(f"registry unavailable: {exc}") from exc

    def ping(self) -> None:
        with self.connection() as conn:
            conn.execute("select 1")

    # --- landing -------------------------------------------------------------------------------

    def register(self, obj: RawObject | None, quarantined: Sequence[QuarantineRecord] = ()) -> None:
        """Register a landed object and its batch's rejected events in one transaction."""
        with self.connection() as conn, conn.transaction():
            if obj is not None:
                conn.execute(
                    """
                    insert into registry.raw_objects
                        (object_key, source, batch_id, size_bytes, event_count, received_at)
                    values (%s, %s, %s, %s, %s, %s)
                    on conflict (object_key) do nothing
                    """,
                    (
                        obj.object_key,
                        obj.source,
                        obj.batch_id,
                        obj.size_bytes,
                        obj.event_count,
                        obj.received_at,
                    ),
                )
            if quarantined:
                self._insert_quarantine(conn, quarantined)

    @staticmethod
    def _insert_quarantine(
        conn: psycopg.Connection[Any], records: Sequence[QuarantineRecord]
    ) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                """
                insert into registry.quarantine
                    (batch_id, source, event_index, event_id, component, reasons, payload,
                     payload_text, received_at)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (batch_id, event_index) do nothing
                """,
                [
                    (
                        r.batch_id,
                        r.source,
                        r.event_index,
                        r.event_id,
                        r.component,
                        Jsonb(r.reasons),
                        Jsonb(r.payload) if r.payload is not None else None,
                        r.payload_text,
                        r.received_at,
                    )
                    for r in records
                ],
            )

    # --- claiming ------------------------------------------------------------------------------

    def claim(self, run_id: str, *, limit: int | None = None) -> list[ClaimedObject]:
        """Take up to `limit` open objects for `run_id` (pending, or processing past its lease)."""
        limit = limit or self.settings.run_batch_objects
        with self.connection() as conn, conn.transaction():
            rows = conn.execute(
                """
                with picked as (
                    select object_id
                    from registry.raw_objects
                    where status = 'pending'
                       or (status = 'processing' and lease_expires_at < now())
                    order by object_id
                    limit %(limit)s
                    for update skip locked
                )
                update registry.raw_objects as o
                set status = 'processing',
                    claimed_by = %(run_id)s,
                    claimed_at = now(),
                    lease_expires_at = now() + make_interval(secs => %(lease)s),
                    attempts = o.attempts + 1
                from picked
                where o.object_id = picked.object_id
                returning o.object_id, o.object_key, o.source, o.event_count, o.attempts
                """,
                {"limit": limit, "run_id": run_id, "lease": self.settings.claim_lease_seconds},
            ).fetchall()
        return sorted((ClaimedObject(**r) for r in rows), key=lambda c: c.object_id)

    def claimed(self, run_id: str) -> list[ClaimedObject]:
        """The objects `run_id` holds, for stages that run in separate processes (Airflow)."""
        with self.connection() as conn:
            rows = conn.execute(
                """
                select object_id, object_key, source, event_count, attempts
                from registry.raw_objects
                where claimed_by = %s and status = 'processing'
                order by object_id
                """,
                (run_id,),
            ).fetchall()
        return [ClaimedObject(**r) for r in rows]

    def mark_processed(self, run_id: str) -> int:
        """Mark every object `run_id` still holds as processed; returns how many."""
        with self.connection() as conn, conn.transaction():
            cur = conn.execute(
                """
                update registry.raw_objects
                set status = 'processed', processed_at = now(), lease_expires_at = null,
                    last_error = null
                where claimed_by = %s and status = 'processing'
                """,
                (run_id,),
            )
            return cur.rowcount

    def mark_failed(self, run_id: str, error: str) -> int:
        """Release `run_id`'s objects after a failure: back to pending, or failed after N tries."""
        with self.connection() as conn, conn.transaction():
            cur = conn.execute(
                """
                update registry.raw_objects
                set status = case when attempts >= %s then 'failed' else 'pending' end,
                    lease_expires_at = null,
                    last_error = left(%s, 2000)
                where claimed_by = %s and status = 'processing'
                """,
                (self.settings.max_attempts, error, run_id),
            )
            return cur.rowcount

    def counts(self) -> dict[str, int]:
        """Raw objects by status (every status present, zero when none)."""
        with self.connection() as conn:
            rows = conn.execute(
                "select status, count(*) as n from registry.raw_objects group by status"
            ).fetchall()
        found = {r["status"]: int(r["n"]) for r in rows}
        return {s: found.get(s, 0) for s in STATUSES}

    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined events by component."""
        with self.connection() as conn:
            rows = conn.execute(
                "select component, count(*) as n from registry.quarantine group by component"
            ).fetchall()
        return {r["component"]: int(r["n"]) for r in rows}

    # --- runs ----------------------------------------------------------------------------------

    def stage_started(self, run_id: str, stage: str, objects: int) -> None:
        with self.connection() as conn, conn.transaction():
            conn.execute(
                """
                insert into registry.pipeline_runs (run_id, stage, objects)
                values (%s, %s, %s)
                on conflict (run_id, stage) do update
                set started_at = now(), finished_at = null, status = 'running',
                    objects = excluded.objects, error = null
                """,
                (run_id, stage, objects),
            )

    def stage_finished(
        self,
        run_id: str,
        stage: str,
        *,
        rows_in: int | None = None,
        rows_out: int | None = None,
        error: str | None = None,
    ) -> None:
        with self.connection() as conn, conn.transaction():
            conn.execute(
                """
                update registry.pipeline_runs
                set finished_at = now(), status = %s, rows_in = %s, rows_out = %s,
                    error = left(%s, 2000)
                where run_id = %s and stage = %s
                """,
                ("failed" if error else "succeeded", rows_in, rows_out, error, run_id, stage),
            )

    # --- API keys ------------------------------------------------------------------------------

    def create_key(self, source: str, *, scope: str = "write") -> str:
        """Create a key for `source`; the returned secret is never stored, only its hash."""
        key_id = secrets.token_hex(4)
        secret = f"tlk_{key_id}_{secrets.token_urlsafe(32)}"
        with self.connection() as conn, conn.transaction():
            conn.execute(
                "insert into registry.api_keys (key_id, key_hash, source, scope) "
                "values (%s, %s, %s, %s)",
                (key_id, hash_key(secret), source, scope),
            )
        return secret

    def lookup_key(self, secret: str) -> ApiKey | None:
        """The live key whose hash matches `secret`, or None."""
        with self.connection() as conn:
            row = conn.execute(
                "select key_id, source, scope from registry.api_keys "
                "where key_hash = %s and revoked_at is null",
                (hash_key(secret),),
            ).fetchone()
        return ApiKey(**row) if row else None

    def revoke_key(self, key_id: str) -> bool:
        with self.connection() as conn, conn.transaction():
            cur = conn.execute(
                "update registry.api_keys set revoked_at = now() "
                "where key_id = %s and revoked_at is null",
                (key_id,),
            )
            return cur.rowcount == 1
