"""From a profile's flushes of events to the batches its client posts.

A profile generates events only (pure, seeded); this module does what every client does on top:
cut each flush into envelopes of at most `batch_size` events, spoil a share `bad_rate` of the
events the way broken clients do (the API must quarantine them), give each batch its own
`Idempotency-Key`, stamp `sent_at` when the batch is made (the client's clock: the window was
generated on an accelerated clock, but it is sent now, so the API sees no clock skew), and
re-send a share `resend_rate` of the batches as after a lost answer (same body, same key).

The spoiling and re-sending draw from their own generator, seeded from `seed`: with or without
bad events the profile's events are the same, and the spoiled ones are exactly those that differ.
Idempotency keys are per run (a client makes a fresh key per batch): running the same seed twice
sends the same events under new keys, and silver keeps one row per event id.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from tlake.simulators.client import Batch, rfc3339

Event = dict[str, Any]
Spoiler = Callable[[Event, random.Random], Event]
Clock = Callable[[], datetime]


def seeded_uuid(rng: random.Random) -> str:
    """A random (version 4) UUID drawn from `rng`: the same seed gives the same ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def copy(event: Event) -> Event:
    """A deep copy of a JSON event (a spoiled event never changes the original)."""
    return orjson.loads(orjson.dumps(event))  # type: ignore[no-any-return]


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def batches(
    flushes: Iterable[Sequence[Event]],
    *,
    schema_version: str,
    spoil: Spoiler,
    seed: int,
    batch_size: int,
    bad_rate: float = 0.0,
    resend_rate: float = 0.0,
    run_id: str | None = None,
    clock: Clock = _wall_clock,
) -> Iterator[Batch]:
    """The batches of `flushes` in send order; a re-send follows its first copy."""
    rng = random.Random(f"{seed}:client")
    run_id = run_id or uuid.uuid4().hex
    seq = 0
    for flush in flushes:
        for start in range(0, len(flush), batch_size):
            events = [
                spoil(e, rng) if bad_rate and rng.random() < bad_rate else e
                for e in flush[start : start + batch_size]
            ]
            envelope = {
                "sent_at": rfc3339(clock()),
                "schema_version": schema_version,
                "events": events,
            }
            batch = Batch(envelope, idempotency_key=f"{run_id}-{seq:06d}")
            seq += 1
            yield batch
            if resend_rate and rng.random() < resend_rate:
                yield replace(batch, resent=True)
