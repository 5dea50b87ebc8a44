"""Realistic mobile telemetry, posted through the ingest API like a real SDK would.

Each simulated device runs app sessions on an accelerated clock (the whole window is generated as
fast as the API accepts it): app_open → screen_view … → app_close, a battery_status every five
minutes, a heartbeat every minute, network changes, rare crashes. The SDK buffers events and
flushes a gzip batch every five simulated minutes or 100 events, retries with backoff on 429/503 and
network errors, and — like real SDKs after a lost response — sometimes re-sends a batch it already
delivered, so duplicates across batches are part of the traffic. `--seed` makes it reproducible.

The HTTP client is `tlake.simulators.client`, shared with the other profiles (`tlake.simulators`).
Unlike them, this SDK sends no `Idempotency-Key`, so its re-sends land and silver drops them. Its
`sent_at` is the real clock when a batch is sent, as a device's would be: the accelerated window
replays buffered events, and a simulated `sent_at` would look like a device clock hours off, which
silver corrects (clock skew) by moving the events to their arrival time.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tlake.simulators.client import Batch, Sender, SimulationResult, deliver, rfc3339

__all__ = ["FLUSH_SIZE", "Sender", "SimulationResult", "batches", "make_devices", "run", "spoil"]

MODELS = [
    ("Android", "14", "Pixel 8", "Google"),
    ("Android", "13", "Galaxy S23", "Samsung"),
    ("Android", "12", "Redmi Note 11", "Xiaomi"),
    ("iOS", "17.4", "iPhone 15", "Apple"),
    ("iOS", "16.7", "iPhone 12", "Apple"),
]
CARRIERS = ["Vodafone", "Orange", "T-Mobile", "Claro", "Vivo"]
SCREENS = ["home", "search", "detail", "cart", "checkout", "settings", "profile"]
FLUSH_EVERY = timedelta(minutes=5)
FLUSH_SIZE = 100


@dataclass
class Device:
    device_id: str
    os: str
    os_version: str
    model: str
    manufacturer: str
    app_version: str
    battery_pct: float
    charging: bool
    network: dict[str, Any]
    session_id: str | None = None
    session_started: datetime | None = None
    buffer: list[dict[str, Any]] = field(default_factory=list)
    last_flush: datetime | None = None


def _network(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.6:
        return {
            "type": "wifi",
            "ip": f"192.168.{rng.randint(0, 20)}.{rng.randint(2, 254)}",
            "ssid": f"HomeNet-{rng.randint(100, 999)}",
            "signal_dbm": rng.randint(-80, -30),
        }
    return {
        "type": "cellular",
        "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
        "carrier": rng.choice(CARRIERS),
        "signal_dbm": rng.randint(-120, -60),
    }


def make_devices(n: int, rng: random.Random) -> list[Device]:
    devices = []
    for i in range(n):
        os_name, os_version, model, maker = rng.choice(MODELS)
        devices.append(
            Device(
                device_id=f"dev-{i:05d}-{rng.getrandbits(32):08x}",
                os=os_name,
                os_version=os_version,
                model=model,
                manufacturer=maker,
                app_version=rng.choice(["3.2.0", "3.2.1", "3.3.0"]),
                battery_pct=rng.uniform(25, 100),
                charging=rng.random() < 0.2,
                network=_network(rng),
            )
        )
    return devices


def _event(dev: Device, event_type: str, at: datetime, rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "device_id": dev.device_id,
        "event_type": event_type,
        "occurred_at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "app": {"name": "shop", "version": dev.app_version},
        "device": {
            "os": dev.os,
            "os_version": dev.os_version,
            "model": dev.model,
            "manufacturer": dev.manufacturer,
        },
        "battery": {
            "level_pct": round(dev.battery_pct, 1),
            "charging": dev.charging,
            "temperature_c": round(rng.gauss(31, 3), 1),
        },
        "network": dict(dev.network),
    }
    if dev.session_id:
        elapsed = int((at - (dev.session_started or at)).total_seconds() * 1000)
        event["session"] = {"session_id": dev.session_id, "duration_ms": elapsed}
    if event_type == "screen_view":
        event["attributes"] = {"screen": rng.choice(SCREENS), "load_ms": rng.randint(40, 900)}
    elif event_type == "crash":
        event["attributes"] = {"exception": "NullPointerException", "fatal": True}
    return event


def spoil(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Make one event invalid the way real clients do (each way has a distinct reason)."""
    bad = orjson.loads(orjson.dumps(event))
    kind = rng.randrange(5)
    if kind == 0:
        bad["battery"]["level_pct"] = 140.0
    elif kind == 1:
        del bad["device_id"]
    elif kind == 2:
        bad["debug_blob"] = "unexpected"
    elif kind == 3:
        bad["network"]["type"] = "5g-ish"
    else:
        bad["occurred_at"] = "yesterday"
    return bad


def device_events(
    dev: Device, start: datetime, minutes: int, rng: random.Random
) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """One device's events over the window, in time order."""
    t = start + timedelta(seconds=rng.uniform(0, 60))
    end = start + timedelta(minutes=minutes)
    next_heartbeat = t
    next_battery = t
    while t < end:
        if dev.session_id is None and rng.random() < 0.3:
            dev.session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            dev.session_started = t
            yield t, _event(dev, "app_open", t, rng)
        if dev.session_id is not None:
            yield t, _event(dev, "screen_view", t, rng)
            if rng.random() < 0.004:
                yield t, _event(dev, "crash", t, rng)
                dev.session_id = None
            elif rng.random() < 0.1:
                yield t, _event(dev, "app_close", t, rng)
                dev.session_id = None
        if t >= next_heartbeat:
            yield t, _event(dev, "heartbeat", t, rng)
            next_heartbeat = t + timedelta(minutes=1)
        if t >= next_battery:
            yield t, _event(dev, "battery_status", t, rng)
            next_battery = t + timedelta(minutes=5)
        if rng.random() < 0.02:
            dev.network = _network(rng)
            yield t, _event(dev, "network_change", t, rng)
        step = rng.uniform(10, 40)
        drain = 0.02 if dev.session_id else 0.005
        dev.battery_pct = max(1.0, dev.battery_pct - drain * step + (0.08 * step * dev.charging))
        dev.battery_pct = min(dev.battery_pct, 100.0)
        if rng.random() < 0.01:
            dev.charging = not dev.charging
        t += timedelta(seconds=step)


def batches(
    devices: int,
    minutes: int,
    *,
    seed: int,
    bad_rate: float = 0.0,
    resend_rate: float = 0.02,
    now: datetime | None = None,
) -> Iterator[tuple[dict[str, Any], bool]]:
    """Envelopes as the SDK would flush them, in send order; the flag marks a duplicate re-send."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    start = now - timedelta(minutes=minutes)
    fleet = make_devices(devices, rng)
    timeline = sorted(
        (
            (at, i, ev)
            for i, dev in enumerate(fleet)
            for at, ev in device_events(dev, start, minutes, rng)
        ),
        key=lambda item: (item[0], item[1]),
    )
    for at, i, ev in timeline:
        dev = fleet[i]
        if bad_rate and rng.random() < bad_rate:
            ev = spoil(ev, rng)
        dev.buffer.append(ev)
        dev.last_flush = dev.last_flush or at
        if len(dev.buffer) >= FLUSH_SIZE or at - dev.last_flush >= FLUSH_EVERY:
            envelope = {"sent_at": rfc3339(datetime.now(UTC)), "events": dev.buffer}
            yield envelope, False
            if rng.random() < resend_rate:
                yield envelope, True
            dev.buffer, dev.last_flush = [], at
    for dev in fleet:
        if dev.buffer:
            yield {"sent_at": rfc3339(datetime.now(UTC)), "events": dev.buffer}, False


def run(
    api_url: str,
    api_key: str,
    *,
    devices: int,
    minutes: int,
    seed: int = 7,
    bad_rate: float = 0.0,
    resend_rate: float = 0.02,
    concurrency: int = 4,
    now: datetime | None = None,
) -> SimulationResult:
    """Simulate and post; raises SimulationError if the API refuses the key or keeps failing."""
    stream = batches(
        devices, minutes, seed=seed, bad_rate=bad_rate, resend_rate=resend_rate, now=now
    )
    return deliver(
        api_url,
        api_key,
        (Batch(envelope, resent=resent) for envelope, resent in stream),
        concurrency=concurrency,
    )
