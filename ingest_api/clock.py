"""Device clocks at the edge: Segment's skew correction and the bound on future events.

One rule for every intake path (`/v1/events`, the Segment routes, the MQTT bridge), applied by
`ingest_api.batches.validate_events`:

- skew = `received_at - sent_at` of the batch. When `|skew| > clock_skew_threshold_s` the
  event's *effective* time is `occurred_at + skew`, else `occurred_at` (also when `sent_at` is
  unknown: MQTT, a Segment batch without `sentAt`).
- An event whose effective time lies more than `max_future_s` after `received_at` is rejected
  (quarantined with a reason on `occurred_at`, the rest of the batch goes on).

The edge only rejects: the stored `occurred_at` stays what the client sent, and silver applies
the same correction (and flags it). With the skew applied, `occurred_at + skew <= received_at +
max_future_s` is `occurred_at <= sent_at + max_future_s`, so one comparison per event against
a per-batch `latest` suffices, and no sum of client timestamps can overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lake_config.settings import Settings

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def skew(received_at: datetime, sent_at: datetime | None, threshold_s: float) -> timedelta:
    """The correction of a batch's event times: `received_at - sent_at` when it exceeds
    `threshold_s` in magnitude, else zero (also without `sent_at`)."""
    if sent_at is None:
        return timedelta(0)
    offset = received_at - sent_at
    return offset if abs(offset.total_seconds()) > threshold_s else timedelta(0)


@dataclass(frozen=True)
class DeviceClock:
    """The device-clock rule for batches received at `received_at`."""

    received_at: datetime
    skew_threshold_s: float
    max_future_s: float

    @classmethod
    def for_settings(cls, settings: Settings, received_at: datetime) -> DeviceClock:
        return cls(received_at, settings.clock_skew_threshold_s, settings.max_future_s)

    def bound(self, sent_at: datetime | None) -> FutureBound:
        """The bound for the events of one batch sent (by its client's clock) at `sent_at`."""
        corrected = skew(self.received_at, sent_at, self.skew_threshold_s) != timedelta(0)
        # occurred_at + skew <= received_at + max_future  <=>  occurred_at <= sent_at + max_future
        base = sent_at if corrected and sent_at is not None else self.received_at
        try:
            latest = base + timedelta(seconds=self.max_future_s)
        except OverflowError:  # a sent_at near year 9999: nothing can be later
            latest = _END_OF_TIME
        limit = f"more than max_future_s={self.max_future_s:g} s after received_at"
        if corrected:
            message = f"occurred_at plus the device clock skew (received_at - sent_at) is {limit}"
        else:
            message = f"occurred_at is {limit}"
        return FutureBound(latest, {"field": "occurred_at", "message": message})


@dataclass(frozen=True)
class FutureBound:
    """The latest `occurred_at` (UTC) an event of one batch may have, and the reason given for
    one that is later. The reason never quotes the value."""

    latest: datetime
    reason: dict[str, str]

    def check(self, occurred_at: datetime) -> dict[str, str] | None:
        """None when `occurred_at` is within the bound, else the reason to reject the event."""
        return dict(self.reason) if occurred_at > self.latest else None
