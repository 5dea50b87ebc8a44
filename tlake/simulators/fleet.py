"""The `atm-fleet` profile (origin 000): ATMs, cash counters, PDs and PCs reporting as `fleet/1`.

The inventory follows the origin's data dictionary: `device_code` is the machine type prefix
(AT, CC, PD, PC) and a six-digit sequence, and is the event's `device_id`; a device belongs to a
five-digit branch in one Brazilian state; `acquisition_sequence` is the branch id glued to the
acquisition date (YYYYMMDD); `network_address` is a private IPv4 address (sensitive: the API
stores it as a token); `os_version` has one decimal place.

Timeline, on an accelerated clock: the window is `minutes` long and aligned to snapshot windows
of `snapshot_minutes` (gold groups heartbeats into the same windows). At its start every device
sends one `inventory` event. In every snapshot window each online device sends one `heartbeat`
(status `online`, `has_error` now and then); an offline device sends nothing, except a small
share that report status `offline` explicitly. Devices drop offline and come back at random, so
the online share hovers around 97%. With an outage (`outage_after_minutes`), a fixed share of the
devices falls silent from that minute on, which the online-share monitor (drop of more than 15%
against the mean of the previous 4 snapshots) should alert on.

The gateway flushes each snapshot's reports (and the inventory) in batches; see `batching`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tlake.simulators.batching import Event, copy, seeded_uuid
from tlake.simulators.client import rfc3339

SCHEMA_VERSION = "fleet/1"
MAX_DEVICES = 999_999  # six-digit sequences
# Machine type -> (device code prefix, share of the fleet, models with their supplier).
MACHINE_TYPES: dict[str, tuple[str, float, tuple[tuple[str, str], ...]]] = {
    "ATM": ("AT", 0.45, (("ATMv18", "Diebold Nixdorf"), ("ATMv20", "NCR"), ("ATMv22", "Hyosung"))),
    "CC": ("CC", 0.20, (("Bell2021", "Perto"), ("Bell2023", "Perto"), ("CashCube5", "Glory"))),
    "PD": ("PD", 0.20, (("PayDock3", "Ingenico"), ("PayDock4", "Verifone"))),
    "PC": ("PC", 0.15, (("OptiPlex7010", "Dell"), ("ThinkCentreM70", "Lenovo"))),
}
OPERATING_SYSTEMS: dict[str, tuple[str, ...]] = {
    "Ubuntu": ("18.4", "20.4", "22.4"),
    "Windows": ("7.0", "10.0", "11.0"),
}
# Brazilian states weighted roughly by population (every state appears in a large fleet).
STATE_WEIGHTS: dict[str, int] = {
    "SP": 22, "MG": 10, "RJ": 8, "BA": 7, "PR": 6, "RS": 5, "PE": 5, "CE": 4, "PA": 4, "SC": 4,
    "GO": 3, "MA": 3, "AM": 2, "ES": 2, "PB": 2, "RN": 2, "MT": 2, "AL": 2, "PI": 2, "DF": 2,
    "MS": 1, "SE": 1, "RO": 1, "TO": 1, "AC": 1, "AP": 1, "RR": 1,
}  # fmt: skip
ACQUIRED_FROM, ACQUIRED_UNTIL = date(2015, 1, 1), date(2024, 12, 31)
DEVICES_PER_BRANCH = 8
P_ONLINE_AT_START = 0.97
P_GO_OFFLINE = 0.01  # per snapshot, for an online device
P_COME_BACK = 0.30  # per snapshot, for an offline one
P_REPORT_OFFLINE = 0.10  # an offline device that says so instead of going silent
P_ERROR = 0.02


@dataclass(frozen=True)
class Device:
    """One machine of the inventory (the data dictionary's fields)."""

    device_code: str
    machine_type: str
    branch_id: str
    state: str
    machine_model: str
    supplier: str
    network_address: str
    operating_system: str
    os_version: str
    acquisition_date: date

    @property
    def acquisition_sequence(self) -> str:
        return f"{self.branch_id}{self.acquisition_date:%Y%m%d}"


def _private_ipv4(rng: random.Random) -> str:
    block = rng.randrange(3)
    if block == 0:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randint(1, 254)}"
    if block == 1:
        return f"172.{rng.randint(16, 31)}.{rng.randrange(256)}.{rng.randint(1, 254)}"
    return f"192.168.{rng.randrange(256)}.{rng.randint(1, 254)}"


def make_fleet(n: int, rng: random.Random) -> list[Device]:
    """`n` devices with unique codes, spread over about n/8 branches."""
    states, weights = list(STATE_WEIGHTS), list(STATE_WEIGHTS.values())
    branch_ids = rng.sample(range(10_000, 100_000), max(1, n // DEVICES_PER_BRANCH))
    branches = [(f"{b:05d}", rng.choices(states, weights)[0]) for b in branch_ids]
    types = list(MACHINE_TYPES)
    shares = [MACHINE_TYPES[t][1] for t in types]
    span = (ACQUIRED_UNTIL - ACQUIRED_FROM).days
    fleet = []
    for seq in range(1, n + 1):
        machine_type = rng.choices(types, shares)[0]
        prefix, _, models = MACHINE_TYPES[machine_type]
        model, supplier = rng.choice(models)
        branch_id, state = rng.choice(branches)
        os_name = rng.choice(list(OPERATING_SYSTEMS))
        fleet.append(
            Device(
                device_code=f"{prefix}{seq:06d}",
                machine_type=machine_type,
                branch_id=branch_id,
                state=state,
                machine_model=model,
                supplier=supplier,
                network_address=_private_ipv4(rng),
                operating_system=os_name,
                os_version=rng.choice(OPERATING_SYSTEMS[os_name]),
                acquisition_date=ACQUIRED_FROM + timedelta(days=rng.randint(0, span)),
            )
        )
    return fleet


def report(
    dev: Device, event_type: str, at: datetime, event_id: str, *, status: str, has_error: bool
) -> Event:
    """A `fleet/1` event carrying the device's whole record, as the origin's API reported every
    machine with all its fields: an `inventory` once at the start, then a `heartbeat` per
    snapshot (gold keeps each machine's latest values, so a report never leaves one out)."""
    return {
        "event_id": event_id,
        "device_id": dev.device_code,
        "event_type": event_type,
        "occurred_at": rfc3339(at),
        "fleet": {
            "status": status,
            "machine_type": dev.machine_type,
            "state": dev.state,
            "branch_id": dev.branch_id,
            "acquisition_sequence": dev.acquisition_sequence,
            "has_error": has_error,
            "machine_model": dev.machine_model,
            "supplier": dev.supplier,
            "network_address": dev.network_address,
            "operating_system": dev.operating_system,
            "os_version": dev.os_version,
            "acquisition_date": dev.acquisition_date.isoformat(),
        },
    }


def window(minutes: int, snapshot_minutes: int, now: datetime) -> tuple[datetime, int]:
    """Start of the window and its number of snapshots: whole snapshot windows ending at the
    last boundary at or before `now`."""
    step = snapshot_minutes * 60
    end = datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)
    snapshots = max(1, minutes // snapshot_minutes)
    return end - timedelta(seconds=snapshots * step), snapshots


def flushes(
    devices: int,
    minutes: int,
    *,
    seed: int,
    snapshot_minutes: int = 5,
    outage_after_minutes: int | None = None,
    outage_share: float = 0.4,
    now: datetime | None = None,
) -> Iterator[list[Event]]:
    """The inventory, then one list of reports per snapshot window, each in time order."""
    rng = random.Random(f"atm-fleet:{seed}")  # per profile: no id shared across profiles
    fleet = make_fleet(devices, rng)
    start, snapshots = window(minutes, snapshot_minutes, now or datetime.now(UTC))
    step_s = snapshot_minutes * 60
    # The silent devices come from their own generator: an outage only removes reports.
    silent: set[int] = set()
    if outage_after_minutes is not None:
        outage_rng = random.Random(f"{seed}:outage")
        silent = set(outage_rng.sample(range(devices), round(outage_share * devices)))
    inventory = [
        report(
            dev,
            "inventory",
            start + timedelta(seconds=rng.uniform(0, 30)),
            seeded_uuid(rng),
            status="online",
            has_error=False,
        )
        for dev in fleet
    ]
    yield sorted(inventory, key=_by_time)
    online = [rng.random() < P_ONLINE_AT_START for _ in fleet]
    for k in range(snapshots):
        t = start + timedelta(seconds=k * step_s)
        outage = outage_after_minutes is not None and t >= start + timedelta(
            minutes=outage_after_minutes
        )
        reports = []
        for i, dev in enumerate(fleet):
            if k > 0:
                stays = rng.random()
                online[i] = stays >= P_GO_OFFLINE if online[i] else stays < P_COME_BACK
            # Every draw happens for every device, so silencing some leaves the others as they were.
            at = t + timedelta(seconds=rng.uniform(0, step_s - 1))
            has_error = rng.random() < P_ERROR
            says_offline = rng.random() < P_REPORT_OFFLINE
            event_id = seeded_uuid(rng)
            if outage and i in silent:
                continue
            if online[i] or says_offline:
                status = "online" if online[i] else "offline"
                reports.append(
                    report(dev, "heartbeat", at, event_id, status=status, has_error=has_error)
                )
        yield sorted(reports, key=_by_time)


def _by_time(event: Event) -> tuple[str, str]:
    return event["occurred_at"], event["device_id"]


def spoil(event: Event, rng: random.Random) -> Event:
    """Make one fleet event invalid the way broken agents do (each way a distinct reason)."""
    bad = copy(event)
    kind = rng.randrange(6)
    if kind == 0:
        bad["device_id"] = "AX" + bad["device_id"][2:]
    elif kind == 1:
        bad["fleet"]["state"] = "ZZ"
    elif kind == 2:
        bad["fleet"]["status"] = "rebooting"
    elif kind == 3:
        bad["firmware_dump"] = "0xDEADBEEF"
    elif kind == 4:
        bad["fleet"]["branch_id"] = bad["fleet"]["branch_id"][:4]
    else:
        bad["occurred_at"] = "yesterday"
    return bad
