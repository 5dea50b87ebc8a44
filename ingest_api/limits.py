"""Bounded work at the edge: a per-key event rate, and a cap on requests in flight.

Both are per API worker process and kept in memory (with `TLAKE_API_WORKERS=N` a key may send
up to N times its rate), which is enough to stop one runaway client from starving the others
and to keep a worker from queueing more work than it can finish.

- **Rate**: a token bucket per API key, refilled at `rate_limit_events_per_s`, holding at most
  one second of events but never less than `max_events_per_batch` (so that a full batch can
  always pass on a rested key). A batch takes one token per event after validation, before
  anything is written; without enough tokens it is refused with 429 `rate_limited` and a
  `Retry-After` of the seconds until it would fit. Buckets are kept per live key id (a set the
  registry bounds), never per unauthenticated caller.
- **In flight**: more than `max_inflight_requests` ingest requests (`/v1/...`) at once in one
  worker are answered 503 `overloaded` with `Retry-After: 1` at once, before the body is read,
  instead of waiting in a queue while their clients time out. Probes and `/metrics` are never
  refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ingest_api.errors import RateLimitedError

INGEST_PREFIX = "/v1/"


class RateLimiter:
    """Token buckets by API key id; `take` is called from the event loop only (no lock)."""

    def __init__(
        self,
        events_per_s: float,
        *,
        min_capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = events_per_s
        self.capacity = max(events_per_s, float(min_capacity))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, updated at)

    def take(self, key_id: str, events: int) -> None:
        """Take `events` tokens from the key's bucket; RateLimitedError when they are not there."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, updated = self._buckets.get(key_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - updated) * self.rate)
        if tokens < events:
            self._buckets[key_id] = (tokens, now)
            wait_s = max(1, math.ceil((events - tokens) / self.rate))
            raise RateLimitedError(
                f"this API key sends more than {self.rate:g} events per second; "
                f"retry after {wait_s} s",
                retry_after_s=wait_s,
                limit_events_per_s=self.rate,
            )
        self._buckets[key_id] = (tokens - events, now)
