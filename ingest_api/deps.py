"""What the routes depend on: settings, the registry, the object store, the caller's API key.

One `Registry` and one `ObjectStore` per app, built by `lifespan` from the app's settings and
closed when it stops. Tests replace any of them with `app.dependency_overrides[get_store] = ...`.
The ingest routes are FastAPI's hottest path and resolve no dependency: they await
`write_intake` / `segment_intake` themselves, which read the key, settings, store, registry,
key cache and tokenizer from app state, and `ingest_api.intake` reads the `AsyncRegistrar` that
registers landed batches there too. FastAPI's resolver costs time on every request for every
dependency node (bench/ingest.py). Tests swap those on `app.state` after startup.

Every dependency is `async def`, though none awaits: FastAPI runs a plain `def` dependency in
the threadpool, and those thread hops cost more per request than validating its events did
(bench/ingest.py).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ingest_api.errors import (
    InsufficientScopeError,
    InvalidApiKeyError,
    MissingApiKeyError,
    RegistryUnavailableError,
)
from ingest_api.groupcommit import GroupCommit
from ingest_api.keys import MAX_KEY_CHARS, KeyCache, bearer_secret, segment_secret
from ingest_api.log import log_fields
from ingest_api.tokenize import Tokenizer
from lake_config.errors import RegistryError
from lake_config.registry import ApiKey, AsyncRegistrar, Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore

READ_POOL_SIZE = 4


# The cyclic collector's first-generation threshold in a worker (CPython's default: 700).
GC_GEN0_THRESHOLD = 50_000


def settle_heap() -> None:
    """Tune the cyclic collector for a worker whose app is built (bench/ingest.py's ceiling
    runs under the same policy).

    What is alive now (modules, the app, its clients) lives as long as the worker: frozen, it is
    out of the collector's reach. A request's objects die by reference counting when it is
    answered, but validating one 100-event batch holds thousands of containers alive at once,
    so at CPython's threshold of 700 a young collection ran several times per request and
    found nothing to free (measured: 4,476 collections in 12 s of load, 0 objects collected,
    ~3 % of the worker's CPU). At 50,000 none runs under that load; real cycles (an exception
    and its traceback) are still collected once that many containers have piled up.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the registry pool and the object store client for the app's lifetime."""
    settings: Settings = app.state.settings
    app.state.registry = Registry(settings)
    # Read API queries get a pool of their own: a slow analytics read never holds a connection
    # an ingest request needs to register its batch.
    app.state.analytics_db = Registry(settings, max_size=READ_POOL_SIZE)
    app.state.store = ObjectStore(settings)
    # Registering landed batches is awaited on this loop (psycopg's async pool): no thread.
    app.state.registrar = AsyncRegistrar(settings)
    await app.state.registrar.open()
    app.state.committer = GroupCommit(
        lambda: (app.state.store, app.state.registrar),
        max_events=settings.group_commit_max_events,
        max_bytes=settings.group_commit_max_bytes,
        linger_s=settings.group_commit_linger_ms / 1000,
        on_round=app.state.metrics.observe_round,
    )
    app.state.key_cache = KeyCache()
    app.state.tokenizer = Tokenizer.for_settings(settings)
    settle_heap()
    try:
        yield
    finally:
        await app.state.committer.close()
        await app.state.registrar.close()
        app.state.analytics_db.close()
        app.state.registry.close()


async def get_app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_registry(request: Request) -> Registry:
    return cast(Registry, request.app.state.registry)


async def get_analytics_db(request: Request) -> Registry:
    """The connection pool of read API queries (the analytics schema), apart from ingest's."""
    return cast(Registry, request.app.state.analytics_db)


async def get_store(request: Request) -> ObjectStore:
    return cast(ObjectStore, request.app.state.store)


async def get_key_cache(request: Request) -> KeyCache:
    return cast(KeyCache, request.app.state.key_cache)


RegistryDep = Annotated[Registry, Depends(get_registry)]
ObjectStoreDep = Annotated[ObjectStore, Depends(get_store)]
KeyCacheDep = Annotated[KeyCache, Depends(get_key_cache)]
AnalyticsDbDep = Annotated[Registry, Depends(get_analytics_db)]

bearer = HTTPBearer(auto_error=False, description="API key of a source: `Bearer tlk_...`")
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def authenticate(
    request: Request, credentials: CredentialsDep, registry: RegistryDep, cache: KeyCacheDep
) -> ApiKey:
    """The live API key of the `Authorization: Bearer` header (401 when missing or unknown)."""
    if credentials is None:
        raise MissingApiKeyError("send the API key as 'Authorization: Bearer <key>'")
    return await _live_key(request, credentials.credentials, registry, cache)


async def _live_key(request: Request, secret: str, registry: Registry, cache: KeyCache) -> ApiKey:
    hit, key = cache.get(secret)
    if not hit and len(secret) <= MAX_KEY_CHARS:
        try:
            key = await run_in_threadpool(registry.lookup_key, secret)
        except RegistryError as exc:
            raise RegistryUnavailableError(
                "the registry is unavailable; cannot check the API key, retry later",
                cause=type(exc.__cause__ or exc).__name__,
            ) from exc
        cache.put(secret, key)
    if key is None:
        raise InvalidApiKeyError("the API key is unknown or revoked")
    fields = log_fields(request)
    fields["key_id"] = key.key_id
    fields["source"] = key.source
    return key


@dataclass(frozen=True, slots=True)
class Intake:
    """What an ingest route needs, resolved by one dependency (`write_intake`)."""

    key: ApiKey
    settings: Settings
    store: ObjectStore
    registry: Registry
    tokenizer: Tokenizer


async def _intake(request: Request, secret: str) -> Intake:
    """The write key `secret` names (401/403) and the app's clients, all from the app's state.
    A test that needs a broken store or registry here replaces it on `app.state`."""
    state = request.app.state
    registry: Registry = state.registry
    key = await _live_key(request, secret, registry, state.key_cache)
    if key.scope != "write":
        raise InsufficientScopeError(f"a {key.scope}-scoped key cannot send events")
    return Intake(key, state.settings, state.store, registry, state.tokenizer)


async def write_intake(request: Request) -> Intake:
    """`/v1/events`: the write key of `Authorization: Bearer` (401/403) and the app's clients.

    Awaited by the route rather than declared as a dependency: without this node and the
    `HTTPBearer` one, FastAPI's resolver has nothing to do and (b) of bench/ingest.py answered
    1.5-2 % more events/s on one worker (two A/B pairs). The header is read as the `bearer`
    scheme the read routes depend on reads it (`keys.bearer_secret`); the route declares
    `BEARER_SECURITY`.
    """
    secret = bearer_secret(request.headers.get("authorization"))
    if secret is None:
        raise MissingApiKeyError("send the API key as 'Authorization: Bearer <key>'")
    return await _intake(request, secret)


async def segment_intake(request: Request) -> Intake:
    """The Segment routes: a write key sent as HTTP Basic (`<key>:`) or Bearer."""
    return await _intake(request, segment_secret(request.headers.get("authorization")))


# OpenAPI security of a route that reads the Bearer key itself (`write_intake`): the scheme is
# the one `bearer` registers for the routes that depend on it.
BEARER_SECURITY: dict[str, Any] = {"security": [{bearer.scheme_name: []}]}


async def require_read_key(key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
    """The caller's key, if its scope allows reading (403 otherwise: write keys cannot read)."""
    _check_read_scope(key)
    return key


ReadKeyDep = Annotated[ApiKey, Depends(require_read_key)]


async def optional_read_key(
    request: Request, credentials: CredentialsDep, registry: RegistryDep, cache: KeyCacheDep
) -> ApiKey | None:
    """None without an Authorization header; otherwise as `require_read_key` (401/403)."""
    if credentials is None:
        return None
    key = await _live_key(request, credentials.credentials, registry, cache)
    _check_read_scope(key)
    return key


OptionalReadKeyDep = Annotated[ApiKey | None, Depends(optional_read_key)]


def _check_read_scope(key: ApiKey) -> None:
    if key.scope != "read":
        raise InsufficientScopeError(
            f"a {key.scope}-scoped key cannot read; create a read key with "
            "'tlake keys create --source <name> --scope read'",
            required_scope="read",
        )
