"""The mobile simulator: reproducible, SDK-like batching, realistic bad events and re-sends."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from tlake import simulate

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _all(**kw: object) -> list[tuple[dict, bool]]:
    return list(simulate.batches(10, 30, seed=3, now=NOW, **kw))  # type: ignore[arg-type]


def _events(out: list) -> list:
    """The batches without sent_at, which is the real clock at sending time."""
    return [(envelope["events"], resent) for envelope, resent in out]


def test_same_seed_gives_same_events() -> None:
    assert _events(_all()) == _events(_all())


def test_sent_at_is_the_real_clock_so_silver_sees_no_clock_skew() -> None:
    from datetime import UTC, datetime, timedelta

    for envelope, _ in _all():
        sent = datetime.fromisoformat(envelope["sent_at"].replace("Z", "+00:00"))
        assert abs(datetime.now(UTC) - sent) < timedelta(minutes=1)


def test_other_seed_gives_other_events() -> None:
    one = list(simulate.batches(5, 10, seed=1, now=NOW))
    two = list(simulate.batches(5, 10, seed=2, now=NOW))
    assert one != two


def test_batches_respect_sdk_flush_size_and_window() -> None:
    out = _all()
    assert out, "simulation produced nothing"
    for envelope, _ in out:
        assert 1 <= len(envelope["events"]) <= simulate.FLUSH_SIZE
        devices = {e["device_id"] for e in envelope["events"]}
        assert len(devices) == 1, "an SDK batch carries one device's events"
        for e in envelope["events"]:
            assert e["occurred_at"] <= envelope["sent_at"]


def test_every_event_type_of_the_mobile_profile_appears() -> None:
    types = {e["event_type"] for env, _ in _all() for e in env["events"]}
    assert {"app_open", "screen_view", "heartbeat", "battery_status"} <= types


def test_resent_batches_repeat_an_earlier_batch_exactly() -> None:
    out = list(simulate.batches(20, 60, seed=5, now=NOW, resend_rate=0.2))
    resent = [env for env, flag in out if flag]
    assert resent, "expected some re-sent batches at resend_rate=0.2"
    first_copies = [env for env, flag in out if not flag]
    for env in resent:
        assert env in first_copies


def test_bad_rate_spoils_about_that_share() -> None:
    out = list(simulate.batches(20, 30, seed=9, now=NOW, bad_rate=0.1, resend_rate=0.0))
    events = [e for env, _ in out for e in env["events"]]
    spoiled = [
        e
        for e in events
        if "device_id" not in e
        or "debug_blob" in e
        or e["occurred_at"] == "yesterday"
        or e["battery"]["level_pct"] > 100
        or e["network"]["type"] not in {"wifi", "cellular"}
    ]
    share = len(spoiled) / len(events)
    assert 0.05 < share < 0.15, share


def test_spoil_never_changes_the_original_event() -> None:
    rng = random.Random(1)
    dev = simulate.make_devices(1, rng)[0]
    event = simulate._event(dev, "heartbeat", NOW, rng)
    before = repr(event)
    for _ in range(10):
        simulate.spoil(event, rng)
    assert repr(event) == before
