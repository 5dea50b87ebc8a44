"""The one typed settings class for every Telemetry Lake deployable.

Values come from `TLAKE_*` environment variables and a `.env` file. Development defaults work on
loopback only: a default secret next to a non-loopback endpoint, or outside `env=development`,
refuses to start, so a demo credential can never guard a real deployment.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lake_config.errors import SettingsError

DEV_S3_ACCESS_KEY = "tlake-dev"
DEV_S3_SECRET_KEY = "tlake-dev-secret-change-me"
DEV_TOKEN_KEY = "tlake-dev-token-key-change-me"
# The placeholder of .env.example (and part of every development secret above).
PLACEHOLDER = "change-me"

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

# Every field that may hold a sensitive value, as `section.field`; `sensitive_fields` sets a
# policy for each (ingest_api.tokenize applies them).
SENSITIVE_FIELD_PATHS: tuple[str, ...] = ("network.ip", "network.ssid", "fleet.network_address")
# The sensitive fields that hold an IP address, so `truncate_ip` applies to them.
IP_FIELD_PATHS: frozenset[str] = frozenset({"network.ip", "fleet.network_address"})
SensitivePolicy = Literal["hmac", "truncate_ip", "drop"]
_HMAC: SensitivePolicy = "hmac"
# What recovery replay recognises as a token, `<id>:<64 hex>`, bounds a key id.
_KEY_ID = re.compile(r"[^:\s]{1,32}\Z")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


class Settings(BaseSettings):
    """Everything a Telemetry Lake process needs to know, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="TLAKE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "test", "production"] = "development"
    home: Path = Field(default=Path(".tlake"), description="State directory of the embedded stack")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/tlake"

    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    s3_access_key: str = DEV_S3_ACCESS_KEY
    s3_secret_key: SecretStr = SecretStr(DEV_S3_SECRET_KEY)
    bucket: str = "lake"

    spark_remote: str = Field(
        default="sc://127.0.0.1:50051",
        description="Spark Connect URL; empty selects a classic JVM session at spark_master",
    )
    spark_master: str = "local[2]"

    api_url: str = "http://127.0.0.1:8000"
    api_workers: int = 1
    # FastAPI's native OpenTelemetry (spans, metrics and logs to the process's global OTel
    # providers). Off: the API's metrics are Prometheus (`/metrics`), and FastAPI otherwise
    # checks on every request whether a provider was configured (~5 us).
    api_opentelemetry: bool = False

    # MQTT broker the bridge (`tlake mqtt-bridge`) subscribes to; mqtt:// or mqtts://.
    mqtt_url: str = "mqtt://127.0.0.1:1883"

    # `token_keys` (env JSON `{"k1": "...", "k2": "..."}`) holds every configured key; only the
    # one named by `token_key_id` tokenizes. Empty means `{token_key_id: token_key}`.
    token_key: SecretStr = SecretStr(DEV_TOKEN_KEY)
    token_key_id: str = "k1"
    token_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # Per sensitive field (env JSON): `hmac` token, `truncate_ip` (IPv4 /24, IPv6 /48; an
    # invalid IP rejects the event) or `drop` (removed before anything is written).
    sensitive_fields: dict[str, SensitivePolicy] = Field(
        default_factory=lambda: dict.fromkeys(SENSITIVE_FIELD_PATHS, _HMAC)
    )

    # Ingest limits, stated in the README; the API answers 413 naming the one exceeded.
    max_request_bytes: int = 1_000_000
    max_decompressed_bytes: int = 8_000_000
    max_event_bytes: int = 32_000
    max_events_per_batch: int = 1_000
    # Ingest edge, per API worker: events per second per API key (token bucket, 0 disables;
    # answered 429 with Retry-After), and ingest requests worked on at once before answering
    # 503 `overloaded` instead of queueing (0 disables).
    rate_limit_events_per_s: float = Field(default=50_000, ge=0)
    max_inflight_requests: int = Field(default=64, ge=0)
    # Group commit (ingest_api.groupcommit): the batches a worker lands at the same time share
    # one raw object and one registry commit, up to this many events and bytes of event JSON
    # (a batch over either lands alone; 1 lands every batch alone). The bytes bound what one
    # round serializes on the worker's loop and PUTs at once. A round that follows another
    # lingers this long first, so that requests just answered can join it (0: never waits);
    # a request on an idle worker never waits.
    group_commit_max_events: int = Field(default=10_000, ge=1)
    group_commit_max_bytes: int = Field(default=8_000_000, ge=1)
    group_commit_linger_ms: float = Field(default=5.0, ge=0, le=1_000)
    # Request bodies: 408 `body_timeout` when no byte of the body arrived for `body_timeout_s`
    # (a stalled client), or when the whole body took longer than `body_total_timeout_s` (one
    # trickling bytes), so neither holds an in-flight slot for long.
    body_timeout_s: float = Field(default=10.0, gt=0)
    body_total_timeout_s: float = Field(default=60.0, gt=0)
    # Idempotency-Key records older than this are expired: the key may be used again (a new
    # batch), and `tlake idempotency prune` (daily, tlake_maintenance) deletes them.
    idempotency_ttl_hours: int = Field(default=24, ge=1)

    # Device clocks: when a batch's sent_at differs from received_at by more than
    # `clock_skew_threshold_s`, silver shifts its events' occurred_at by (received_at - sent_at)
    # (Segment's correction) and flags them; the API rejects an event whose (corrected)
    # occurred_at lies more than `max_future_s` after received_at.
    clock_skew_threshold_s: float = Field(default=60.0, ge=0)
    max_future_s: float = Field(default=300.0, ge=0)

    # Origin-source analytics (gold): fleet snapshots are heartbeats grouped into windows of
    # this many minutes; the online-share monitor compares the latest snapshot with the mean of
    # the previous `monitor_history` ones and raises an alert when the share dropped by more
    # than `monitor_drop_threshold` (a fraction of the baseline). Stream rolling averages span
    # a short and a long window, in seconds.
    fleet_snapshot_minutes: int = Field(default=5, ge=1, le=60)  # must divide an hour
    monitor_history: int = Field(default=4, ge=1, le=1000)
    monitor_drop_threshold: float = Field(default=0.15, gt=0, lt=1)
    stream_rolling_short_s: int = Field(default=10, ge=1, le=86_400)
    stream_rolling_long_s: int = Field(default=60, ge=1, le=86_400)

    # Registry: how many raw objects one run claims, and how long a claim holds.
    run_batch_objects: int = 5_000
    claim_lease_seconds: int = 900
    max_attempts: int = 3

    @field_validator("token_keys", "sensitive_fields", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        # The environment's JSON is parsed by pydantic-settings; `as_env()` values passed back
        # as keyword arguments (a child rebuilding its settings) arrive as the same JSON text.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise SettingsError("expected a JSON object") from None
        return value

    @field_validator("fleet_snapshot_minutes")
    @classmethod
    def _divides_an_hour(cls, value: int) -> int:
        # Snapshots then never straddle an hour, so gold recomputes them per touched hour.
        if 60 % value:
            raise SettingsError("fleet_snapshot_minutes must divide 60 (1, 2, 3, 5, 10, 15, 30...)")
        return value

    @model_validator(mode="after")
    def _check_token_keys_and_policies(self) -> Settings:
        bad_ids = sorted(k for k in self.token_keys_effective if not _KEY_ID.match(k))
        if bad_ids:
            raise SettingsError(
                f"token key ids {bad_ids} refused: 1 to 32 characters, no ':' or whitespace"
            )
        if self.token_key_id not in self.token_keys_effective:
            raise SettingsError(
                f"TLAKE_TOKEN_KEY_ID={self.token_key_id!r} is not a key of TLAKE_TOKEN_KEYS "
                f"{sorted(self.token_keys_effective)}"
            )
        empty = sorted(k for k, v in self.token_keys_effective.items() if not v.get_secret_value())
        if empty:
            raise SettingsError(f"token keys {empty} are empty")
        unknown = sorted(set(self.sensitive_fields) - set(SENSITIVE_FIELD_PATHS))
        if unknown:
            raise SettingsError(
                f"TLAKE_SENSITIVE_FIELDS names unknown fields {unknown}; "
                f"known: {list(SENSITIVE_FIELD_PATHS)}"
            )
        not_ip = sorted(
            path
            for path, policy in self.sensitive_fields.items()
            if policy == "truncate_ip" and path not in IP_FIELD_PATHS
        )
        if not_ip:
            raise SettingsError(
                f"TLAKE_SENSITIVE_FIELDS: truncate_ip applies to IP fields only, not {not_ip}"
            )
        return self

    @property
    def token_keys_effective(self) -> dict[str, SecretStr]:
        """Every configured token key by id: `token_keys`, else `{token_key_id: token_key}`."""
        return dict(self.token_keys) or {self.token_key_id: self.token_key}

    @property
    def active_token_key(self) -> SecretStr:
        """The key that makes new tokens (`token_key_id`'s)."""
        return self.token_keys_effective[self.token_key_id]

    @model_validator(mode="after")
    def _refuse_dev_secrets_outside_loopback(self) -> Settings:
        defaults = []
        if self.s3_access_key == DEV_S3_ACCESS_KEY or PLACEHOLDER in self.s3_access_key:
            defaults.append("TLAKE_S3_ACCESS_KEY")
        if PLACEHOLDER in self.s3_secret_key.get_secret_value():
            defaults.append("TLAKE_S3_SECRET_KEY")
        if not self.token_keys and PLACEHOLDER in self.token_key.get_secret_value():
            defaults.append("TLAKE_TOKEN_KEY")
        for key_id, key in sorted(self.token_keys.items()):
            if PLACEHOLDER in key.get_secret_value():
                defaults.append(f"TLAKE_TOKEN_KEYS[{key_id}]")
        if PLACEHOLDER in (urlsplit(self.database_url).password or ""):
            defaults.append("TLAKE_DATABASE_URL (password)")
        if not defaults:
            return self
        remote = [u for u in (self.s3_endpoint, self.api_url) if not _is_loopback(u)]
        if self.env == "production" or remote:
            where = f"non-loopback endpoints {remote}" if remote else "env=production"
            raise SettingsError(
                f"development default secrets {defaults} refused with {where}; set real values"
            )
        return self

    def as_env(self) -> dict[str, str]:
        """`TLAKE_*` variables that rebuild exactly these settings in a child process, whatever
        its working directory or `.env` (paths are made absolute)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = value.resolve()
            elif isinstance(value, dict):  # pydantic-settings reads dicts as JSON
                value = json.dumps(
                    {
                        k: v.get_secret_value() if isinstance(v, SecretStr) else v
                        for k, v in value.items()
                    }
                )
            env[f"TLAKE_{name.upper()}"] = str(value)
        return env

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/") or "postgres"

    @property
    def database_url_safe(self) -> str:
        """The database URL without its password, for status output and logs."""
        parts = urlsplit(self.database_url)
        netloc = parts.hostname or ""
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()

    @property
    def s3_port(self) -> int:
        return urlsplit(self.s3_endpoint).port or 80

    @property
    def spark_port(self) -> int:
        return urlsplit(self.spark_remote.replace("sc://", "http://")).port or 15002

    @property
    def api_port(self) -> int:
        return urlsplit(self.api_url).port or 80

    @property
    def api_host(self) -> str:
        return urlsplit(self.api_url).hostname or "127.0.0.1"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import time)."""
    return Settings()
