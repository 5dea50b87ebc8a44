"""The `stream` profile (origin 004): value streams, one value a second each, as `stream/1`.

Each stream (`stream-1` ... `stream-N`, the event's `device_id`) emits, every second of the
window, a message with a timestamp, a random UUID (the `event_id`; seeded, so the same seed gives
the same ids) and a value between 10.00 and 99.99. A stream's producer buffers its messages and
posts them ten at a time, as the origin's consumer takes them (see `batching`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from tlake.simulators.batching import Event, copy, seeded_uuid
from tlake.simulators.client import rfc3339

SCHEMA_VERSION = "stream/1"
FLUSH_SIZE = 10
VALUE_MIN, VALUE_MAX = 10.00, 99.99


def stream_names(streams: int) -> list[str]:
    return [f"stream-{i}" for i in range(1, streams + 1)]


def flushes(
    streams: int,
    minutes: int,
    *,
    seed: int,
    now: datetime | None = None,
    flush_size: int = FLUSH_SIZE,
) -> Iterator[list[Event]]:
    """Each stream's buffer whenever it holds `flush_size` values, then what is left; a flush
    holds one stream's values in time order."""
    rng = random.Random(f"stream:{seed}")  # per profile: no id shared across profiles
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(minutes=minutes)
    names = stream_names(streams)
    buffers: list[list[Event]] = [[] for _ in names]
    for second in range(minutes * 60):
        at = rfc3339(start + timedelta(seconds=second))
        for name, buffer in zip(names, buffers, strict=True):
            buffer.append(
                {
                    "event_id": seeded_uuid(rng),
                    "device_id": name,
                    "event_type": "value",
                    "occurred_at": at,
                    "stream": {"value": round(rng.uniform(VALUE_MIN, VALUE_MAX), 2)},
                }
            )
            if len(buffer) >= flush_size:
                yield buffer[:]
                buffer.clear()
    for buffer in buffers:
        if buffer:
            yield buffer


def spoil(event: Event, rng: random.Random) -> Event:
    """Make one value invalid the way broken producers do (each way a distinct reason)."""
    bad = copy(event)
    kind = rng.randrange(5)
    if kind == 0:
        bad["stream"]["value"] = f"{bad['stream']['value']:.2f}"
    elif kind == 1:
        bad["stream"] = {}
    elif kind == 2:
        bad["event_type"] = "sample"
    elif kind == 3:
        bad["stream"]["unit"] = "ms"
    else:
        # The origin's timestamps: local time without a zone, e.g. 2025-06-01T21:15:07.
        bad["occurred_at"] = bad["occurred_at"][:19]
    return bad
