"""The PostgreSQL registry: raw objects and their processing state, API keys, quarantine, runs.

Claiming follows one protocol: a run takes `pending` objects (and `processing` objects whose
claim was abandoned) with `for update skip locked`, stamps them with its run id and a lease,
processes exactly those, and marks them `processed` only after every Delta commit of the run
succeeded. Two runs at once never take the same object.

A claim is abandoned when its lease ran out or, for a session-tied claim, as soon as the run that
made it is dead: such a run holds a PostgreSQL advisory lock on its run id (`RunHold`) on a
connection of its own for its whole life, and PostgreSQL drops the lock with the session, so a
SIGKILLed run's objects are taken by the very next claim. Every claim counts an attempt; an
abandoned object that used up `max_attempts` becomes `failed` (with the reason in last_error)
instead of being claimed again, until an operator retries it (`tlake files retry`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from lake_config.errors import RegistryError
from lake_config.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
STATUSES = ("pending", "processing", "processed", "failed")

# Advisory-lock keys held right now in this database: the run ids of live RunHolds. A bigint
# advisory lock shows in pg_locks as its high (classid) and low (objid) 32 bits, objsubid 1.
_LIVE_RUNS = """
    live as (
        select (l.classid::bigint << 32) | l.objid::bigint as lock_key
        from pg_locks as l
        where l.locktype = 'advisory' and l.granted and l.objsubid = 1
          and l.database = (select oid from pg_database where datname = current_database())
    )"""
# A processing claim whose run is gone: its lease ran out, or it was session-tied and no session
# holds its run's lock any more. A hash collision can only make a dead run look alive, and then
# the lease still ends the claim.
_ABANDONED = """(
    o.status = 'processing' and (
        o.lease_expires_at < now()
        or (o.session_tied
            and hashtextextended(o.claimed_by, 0) not in (select lock_key from live))))"""
_WHY = """case when o.status <> 'processing' then null
    when o.lease_expires_at < now() then format('run %%s abandoned it: lease expired', o.claimed_by)
    else format('run %%s abandoned it: its session ended', o.claimed_by) end"""


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
class ObjectState:
    """A raw object's processing state, as `tlake files list` shows it."""

    object_id: int
    object_key: str
    source: str
    status: str
    attempts: int
    claimed_by: str | None
    received_at: datetime
    processed_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    source: str
    scope: str


@dataclass(frozen=True)
class Alert:
    """A task that failed for good, as the DAGs' failure callback records it."""

    alert_id: int
    raised_at: datetime
    source: str
    dag_id: str | None
    dag_run_id: str | None
    task_id: str | None
    try_number: int | None
    severity: str
    message: str
    resolved_at: datetime | None


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


@contextmanager
def commit_lock(settings: Settings, resource: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the cluster-wide lock on `resource` (a Delta table's URI) while the block runs.

    Sail commits to a Delta log with put-if-absent and neither retries nor rebases: two runs
    committing to one table at once end with one of them failing ("Failed to commit
    transaction"). Writers therefore take this PostgreSQL advisory lock around each commit, so
    concurrent runs queue per table instead of failing. The lock lives in a session of its own
    and dies with it, so a killed writer never leaves a table locked. `shared` holders exclude
    only the exclusive one (`tlake reprocess` holds the silver-writers lock that way).
    """
    try:
        conn = psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise RegistryError(f"registry unavailable for the commit lock: {exc}") from exc
    try:
        try:
            take = "pg_advisory_lock_shared" if shared else "pg_advisory_lock"
            conn.execute(f"select {take}(hashtextextended(%s, 0))", (f"tlake.commit:{resource}",))
        except psycopg.Error as exc:
            raise RegistryError(f"cannot take the commit lock on {resource}: {exc}") from exc
        yield
    finally:
        conn.close()


class RunHold:
    """A run's claim on being alive: the advisory lock on its run id, on a connection of its own.

    Held from before the run claims anything until it ends; claims made with it are session-tied
    (`Registry.claim(..., hold=...)`). When the process dies, however it dies, PostgreSQL ends
    the session and drops the lock, and the next claim takes the run's objects at once.
    `heartbeat()` proves the session is still there and extends the run's leases, so a live
    run is never mistaken for a dead one, whatever its duration; it raises RegistryError when the
    session was lost, and the run must then stop before committing anything else.
    """

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.run_id = run_id
        self._lease_s = settings.claim_lease_seconds
        try:
            self._conn = psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise RegistryError(f"registry unavailable: {exc}") from exc
        try:
            row = self._conn.execute(
                "select pg_try_advisory_lock(hashtextextended(%s, 0))", (run_id,)
            ).fetchone()
        except psycopg.Error as exc:
            self._conn.close()
            raise RegistryError(f"cannot lock run {run_id!r}: {exc}") from exc
        if not (row and row[0]):
            self._conn.close()
            raise RegistryError(f"run {run_id!r} is already held by a live session")

    def heartbeat(self) -> int:
        """Extend the leases of the run's claims; returns how many it holds."""
        try:
            cur = self._conn.execute(
                """
                update registry.raw_objects
                set lease_expires_at = now() + make_interval(secs => %s)
                where claimed_by = %s and status = 'processing'
                """,
                (self._lease_s, self.run_id),
            )
        except psycopg.Error as exc:
            raise RegistryError(
                f"run {self.run_id!r} lost its registry session; its claims may be taken: {exc}"
            ) from exc
        return cur.rowcount

    def release(self) -> None:
        """Drop the lock, then end the session; safe to call twice.

        Unlocking first makes the release visible before this returns; a closed connection's
        backend exits a moment later, which is how a killed run's lock goes.
        """
        if self._conn.closed:
            return
        try:
            self._conn.execute("select pg_advisory_unlock_all()")
        except psycopg.Error:
            pass  # the session is gone already, and its locks with it
        finally:
            self._conn.close()

    def __enter__(self) -> RunHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


RAW_OBJECT_INSERT = """
    insert into registry.raw_objects
        (object_key, source, batch_id, size_bytes, event_count, received_at)
    values (%s, %s, %s, %s, %s, %s)
    on conflict (object_key) do nothing
"""
QUARANTINE_INSERT = """
    insert into registry.quarantine
        (batch_id, source, event_index, event_id, component, reasons, payload,
         payload_text, received_at)
    values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    on conflict (batch_id, event_index) do nothing
"""


def _raw_object_params(obj: RawObject) -> tuple[Any, ...]:
    return (
        obj.object_key,
        obj.source,
        obj.batch_id,
        obj.size_bytes,
        obj.event_count,
        obj.received_at,
    )


def _quarantine_params(records: Sequence[QuarantineRecord]) -> list[tuple[Any, ...]]:
    return [
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
    ]


def _json_as_ingest(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """JSON read back from the registry is parsed as the ingest API parsed it (orjson), not with
    the stdlib's `json`: jsonb keeps a client's 1e20 as the numeral 100000000000000000000,
    which `json` would read as an int that orjson cannot write again (> 64 bits), e.g. when a
    quarantined payload is replayed; orjson reads it as the float the API had."""
    set_json_loads(orjson.loads, conn)


async def _json_as_ingest_async(conn: psycopg.AsyncConnection[Any]) -> None:
    _json_as_ingest(conn)


def _pool_options(
    settings: Settings, min_size: int, max_size: int, timeout_s: float
) -> dict[str, Any]:
    """What both pools are opened with (rows as dicts; opened by their owner, not here)."""
    return {
        "conninfo": settings.database_url,
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": {"row_factory": dict_row},
        "open": False,
        "timeout": timeout_s,
    }


class AsyncRegistrar:
    """The ingest API's registration of landed batches, on psycopg's async pool.

    Awaited on the worker's event loop: no thread hop and no GIL handover per request, which
    cost the API 3-4 % of its loop (bench/ingest.py). Same statements and transaction as
    `Registry.register`; open it inside the loop that will use it (the app's lifespan).
    """

    def __init__(
        self, settings: Settings, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0
    ) -> None:
        self._pool = AsyncConnectionPool(
            **_pool_options(settings, min_size, max_size, timeout_s),
            configure=_json_as_ingest_async,
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; psycopg errors and pool timeouts become RegistryError."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, TimeoutError) as exc:
            raise RegistryError(f"registry unavailable: {exc}") from exc

    async def register(
        self,
        obj: RawObject | None,
        quarantined: Sequence[QuarantineRecord] = (),
        *,
        first: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
    ) -> None:
        """`Registry.register`, awaited: object and rejected events in one transaction, after
        `first` (the idempotency key's answer) at its start."""
        async with self.connection() as conn, conn.transaction():
            if first is not None:
                await first(conn)
            if obj is not None:
                await conn.execute(RAW_OBJECT_INSERT, _raw_object_params(obj))
            if quarantined:
                async with conn.cursor() as cur:
                    await cur.executemany(QUARANTINE_INSERT, _quarantine_params(quarantined))


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
            **_pool_options(settings, min_size, max_size, timeout_s), configure=_json_as_ingest
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

    def register(
        self,
        obj: RawObject | None,
        quarantined: Sequence[QuarantineRecord] = (),
        *,
        first: Callable[[psycopg.Connection[Any]], None] | None = None,
    ) -> None:
        """Register a landed object and its batch's rejected events in one transaction.

        `first` runs at the start of that transaction (the ingest API records an idempotency
        key's response there); an exception it raises rolls the whole registration back.
        `AsyncRegistrar.register` is the same for an event loop.
        """
        with self.connection() as conn, conn.transaction():
            if first is not None:
                first(conn)
            if obj is not None:
                conn.execute(RAW_OBJECT_INSERT, _raw_object_params(obj))
            if quarantined:
                with conn.cursor() as cur:
                    cur.executemany(QUARANTINE_INSERT, _quarantine_params(quarantined))

    # --- claiming ------------------------------------------------------------------------------

    def claim(
        self, run_id: str, *, limit: int | None = None, hold: RunHold | None = None
    ) -> list[ClaimedObject]:
        """Take up to `limit` open objects for `run_id`: pending, or abandoned by a dead run.

        With `hold` (the `RunHold` of `run_id`, which must be live) the claims are session-tied:
        they are abandoned the moment that hold's session ends. Abandoned objects that already
        used `max_attempts` become `failed` instead, in the same transaction.
        """
        if hold is not None and hold.run_id != run_id:
            raise ValueError(f"hold of run {hold.run_id!r} cannot tie claims of run {run_id!r}")
        limit = limit or self.settings.run_batch_objects
        params = {
            "limit": limit,
            "run_id": run_id,
            "lease": self.settings.claim_lease_seconds,
            "max_attempts": self.settings.max_attempts,
            "session_tied": hold is not None,
        }
        with self.connection() as conn, conn.transaction():
            conn.execute(
                f"""
                with {_LIVE_RUNS},
                exhausted as (
                    select o.object_id, {_WHY} as why
                    from registry.raw_objects as o
                    where {_ABANDONED} and o.attempts >= %(max_attempts)s
                    for update skip locked
                )
                update registry.raw_objects as o
                set status = 'failed', lease_expires_at = null,
                    last_error = left(format('gave up after attempt %%s of %%s: %%s',
                        o.attempts, %(max_attempts)s::int, e.why), 2000)
                from exhausted as e
                where o.object_id = e.object_id
                """,
                params,
            )
            rows = conn.execute(
                f"""
                with {_LIVE_RUNS},
                picked as (
                    select o.object_id, {_WHY} as why
                    from registry.raw_objects as o
                    where o.status = 'pending'
                       or ({_ABANDONED} and o.attempts < %(max_attempts)s)
                    order by o.object_id
                    limit %(limit)s
                    for update skip locked
                )
                update registry.raw_objects as o
                set status = 'processing',
                    claimed_by = %(run_id)s,
                    claimed_at = now(),
                    lease_expires_at = now() + make_interval(secs => %(lease)s),
                    session_tied = %(session_tied)s,
                    attempts = o.attempts + 1,
                    last_error = coalesce(left(p.why, 2000), o.last_error)
                from picked as p
                where o.object_id = p.object_id
                returning o.object_id, o.object_key, o.source, o.event_count, o.attempts
                """,
                params,
            ).fetchall()
        return sorted((ClaimedObject(**r) for r in rows), key=lambda c: c.object_id)

    def hold(self, run_id: str) -> RunHold:
        """Take the session lock of `run_id` (see `RunHold`); RegistryError if another has it."""
        return RunHold(self.settings, run_id)

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

    def claim_for_reprocess(
        self,
        run_id: str,
        object_keys: Sequence[str],
        received: tuple[datetime, datetime],
        hold: RunHold,
    ) -> list[ClaimedObject]:
        """Take processed objects back for `run_id` to derive again (`tlake reprocess`).

        Claims, session-tied to `hold`, every processed object among `object_keys` (those with
        silver rows in the range) or received in [received[0], received[1]). Raises
        RegistryError, claiming nothing, when one of `object_keys` is not processed: its rows
        would be deleted and another run, not this one, would have to put them back.
        """
        if hold.run_id != run_id:
            raise ValueError(f"hold of run {hold.run_id!r} cannot tie claims of run {run_id!r}")
        params = {
            "keys": list(object_keys),
            "start": received[0],
            "end": received[1],
            "run_id": run_id,
            "lease": self.settings.claim_lease_seconds,
        }
        with self.connection() as conn, conn.transaction():
            rows = conn.execute(
                """
                select object_id, object_key, status, claimed_by
                from registry.raw_objects
                where object_key = any(%(keys)s::text[])
                   or (received_at >= %(start)s and received_at < %(end)s)
                order by object_id
                for update
                """,
                params,
            ).fetchall()
            wanted = set(object_keys)
            busy = [r for r in rows if r["object_key"] in wanted and r["status"] != "processed"]
            if busy:
                shown = ", ".join(
                    f"{r['object_key']} ({r['status']}"
                    + (f" by {r['claimed_by']})" if r["status"] == "processing" else ")")
                    for r in busy[:5]
                )
                raise RegistryError(
                    f"{len(busy)} object(s) with events in the range are not processed yet: "
                    f"{shown}; let the running pipeline finish (or `tlake files retry --failed`) "
                    "and reprocess again"
                )
            ids = [r["object_id"] for r in rows if r["status"] == "processed"]
            taken = conn.execute(
                """
                update registry.raw_objects as o
                set status = 'processing', claimed_by = %(run_id)s, claimed_at = now(),
                    lease_expires_at = now() + make_interval(secs => %(lease)s),
                    session_tied = true, attempts = 1, last_error = null
                where o.object_id = any(%(ids)s::bigint[]) and o.status = 'processed'
                returning o.object_id, o.object_key, o.source, o.event_count, o.attempts
                """,
                {**params, "ids": ids},
            ).fetchall()
        return sorted((ClaimedObject(**r) for r in taken), key=lambda c: c.object_id)

    def begin_bronze(self, run_id: str) -> bool:
        """Count a bronze load of every object `run_id` holds; True when it is the first load
        of each, so none of their lines can be in bronze.events yet.

        Counted before the load writes anything, so a load that dies after its commit still
        counted: whoever loads those objects next (this run's retried task, or the run that
        takes the claims over) gets False and must MERGE rather than append.
        """
        with self.connection() as conn, conn.transaction():
            rows = conn.execute(
                """
                update registry.raw_objects
                set bronze_loads = bronze_loads + 1
                where claimed_by = %s and status = 'processing'
                returning bronze_loads
                """,
                (run_id,),
            ).fetchall()
        return bool(rows) and all(r["bronze_loads"] == 1 for r in rows)

    def active_runs(self) -> set[str]:
        """The runs holding claims now (whose staged frames must stay)."""
        with self.connection() as conn:
            rows = conn.execute(
                """
                select distinct claimed_by from registry.raw_objects
                where status = 'processing' and claimed_by is not null
                """
            ).fetchall()
        return {r["claimed_by"] for r in rows}

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

    def objects(self, *, status: str | None = None, limit: int = 1000) -> list[ObjectState]:
        """Raw objects by object id, newest first, optionally of one status."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {list(STATUSES)}")
        with self.connection() as conn:
            rows = conn.execute(
                """
                select object_id, object_key, source, status, attempts, claimed_by,
                       received_at, processed_at, last_error
                from registry.raw_objects
                where %(status)s::text is null or status = %(status)s
                order by object_id desc
                limit %(limit)s
                """,
                {"status": status, "limit": limit},
            ).fetchall()
        return [ObjectState(**r) for r in rows]

    def retry_failed(self, object_keys: Sequence[str] | None = None) -> int:
        """Put failed objects (all, or those of `object_keys`) back to pending with no attempts.

        last_error stays until the object is processed, so the reason it failed remains visible.
        """
        with self.connection() as conn, conn.transaction():
            cur = conn.execute(
                """
                update registry.raw_objects
                set status = 'pending', attempts = 0, claimed_by = null, lease_expires_at = null
                where status = 'failed'
                  and (%(keys)s::text[] is null or object_key = any(%(keys)s::text[]))
                """,
                {"keys": list(object_keys) if object_keys is not None else None},
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

    # --- alerts ------------------------------------------------------------------------------

    def record_alert(
        self,
        *,
        source: str,
        severity: str,
        message: str,
        dag_id: str | None = None,
        dag_run_id: str | None = None,
        task_id: str | None = None,
        try_number: int | None = None,
    ) -> int:
        """Insert one alert row (message cut to 2000 characters); returns its alert id."""
        with self.connection() as conn, conn.transaction():
            row = conn.execute(
                """
                insert into analytics.alerts
                    (source, severity, message, dag_id, dag_run_id, task_id, try_number)
                values (%s, %s, left(%s, 2000), %s, %s, %s, %s)
                returning alert_id
                """,
                (source, severity, message, dag_id, dag_run_id, task_id, try_number),
            ).fetchone()
        assert row is not None  # insert ... returning always yields the row
        return int(row["alert_id"])

    def alerts(self, *, limit: int = 50) -> list[Alert]:
        """The most recent alerts, newest first."""
        with self.connection() as conn:
            rows = conn.execute(
                """
                select alert_id, raised_at, source, dag_id, dag_run_id, task_id, try_number,
                       severity, message, resolved_at
                from analytics.alerts
                order by raised_at desc, alert_id desc
                limit %s
                """,
                (limit,),
            ).fetchall()
        return [Alert(**r) for r in rows]

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
