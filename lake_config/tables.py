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
    # Gold: the column placing each row in time, so `tlake reprocess` can clear a range of
    # it before recomputing (None: the table is not laid out in time, e.g. an inventory).
    time_column: str | None = None

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
        Column(
            "details_json",
            "string",
            "The source's own section (fleet, store, reading, stream) as JSON; null for mobile",
        ),
        Column(
            "rescued_json",
            "string",
            "Fields the schema does not know yet (a newer client's), kept as JSON, never lost",
        ),
        Column(
            "device_occurred_at",
            "timestamp",
            "occurred_at as the device's clock said it (differs when clock_skew_corrected)",
        ),
        Column(
            "clock_skew_corrected",
            "boolean",
            "Whether occurred_at was shifted by received_at - sent_at (device clock off by more "
            "than clock_skew_threshold_s)",
        ),
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
    time_column="hour_start",
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

# --- origin sources: silver per source, flattened from silver.device_events ------------------
# Each source's silver table holds its accepted, deduplicated events (the very rows of
# silver.device_events) with the source's section flattened into columns. `SOURCES` says which
# schema family feeds which table; `Source.section_ddl` is how silver parses the section.

_SOURCE_COMMON = (
    Column("event_id", "string", "Event id, unique in this table", False),
    Column("device_id", "string", "Device the event describes", False),
    Column("event_type", "string", "Event type", False),
    Column("occurred_at", "timestamp", "When the event happened (UTC, clock-corrected)", False),
    Column("event_date", "date", "UTC date of occurred_at (partition)", False),
    Column("received_at", "timestamp", "When the API received it (UTC)"),
    Column("source", "string", "Source the API key belongs to"),
)


@dataclass(frozen=True)
class Source:
    """An origin source: its schema family (`fleet` for `fleet/1`), the section its events
    carry, and its silver table (common columns, then the section's fields)."""

    family: str
    section: str
    table: Table
    origin: str  # the origin document (../shared/seeds/) it comes from

    @property
    def section_columns(self) -> tuple[Column, ...]:
        common = {c.name for c in _SOURCE_COMMON}
        return tuple(c for c in self.table.columns if c.name not in common)

    @property
    def section_ddl(self) -> str:
        return ", ".join(f"{c.name} {c.type}" for c in self.section_columns)


def _source_table(name: str, grain: str, description: str, *columns: Column) -> Table:
    return Table(
        name=name,
        path=name.replace(".", "/"),
        grain=grain,
        description=description,
        owner_stage="silver",
        merge_keys=("event_id",),
        partition_by=("event_date",),
        columns=(*_SOURCE_COMMON, *columns),
    )


SILVER_FLEET_STATUS = _source_table(
    "silver.fleet_status",
    "one row per fleet event (heartbeat or inventory record)",
    "Fleet machines' reports: state and metadata per heartbeat (000's data dictionary).",
    Column("status", "string", "online or offline"),
    Column("machine_type", "string", "ATM, CC, PD or PC"),
    Column("state", "string", "Brazilian state (two letters)"),
    Column("branch_id", "string", "Five-digit branch code"),
    Column("acquisition_sequence", "string", "Branch id and acquisition date YYYYMMDD"),
    Column("has_error", "boolean", "Whether the machine reported an error"),
    Column("machine_model", "string", "Model within the machine type"),
    Column("supplier", "string", "Vendor"),
    Column("network_address", "string", "HMAC token of the machine's IP (never the IP)"),
    Column("operating_system", "string", "OS family"),
    Column("os_version", "string", "OS version"),
    Column("acquisition_date", "string", "When the machine entered the fleet (YYYY-MM-DD)"),
)

SILVER_STORE_COUNTS = _source_table(
    "silver.store_counts",
    "one row per door-sensor hourly count",
    "Visitors counted per store door sensor and hour (001); failed readings have no visits.",
    Column("store", "string", "Store (city)"),
    Column("sensor_id", "int", "Door sensor number within the store"),
    Column("status", "string", "ok or failed"),
    Column("visits", "bigint", "Visitors in the hour; null when the reading failed"),
    Column("store_opened_on", "string", "When the store opened (YYYY-MM-DD)"),
)

SILVER_IOT_READINGS = _source_table(
    "silver.iot_readings",
    "one row per sensor reading",
    "IoT sensor readings (002) with the sensor's unit, type, location and declared range.",
    Column("value", "double", "Measured value"),
    Column("unit", "string", "Unit of the value (C, F, %, ...)"),
    Column("type", "string", "What is measured (temperature, ...)"),
    Column("location", "string", "Where the sensor is"),
    Column("latitude", "double", "Sensor latitude"),
    Column("longitude", "double", "Sensor longitude"),
    Column("range_min", "double", "Lowest value the sensor can measure"),
    Column("range_max", "double", "Highest value the sensor can measure"),
)

SILVER_STREAM_VALUES = _source_table(
    "silver.stream_values",
    "one row per stream message",
    "A value stream (004): one value per message; device_id names the stream.",
    Column("value", "double", "The value"),
)

SOURCES: tuple[Source, ...] = (
    Source("fleet", "fleet", SILVER_FLEET_STATUS, "000_16749760aedd2b81.txt"),
    Source("store", "store", SILVER_STORE_COUNTS, "001_e038df07d9eac200.txt"),
    Source("iot", "reading", SILVER_IOT_READINGS, "002_9964580b2124f7ab.txt"),
    Source("stream", "stream", SILVER_STREAM_VALUES, "004_5bd383c41d694a6b.txt"),
)

# --- origin sources: gold -----------------------------------------------------------------------

GOLD_FLEET_DEVICES = Table(
    name="gold.fleet_devices",
    path="gold/fleet_devices",
    grain="one row per fleet machine (device_id = device_code)",
    description="The fleet inventory: every machine ever seen, its latest metadata and status; "
    "mirrored to analytics.fleet_devices.",
    owner_stage="gold",
    merge_keys=("device_id",),
    columns=(
        Column("device_id", "string", "device_code: AT/CC/PD/PC and six digits", False),
        Column("machine_type", "string", "ATM, CC, PD or PC"),
        Column("machine_model", "string", "Model"),
        Column("supplier", "string", "Vendor"),
        Column("state", "string", "Brazilian state"),
        Column("branch_id", "string", "Branch code"),
        Column("operating_system", "string", "OS family"),
        Column("os_version", "string", "OS version"),
        Column("acquisition_date", "string", "When the machine entered the fleet"),
        Column("first_seen_at", "timestamp", "Earliest report", False),
        Column("last_seen_at", "timestamp", "Latest report", False),
        Column("last_status", "string", "Status of the latest report"),
        Column("has_error", "boolean", "Error flag of the latest report"),
        Column(
            "inventoried_at",
            "timestamp",
            "Earliest inventory record; null while only heartbeats came (not in the inventory)",
        ),
    ),
)

GOLD_FLEET_SEGMENTS = Table(
    name="gold.fleet_segments",
    time_column="ts",
    path="gold/fleet_segments",
    grain="one row per (snapshot ts, segment, dimension values)",
    description="Online machines per snapshot and segment (000's segment_timeseries shape: "
    "dimension names and values, '' where a segment has fewer than three dimensions); "
    "mirrored to analytics.fleet_segments.",
    owner_stage="gold",
    merge_keys=("ts", "segment", "dim1_value", "dim2_value", "dim3_value"),
    columns=(
        Column("ts", "timestamp", "Snapshot start (fleet_snapshot_minutes windows)", False),
        Column(
            "segment", "string", "State, Type, Supplier, Type and OS and OS_version, ...", False
        ),
        Column("count", "bigint", "Machines online in the snapshot with these values", False),
        Column("dim1_name", "string", "First dimension", False),
        Column("dim1_value", "string", "Its value", False),
        Column("dim2_name", "string", "Second dimension, or ''", False),
        Column("dim2_value", "string", "Its value, or ''", False),
        Column("dim3_name", "string", "Third dimension, or ''", False),
        Column("dim3_value", "string", "Its value, or ''", False),
    ),
)

GOLD_FLEET_ONLINE = Table(
    name="gold.fleet_online",
    time_column="ts",
    path="gold/fleet_online",
    grain="one row per snapshot ts",
    description="Machines online per snapshot against the inventory known then; the monitor's "
    "input. Mirrored to analytics.fleet_online.",
    owner_stage="gold",
    merge_keys=("ts",),
    columns=(
        Column("ts", "timestamp", "Snapshot start", False),
        Column("online", "bigint", "Machines that reported online in the snapshot", False),
        Column("reporting", "bigint", "Machines that reported at all in the snapshot", False),
        Column("errors", "bigint", "Online machines reporting an error", False),
        Column("inventory", "bigint", "Machines first seen before the snapshot ended", False),
        Column("online_share", "double", "online / inventory (0..1)"),
    ),
)

GOLD_STORE_SENSOR_HOURLY = Table(
    name="gold.store_sensor_hourly",
    time_column="hour_start",
    path="gold/store_sensor_hourly",
    grain="one row per (store, sensor_id, hour_start)",
    description="Door-sensor traffic per hour with failed readings kept apart from zero "
    "traffic and anomalies flagged; mirrored to analytics.store_sensor_hourly, with the "
    "daily and per-store resolutions as views.",
    owner_stage="gold",
    merge_keys=("store", "sensor_id", "hour_start"),
    columns=(
        Column("store", "string", "Store", False),
        Column("sensor_id", "int", "Door sensor", False),
        Column("hour_start", "timestamp", "Start of the counted hour (UTC)", False),
        Column("visits", "bigint", "Visitors; null when the reading failed"),
        Column("failed", "boolean", "The sensor reported a failed reading", False),
        Column(
            "anomaly",
            "boolean",
            "Traffic below a quarter of the store's mean for open hours that day",
            False,
        ),
    ),
)

GOLD_IOT_SENSOR_MINUTE = Table(
    name="gold.iot_sensor_minute",
    time_column="minute_start",
    path="gold/iot_sensor_minute",
    grain="one row per (device_id, minute_start)",
    description="One-minute aggregates per IoT sensor; mirrored to analytics.iot_sensor_minute.",
    owner_stage="gold",
    merge_keys=("device_id", "minute_start"),
    columns=(
        Column("device_id", "string", "Sensor id", False),
        Column("minute_start", "timestamp", "Start of the UTC minute", False),
        Column("readings", "bigint", "Readings in the minute", False),
        Column("avg_value", "double", "Mean value", False),
        Column("min_value", "double", "Lowest value", False),
        Column("max_value", "double", "Highest value", False),
        Column("out_of_range", "bigint", "Readings outside the sensor's declared range", False),
        Column("unit", "string", "Unit"),
        Column("type", "string", "What is measured"),
        Column("location", "string", "Where the sensor is"),
    ),
)

GOLD_STREAM_ROLLING = Table(
    name="gold.stream_rolling",
    time_column="occurred_at",
    path="gold/stream_rolling",
    grain="one row per stream message (event_id)",
    description="Stream values with time-based rolling averages over a short and a long "
    "window (stream_rolling_short_s, stream_rolling_long_s); mirrored to "
    "analytics.stream_rolling, with 004's melt and pivot shapes as views.",
    owner_stage="gold",
    merge_keys=("event_id",),
    columns=(
        Column("event_id", "string", "Message id", False),
        Column("device_id", "string", "Stream", False),
        Column("occurred_at", "timestamp", "Message timestamp (UTC)", False),
        Column("value", "double", "The value", False),
        Column("rolling_avg_short", "double", "Mean over the short window ending here", False),
        Column("rolling_avg_long", "double", "Mean over the long window ending here", False),
    ),
)

TABLES: tuple[Table, ...] = (
    BRONZE_EVENTS,
    SILVER_DEVICE_EVENTS,
    QUARANTINE_EVENTS,
    GOLD_DEVICE_HOURLY,
    *(source.table for source in SOURCES),
    GOLD_FLEET_DEVICES,
    GOLD_FLEET_SEGMENTS,
    GOLD_FLEET_ONLINE,
    GOLD_STORE_SENSOR_HOURLY,
    GOLD_IOT_SENSOR_MINUTE,
    GOLD_STREAM_ROLLING,
)


def table(name: str) -> Table:
    """The declaration called `name` (e.g. 'silver.device_events')."""
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(f"no lake table named {name!r}; declared: {[t.name for t in TABLES]}")
