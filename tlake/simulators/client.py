"""The HTTP client every simulator posts through, as a real client SDK would.

Each `Batch` is one envelope, serialized and gzipped once, so a retry sends the very bytes of the
first attempt (the API binds an `Idempotency-Key` to the SHA-256 of the body: another body under
the same key would be refused with 422 `idempotency_key_reused`). 429, 502, 503 and 504 are
retried with jittered exponential backoff, waiting at least the answer's `Retry-After` when it
has one; network errors are retried the same way. A keyed batch also retries 409
`idempotency_key_in_progress`: a re-send that overtook the first attempt still in flight.

A re-sent batch (the client lost the answer and sends again) is posted as its own request; with
an `Idempotency-Key` the API answers it from its store (`Idempotent-Replayed: true`) and lands
nothing, so a replayed answer is counted under `replayed` and not again under accepted/rejected.
Without a key (the mobile profile) the duplicate lands, and silver drops it by event id.

Batches are drawn lazily from the profile's generator, at most `2 * concurrency` ahead of the
answers, so a long window never sits in memory and `sent_at` stays close to the send time.
"""

from __future__ import annotations

import gzip
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from tlake.errors import SimulationError

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S = 10.0
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Batch:
    """One envelope to post; `resent` marks a re-send of an earlier batch (same object)."""

    envelope: dict[str, Any]
    idempotency_key: str | None = None
    resent: bool = False


@dataclass
class SimulationResult:
    """What a simulation posted and what the API answered (replayed answers counted apart)."""

    batches: int = 0
    events_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    resent_batches: int = 0
    replayed: int = 0
    retries: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def render(self, seconds: float) -> str:
        rate = self.events_sent / seconds if seconds > 0 else 0.0
        statuses = ", ".join(f"{code}={n}" for code, n in sorted(self.statuses.items()))
        return (
            f"  sent {self.events_sent} events in {self.batches} batches "
            f"({self.resent_batches} re-sent, {self.replayed} answered as replays) "
            f"in {seconds:.1f}s ({rate:,.0f} events/s): accepted {self.accepted}, "
            f"rejected {self.rejected}, retries {self.retries}; statuses {statuses or '-'}"
        )


def rfc3339(at: datetime) -> str:
    """`2026-11-23T12:00:00.000Z`: millisecond RFC 3339 in UTC, as SDKs write it."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Retryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(value, 0.0), MAX_RETRY_AFTER_S)


_backoff = wait_exponential_jitter(multiplier=0.2, max=5.0)


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    asked = exc.retry_after_s if isinstance(exc, _Retryable) else None
    return max(_backoff(state), asked or 0.0)


class Sender:
    """Posts gzip envelopes to `/v1/events`, retrying as the module docstring says."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            transport=transport,
            base_url=api_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Encoding": "gzip",
                "Content-Type": "application/json",
            },
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._lock = threading.Lock()
        self.retries = 0

    def close(self) -> None:
        self._client.close()

    def post(
        self, envelope: dict[str, Any], *, idempotency_key: str | None = None
    ) -> httpx.Response:
        """The final answer for one envelope; raises _Retryable or httpx errors when retries
        ran out."""
        body = gzip.compress(orjson.dumps(envelope), compresslevel=5, mtime=0)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._post(body, headers)

    @retry(
        retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
        wait=_wait,
        stop=stop_after_attempt(6),
        reraise=True,
    )
    def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        response = self._client.post("/v1/events", content=body, headers=headers)
        status = response.status_code
        if status in RETRY_STATUSES or (status == 409 and "Idempotency-Key" in headers):
            with self._lock:
                self.retries += 1
            raise _Retryable(f"HTTP {status}", _retry_after(response))
        return response


def deliver(
    api_url: str,
    api_key: str,
    batches: Iterable[Batch],
    *,
    concurrency: int = 4,
    transport: httpx.BaseTransport | None = None,
) -> SimulationResult:
    """Post every batch with `concurrency` requests in flight; answers are counted in batch
    order. Raises SimulationError if the API refuses the key, fails (5xx) or stays unreachable;
    batches already answered stay landed. `transport` replaces the network (unit tests)."""
    result = SimulationResult()
    sender = Sender(api_url, api_key, transport=transport)

    def send(batch: Batch) -> httpx.Response:
        return sender.post(batch.envelope, idempotency_key=batch.idempotency_key)

    pending: deque[tuple[Batch, Future[httpx.Response]]] = deque()
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            try:
                for batch in batches:
                    pending.append((batch, pool.submit(send, batch)))
                    if len(pending) >= 2 * concurrency:
                        done, future = pending.popleft()
                        _count(result, done, future.result())
                while pending:
                    done, future = pending.popleft()
                    _count(result, done, future.result())
            finally:
                for _, future in pending:
                    future.cancel()
    except (httpx.HTTPError, _Retryable) as exc:
        raise SimulationError(f"could not deliver to {api_url}: {exc}") from exc
    finally:
        result.retries = sender.retries
        sender.close()
    return result


def _count(result: SimulationResult, batch: Batch, response: httpx.Response) -> None:
    status = response.status_code
    if status in (401, 403):
        raise SimulationError(f"API refused the key: {response.text[:200]}")
    if status >= 500:
        raise SimulationError(f"API failed: {status}")
    result.batches += 1
    result.events_sent += len(batch.envelope["events"])
    result.resent_batches += int(batch.resent)
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if response.headers.get(REPLAYED_HEADER) == "true":
        result.replayed += 1
    elif status in (202, 422):
        body = response.json()
        result.accepted += int(body.get("accepted", 0))
        result.rejected += int(body.get("rejected", 0))
