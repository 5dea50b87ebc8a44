"""`tlake simulate --profile P`: each profile's options, defaults and run.

Options a profile does not take are refused rather than ignored (`--hours` means nothing to the
fleet), so a command line always says what it simulates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

from tlake import simulate as mobile
from tlake.errors import SimulatorConfigError
from tlake.simulators import Profile, batching, fleet, iot, stores, stream
from tlake.simulators.client import Batch, SimulationResult, deliver

# The API key's source for the profiles that post over HTTP (iot-temperature goes over MQTT).
SOURCES: dict[Profile, str] = {
    Profile.MOBILE: "mobile",
    Profile.ATM_FLEET: "fleet",
    Profile.STORE_TRAFFIC: "store",
    Profile.STREAM: "stream",
}
DEFAULT_MINUTES = {
    Profile.MOBILE: 30,
    Profile.ATM_FLEET: 60,
    Profile.IOT_TEMPERATURE: 10,
    Profile.STREAM: 10,
}
DEFAULT_DEVICES = {Profile.MOBILE: 20, Profile.ATM_FLEET: 2_000}
DEFAULT_HOURS = 48
DEFAULT_STREAMS = 2
DEFAULT_OUTAGE_SHARE = 0.4
DEFAULT_TOPIC_PREFIX = "telemetry"
BATCH_SIZE = 500  # events per batch of the gateway-like clients (fleet, stores)
MAX_HOURS = 24 * 366
MAX_STREAMS = 10_000
_EVERY = frozenset(Profile)
# Which profiles take each optional option (None when not given).
_TAKEN_BY: dict[str, frozenset[Profile]] = {
    "devices": frozenset({Profile.MOBILE, Profile.ATM_FLEET}),
    "minutes": _EVERY - {Profile.STORE_TRAFFIC},
    "hours": frozenset({Profile.STORE_TRAFFIC}),
    "streams": frozenset({Profile.STREAM}),
    "outage_after_minutes": frozenset({Profile.ATM_FLEET}),
    "outage_share": frozenset({Profile.ATM_FLEET}),
    "sensors_file": frozenset({Profile.IOT_TEMPERATURE}),
    "topic_prefix": frozenset({Profile.IOT_TEMPERATURE}),
    "resend_rate": _EVERY - {Profile.IOT_TEMPERATURE},
}


@dataclass(frozen=True)
class Options:
    """What `tlake simulate` was asked for; None means the profile's default."""

    seed: int = 7
    bad_rate: float = 0.0
    resend_rate: float | None = None
    devices: int | None = None
    minutes: int | None = None
    hours: int | None = None
    streams: int | None = None
    outage_after_minutes: int | None = None
    outage_share: float | None = None
    sensors_file: Path | None = None
    topic_prefix: str | None = None
    snapshot_minutes: int = 5  # settings.fleet_snapshot_minutes

    @property
    def resend(self) -> float:
        return 0.02 if self.resend_rate is None else self.resend_rate


def check(profile: Profile, options: Options) -> None:
    """Raise SimulatorConfigError naming the first option the profile does not take or whose
    value is out of range."""
    for f in fields(options):
        takers = _TAKEN_BY.get(f.name)
        if takers is not None and profile not in takers and getattr(options, f.name) is not None:
            flag = "--" + f.name.replace("_", "-")
            names = ", ".join(sorted(takers))
            raise SimulatorConfigError(f"{flag} applies to {names} only, not {profile}")
    _within("--bad-rate", options.bad_rate, 0.0, 1.0)
    _within("--resend-rate", options.resend, 0.0, 1.0)
    _within("--outage-share", options.outage_share, 0.0, 1.0)
    _within("--devices", options.devices, 1, fleet.MAX_DEVICES)
    _within("--minutes", options.minutes, 1, 366 * 24 * 60)
    _within("--hours", options.hours, 1, MAX_HOURS)
    _within("--streams", options.streams, 1, MAX_STREAMS)
    _within("--outage-after-minutes", options.outage_after_minutes, 0, 366 * 24 * 60)
    prefix = options.topic_prefix
    if prefix is not None and (not prefix.strip("/") or any(c in prefix for c in "+#\x00")):
        raise SimulatorConfigError("--topic-prefix must be a topic without wildcards ('+', '#')")


def _within(flag: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise SimulatorConfigError(f"{flag} must be between {low} and {high}")


def http_batches(
    profile: Profile,
    options: Options,
    *,
    now: datetime | None = None,
    run_id: str | None = None,
) -> Iterator[Batch]:
    """The batches an HTTP profile posts, in send order (see `batching`)."""
    check(profile, options)
    seed, minutes = options.seed, options.minutes or DEFAULT_MINUTES.get(profile, 0)
    devices = options.devices or DEFAULT_DEVICES.get(profile, 0)
    if profile is Profile.MOBILE:
        envelopes = mobile.batches(
            devices,
            minutes,
            seed=seed,
            bad_rate=options.bad_rate,
            resend_rate=options.resend,
            now=now,
        )
        return (Batch(envelope, resent=resent) for envelope, resent in envelopes)
    if profile is Profile.ATM_FLEET:
        flushes = fleet.flushes(
            devices,
            minutes,
            seed=seed,
            snapshot_minutes=options.snapshot_minutes,
            outage_after_minutes=options.outage_after_minutes,
            outage_share=(
                DEFAULT_OUTAGE_SHARE if options.outage_share is None else options.outage_share
            ),
            now=now,
        )
        schema, spoil = fleet.SCHEMA_VERSION, fleet.spoil
    elif profile is Profile.STORE_TRAFFIC:
        flushes = stores.flushes(options.hours or DEFAULT_HOURS, seed=seed, now=now)
        schema, spoil = stores.SCHEMA_VERSION, stores.spoil
    elif profile is Profile.STREAM:
        flushes = stream.flushes(options.streams or DEFAULT_STREAMS, minutes, seed=seed, now=now)
        schema, spoil = stream.SCHEMA_VERSION, stream.spoil
    else:
        raise SimulatorConfigError(f"{profile} does not post over HTTP")
    return batching.batches(
        flushes,
        schema_version=schema,
        spoil=spoil,
        seed=seed,
        batch_size=BATCH_SIZE,
        bad_rate=options.bad_rate,
        resend_rate=options.resend,
        run_id=run_id,
    )


def mqtt_messages(options: Options, *, now: datetime | None = None) -> Iterator[iot.Message]:
    """The messages the iot-temperature profile publishes, in publish order."""
    check(Profile.IOT_TEMPERATURE, options)
    sensors = iot.load_sensors(options.sensors_file)
    seconds = 60 * (options.minutes or DEFAULT_MINUTES[Profile.IOT_TEMPERATURE])
    return iot.messages(
        iot.readings(sensors, seconds, seed=options.seed, now=now),
        seed=options.seed,
        bad_rate=options.bad_rate,
        topic_prefix=options.topic_prefix or DEFAULT_TOPIC_PREFIX,
    )


def run(
    profile: Profile,
    options: Options,
    *,
    api_url: str,
    api_key: str | None,
    mqtt_url: str,
    concurrency: int = 4,
    now: datetime | None = None,
) -> SimulationResult | iot.PublishResult:
    """Simulate `profile` and send it: over HTTP with `api_key`, or to the MQTT broker.
    Raises SimulatorConfigError before sending anything, SimulationError while sending."""
    if profile is Profile.IOT_TEMPERATURE:
        return iot.publish(mqtt_url, mqtt_messages(options, now=now))
    batches = http_batches(profile, options, now=now)
    if api_key is None:
        raise SimulatorConfigError(f"{profile} posts to the API and needs a write key")
    if concurrency < 1:
        raise SimulatorConfigError("--concurrency must be at least 1")
    return deliver(api_url, api_key, batches, concurrency=concurrency)
