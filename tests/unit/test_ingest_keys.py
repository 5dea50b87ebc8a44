"""The in-process API key cache: TTLs for live and unknown keys, bounded size."""

from __future__ import annotations

from ingest_api.keys import KeyCache, bearer_secret
from lake_config.registry import ApiKey

KEY = ApiKey(key_id="k1", source="mobile", scope="write")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_live_key_is_remembered_for_the_ttl() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=30, negative_ttl_s=5, clock=clock)

    assert cache.get("secret") == (False, None)
    cache.put("secret", KEY)
    clock.now += 29.9
    assert cache.get("secret") == (True, KEY)
    clock.now += 0.1
    assert cache.get("secret") == (False, None)


def test_an_unknown_key_is_remembered_briefly() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=30, negative_ttl_s=5, clock=clock)

    cache.put("wrong", None)
    assert cache.get("wrong") == (True, None)
    clock.now += 5
    assert cache.get("wrong") == (False, None)


def test_a_new_result_replaces_the_old_one() -> None:
    cache = KeyCache(clock=Clock())

    cache.put("secret", None)
    cache.put("secret", KEY)
    assert cache.get("secret") == (True, KEY)
    cache.put("secret", None)
    assert cache.get("secret") == (True, None)


def test_a_flood_of_unknown_keys_never_evicts_live_ones() -> None:
    cache = KeyCache(max_entries=10, clock=Clock())
    cache.put("live", KEY)

    for i in range(1000):
        cache.put(f"wrong-{i}", None)

    assert cache.get("live") == (True, KEY)
    assert cache.get("wrong-999") == (True, None)
    assert len(cache._unknown) <= 10


def test_expired_entries_make_room_first() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=30, max_entries=2, clock=clock)
    cache.put("old", KEY)
    clock.now += 31
    cache.put("a", KEY)

    cache.put("b", KEY)

    assert cache.get("a") == (True, KEY)
    assert cache.get("b") == (True, KEY)
    assert len(cache._live) == 2


def test_bearer_secret_reads_what_httpbearer_reads() -> None:
    assert bearer_secret("Bearer tlk_key") == "tlk_key"
    assert bearer_secret("bearer  tlk_key ") == "tlk_key"  # scheme in any case, spaces trimmed
    assert bearer_secret("Basic dGxrX2tleTo=") is None
    assert bearer_secret("Bearer ") is None
    assert bearer_secret("") is None
    assert bearer_secret(None) is None
