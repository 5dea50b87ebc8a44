"""The `iot-temperature` profile (origin 002): sensors publishing readings over MQTT, as `iot/1`.

The sensors are declared in a JSON file (`tlake/data/sensors.json` unless `--sensors-file`):
five temperature sensors of one site (Main Entrance, Kitchen, Deposit, Assembly Floor, Offices),
each with id, location, latitude, longitude, unit, type, range `[min, max]` and description.

Each sensor reads once a second on an accelerated clock (the window is published as fast as the
broker takes it): a random walk that stays inside the sensor's range. Each reading is published
with QoS 1 on `<topic prefix>/iot/<sensor id>` as a one-event envelope with `schema_version`
`iot/1`, which is how the MQTT bridge (`tlake mqtt-bridge --topic '<prefix>/#'`) knows its
schema; the bridge validates and lands it like the API, under source `iot` (the topic level its
wildcard matched). A reading's event id is a seeded UUID: the same seed publishes the same
readings. `bad_rate` spoils that share of the readings; the bridge quarantines them.

Publishing waits for every PUBACK: when `publish` returns, the broker holds every message (for
the bridge's persistent session, if one is subscribed), but nothing says they have landed yet.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import orjson
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from typing_extensions import TypedDict

from tlake.errors import BrokerUnavailableError, SimulatorConfigError
from tlake.simulators.batching import Clock, Event, copy, seeded_uuid
from tlake.simulators.client import rfc3339

SCHEMA_VERSION = "iot/1"
SENSORS_FILE = Path(__file__).resolve().parent.parent / "data" / "sensors.json"
MAX_PENDING = 1_000  # messages published but not yet acknowledged by the broker
STEP_SHARE = 0.005  # a reading moves by about this share of the sensor's range per second


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] < value[1]:
        raise ValueError("range must be [min, max] with min < max")
    return value


class SensorSpec(TypedDict):
    """One sensor of the sensors file; bounds match what `iot/1` accepts."""

    __pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)  # type: ignore[misc]
    # A topic level and a device id: no MQTT wildcards, separators or control characters.
    id: Annotated[
        str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^/+#\x00-\x1f\x7f]+$")
    ]
    location: Annotated[str, StringConstraints(max_length=128)]
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    range: Annotated[tuple[float, float], AfterValidator(_ordered)]
    description: str


_SENSORS = TypeAdapter(list[SensorSpec])


def load_sensors(path: Path | None = None) -> list[SensorSpec]:
    """The sensors declared in `path` (default: the shipped file). Raises SimulatorConfigError
    naming the file and the first problems."""
    path = path or SENSORS_FILE
    try:
        sensors = _SENSORS.validate_json(path.read_bytes())
    except OSError as exc:
        raise SimulatorConfigError(f"cannot read the sensors file {path}: {exc}") from exc
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise SimulatorConfigError(f"invalid sensors file {path}: {problems}") from None
    if not sensors:
        raise SimulatorConfigError(f"the sensors file {path} declares no sensor")
    ids = [s["id"] for s in sensors]
    if len(set(ids)) != len(ids):
        raise SimulatorConfigError(f"the sensors file {path} declares a sensor id twice")
    return sensors


def readings(
    sensors: Sequence[SensorSpec], seconds: int, *, seed: int, now: datetime | None = None
) -> Iterator[Event]:
    """One reading per sensor and second over the `seconds` before `now`, in time order."""
    rng = random.Random(f"iot-temperature:{seed}")  # per profile: no id shared across profiles
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(seconds=seconds)
    values = [lo + (hi - lo) * rng.uniform(0.3, 0.7) for lo, hi in (s["range"] for s in sensors)]
    for second in range(seconds):
        at = rfc3339(start + timedelta(seconds=second))
        for i, sensor in enumerate(sensors):
            lo, hi = sensor["range"]
            value = values[i] + rng.gauss(0.0, (hi - lo) * STEP_SHARE)
            value = 2 * hi - value if value > hi else 2 * lo - value if value < lo else value
            values[i] = min(max(value, lo), hi)
            yield {
                "event_id": seeded_uuid(rng),
                "device_id": sensor["id"],
                "event_type": "reading",
                "occurred_at": at,
                "reading": {
                    "value": round(values[i], 2),
                    "unit": sensor["unit"],
                    "type": sensor["type"],
                    "location": sensor["location"],
                    "latitude": sensor["latitude"],
                    "longitude": sensor["longitude"],
                    "range_min": lo,
                    "range_max": hi,
                },
            }


@dataclass(frozen=True)
class Message:
    """One MQTT publication; `bad` marks a deliberately spoiled reading."""

    topic: str
    payload: bytes
    bad: bool = False


def topic_for(prefix: str, sensor_id: str) -> str:
    return f"{prefix.rstrip('/')}/iot/{sensor_id}"


def _now() -> datetime:
    return datetime.now(UTC)


def messages(
    events: Iterable[Event],
    *,
    seed: int,
    bad_rate: float = 0.0,
    topic_prefix: str = "telemetry",
    clock: Clock = _now,
) -> Iterator[Message]:
    """Each reading as a one-event `iot/1` envelope on its sensor's topic."""
    rng = random.Random(f"{seed}:client")
    for event in events:
        bad = bool(bad_rate) and rng.random() < bad_rate
        envelope = {
            "sent_at": rfc3339(clock()),
            "schema_version": SCHEMA_VERSION,
            "events": [spoil(event, rng) if bad else event],
        }
        yield Message(topic_for(topic_prefix, event["device_id"]), orjson.dumps(envelope), bad)


def spoil(event: Event, rng: random.Random) -> Event:
    """Make one reading invalid the way broken firmware does (each way a distinct reason)."""
    bad = copy(event)
    kind = rng.randrange(6)
    if kind == 0:
        bad["reading"]["value"] = str(bad["reading"]["value"])
    elif kind == 1:
        bad["reading"]["unit"] = ""
    elif kind == 2:
        bad["reading"]["latitude"] = 123.4
    elif kind == 3:
        bad["reading"]["humidity_pct"] = 55
    elif kind == 4:
        bad["event_type"] = "measurement"
    else:
        bad["occurred_at"] = bad["occurred_at"].removesuffix("Z")  # local time, no zone
    return bad


@dataclass
class PublishResult:
    """What was published and acknowledged (QoS 1 PUBACK) by the broker."""

    broker: str
    messages: int = 0
    bad_events: int = 0
    topics: set[str] = field(default_factory=set)

    def render(self, seconds: float) -> str:
        rate = self.messages / seconds if seconds > 0 else 0.0
        return (
            f"  published {self.messages} readings ({self.bad_events} deliberately invalid) on "
            f"{len(self.topics)} topics to {self.broker} in {seconds:.1f}s ({rate:,.0f}/s), "
            "every one acknowledged (QoS 1); `tlake mqtt-bridge` lands them"
        )


def _where(url: Any) -> str:
    return f"{url.scheme}://{url.hostname}:{url.port or 1883}"  # never the password


def publish(
    mqtt_url: str,
    stream: Iterable[Message],
    *,
    client_id: str | None = None,
    timeout_s: float = 30.0,
) -> PublishResult:
    """Publish every message with QoS 1 and wait for its PUBACK (at most MAX_PENDING in flight).
    Raises BrokerUnavailableError when the broker cannot be reached, refuses the connection or
    stops acknowledging."""
    import paho.mqtt.client as mqtt

    url = urlsplit(mqtt_url)
    result = PublishResult(broker=_where(url))
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"tlake-sim-{uuid.uuid4().hex[:12]}",
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(100)
    if url.username:
        client.username_pw_set(unquote(url.username), unquote(url.password or ""))
    if url.scheme == "mqtts":
        client.tls_set()
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
    except OSError as exc:
        raise BrokerUnavailableError(
            f"cannot reach the MQTT broker at {result.broker}: {exc}"
        ) from exc
    client.loop_start()
    try:
        if not connected.wait(timeout_s) or refused:
            why = refused[0] if refused else "no CONNACK"
            raise BrokerUnavailableError(f"the MQTT broker at {result.broker} refused us: {why}")
        pending: deque[mqtt.MQTTMessageInfo] = deque()
        for message in stream:
            pending.append(client.publish(message.topic, message.payload, qos=1))
            result.messages += 1
            result.bad_events += int(message.bad)
            result.topics.add(message.topic)
            if len(pending) >= MAX_PENDING:
                _acknowledged(pending.popleft(), result.broker, timeout_s)
        while pending:
            _acknowledged(pending.popleft(), result.broker, timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return result


def _acknowledged(info: Any, broker: str, timeout_s: float) -> None:
    try:
        info.wait_for_publish(timeout_s)
    except (ValueError, RuntimeError) as exc:
        raise BrokerUnavailableError(
            f"publishing to the MQTT broker at {broker} failed: {exc}"
        ) from exc
    if not info.is_published():
        raise BrokerUnavailableError(
            f"the MQTT broker at {broker} acknowledged nothing for {timeout_s:.0f}s"
        )
