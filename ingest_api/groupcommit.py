"""Group commit: the batches a worker lands at the same time share one object and one commit.

A request hands its validated batch to the worker's `GroupCommit` and awaits its `Landing`.
Batches of one source and UTC hour queue in one slot; while a slot's group is being written
(PUT, then the registry transaction), the batches arriving meanwhile wait, and the next round
lands all of them (up to `max_events` events and `max_bytes` of event JSON) as one raw object
and one registration. A request on an idle worker is landed at once, alone, exactly as before;
under load, rounds get bigger by themselves, so object storage and the registry see a PUT and an
INSERT per round instead of per request, and the lake gets fewer, larger objects.

A round that follows another one in its slot first lingers `linger_s` (Kafka's `linger.ms`),
unless the batches already waiting fill a round: under a closed-loop load, the requests that the
previous round just answered are sent again, validated, and join this round instead of the
next. On two workers sharing two cores with object storage and the registry, this halved the
objects (PUTs are most of SeaweedFS's CPU) and raised throughput by ~15 %, on one worker it
changed it within the noise (docs/BENCHMARKS.md); an idle worker's first round never waits.

Every batch of a round is answered after the round's registration committed, and each gets the
round's outcome: 202 for all, or the same 503 for all (nothing of theirs was acknowledged).
The lines keep their own batch's id, times and schema version (`landing.prepare_group`).

What the queue can hold is bounded by the worker's in-flight cap (`edge.Edge`, 503
`overloaded`). An idempotent request (`Idempotency-Key`) lands alone under its own key
(`ingest_api.intake`): its object must be the same bytes on every retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from ingest_api.batches import ValidatedBatch
from ingest_api.errors import ServiceUnavailableError
from ingest_api.landing import Landing, Part, prepare_group, put_objects_async, register_async
from lake_config.registry import AsyncRegistrar
from lake_config.storage import ObjectStore

# An object holds one raw key's hour: its batches share the source and the UTC hour of
# received_at (the key's `dt=`/`hour=`, which bronze checks against each line).
Slot = tuple[str, datetime]


class _Waiting:
    """A batch waiting in its slot, and the future its request awaits."""

    __slots__ = ("events", "future", "nbytes", "part")

    def __init__(self, part: Part, future: asyncio.Future[Landing]) -> None:
        self.part = part
        self.future = future
        self.events = len(part.batch.results)
        self.nbytes = sum(map(len, part.batch.accepted)) + sum(
            len(r.payload_json) for r in part.batch.rejected
        )


class GroupCommit:
    """Lands a worker's concurrent batches in shared rounds; see the module docstring.

    `clients()` gives the object store and the registrar a round writes with (the app's state,
    read when the round starts); `on_round(batches)` is called after each landed round (the
    metrics). Use it inside one event loop; `close()` waits for the rounds under way.
    """

    def __init__(
        self,
        clients: Callable[[], tuple[ObjectStore, AsyncRegistrar]],
        *,
        max_events: int,
        max_bytes: int,
        linger_s: float = 0.0,
        on_round: Callable[[int], None] | None = None,
    ) -> None:
        self._clients = clients
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._linger_s = linger_s
        self._on_round = on_round
        self._slots: dict[Slot, list[_Waiting]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    async def land(
        self, batch: ValidatedBatch, *, batch_id: UUID, source: str, received_at: datetime
    ) -> Landing:
        """Land `batch` with whatever else is waiting in its slot; its `Landing` once committed.

        Raises what its round raised (StorageUnavailableError, RegistryUnavailableError): then
        nothing of the round was acknowledged.
        """
        future: asyncio.Future[Landing] = asyncio.get_running_loop().create_future()
        slot = (source, received_at.replace(minute=0, second=0, microsecond=0))
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = []
            drain = asyncio.create_task(self._drain(slot, waiting))
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        waiting.append(_Waiting(Part(batch, batch_id, received_at), future))
        return await future

    async def close(self) -> None:
        """Wait for the rounds under way (the app's shutdown, before the registry closes)."""
        while self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)

    async def _drain(self, slot: Slot, waiting: list[_Waiting]) -> None:
        """Land the slot's waiting batches round by round until none is left."""
        try:
            n, _ = self._round_size(waiting)
            while n:
                round_ = waiting[:n]
                del waiting[:n]
                await self._land_round(slot[0], round_)
                n, room = self._round_size(waiting)
                if n and room and self._linger_s:
                    await asyncio.sleep(self._linger_s)  # let the answered requests come back
                    n, _ = self._round_size(waiting)
        finally:
            # No await since `waiting` was last seen empty: a batch arriving from now on
            # starts a new drain.
            del self._slots[slot]
            for left in waiting:  # only when cancelled (shutdown) mid-round
                left.future.cancel()

    def _round_size(self, waiting: list[_Waiting]) -> tuple[int, bool]:
        """How many of the first waiting batches the next round takes (0 when none waits): as
        many as keep it within `max_events` events and `max_bytes` of event JSON, and always
        the first; and whether it is below both bounds with all of them (room for more)."""
        events = nbytes = 0
        for n, w in enumerate(waiting):
            events += w.events
            nbytes += w.nbytes
            if n and (events > self._max_events or nbytes > self._max_bytes):
                return n, False
        return len(waiting), events < self._max_events and nbytes < self._max_bytes

    async def _land_round(self, source: str, round_: list[_Waiting]) -> None:
        try:
            store, registrar = self._clients()
            prepared = prepare_group([w.part for w in round_], source=source)
            await put_objects_async(store, prepared)
            await register_async(registrar, prepared)
        except asyncio.CancelledError:
            for w in round_:
                w.future.cancel()  # no-op on a future already done
            raise
        except Exception as exc:  # every request of the round answers what the round met
            for w in round_:
                if not w.future.done():  # done: its request is gone (client disconnected)
                    w.future.set_exception(_copy(exc))
            return
        for w, landing in zip(round_, prepared.landings, strict=True):
            if not w.future.done():
                w.future.set_result(landing)
        if self._on_round is not None:
            self._on_round(len(round_))


def _copy(exc: Exception) -> Exception:
    """A landing error (storage or registry unavailable: IngestError's constructor) of its own
    for each request, which logs and answers it; any other exception as it is (answered 500 by
    the server-error layer)."""
    if isinstance(exc, ServiceUnavailableError):
        copy = type(exc)(exc.message, cause=exc.cause, **exc.details)
        copy.__cause__ = exc.__cause__
        return copy
    return exc
