"""Every lake table, declared once: name, layer, path, columns, partitioning, merge keys, and
the data-quality expectations its stage checks (declared in lake_config.quality).

Jobs, tests, the catalog and maintenance import these declarations; no path or schema is spelled
anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lake_config.quality import SILVER_DEVICE_EVENTS_EXPECTATIONS, Expectation


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Spark SQL type
    description: str
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    """A Delta table in the lake bucket."""

    name: str  # layer.table, also the Spark SQL name the jobs register it under
    path: str  # under the bucket
    grain: str
    columns: tuple[Column, ...]
    merge_keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    description: str = ""
    owner_stage: str = ""
    pruning_keys: tuple[str, ...] = field(default=())  # partition columns matched in MERGE
    # Data-quality rules the owning stage checks before it commits (lake_config.quality).
    expectations: tuple[Expectation, ...] = ()

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def sql_name(self) -> str:
        """Identifier the jobs register the table under in the Spark catalog."""
        return self.name.replace(".", "_")

    @property
    def ddl(self) -> str:
        """Schema as a Spark DDL string (for createDataFrame, from_json and CREATE TABLE)."""
        return ", ".join(f"{c.name} {c.type}" for c in self.columns)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


BRONZE_EVENTS = Table(
    name="bronze.events",
    path="bronze/events",
    grain="one row per line of a raw object: (object_key, line_no)",
    description="Accepted events exactly as landed by the ingest API, with ingest metadata.",
    owner_stage="bronze",
    merge_keys=("object_key", "line_no"),
    partition_by=("ingest_date",),
    pruning_keys=("ingest_date",),
    columns=(
        Column("object_key", "string", "Raw object the line came from", False),
        Column("line_no", "int", "0-based line number within the raw object", False),
        Column("batch_id", "string", "Ingest batch (one API request)"),
        Column("source", "string", "Source the API key belongs to"),
        Column("schema_version", "string", "Event schema the API validated against"),
        Column("received_at", "timestamp", "When the API received the batch (UTC)"),
        Column("sent_at", "timestamp", "When the client says it sent the batch (UTC)"),
        Column("ingest_date", "date", "UTC date of received_at (partition)", False),
        Column("event_id", "string", "Client-chosen event id (the dedup key)"),
        Column("device_id", "string", "Device the event describes"),
        Column("event_type", "string", "Event type"),
        Column("payload", "string", "The tokenized event as JSON text"),
        Column("run_id", "string", "Pipeline run that loaded the line"),
    ),
)

SILVER_DEVICE_EVENTS = Table(
    name="silver.device_events",
    path="silver/device_events",
    grain="one row per event_id (first received wins)",
    description="Deduplicated, flattened, typed and enriched device events.",
    owner_stage="silver",
    merge_keys=("event_id",),
    partition_by=("event_date",),
    expectations=SILVER_DEVICE_EVENTS_EXPECTATIONS,
    columns=(
        Column("event_id", "string", "Client-chosen event id, unique in this table", False),
        Column("device_id", "string", "Device the event describes", False),
        Column("event_type", "string", "Event type (app_open, battery_status, ...)", False),
        Column("occurred_at", "timestamp", "When the event happened on the device (UTC)", False),
        Column("event_date", "date", "UTC date of occurred_at (partition)", False),
        Column("event_hour", "timestamp", "occurred_at truncated to the hour", False),
        Column("received_at", "timestamp", "When the API received it (UTC)"),
        Column("sent_at", "timestamp", "When the client sent the batch (UTC)"),
        Column("source", "string", "Source the API key belongs to"),
        Column("schema_version", "string", "Event schema version"),
        Column("object_key", "string", "Raw object of the first copy received"),
        Column("app_name", "string", "Application name"),
        Column("app_version", "string", "Application version"),
        Column("os", "string", "Operating system"),
        Column("os_version", "string", "Operating system version"),
        Column("device_model", "string", "Device model"),
        Column("device_manufacturer", "string", "Device manufacturer"),
        Column("battery_pct", "double", "Battery level in percent (0-100)"),
        Column("battery_charging", "boolean", "Whether the device was charging"),
        Column("battery_temperature_c", "double", "Battery temperature in degrees Celsius"),
        Column("battery_band", "string", "Derived: critical (<10), low (<20), normal, or null"),
        Column("network_type", "string", "wifi, cellular, ethernet or none"),
        Column("network_ip_token", "string", "HMAC token of the client IP (never the IP)"),
        Column("network_ssid_token", "string", "HMAC token of the Wi-Fi SSID (never the SSID)"),
        Column("network_carrier", "string", "Mobile carrier"),
        Column("network_signal_dbm", "int", "Signal strength in dBm (-150..0)"),
        Column("session_id", "string", "App session id"),
        Column("session_duration_ms", "bigint", "Session duration in milliseconds"),
        Column("attributes_json", "string", "Free-form scalar attributes as a JSON object"),
        Column("ingest_lag_ms", "bigint", "Derived: received_at - occurred_at in milliseconds"),
    ),
)

QUARANTINE_EVENTS = Table(
    name="quarantine.events",
    path="quarantine/events",
    grain="one row per (record_key, rule) rejected by a Spark stage",
    description="Lines and rows a Spark stage could not accept, with the rule that rejected them.",
    owner_stage="bronze/silver",
    merge_keys=("record_key", "rule"),
    columns=(
        Column(
            "record_key", "string", "object_key:line_no, or a hash of an unparseable line", False
        ),
        Column("rule", "string", "Name of the rule that rejected the record", False),
        Column("stage", "string", "Stage that rejected it (bronze, silver)", False),
        Column("object_key", "string", "Raw object, when known"),
        Column("event_id", "string", "Event id, when known"),
        Column("reason", "string", "Human-readable reason"),
        Column("payload", "string", "The record as text (tokenized upstream)"),
        Column("run_id", "string", "Pipeline run that quarantined it"),
        Column("quarantined_at", "timestamp", "When it was quarantined (UTC)"),
    ),
)

GOLD_DEVICE_HOURLY = Table(
    name="gold.device_hourly",
    path="gold/device_hourly",
    grain="one row per (device_id, hour_start)",
    description="Hourly device activity, battery and network summary; mirrored to Postgres "
    "analytics.device_hourly.",
    owner_stage="gold",
    merge_keys=("device_id", "hour_start"),
    columns=(
        Column("device_id", "string", "Device", False),
        Column("hour_start", "timestamp", "Start of the UTC hour", False),
        Column("events", "bigint", "Events in the hour", False),
        Column("sessions", "bigint", "Distinct sessions seen in the hour", False),
        Column("event_types", "int", "Distinct event types in the hour", False),
        Column("crash_events", "bigint", "Events of type crash", False),
        Column("avg_battery_pct", "double", "Mean battery level (percent)"),
        Column("min_battery_pct", "double", "Lowest battery level (percent)"),
        Column("avg_battery_temperature_c", "double", "Mean battery temperature (Celsius)"),
        Column("low_battery_events", "bigint", "Events with battery below 20 percent", False),
        Column("avg_signal_dbm", "double", "Mean signal strength (dBm)"),
        Column("wifi_events", "bigint", "Events sent over Wi-Fi", False),
        Column("cellular_events", "bigint", "Events sent over cellular", False),
        Column("first_event_at", "timestamp", "Earliest occurred_at in the hour", False),
        Column("last_event_at", "timestamp", "Latest occurred_at in the hour", False),
    ),
)

TABLES: tuple[Table, ...] = (
    BRONZE_EVENTS,
    SILVER_DEVICE_EVENTS,
    QUARANTINE_EVENTS,
    GOLD_DEVICE_HOURLY,
)


def table(name: str) -> Table:
    """The declaration called `name` (e.g. 'silver.device_events')."""
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(f"no lake table named {name!r}; declared: {[t.name for t in TABLES]}")
