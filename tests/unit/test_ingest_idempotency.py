"""Idempotency-Key parsing and the batch id a key stands for (the claim itself: integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from ingest_api.errors import InvalidIdempotencyKeyError
from ingest_api.idempotency import batch_id_for, fingerprint, parse_key


def test_absent_header_means_no_idempotency() -> None:
    assert parse_key(None) is None


@pytest.mark.parametrize("key", ["a", "order-42:retry", "x" * 255, "~!#$%&'*+.^_`|"])
def test_visible_ascii_keys_are_taken_as_sent(key: str) -> None:
    assert parse_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\t", "é", "nul\x00"])
def test_other_keys_are_400(key: str) -> None:
    with pytest.raises(
        InvalidIdempotencyKeyError, match=r"^Idempotency-Key must be 1-255 visible ASCII"
    ):
        parse_key(key)


AT = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_batch_id_is_fixed_by_source_key_and_first_receipt() -> None:
    first = batch_id_for("mobile", "k-1", AT)

    assert first == batch_id_for("mobile", "k-1", AT)
    assert first == batch_id_for("mobile", "k-1", AT.astimezone(timezone(timedelta(hours=2))))
    assert first.version == 5
    assert first == UUID("1e5bbf64-25f9-5848-8179-c639444979c2")  # the namespace never changes
    assert batch_id_for("mobile", "k-2", AT) != first
    assert batch_id_for("other", "k-1", AT) != first  # keys are per source
    # The same key used again after its record expired is another batch.
    assert batch_id_for("mobile", "k-1", AT + timedelta(hours=25)) != first


def test_fingerprint_is_sha256_of_the_decoded_body() -> None:
    assert fingerprint(b"{}") == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert fingerprint(b'{"a": 1}') != fingerprint(b'{"a":1}')  # bytes, not JSON equality
