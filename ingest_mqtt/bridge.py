"""The MQTT bridge: broker messages in, the ingest API's validation, tokenization and landing out.

Each message is one event (a JSON object) or an envelope (`{"sent_at", "events": [...]}`, as
`POST /v1/events` takes). Messages are gathered into micro-batches, flushed every
`flush_events` messages (never more) or `flush_seconds` after the first one, and each share of
a flush with one source and one schema version is validated with
`ingest_api.batches.validate_events` (tokenizing the sensitive fields) and landed with
`ingest_api.landing.land`: one raw object, quarantine object and registry transaction, exactly
as the API does. Only then are the messages
acknowledged (QoS 1 PUBACK, paho's manual acks): a bridge that dies before landing leaves them
unacknowledged, and the broker delivers them again to the next session with the same client id
(a persistent session, `clean_session=False`). A redelivered event lands twice at most; silver
keeps one per event_id.

Schema version: an envelope's `schema_version` (any the API supports; `mobile/1` when absent, as
over HTTP); a bare event is `mobile/1`. Other sources publish envelopes (the iot-temperature
simulator publishes one-event `iot/1` envelopes).

Source: `--source` when given, else the topic level the subscription's first wildcard matched
(`telemetry/#` and `telemetry/mobile/dev-1` give `mobile`), else the topic's last level. A source
must be 1-64 letters, digits, `_`, `.` or `-`; otherwise its messages are quarantined under
source `mqtt` with a reason naming the topic.

An invalid message is quarantined, never dropped: bad JSON, a JSON value that is neither an event
nor an envelope, or an envelope the API would refuse, each becomes one quarantine row with its
reasons. The payload of a message that is not JSON is not kept (it could hold a raw IP address
that cannot be found to tokenize); a JSON one is kept tokenized. Raw lines have `sent_at` null:
a micro-batch spans many messages. So no clock skew is corrected, and an event whose
occurred_at lies more than `max_future_s` after the flush's `received_at` is quarantined, by
the API's own rule (`ingest_api.clock`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import uuid4

import orjson

from ingest_api.batches import Origin, ValidatedBatch, parse_envelope, validate_events
from ingest_api.clock import DeviceClock
from ingest_api.errors import IngestError, ServiceUnavailableError
from ingest_api.landing import Landing, land
from ingest_api.schemas import DEFAULT_SCHEMA_VERSION, SCHEMAS
from ingest_api.tokenize import Tokenizer
from ingest_mqtt.errors import BrokerError, LandingError
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore

FALLBACK_SOURCE = "mqtt"
_SOURCE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


@dataclass(frozen=True)
class Item:
    """One event to validate with `schema_version`'s schema, or (with `reasons`) one message
    rejected before validation."""

    event: Any
    payload: Any
    reasons: list[dict[str, str]] = field(default_factory=list)
    schema_version: str = DEFAULT_SCHEMA_VERSION


@dataclass(frozen=True)
class Message:
    """A received message, kept until its batch landed and it was acknowledged."""

    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass
class BridgeResult:
    """What a bridge run did."""

    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    objects: list[str] = field(default_factory=list)

    def render(self) -> str:
        return (
            f"mqtt-bridge: {self.messages} message(s) landed and acknowledged: "
            f"{self.accepted} event(s) accepted in {len(self.objects)} object(s), "
            f"{self.rejected} quarantined"
        )


# --- pure part --------------------------------------------------------------------------------


def source_of(topic: str, topic_filter: str, override: str | None) -> tuple[str, str | None]:
    """The source of a message on `topic`, and a reason when it is not a valid source name."""
    if override:
        name = override
    else:
        fixed = 0
        for level in topic_filter.split("/"):
            if level in {"+", "#"}:
                break
            fixed += 1
        levels = topic.split("/")
        name = levels[fixed] if fixed < len(levels) else levels[-1]
    if _SOURCE.match(name):
        return name, None
    return FALLBACK_SOURCE, "source from the topic must be 1-64 letters, digits, '_', '.' or '-'"


def items(payload: bytes, *, max_events: int, topic_reason: str | None = None) -> list[Item]:
    """The events of one message (one, or an envelope's), or one rejected item."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        message = (
            f"message is not valid JSON (line {exc.lineno}, column {exc.colno}); "
            "its payload is not kept"
        )
        return [Item(None, None, [{"field": "message", "message": message}])]
    if topic_reason is not None:
        return [Item(doc, doc, [{"field": "topic", "message": topic_reason}])]
    if isinstance(doc, dict) and "events" in doc:
        try:
            envelope, schema = parse_envelope(payload, max_events)
        except IngestError as exc:
            reasons = exc.details.get("errors") or [{"field": "message", "message": exc.message}]
            return [Item(doc, doc, list(reasons))]
        return [Item(e, e, schema_version=schema.version) for e in envelope["events"]]
    if not isinstance(doc, dict):
        reason = {"field": "message", "message": "must be a JSON object: an event or an envelope"}
        return [Item(doc, doc, [reason])]
    return [Item(doc, doc)]


def validate_items(
    batch_items: Sequence[Item],
    tokenizer: Tokenizer,
    *,
    max_event_bytes: int,
    clock: DeviceClock | None = None,
    schema_version: str = DEFAULT_SCHEMA_VERSION,
) -> ValidatedBatch:
    """Validate one source's items of one schema version as one batch, as the API validates a
    request's events (with `clock`, also its bound on future events; there is no sent_at, so
    no skew)."""
    schema = SCHEMAS[schema_version]
    envelope = {
        "sent_at": None,
        "schema_version": schema.version,
        "events": [i.event for i in batch_items],
    }
    origin = Origin(
        payloads=[i.payload for i in batch_items],
        errors=[i.reasons for i in batch_items],
        sensitive_fields=schema.sensitive_fields,
    )
    return validate_events(
        envelope, schema, tokenizer, max_event_bytes=max_event_bytes, origin=origin, clock=clock
    )


# --- I/O --------------------------------------------------------------------------------------


class Bridge:
    """Subscribes, gathers micro-batches, lands them and acknowledges what landed."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        registry: Registry,
        *,
        topic: str,
        source: str | None = None,
        client_id: str = "tlake-mqtt-bridge",
        flush_events: int = 500,
        flush_seconds: float = 2.0,
        max_messages: int | None = None,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.settings, self.store, self.registry = settings, store, registry
        self.topic, self.source, self.client_id = topic, source, client_id
        self.flush_events, self.flush_seconds = flush_events, flush_seconds
        self.max_messages = max_messages
        self.log = log
        self.tokenizer = Tokenizer.for_settings(settings)
        self.result = BridgeResult()
        self._buffer: list[Message] = []
        self._first_at: float | None = None
        self._taken = 0
        self._subscribed = False

    def run(self) -> BridgeResult:
        """Run until `max_messages` landed (forever without it). Raises BrokerError or
        LandingError; what was acknowledged before stays landed."""
        client = self._connect()
        try:
            while self.max_messages is None or self.result.messages < self.max_messages:
                rc = client.loop(timeout=0.2)
                if rc != 0:
                    raise BrokerError(f"lost the broker at {self._where()}: rc={rc}")
                while self._due():
                    self._flush(client)
        finally:
            client.disconnect()
        return self.result

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt

        url = urlsplit(self.settings.mqtt_url)
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,  # unacknowledged messages wait for the next session
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if url.username:
            client.username_pw_set(unquote(url.username), unquote(url.password or ""))
        if url.scheme == "mqtts":
            client.tls_set()
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        try:
            client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"cannot reach the MQTT broker at {self._where()}: {exc}") from exc
        client.subscribe(self.topic, qos=1)
        deadline = time.monotonic() + 10
        while not self._subscribed:
            if time.monotonic() > deadline or client.loop(timeout=0.2) != 0:
                client.disconnect()
                raise BrokerError(f"no subscription to {self.topic!r} at {self._where()}")
        self.log(f"subscribed to {self.topic!r} at {self._where()} as {self.client_id!r}")
        return client

    def _where(self) -> str:
        url = urlsplit(self.settings.mqtt_url)
        return f"{url.scheme}://{url.hostname}:{url.port or 1883}"  # never the password

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if any(getattr(c, "is_failure", False) for c in codes):
            raise BrokerError(f"the broker refused the subscription to {self.topic!r}")
        self._subscribed = True

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if self.max_messages is not None and self._taken >= self.max_messages:
            return  # not acknowledged: the next session gets it
        self._taken += 1
        if self._first_at is None:
            self._first_at = time.monotonic()
        self._buffer.append(Message(msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    def _due(self) -> bool:
        if not self._buffer or self._first_at is None:
            return False
        full = len(self._buffer) >= self.flush_events
        last = self.max_messages is not None and self._taken >= self.max_messages
        return full or last or time.monotonic() - self._first_at >= self.flush_seconds

    def _flush(self, client: Any) -> None:
        messages, self._buffer = (
            self._buffer[: self.flush_events],
            self._buffer[self.flush_events :],
        )
        self._first_at = time.monotonic() if self._buffer else None
        received_at = datetime.now(UTC)
        by_source: dict[tuple[str, str], list[Item]] = {}
        for m in messages:
            source, topic_reason = source_of(m.topic, self.topic, self.source)
            for item in items(
                m.payload,
                max_events=self.settings.max_events_per_batch,
                topic_reason=topic_reason,
            ):
                by_source.setdefault((source, item.schema_version), []).append(item)
        for (source, version), batch_items in by_source.items():
            landing = self._land(source, version, batch_items, received_at)
            self.result.accepted += landing.accepted
            self.result.rejected += landing.rejected
            if landing.object_key:
                self.result.objects.append(landing.object_key)
        for m in messages:  # every batch of the flush landed: acknowledge
            if m.qos > 0:
                client.ack(m.mid, m.qos)
        self.result.messages += len(messages)
        self.log(
            f"flushed {len(messages)} message(s): {self.result.accepted} accepted, "
            f"{self.result.rejected} quarantined so far"
        )

    def _land(
        self, source: str, version: str, batch_items: list[Item], received_at: datetime
    ) -> Landing:
        batch = validate_items(
            batch_items,
            self.tokenizer,
            max_event_bytes=self.settings.max_event_bytes,
            clock=DeviceClock.for_settings(self.settings, received_at),
            schema_version=version,
        )
        try:
            return land(
                self.store,
                self.registry,
                batch,
                batch_id=uuid4(),
                source=source,
                received_at=received_at,
                component="ingest_mqtt",
            )
        except ServiceUnavailableError as exc:
            raise LandingError(
                f"a micro-batch of source {source!r} could not land ({exc.message}); "
                "its messages were not acknowledged"
            ) from exc
