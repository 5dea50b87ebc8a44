"""Group commit: batches landed while a round is in flight share the next round's object."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from ingest_api.batches import ValidatedBatch
from ingest_api.errors import RegistryUnavailableError, StorageUnavailableError
from ingest_api.groupcommit import GroupCommit
from ingest_api.landing import Landing, raw_key
from lake_config.errors import RegistryError, StorageError
from lake_config.registry import QuarantineRecord, RawObject

RECEIVED_AT = datetime(2024, 5, 1, 7, 5, 9, tzinfo=UTC)


def batch(events: int) -> ValidatedBatch:
    accepted = [orjson.dumps({"event_id": str(uuid4())}) for _ in range(events)]
    return ValidatedBatch("mobile/1", None, accepted, [], [{}] * events)


class GatedStore:
    """Holds every PUT until `gate` is set (a slow object store), and can fail them."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False
        self.objects: dict[str, bytes] = {}

    async def put_async(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        await self.gate.wait()
        if self.fail:
            raise StorageError(f"PUT {key!r} failed: connection refused")
        self.objects[key] = body


class Registrar:
    def __init__(self) -> None:
        self.fail = False
        self.rows: list[RawObject | None] = []

    async def register(
        self, obj: RawObject | None, records: list[QuarantineRecord], *, first: Any = None
    ) -> None:
        if self.fail:
            raise RegistryError("registry unavailable: boom")
        self.rows.append(obj)


class Rig:
    def __init__(
        self, max_events: int = 10_000, max_bytes: int = 8_000_000, linger_s: float = 0.0
    ) -> None:
        self.store, self.registrar = GatedStore(), Registrar()
        self.rounds: list[int] = []
        self.committer = GroupCommit(
            lambda: (self.store, self.registrar),  # type: ignore[return-value]
            max_events=max_events,
            max_bytes=max_bytes,
            linger_s=linger_s,
            on_round=self.rounds.append,
        )

    def land(
        self, b: ValidatedBatch, *, source: str = "mobile", at: datetime = RECEIVED_AT
    ) -> asyncio.Task[Landing]:
        return asyncio.create_task(
            self.committer.land(b, batch_id=uuid4(), source=source, received_at=at)
        )

    def lines(self, key: str) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in gzip.decompress(self.objects[key]).splitlines()]

    @property
    def objects(self) -> dict[str, bytes]:
        return self.store.objects


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def round_in_flight(rig: Rig, events: int = 1) -> asyncio.Task[Landing]:
    """A batch whose round is held in its PUT until `rig.store.gate` is set."""
    rig.store.gate.clear()
    task = rig.land(batch(events))
    await settle()
    return task


def test_an_idle_worker_lands_a_batch_alone_at_once() -> None:
    async def test() -> None:
        rig = Rig()
        landing = await rig.land(batch(3))

        assert rig.rounds == [1]
        assert list(rig.objects) == [landing.object_key]
        assert landing.object_key == raw_key("mobile", RECEIVED_AT, landing.batch_id)
        assert [row.event_count for row in rig.registrar.rows if row] == [3]

    run(test)


def test_batches_arriving_during_a_round_share_the_next_object() -> None:
    async def test() -> None:
        rig = Rig()
        first = await round_in_flight(rig, 2)  # the first round's PUT is in flight...
        later = [rig.land(batch(n)) for n in (1, 2, 3)]  # ...while three more arrive
        await settle()
        rig.store.gate.set()
        landings = [await first] + [await t for t in later]

        assert rig.rounds == [1, 3]
        assert len({landing.object_key for landing in landings[1:]}) == 1
        shared = landings[1].object_key
        assert shared is not None and shared != landings[0].object_key
        assert shared == raw_key("mobile", RECEIVED_AT, landings[1].batch_id)  # the first's id
        lines = rig.lines(shared)
        assert [line["line_no"] for line in lines] == list(range(6))
        assert [UUID(line["batch_id"]) for line in lines] == [
            landing.batch_id for landing in landings[1:] for _ in range(landing.accepted)
        ]
        row = rig.registrar.rows[1]
        assert row is not None and (row.object_key, row.event_count) == (shared, 6)

    run(test)


def test_a_round_holds_at_most_max_events_but_always_one_batch() -> None:
    async def test() -> None:
        rig = Rig(max_events=5)
        first = await round_in_flight(rig)
        later = [rig.land(batch(n)) for n in (3, 2, 1, 9, 2)]
        await settle()
        rig.store.gate.set()
        await asyncio.gather(first, *later)

        assert rig.rounds == [1, 2, 1, 1, 1]  # 3+2 | 1 (1+9 > 5) | 9 alone | 2
        counts = [row.event_count for row in rig.registrar.rows if row]
        assert counts == [1, 5, 1, 9, 2]

    run(test)


def test_a_round_holds_at_most_max_bytes_of_event_json() -> None:
    async def test() -> None:
        rig = Rig(max_bytes=120)  # each event here is 51 bytes of JSON
        first = await round_in_flight(rig)
        later = [rig.land(batch(n)) for n in (1, 1, 1, 3)]
        await settle()
        rig.store.gate.set()
        await asyncio.gather(first, *later)

        assert rig.rounds == [1, 2, 1, 1]  # 51+51 | 51 (51+153 > 120) | 153 alone

    run(test)


def test_sources_and_hours_land_in_objects_of_their_own() -> None:
    async def test() -> None:
        rig = Rig()
        rig.store.gate.clear()
        next_hour = RECEIVED_AT + timedelta(hours=1)
        tasks = [
            rig.land(batch(1)),
            rig.land(batch(1), source="fleet"),
            rig.land(batch(1), at=next_hour),
            rig.land(batch(1), at=RECEIVED_AT + timedelta(minutes=50)),
        ]
        await settle()
        rig.store.gate.set()
        landings = await asyncio.gather(*tasks)

        keys = [landing.object_key for landing in landings]
        assert keys[0] == keys[3] and len(set(keys)) == 3
        assert keys[1] is not None and keys[1].startswith("raw/source=fleet/dt=2024-05-01/hour=07/")
        assert keys[2] is not None and "/dt=2024-05-01/hour=08/" in keys[2]

    run(test)


@pytest.mark.parametrize(
    ("linger_s", "rounds", "counts"), [(0.0, [1, 1, 1], [1, 1, 2]), (0.2, [1, 2], [1, 3])]
)
def test_a_round_after_a_round_lingers_for_the_batches_answered_meanwhile(
    linger_s: float, rounds: list[int], counts: list[int]
) -> None:
    async def test() -> None:
        rig = Rig(linger_s=linger_s)
        first = await round_in_flight(rig)
        waiting = rig.land(batch(1))  # waits for the first round
        await settle()
        rig.store.gate.set()
        await first  # answered: with a linger, the next round has not started yet
        late = rig.land(batch(2))  # e.g. the first request's client, sending again
        await asyncio.gather(waiting, late)

        assert rig.rounds == rounds
        assert [row.event_count for row in rig.registrar.rows if row] == counts

    run(test)


def test_an_idle_worker_and_a_full_round_never_linger() -> None:
    async def test() -> None:
        rig = Rig(max_events=2, linger_s=60.0)
        await asyncio.wait_for(rig.land(batch(1)), 5)  # idle: landed at once
        first = await round_in_flight(rig)
        full = [rig.land(batch(1)) for _ in range(4)]  # two full rounds wait
        await settle()
        rig.store.gate.set()
        await asyncio.wait_for(asyncio.gather(first, *full), 5)

        assert rig.rounds == [1, 1, 2, 2]
        closing = asyncio.create_task(rig.committer.close())
        await settle()
        assert closing.done()  # no drain left lingering

    run(test)


@pytest.mark.parametrize("failing", ["store", "registrar"])
def test_a_failed_round_fails_each_of_its_batches_and_the_next_round_still_lands(
    failing: str,
) -> None:
    async def test() -> None:
        rig = Rig()
        broken: GatedStore | Registrar = rig.store if failing == "store" else rig.registrar
        broken.fail = True
        doomed = [rig.land(batch(1)) for _ in range(3)]  # queued before the drain starts
        errors = await asyncio.gather(*doomed, return_exceptions=True)
        broken.fail = False
        survivor = await rig.land(batch(1))

        assert rig.rounds == [1]  # the failed round of three is not counted
        expected = StorageUnavailableError if failing == "store" else RegistryUnavailableError
        assert all(isinstance(e, expected) for e in errors)
        assert len({id(e) for e in errors}) == 3  # each request answers and logs its own error
        assert [row.object_key for row in rig.registrar.rows if row] == [survivor.object_key]

    run(test)


def test_a_request_that_went_away_does_not_stop_its_round() -> None:
    async def test() -> None:
        rig = Rig()
        first = await round_in_flight(rig)
        gone, staying = rig.land(batch(1)), rig.land(batch(2))
        await settle()
        gone.cancel()  # its client disconnected while waiting
        rig.store.gate.set()
        landing = await staying
        await first

        assert rig.rounds == [1, 2]  # its events were landed all the same
        assert len(rig.lines(landing.object_key or "")) == 3

    run(test)


def test_close_waits_for_the_round_under_way() -> None:
    async def test() -> None:
        rig = Rig()
        task = await round_in_flight(rig)
        closing = asyncio.create_task(rig.committer.close())
        await settle()
        assert not closing.done()
        rig.store.gate.set()
        await closing

        assert task.done() and rig.rounds == [1]

    run(test)
