"""Per-field sensitive policies (hmac, truncate_ip, drop) and token key rotation."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import orjson
import pytest
from pydantic import SecretStr, ValidationError

from ingest_api.batches import validate_events
from ingest_api.schemas import DEFAULT_SCHEMA_VERSION, SCHEMAS
from ingest_api.tokenize import SensitiveValueError, Tokenizer, truncate_ip
from lake_config.settings import Settings
from recovery.replay import KeptTokens, with_placeholders

KEY = b"unit-test-token-key"
IP = "198.51.100.23"
IP6 = "2001:db8:abcd:12:34:56:78:9a"
SSID = "Flat 4B WiFi"
NOT_AN_IP = "router-at-home-77"


def _event(**network: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_id": "device-1",
        "event_type": "app_open",
        "occurred_at": "2024-05-01T12:00:00Z",
        "network": {"type": "wifi", **network},
    }


def _validate(tokenizer: Tokenizer, *events: Any) -> Any:
    envelope = {"schema_version": DEFAULT_SCHEMA_VERSION, "sent_at": None, "events": list(events)}
    return validate_events(
        envelope, SCHEMAS[DEFAULT_SCHEMA_VERSION], tokenizer, max_event_bytes=32_000
    )


# --- policies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (IP, "198.51.100.0"),
        ("10.0.0.255", "10.0.0.0"),
        (IP6, "2001:db8:abcd::"),
        ("::1", "::"),
        (NOT_AN_IP, None),
        ("198.51.100.0/24", None),
        ("", None),
    ],
)
def test_truncate_ip_keeps_the_v4_slash_24_or_v6_slash_48(value: str, expected: str | None) -> None:
    assert truncate_ip(value) == expected


def test_each_policy_applies_to_an_accepted_event() -> None:
    tokenizer = Tokenizer(KEY, "k1", {"network.ip": "truncate_ip", "network.ssid": "drop"})

    batch = _validate(tokenizer, _event(ip=IP, ssid=SSID), _event(ip=IP6, ssid=SSID))

    stored = [orjson.loads(e)["network"] for e in batch.accepted]
    assert stored == [
        {"type": "wifi", "ip": "198.51.100.0"},
        {"type": "wifi", "ip": "2001:db8:abcd::"},
    ]


def test_hmac_is_the_default_for_a_field_without_a_policy() -> None:
    tokenizer = Tokenizer(KEY, "k1", {"network.ip": "drop"})

    batch = _validate(tokenizer, _event(ip=IP, ssid=SSID))

    assert orjson.loads(batch.accepted[0])["network"] == {
        "type": "wifi",
        "ssid": tokenizer.token(SSID),
    }


def test_an_invalid_ip_under_truncate_ip_rejects_the_event_without_its_value() -> None:
    tokenizer = Tokenizer(KEY, "k1", {"network.ip": "truncate_ip"})

    batch = _validate(tokenizer, _event(ip=NOT_AN_IP, ssid=SSID))

    assert batch.accepted == []
    (rejection,) = batch.rejected
    assert rejection.reasons == [
        {"field": "network.ip", "message": "network.ip is not a valid IPv4 or IPv6 address"}
    ]
    assert rejection.payload["network"] == {"type": "wifi", "ssid": tokenizer.token(SSID)}
    assert NOT_AN_IP not in orjson.dumps(batch.results).decode()
    assert NOT_AN_IP not in rejection.payload_json.decode()


def test_tokenize_event_raises_naming_the_field_only() -> None:
    tokenizer = Tokenizer(KEY, "k1", {"network.ip": "truncate_ip"})

    with pytest.raises(SensitiveValueError, match=r"^network\.ip is not a valid IPv4 or IPv6") as e:
        tokenizer.tokenize_event({"network": {"ip": NOT_AN_IP}})
    assert e.value.field == "network.ip"
    assert NOT_AN_IP not in str(e.value)


@pytest.mark.parametrize(
    ("policy", "ip", "expected"),
    [
        ("truncate_ip", IP, {"ip": "198.51.100.0"}),
        ("truncate_ip", NOT_AN_IP, {}),
        ("truncate_ip", 3325256727, {}),
        ("drop", IP, {}),
    ],
)
def test_policies_apply_to_rejected_payloads(
    policy: str, ip: Any, expected: dict[str, Any]
) -> None:
    tokenizer = Tokenizer(KEY, "k1", {"network.ip": policy, "network.ssid": "drop"})
    invalid = _event(ip=ip, ssid=SSID, signal_dbm="strong")

    (rejection,) = _validate(tokenizer, invalid).rejected

    assert rejection.payload["network"] == {"type": "wifi", "signal_dbm": "strong", **expected}
    assert SSID not in rejection.payload_json.decode()


def test_segment_context_ip_follows_the_network_ip_policy() -> None:
    tokenizer = Tokenizer(KEY, "k1", {"network.ip": "truncate_ip"})

    out = tokenizer.tokenize_payload({"context": {"ip": IP}}, [("context", "ip")])

    assert out == {"context": {"ip": "198.51.100.0"}}


def test_an_unknown_policy_is_refused_by_the_tokenizer() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown sensitive field policies ['hash']")):
        Tokenizer(KEY, "k1", {"network.ip": "hash"})


def test_replay_applies_todays_policy_to_kept_tokens() -> None:
    old = Tokenizer(KEY, "k1").token(IP)
    real = Tokenizer(KEY, "k1", {"network.ssid": "drop"})
    tokens: dict[str, str] = {}
    payload = with_placeholders(
        _event(ip=old, ssid=Tokenizer(KEY, "k1").token(SSID)),
        SCHEMAS["mobile/1"].sensitive_fields,
        tokens,
    )

    event = KeptTokens(real, tokens).tokenize_event(payload, SCHEMAS["mobile/1"].sensitive_fields)

    assert event["network"] == {"type": "wifi", "ip": old}


# --- rotation ---------------------------------------------------------------------------------


def _rotated(**extra: Any) -> Settings:
    keys = {"k1": SecretStr("old-key"), "k2": SecretStr("new-key")}
    return Settings(token_keys=keys, token_key_id="k2", **extra)


def test_only_the_active_key_tokenizes_and_its_id_prefixes_the_token() -> None:
    tokenizer = Tokenizer.for_settings(_rotated())

    token = tokenizer.token(IP)

    assert token.startswith("k2:")
    assert token == Tokenizer(b"new-key", "k2").token(IP)
    assert token != Tokenizer(b"old-key", "k1").token(IP)


def test_token_key_alone_is_the_active_key() -> None:
    settings = Settings(token_key=SecretStr("single-key"), token_key_id="k5")

    assert settings.token_keys_effective == {"k5": SecretStr("single-key")}
    assert Tokenizer.for_settings(settings).token(IP) == Tokenizer(b"single-key", "k5").token(IP)


def test_replay_recognises_tokens_of_an_older_key() -> None:
    old_token = Tokenizer(b"old-key", "k1").token(IP)
    tokens: dict[str, str] = {}

    payload = with_placeholders(_event(ip=old_token), SCHEMAS["mobile/1"].sensitive_fields, tokens)

    assert list(tokens.values()) == [old_token]
    kept = KeptTokens(Tokenizer.for_settings(_rotated()), tokens)
    event = kept.tokenize_event(payload, SCHEMAS["mobile/1"].sensitive_fields)
    assert event["network"]["ip"] == old_token


def test_rotated_settings_travel_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _rotated(sensitive_fields={"network.ip": "truncate_ip"}).as_env()
    assert json.loads(env["TLAKE_TOKEN_KEYS"]) == {"k1": "old-key", "k2": "new-key"}
    for name in ("TLAKE_TOKEN_KEYS", "TLAKE_TOKEN_KEY_ID", "TLAKE_SENSITIVE_FIELDS"):
        monkeypatch.setenv(name, env[name])

    settings = Settings()

    assert settings.active_token_key.get_secret_value() == "new-key"
    assert settings.sensitive_fields == {"network.ip": "truncate_ip"}


# --- settings refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            {"token_keys": {"k1": SecretStr("a")}, "token_key_id": "k2"},
            "TLAKE_TOKEN_KEY_ID='k2' is not a key of TLAKE_TOKEN_KEYS ['k1']",
        ),
        (
            {"token_keys": {"k:1": SecretStr("a")}, "token_key_id": "k:1"},
            "token key ids ['k:1'] refused: 1 to 32 characters, no ':' or whitespace",
        ),
        ({"token_keys": {"k1": SecretStr("")}}, "token keys ['k1'] are empty"),
        (
            {"sensitive_fields": {"network.mac": "drop"}},
            "TLAKE_SENSITIVE_FIELDS names unknown fields ['network.mac']; "
            "known: ['network.ip', 'network.ssid', 'fleet.network_address']",
        ),
        (
            {"sensitive_fields": {"network.ssid": "truncate_ip"}},
            "TLAKE_SENSITIVE_FIELDS: truncate_ip applies to IP fields only, not ['network.ssid']",
        ),
        (
            {"sensitive_fields": {"network.ip": "hash"}},
            "Input should be 'hmac', 'truncate_ip' or 'drop'",
        ),
        ({"sensitive_fields": "{not json"}, "expected a JSON object"),
    ],
)
def test_unusable_keys_or_policies_are_refused(update: dict[str, Any], message: str) -> None:
    # SettingsError is a ValueError, so pydantic reports it inside a ValidationError.
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(**update)


def test_a_development_placeholder_in_any_configured_key_is_refused_in_production() -> None:
    keys = {"k1": SecretStr("old-change-me"), "k2": SecretStr("real-new-key")}

    with pytest.raises(ValidationError, match=re.escape("'TLAKE_TOKEN_KEYS[k1]'")):
        Settings(env="production", token_keys=keys, token_key_id="k2")
