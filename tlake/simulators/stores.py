"""The `store-traffic` profile (origin 001): door sensors counting visitors per hour, as `store/1`.

Exactly the origin's five stores. A store's age in 2024 (`2024 - opening year + 1`) scales both
its capacity, the mean and standard deviation of a sensor's hourly visits (`age * [1000, 150]`),
and its sensors' probabilities of failing and of an anomaly (`age * [0.01, 0.001]`). Every
sensor of a store is identical (all doors are used alike).

One reading per sensor and hour: outside opening hours (8:00 to 18:00, the store's local time)
0 visits, status `ok`; inside, a failed reading (status `failed`, no visits), an anomaly (10% of
the traffic the hour would have had) or a normal draw. A reading's generator is seeded from the
store's opening date, the sensor id, the hour and `--seed`, so a (sensor, hour) gives the same
reading in any run and any window; its `event_id` is a UUID5 of (store, sensor, hour), so a
reading sent again (an overlapping window, another run) is one row in silver. `occurred_at` is
the start of the counted hour; only hours that have ended are counted.

The collector posts one hour of every sensor at a time (see `batching`).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tlake.simulators.batching import Event, copy
from tlake.simulators.client import rfc3339

SCHEMA_VERSION = "store/1"
REFERENCE_YEAR = 2024
CAPACITY = (1000, 150)  # mean and standard deviation of hourly visits, per year of age
PROBS = (0.01, 0.001)  # probability of a failed and of an anomalous reading, per year of age
OPENS_AT, CLOSES_AT = 8, 18  # local hours; the hour starting at 17:00 is the last one counted
ANOMALY_SHARE = 0.1
READING_NAMESPACE = uuid.UUID("0c3f6a52-41a7-4c5e-9a57-7f1f3d1f0b2e")  # fixed: event ids use it


@dataclass(frozen=True)
class Store:
    """A store and its identical door sensors (ids 0 to sensors - 1)."""

    name: str
    sensors: int
    opened_on: date
    timezone: str

    @property
    def age_years(self) -> int:
        return REFERENCE_YEAR - self.opened_on.year + 1

    @property
    def capacity(self) -> tuple[float, float]:
        """Mean and standard deviation of one sensor's visits in an opening hour."""
        return (self.age_years * CAPACITY[0], self.age_years * CAPACITY[1])

    @property
    def probs(self) -> tuple[float, float]:
        """Probability that a reading fails, and that it is an anomaly."""
        return (self.age_years * PROBS[0], self.age_years * PROBS[1])


STORES: tuple[Store, ...] = (
    Store("Madrid", 1, date(2024, 1, 1), "Europe/Madrid"),
    Store("Paris", 20, date(2018, 1, 1), "Europe/Paris"),
    Store("Berlin", 6, date(2022, 1, 1), "Europe/Berlin"),
    Store("Roma", 4, date(2019, 1, 1), "Europe/Rome"),
    Store("London", 8, date(2014, 1, 1), "Europe/London"),
)


def is_open(store: Store, hour: datetime) -> bool:
    """Whether the hour starting at `hour` (aware) is an opening hour of the store."""
    return OPENS_AT <= hour.astimezone(ZoneInfo(store.timezone)).hour < CLOSES_AT


def reading(store: Store, sensor_id: int, hour: datetime, *, seed: int) -> Event:
    """The reading of one sensor for the hour starting at `hour` (UTC, on the hour)."""
    hour = hour.astimezone(UTC)
    rng = random.Random(f"{store.opened_on.isoformat()}|{sensor_id}|{hour:%Y-%m-%dT%H}|{seed}")
    # Always the same three draws, so the reading depends on nothing but its seed.
    fails, anomalous, traffic = rng.random(), rng.random(), rng.gauss(*store.capacity)
    p_fail, p_anom = store.probs
    section: dict[str, object] = {"store": store.name, "sensor_id": sensor_id}
    if not is_open(store, hour):
        section.update(status="ok", visits=0)
    elif fails < p_fail:
        section.update(status="failed")
    elif anomalous < p_anom:
        section.update(status="ok", visits=round(ANOMALY_SHARE * max(traffic, 0.0)))
    else:
        section.update(status="ok", visits=max(0, round(traffic)))
    section["store_opened_on"] = store.opened_on.isoformat()
    return {
        "event_id": str(
            uuid.uuid5(READING_NAMESPACE, f"{store.name}|{sensor_id}|{hour:%Y-%m-%dT%H}")
        ),
        "device_id": f"{store.name}-{sensor_id}",
        "event_type": "door_count",
        "occurred_at": rfc3339(hour),
        "store": section,
    }


def hours(count: int, now: datetime) -> list[datetime]:
    """The `count` hours that ended last at `now`, oldest first."""
    this_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [this_hour - timedelta(hours=count - i) for i in range(count)]


def flushes(
    count: int, *, seed: int, now: datetime | None = None, stores: tuple[Store, ...] = STORES
) -> Iterator[list[Event]]:
    """One list per counted hour: every sensor of every store, store by store."""
    for hour in hours(count, now or datetime.now(UTC)):
        yield [
            reading(store, sensor_id, hour, seed=seed)
            for store in stores
            for sensor_id in range(store.sensors)
        ]


def spoil(event: Event, rng: random.Random) -> Event:
    """Make one reading invalid the way broken collectors do (each way a distinct reason)."""
    bad = copy(event)
    kind = rng.randrange(6)
    if kind == 0:
        bad["store"]["visits"] = -1
    elif kind == 1:
        bad["store"]["status"] = "broken"
    elif kind == 2:
        bad["store"]["sensor_id"] = str(bad["store"]["sensor_id"])
    elif kind == 3:
        bad["store"]["door"] = "north"
    elif kind == 4:
        bad["event_type"] = "door_open"
    else:
        bad["occurred_at"] = bad["occurred_at"][:13].replace("T", " ") + "h"  # "2024-07-30 12h"
    return bad
