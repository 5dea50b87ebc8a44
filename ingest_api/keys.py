"""API keys as the ingest API sees them: registry look-ups behind a small in-process cache.

A live key is remembered for `ttl_s` (30 s) and an unknown one for `negative_ttl_s` (5 s), so a
steady stream of requests costs one registry query per key and period instead of one per request,
and a client retrying with a wrong key cannot hammer PostgreSQL.

Consequence: a revoked key keeps working for up to `ttl_s` in each API process, and a key
created just after a failed attempt is refused for up to `negative_ttl_s`.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import TypeVar

from fastapi.security.utils import get_authorization_scheme_param

from ingest_api.errors import InvalidApiKeyError, MissingApiKeyError
from lake_config.registry import ApiKey, hash_key

MAX_KEY_CHARS = 256  # registry keys are ~55 characters; longer ones are refused unseen
_E = TypeVar("_E")


def bearer_secret(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <key>` header, None without one (another
    scheme, or no credentials): what FastAPI's `HTTPBearer(auto_error=False)` reads, parsed by
    the same function, without building its credentials model on every ingest request."""
    scheme, param = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not param:
        return None
    return param


def segment_secret(authorization: str | None) -> str:
    """The API key of an Authorization header the Segment way: HTTP Basic with the write key
    as user name and an empty password (what Segment's libraries send), or Bearer.

    Raises MissingApiKeyError without either scheme, InvalidApiKeyError for Basic credentials
    that are not `<key>:` (the message never quotes them).
    """
    scheme, _, param = (authorization or "").strip().partition(" ")
    param = param.strip()
    if scheme.lower() == "bearer" and param:
        return param
    if scheme.lower() == "basic" and param:
        try:
            user, _, password = base64.b64decode(param, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        if user and not password:
            return user
        raise InvalidApiKeyError(
            "Basic credentials must be the write key as user name and an empty password"
        )
    raise MissingApiKeyError(
        "send the write key as the HTTP Basic user name (empty password) "
        "or as 'Authorization: Bearer <key>'"
    )


class KeyCache:
    """Look-up results by key hash, each with an expiry; live and unknown keys are kept apart
    and each side is bounded to `max_entries`, so a flood of wrong keys never evicts live ones."""

    def __init__(
        self,
        *,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._live: dict[str, tuple[float, ApiKey]] = {}
        self._unknown: dict[str, float] = {}

    def get(self, secret: str) -> tuple[bool, ApiKey | None]:
        """`(True, key_or_None)` on a fresh hit, `(False, None)` when the registry must answer."""
        digest = hash_key(secret)
        now = self._clock()
        live = self._live.get(digest)
        if live is not None and live[0] > now:
            return True, live[1]
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and unknown_until > now:
            return True, None
        return False, None

    def put(self, secret: str, key: ApiKey | None) -> None:
        """Remember a look-up result: a live key for `ttl_s`, an unknown one more briefly."""
        digest = hash_key(secret)
        now = self._clock()
        if key is not None:
            self._unknown.pop(digest, None)
            self._live = _bounded(self._live, now, self.max_entries, lambda e: e[0])
            self._live[digest] = (now + self.ttl_s, key)
        else:
            self._live.pop(digest, None)
            self._unknown = _bounded(self._unknown, now, self.max_entries, lambda e: e)
            self._unknown[digest] = now + self.negative_ttl_s


def _bounded(
    entries: dict[str, _E], now: float, max_entries: int, expiry: Callable[[_E], float]
) -> dict[str, _E]:
    """`entries` with room for one more: expired ones dropped, or all if every one is fresh."""
    if len(entries) < max_entries:
        return entries
    fresh = {k: e for k, e in entries.items() if expiry(e) > now}
    return fresh if len(fresh) < max_entries else {}
