"""Idempotency-Key end to end: real uvicorn, SeaweedFS and PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from ingest_api import idempotency
from ingest_api.batches import validate_batch
from ingest_api.errors import RegistryUnavailableError
from ingest_api.landing import land, raw_key
from ingest_api.tokenize import Tokenizer
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from tests.integration.test_ingest_api import batch, closed_port, event
from tlake.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture
def client(api_url: str, write_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {write_key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture
def source(registry: Registry, write_key: str) -> str:
    key = registry.lookup_key(write_key)
    assert key is not None
    return key.source


def post(client: httpx.Client, body: bytes, key: str) -> httpx.Response:
    return client.post("/v1/events", content=body, headers={"Idempotency-Key": key})


def registered(registry: Registry, batch_id: str) -> dict[str, int]:
    with registry.connection() as conn:
        row = conn.execute(
            """
            select (select count(*) from registry.raw_objects where batch_id = %(b)s) as raw,
                   (select count(*) from registry.quarantine where batch_id = %(b)s) as quarantine
            """,
            {"b": batch_id},
        ).fetchone()
    assert row is not None
    return {"raw": int(row["raw"]), "quarantine": int(row["quarantine"])}


def test_retry_with_the_same_key_gets_the_first_answer_and_lands_nothing_new(
    client: httpx.Client, registry: Registry, source: str
) -> None:
    key = f"retry-{uuid.uuid4()}"
    body = orjson.dumps(batch(event(), event(event_type="")))

    first = post(client, body, key)
    second = post(client, body, key)

    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code == 202, second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    record = idempotency_row(registry, source, key)
    assert record is not None
    assert first.json()["batch_id"] == str(
        idempotency.batch_id_for(source, key, record["received_at"])
    )
    assert registered(registry, first.json()["batch_id"]) == {"raw": 1, "quarantine": 1}


def idempotency_row(registry: Registry, source: str, key: str) -> dict[str, Any] | None:
    with registry.connection() as conn:
        return conn.execute(
            "select * from registry.idempotency where source = %s and idempotency_key = %s",
            (source, key),
        ).fetchone()


def age(registry: Registry, source: str, key: str, hours: float) -> None:
    """Make a record look `hours` old (its lease, if any, long gone)."""
    with registry.connection() as conn, conn.transaction():
        conn.execute(
            """
            update registry.idempotency
            set created_at = now() - make_interval(secs => %(s)s),
                locked_until = case when locked_until is null then null
                                    else now() - make_interval(secs => %(s)s) end
            where source = %(source)s and idempotency_key = %(key)s
            """,
            {"s": hours * 3600, "source": source, "key": key},
        )


def test_all_rejected_answer_is_replayed_too(client: httpx.Client, registry: Registry) -> None:
    key = f"rejected-{uuid.uuid4()}"
    body = orjson.dumps(batch(event(event_id="nope")))

    first, second = post(client, body, key), post(client, body, key)

    assert (first.status_code, second.status_code) == (422, 422)
    assert second.json() == first.json() and first.json()["accepted"] == 0
    assert registered(registry, first.json()["batch_id"]) == {"raw": 0, "quarantine": 1}


def test_same_key_with_another_body_is_422_reused(client: httpx.Client) -> None:
    key = f"reused-{uuid.uuid4()}"
    assert post(client, orjson.dumps(batch(event())), key).status_code == 202

    response = post(client, orjson.dumps(batch(event())), key)

    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "idempotency_key_reused",
            "message": "Idempotency-Key was already used with a different body; use a new key",
        }
    }


def test_same_key_in_another_source_is_another_batch(
    client: httpx.Client, api_url: str, registry: Registry
) -> None:
    key = f"shared-{uuid.uuid4()}"
    other = registry.create_key(f"other-{uuid.uuid4().hex[:8]}")
    body = orjson.dumps(batch(event()))

    mine = post(client, body, key)
    theirs = httpx.post(
        f"{api_url}/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": key},
    )

    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["batch_id"] != theirs.json()["batch_id"]


def test_invalid_key_is_400(client: httpx.Client) -> None:
    response = post(client, orjson.dumps(batch(event())), "has space")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_idempotency_key",
        "message": "Idempotency-Key must be 1-255 visible ASCII characters",
    }


def test_key_in_flight_is_409_then_taken_over_when_its_lease_ran_out(
    client: httpx.Client, registry: Registry, source: str
) -> None:
    key = f"inflight-{uuid.uuid4()}"
    body = orjson.dumps(batch(event()))
    first_seen = datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC)
    held = idempotency.claim(
        registry,
        source=source,
        key=key,
        body_sha256=idempotency.fingerprint(body),
        received_at=first_seen,
    )
    assert isinstance(held, idempotency.Claim)

    busy = post(client, body, key)

    assert busy.status_code == 409
    assert busy.headers["Retry-After"] == "1"
    assert busy.json()["error"]["code"] == "idempotency_key_in_progress"

    expire_lease(registry, source, key)
    taken = post(client, body, key)

    assert taken.status_code == 202, taken.text
    # The first attempt's received_at: a takeover writes to the same keys as the first attempt.
    assert taken.json()["object_key"] == raw_key(source, first_seen, held.batch_id)
    stale = pytest.raises(idempotency.ClaimLostError, match="attempt 1 was taken over")
    with registry.connection() as conn, stale:
        idempotency.complete(conn, held, 202, {})  # the stale attempt cannot complete


def expire_lease(registry: Registry, source: str, key: str) -> None:
    with registry.connection() as conn, conn.transaction():
        conn.execute(
            "update registry.idempotency set locked_until = now() - interval '1 second' "
            "where source = %s and idempotency_key = %s",
            (source, key),
        )


def test_retry_after_a_crash_between_put_and_registration_lands_once(
    client: httpx.Client,
    settings: Settings,
    store: ObjectStore,
    registry: Registry,
    source: str,
) -> None:
    key = f"crash-{uuid.uuid4()}"
    body = orjson.dumps(batch(event(), event(event_type="")))
    held = idempotency.claim(
        registry,
        source=source,
        key=key,
        body_sha256=idempotency.fingerprint(body),
        received_at=datetime.now(UTC),
    )
    assert isinstance(held, idempotency.Claim)
    validated = validate_batch(body, settings, Tokenizer.for_settings(settings))
    down = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{closed_port()}/tlake"}
    )
    refused = pytest.raises(RegistryUnavailableError, match="nothing was accepted")
    with Registry(down, min_size=0, max_size=1, timeout_s=2) as broken, refused:
        land(
            store,
            broken,
            validated,
            batch_id=held.batch_id,
            source=source,
            received_at=held.received_at,
            if_absent=True,
        )
    object_key = raw_key(source, held.received_at, held.batch_id)
    written = store.get(object_key)  # the objects are in the bucket, unregistered
    idempotency.release(registry, held)

    retried = post(client, body, key)

    assert retried.status_code == 202, retried.text
    assert retried.json()["object_key"] == object_key
    assert store.get(object_key) == written
    assert registered(registry, retried.json()["batch_id"]) == {"raw": 1, "quarantine": 1}
    row = raw_row(registry, object_key)
    assert row["size_bytes"] == len(written) and row["event_count"] == 1


def raw_row(registry: Registry, object_key: str) -> dict[str, Any]:
    with registry.connection() as conn:
        row = conn.execute(
            "select * from registry.raw_objects where object_key = %s", (object_key,)
        ).fetchone()
    assert row is not None
    return dict(row)


# --- expiry ---------------------------------------------------------------------------------------


def test_a_key_whose_record_expired_may_be_used_again_for_a_new_batch(
    client: httpx.Client, registry: Registry, settings: Settings, source: str
) -> None:
    key = f"expired-{uuid.uuid4()}"
    first = post(client, orjson.dumps(batch(event(), event(event_type=""))), key)
    assert first.status_code == 202, first.text
    age(registry, source, key, settings.idempotency_ttl_hours + 1)

    again = post(client, orjson.dumps(batch(event(), event(event_type=""))), key)  # other body
    replay = post(client, orjson.dumps(batch(event())), key)  # within the new record's life

    assert again.status_code == 202, again.text
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["batch_id"] != first.json()["batch_id"]
    # Both batches are registered, quarantine rows included: no collision on the batch id.
    assert registered(registry, first.json()["batch_id"]) == {"raw": 1, "quarantine": 1}
    assert registered(registry, again.json()["batch_id"]) == {"raw": 1, "quarantine": 1}
    assert replay.status_code == 422
    assert replay.json()["error"]["code"] == "idempotency_key_reused"


def test_a_record_younger_than_the_ttl_still_answers_the_retry(
    client: httpx.Client, registry: Registry, settings: Settings, source: str
) -> None:
    key = f"young-{uuid.uuid4()}"
    body = orjson.dumps(batch(event()))
    first = post(client, body, key)
    age(registry, source, key, settings.idempotency_ttl_hours - 1)

    retry = post(client, body, key)

    assert retry.status_code == 202
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()


def test_an_expired_record_under_a_live_lease_is_not_taken(
    client: httpx.Client, registry: Registry, settings: Settings, source: str
) -> None:
    key = f"slow-{uuid.uuid4()}"
    body = orjson.dumps(batch(event()))
    held = idempotency.claim(
        registry,
        source=source,
        key=key,
        body_sha256=idempotency.fingerprint(body),
        received_at=datetime.now(UTC),
    )
    assert isinstance(held, idempotency.Claim)
    with registry.connection() as conn, conn.transaction():
        conn.execute(
            "update registry.idempotency set created_at = now() - interval '100 hours' "
            "where source = %s and idempotency_key = %s",
            (source, key),
        )

    busy = post(client, body, key)
    idempotency.prune(registry, ttl_hours=settings.idempotency_ttl_hours)

    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "idempotency_key_in_progress"
    assert idempotency_row(registry, source, key) is not None  # neither taken nor pruned


def test_tlake_idempotency_prune_deletes_expired_records_only(
    client: httpx.Client, registry: Registry, settings: Settings, source: str
) -> None:
    keys = {name: f"prune-{name}-{uuid.uuid4()}" for name in ("old", "older", "fresh")}
    for key in keys.values():
        assert post(client, orjson.dumps(batch(event())), key).status_code == 202
    age(registry, source, keys["old"], settings.idempotency_ttl_hours + 0.1)
    age(registry, source, keys["older"], 24 * 30)

    result = CliRunner().invoke(app, ["idempotency", "prune"])

    assert result.exit_code == 0, result.output
    assert re.search(
        rf"\b(\d+) idempotency record\(s\) older than {settings.idempotency_ttl_hours} h deleted",
        result.output,
    ), result.output
    assert idempotency_row(registry, source, keys["old"]) is None
    assert idempotency_row(registry, source, keys["older"]) is None
    assert idempotency_row(registry, source, keys["fresh"]) is not None
    with registry.connection() as conn:
        left = conn.execute(
            "select count(*) as n from registry.idempotency "
            "where created_at < now() - make_interval(hours => %s)"
            " and (locked_until is null or locked_until <= now())",  # a live lease stays
            (settings.idempotency_ttl_hours,),
        ).fetchone()
    assert left == {"n": 0}


def test_prune_works_in_bounded_transactions(registry: Registry, source: str) -> None:
    with registry.connection() as conn, conn.transaction():
        for n in range(5):
            conn.execute(
                """
                insert into registry.idempotency
                    (source, idempotency_key, batch_id, fingerprint, received_at, status,
                     created_at)
                values (%s, %s, %s, 'f', now(), 'completed', now() - interval '48 hours')
                """,
                (source, f"bulk-{n}-{uuid.uuid4()}", uuid.uuid4()),
            )

    assert idempotency.prune(registry, ttl_hours=24, batch_rows=2) >= 5
    assert idempotency.prune(registry, ttl_hours=24, batch_rows=2) == 0


def test_a_takeover_judges_event_times_against_the_first_attempts_receipt(
    client: httpx.Client, registry: Registry, settings: Settings, source: str
) -> None:
    key = f"clock-{uuid.uuid4()}"
    sent = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    # The first attempt was received 50 s before sent_at: a skew below the threshold, so the
    # event 270 s after sent_at was 320 s after that receipt, too far in the future. Judged at
    # the takeover's own time (a 10 min skew, corrected) it would pass, and land other bytes.
    first_seen = sent - timedelta(seconds=50)
    occurred = sent + timedelta(seconds=270)
    assert settings.clock_skew_threshold_s == 60 and settings.max_future_s == 300
    body = orjson.dumps(batch(event(occurred_at=occurred.isoformat()), sent_at=sent.isoformat()))
    held = idempotency.claim(
        registry,
        source=source,
        key=key,
        body_sha256=idempotency.fingerprint(body),
        received_at=first_seen,
    )
    assert isinstance(held, idempotency.Claim)
    expire_lease(registry, source, key)

    taken = post(client, body, key)

    assert taken.status_code == 422, taken.text
    assert taken.json()["results"][0]["errors"] == [
        {
            "field": "occurred_at",
            "message": "occurred_at is more than max_future_s=300 s after received_at",
        }
    ]
    assert taken.json()["batch_id"] == str(held.batch_id)
