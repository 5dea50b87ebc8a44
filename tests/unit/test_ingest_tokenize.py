"""HMAC tokens for network.ip and network.ssid: deterministic, keyed, never the raw value."""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from ingest_api.tokenize import MAX_PAYLOAD_DEPTH, Tokenizer
from lake_config.settings import Settings

KEY = b"unit-test-token-key"
IP = "198.51.100.23"
SSID = "Flat 4B WiFi"


@pytest.fixture
def tokenizer() -> Tokenizer:
    return Tokenizer(KEY, "k7")


def test_token_is_key_id_and_hmac_sha256_hexdigest(tokenizer: Tokenizer) -> None:
    expected = hmac.new(KEY, IP.encode(), hashlib.sha256).hexdigest()

    assert tokenizer.token(IP) == f"k7:{expected}"
    assert re.fullmatch(r"k7:[0-9a-f]{64}", tokenizer.token(SSID))


def test_token_is_deterministic_and_the_state_is_not_consumed(tokenizer: Tokenizer) -> None:
    first = tokenizer.token(IP)
    tokenizer.token(SSID)

    assert tokenizer.token(IP) == first
    assert Tokenizer(KEY, "k7").token(IP) == first


def test_other_key_or_key_id_gives_other_tokens(tokenizer: Tokenizer) -> None:
    assert Tokenizer(b"another-key", "k7").token(IP) != tokenizer.token(IP)
    other_id = Tokenizer(KEY, "k8").token(IP)
    assert other_id.startswith("k8:")
    assert other_id.removeprefix("k8:") == tokenizer.token(IP).removeprefix("k7:")


def test_non_ascii_values_are_tokenized_as_utf8(tokenizer: Tokenizer) -> None:
    expected = hmac.new(KEY, "Café Wi-Fi ☕".encode(), hashlib.sha256).hexdigest()

    assert tokenizer.token("Café Wi-Fi ☕") == f"k7:{expected}"


@pytest.mark.parametrize(
    ("key", "key_id", "message"),
    [
        (b"", "k1", "token key must not be empty"),
        (KEY, "", "token key id must be non-empty and contain no ':'"),
        (KEY, "k:1", "token key id must be non-empty and contain no ':'"),
    ],
)
def test_unusable_key_is_refused(key: bytes, key_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Tokenizer(key, key_id)


def test_for_settings_uses_the_settings_key_and_id() -> None:
    settings = Settings(token_key=SecretStr("settings-key"), token_key_id="k3")

    tokenizer = Tokenizer.for_settings(settings)

    assert tokenizer is Tokenizer.for_settings(settings)
    assert tokenizer.token(IP) == Tokenizer(b"settings-key", "k3").token(IP)


def test_tokenize_event_replaces_ip_and_ssid_only(tokenizer: Tokenizer) -> None:
    event: dict[str, Any] = {
        "event_id": "e",
        "network": {"type": "wifi", "ip": IP, "ssid": SSID, "signal_dbm": -50},
    }

    tokenizer.tokenize_event(event)

    assert event == {
        "event_id": "e",
        "network": {
            "type": "wifi",
            "ip": tokenizer.token(IP),
            "ssid": tokenizer.token(SSID),
            "signal_dbm": -50,
        },
    }


@pytest.mark.parametrize(
    "event", [{}, {"network": None}, {"network": {"ip": None}}, {"network": {"type": "none"}}]
)
def test_tokenize_event_leaves_absent_or_null_values(
    tokenizer: Tokenizer, event: dict[str, Any]
) -> None:
    before = copy.deepcopy(event)

    assert tokenizer.tokenize_event(event) == before


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ({"ip": IP, "ssid": SSID}, {"ip": IP, "ssid": SSID}),
        ({"ip": 3325256727}, {"ip": "3325256727"}),
        ({"ip": [IP], "ssid": {"name": SSID}}, {"ip": str([IP]), "ssid": str({"name": SSID})}),
        ({"ip": None, "type": "wifi"}, {"ip": None, "type": "wifi"}),
    ],
)
def test_tokenize_payload_tokenizes_values_of_any_type(
    tokenizer: Tokenizer, network: dict[str, Any], expected: dict[str, Any]
) -> None:
    payload = {"event_id": "x", "network": network}
    before = copy.deepcopy(payload)

    out = tokenizer.tokenize_payload(payload)

    assert payload == before  # the input is not modified
    tokenized = {
        k: tokenizer.token(v) if k in {"ip", "ssid"} and v is not None else v
        for k, v in expected.items()
    }
    assert out == {"event_id": "x", "network": tokenized}
    assert IP not in orjson.dumps(out).decode()
    assert SSID not in orjson.dumps(out).decode()


def test_tokenize_payload_tokenizes_a_network_that_is_not_an_object(
    tokenizer: Tokenizer,
) -> None:
    raw = f"{IP} via {SSID}"

    out = tokenizer.tokenize_payload({"network": raw, "device_id": "d"})

    assert out == {"network": tokenizer.token(raw), "device_id": "d"}


@pytest.mark.parametrize("payload", [17, "text", None, {"a": [1, {"b": 2}]}])
def test_tokenize_payload_copies_other_payloads_unchanged(
    tokenizer: Tokenizer, payload: Any
) -> None:
    assert tokenizer.tokenize_payload(payload) == payload


def test_tokenize_payload_finds_sections_nested_or_wrapped(tokenizer: Tokenizer) -> None:
    wrapped = [{"event": {"network": {"ip": IP}}}, [{"network": {"ssid": SSID, "type": "wifi"}}]]

    out = tokenizer.tokenize_payload(wrapped)

    assert out == [
        {"event": {"network": {"ip": tokenizer.token(IP)}}},
        [{"network": {"ssid": tokenizer.token(SSID), "type": "wifi"}}],
    ]


def test_tokenize_payload_refuses_a_payload_nested_too_deeply(tokenizer: Tokenizer) -> None:
    deep: Any = {"network": {"ip": IP}}
    for _ in range(MAX_PAYLOAD_DEPTH):
        deep = [deep]

    with pytest.raises(ValueError, match=f"payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"):
        tokenizer.tokenize_payload(deep)
