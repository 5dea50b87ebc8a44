"""Prometheus metrics of the ingest API, served at `GET /metrics`.

| metric | labels | what |
| --- | --- | --- |
| `tlake_ingest_requests_total` | `route`, `status`, `outcome` | requests answered |
| `tlake_ingest_request_duration_seconds` | `route` | histogram of time to answer |
| `tlake_ingest_request_bytes_total` | `route` | request body bytes on the wire |
| `tlake_ingest_events_total` | `outcome`, `reason` | events accepted or rejected, and why |
| `tlake_ingest_inflight_requests` | | ingest requests being worked on now |
| `tlake_ingest_batches_per_object` | | batches landed in one raw object (group commit) |

`outcome` of a request is `accepted` (202), `all_rejected` (422 receipt), `replayed` (an
Idempotency-Key answered again), `ok` (other 2xx), or the error code (`invalid_json`,
`rate_limited`, `overloaded`, ...). `route` is the route template (`/v1/events`), `unmatched`
for unknown paths. A rejected event's `reason` is the top-level `mobile/1` field of its first
error (`battery`, `event_id`, ...), `unknown_field`, `event` (not an object) or
`event_too_large`: labels come from a fixed set, never from what a client chose to send.

Each app instance has its own `CollectorRegistry`, so the numbers are per worker process: with
`TLAKE_API_WORKERS > 1` a scrape sees one worker's counters (whichever answers). Scrape one
worker per port, or keep one worker per process, when the numbers must add up; prometheus
multiprocess mode was left out because it needs a shared directory cleaned by the supervisor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest_api.schemas import EventV1

_EVENT_FIELDS = frozenset(EventV1.__annotations__) | {"event"}


class IngestMetrics:
    """The ingest API's metrics, in one registry per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tlake_ingest_requests",
            "Requests answered, by route, HTTP status and outcome",
            ["route", "status", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "tlake_ingest_request_duration_seconds",
            "Time from request to answer",
            ["route"],
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "tlake_ingest_request_bytes",
            "Request body bytes received on the wire (before decompression)",
            ["route"],
            registry=self.registry,
        )
        self.events = Counter(
            "tlake_ingest_events",
            "Events landed, by outcome (accepted, rejected) and reason of a rejection",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "tlake_ingest_inflight_requests",
            "Ingest requests (/v1/...) being worked on in this worker",
            registry=self.registry,
        )
        self.batches_per_object = Histogram(
            "tlake_ingest_batches_per_object",
            "Batches landed together in one raw object and one registry commit (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def observe_round(self, batches: int) -> None:
        """Count one group-commit round of `batches` batches."""
        self.batches_per_object.observe(batches)

    def observe_batch(self, accepted: int, rejected: Iterable[list[dict[str, str]]]) -> None:
        """Count a landed batch's events: `accepted` of them, and the rejected ones by the
        reason their errors give (only rejections are looked at one by one)."""
        if accepted:
            self.events.labels("accepted", "").inc(accepted)
        reasons: dict[str, int] = {}
        for errors in rejected:
            reason = rejection_reason(errors)
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in reasons.items():
            self.events.labels("rejected", reason).inc(n)


def rejection_reason(errors: list[dict[str, str]]) -> str:
    """A bounded label for why an event was rejected: its first error's top-level field."""
    if not errors:
        return "unknown"
    first = errors[0]
    if first["field"] == "event" and first["message"].startswith("event exceeds"):
        return "event_too_large"
    top = first["field"].split(".", 1)[0].removesuffix("[key]")
    return top if top in _EVENT_FIELDS else "unknown_field"


def request_outcome(status: int, fields: dict[str, Any]) -> str:
    """What became of a request, from its status and the fields its handler logged."""
    if "error" in fields:
        return str(fields["error"])
    if fields.get("idempotent_replay"):
        return "replayed"
    if "accepted" in fields:
        return "accepted" if fields["accepted"] else "all_rejected"
    if status >= 500:
        return "internal_error"
    return "ok"
