"""silver.device_events: bronze events parsed, checked, deduplicated, flattened and enriched.

Grain: one row per event_id, the first copy received. Within one input the copy with the
earliest (received_at, object_key, line_no) wins; across runs the MERGE is insert-only, so a
copy already in silver stays as it was. The table's declared expectations
(`SILVER_DEVICE_EVENTS.expectations`, lake_config.quality) are checked on every row: a row that
fails a `quarantine` rule goes to quarantine.events (stage silver) once per rule it broke, and
never into silver; `warn` rules are only counted; a broken `fail` rule stops the stage before
it commits. Every rule's counts go to analytics.dq_results.

    spark-submit spark_jobs/silver/device_events.py --run-id <run id>
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lake_config.quality import Expectation
from lake_config.settings import Settings
from lake_config.tables import QUARANTINE_EVENTS, SILVER_DEVICE_EVENTS, SOURCES, Source
from spark_jobs import lake, quality, staging
from spark_jobs.lake import Split

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

STAGE = "silver"
STAGED = "silver"  # the run's classified rows (spark_jobs.staging), read by quality and gold

# The tokenized event as the ingest API wrote it. occurred_at is text (Sail cannot parse
# RFC 3339 inside from_json); attributes typed string keep the object's JSON text, so scalar
# types survive (a map<string,string> would turn 1 and true into "1" and "true").
PAYLOAD_DDL = (
    "event_id string, device_id string, event_type string, occurred_at string, "
    "app struct<name: string, version: string>, "
    "device struct<os: string, os_version: string, model: string, manufacturer: string>, "
    "battery struct<level_pct: double, charging: boolean, temperature_c: double>, "
    "network struct<type: string, ip: string, ssid: string, carrier: string, signal_dbm: int>, "
    "session struct<session_id: string, duration_ms: bigint>, "
    "attributes string"
)

# What PAYLOAD_DDL (and the source sections kept in details_json) reads; anything else a
# payload carries is kept in rescued_json. Checked against PAYLOAD_DDL by the unit tests.
KNOWN_FIELDS = (
    "event_id",
    "device_id",
    "event_type",
    "occurred_at",
    "app",
    "device",
    "battery",
    "network",
    "session",
    "attributes",
    *(source.section for source in SOURCES),
)
KNOWN_SECTION_FIELDS = {
    "app": ("name", "version"),
    "device": ("os", "os_version", "model", "manufacturer"),
    "battery": ("level_pct", "charging", "temperature_c"),
    "network": ("type", "ip", "ssid", "carrier", "signal_dbm"),
    "session": ("session_id", "duration_ms"),
}

# Schema versions silver reads in full: the API rejects any field they do not declare
# (`extra="forbid"` at every level, ingest_api.schemas) and silver reads every field they do
# declare (the unit tests check both against the API's schemas). Their rows have nothing to
# rescue, so `_rescued_json`, half of classifying a row, runs only for other versions: a newer
# client's (`mobile/2`) or a line without a version.
READ_IN_FULL = ("mobile/1", "fleet/1", "store/1", "iot/1", "stream/1")

CRITICAL_BATTERY_PCT = 10.0
LOW_BATTERY_PCT = 20.0
DEFAULT_CLOCK_SKEW_THRESHOLD_S = 60.0  # Settings.clock_skew_threshold_s
# Event ids repeated within one run's input that `classify` ranks on their own (as an IN list)
# rather than ranking every row; a run re-sending more than this ranks them all.
MAX_REPEATED_IDS = 5_000
# Timestamps silver keeps (the API's bounds, well inside Sail's 64-bit-nanosecond years
# 1677-2262): epoch milliseconds of 1900-01-01 and 2200-01-01 (exclusive). A clock-skew shift
# never leaves them, and a device time outside them (landed before the API bounded it) is
# unparseable, hence quarantined, instead of failing the stage.
EARLIEST_MS = -2_208_988_800_000
LATEST_MS = 7_258_118_400_000


@dataclass(frozen=True)
class SilverCounts:
    rows_in: int  # bronze rows of the run's objects
    written: int  # events new to silver; 0 when a re-run finds them all there
    duplicates: int  # copies of an event already accepted from the same input
    quarantined: int  # quarantine rows new to quarantine.events
    rule_results: tuple[quality.RuleResult, ...] = ()  # as written to analytics.dq_results
    sources: tuple[tuple[str, int], ...] = ()  # (source table, rows new to it)


def check(
    bronze_df: DataFrame,
    expectations: Sequence[Expectation] = SILVER_DEVICE_EVENTS.expectations,
    clock_skew_threshold_s: float = DEFAULT_CLOCK_SKEW_THRESHOLD_S,
    *,
    distinct: Collection[str] = (),
) -> DataFrame:
    """Each bronze row parsed and flattened, with its broken `rules` (no deduplication).

    Device clocks: when the batch's received_at - sent_at exceeds `clock_skew_threshold_s` in
    either direction, occurred_at is shifted by that offset (Segment's correction) and
    `clock_skew_corrected` is set; `device_occurred_at` keeps what the device said.

    `rules` lists the quarantining `expectations` the row broke; every expectation also leaves
    a failure flag that `quality.summary` counts. `distinct`: as for `quality.annotate`.
    """
    from pyspark.sql import functions as F

    ev = F.col("ev")
    parsed = bronze_df.select(
        "object_key",
        "line_no",
        "received_at",
        "sent_at",
        "source",
        "schema_version",
        "payload",
        "run_id",
        F.from_json(F.col("payload"), PAYLOAD_DDL).alias("ev"),
        # json_object_keys is null unless the payload is a JSON object; its keys are also what
        # `_rescued_json` looks through (one scan of the payload for both).
        F.json_object_keys(F.col("payload")).alias("top_keys"),
    ).withColumn("is_object", F.col("top_keys").isNotNull())
    flat = parsed.select(
        "*",
        ev["event_id"].alias("event_id"),
        ev["device_id"].alias("device_id"),
        ev["event_type"].alias("event_type"),
        ev["occurred_at"].alias("occurred_at_text"),
        lake.bounded_timestamp(ev["occurred_at"]).alias("device_occurred_at"),
        ev["app"]["name"].alias("app_name"),
        ev["app"]["version"].alias("app_version"),
        ev["device"]["os"].alias("os"),
        ev["device"]["os_version"].alias("os_version"),
        ev["device"]["model"].alias("device_model"),
        ev["device"]["manufacturer"].alias("device_manufacturer"),
        ev["battery"]["level_pct"].alias("battery_pct"),
        ev["battery"]["charging"].alias("battery_charging"),
        ev["battery"]["temperature_c"].alias("battery_temperature_c"),
        ev["network"]["type"].alias("network_type"),
        # The API already replaced ip and ssid with HMAC tokens; no raw value reaches here.
        ev["network"]["ip"].alias("network_ip_token"),
        ev["network"]["ssid"].alias("network_ssid_token"),
        ev["network"]["carrier"].alias("network_carrier"),
        ev["network"]["signal_dbm"].alias("network_signal_dbm"),
        ev["session"]["session_id"].alias("session_id"),
        ev["session"]["duration_ms"].alias("session_duration_ms"),
        ev["attributes"].alias("attributes_json"),
        _details_json(F.col("schema_version"), F.col("payload")).alias("details_json"),
        F.when(
            ~F.coalesce(F.col("schema_version").isin(*READ_IN_FULL), F.lit(False)),
            _rescued_json(F.col("payload"), F.col("top_keys")),
        ).alias("rescued_json"),
        F.when(F.col("is_object"), F.col("payload")).alias("object_payload"),
    ).drop("ev", "top_keys")
    skew_ms = F.unix_millis(F.col("received_at")) - F.unix_millis(F.col("sent_at"))
    shifted_ms = F.unix_millis(F.col("device_occurred_at")) + skew_ms
    # A shift never leaves the years every engine and client can hold (the API admits any
    # time in years 1-9999): such an event keeps its device time, uncorrected.
    representable = (shifted_ms >= EARLIEST_MS) & (shifted_ms < LATEST_MS)
    corrected = F.coalesce(
        (F.abs(skew_ms) > F.lit(int(clock_skew_threshold_s * 1000))) & representable,
        F.lit(False),
    )
    flat = flat.withColumns(
        {
            "clock_skew_corrected": corrected & F.col("device_occurred_at").isNotNull(),
            "occurred_at": F.when(corrected, F.timestamp_millis(shifted_ms)).otherwise(
                F.col("device_occurred_at")
            ),
        }
    )
    lag_ms = F.unix_millis(F.col("received_at")) - F.unix_millis(F.col("occurred_at"))
    return quality.annotate(
        flat.withColumn("ingest_lag_ms", lag_ms), expectations, distinct=distinct
    )


def classify(
    bronze_df: DataFrame,
    expectations: Sequence[Expectation] = SILVER_DEVICE_EVENTS.expectations,
    clock_skew_threshold_s: float = DEFAULT_CLOCK_SKEW_THRESHOLD_S,
    *,
    repeated: Collection[str] | None = None,
) -> DataFrame:
    """Each bronze row parsed and flattened (`check`), with its broken `rules` and an
    `accepted` flag.

    `accepted` marks the one copy of each valid event that silver keeps: valid rows sort
    before invalid ones within an event_id, then by (received_at, object_key, line_no), and
    `copy_no` numbers them in that order (a row without an event_id is never accepted; its
    copy_no means nothing).

    Ranking copies takes a window over event_id, and a window sorts every row with all its
    parsed columns: on a batch where (almost) every event_id is unique that sort is most of
    the work and decides nothing. `repeated`, when given, must be every event_id that occurs
    more than once in `bronze_df`'s event_id column (`repeated_event_ids`): only those rows
    are ranked, the rest are each the only copy of their event. None ranks every row.
    """
    from pyspark.sql import functions as F

    if repeated is None:
        return _ranked(check(bronze_df, expectations, clock_skew_threshold_s))
    singles = bronze_df
    if repeated:
        is_repeat = F.coalesce(F.col("event_id").isin(sorted(repeated)), F.lit(False))
        singles = bronze_df.where(~is_repeat)
    # Bronze lifted event_id from the same payload text silver parses, so a row's parsed
    # event_id is bronze's or null, and the copies of an event never straddle the two parts.
    only = check(singles, expectations, clock_skew_threshold_s, distinct=("event_id",))
    ranked = only.withColumn("copy_no", F.lit(1)).withColumn("accepted", F.size("rules") == 0)
    if not repeated:
        return ranked
    copies = _ranked(check(bronze_df.where(is_repeat), expectations, clock_skew_threshold_s))
    return ranked.unionByName(copies)


def _ranked(checked: DataFrame) -> DataFrame:
    """`check`'s rows with `copy_no` within their event_id and the `accepted` flag."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first_received = Window.partitionBy("event_id").orderBy(
        F.size("rules").asc(), "received_at", "object_key", "line_no"
    )
    ranked = checked.withColumn("copy_no", F.row_number().over(first_received))
    accepted = (F.size("rules") == 0) & (F.col("copy_no") == 1)
    return ranked.withColumn("accepted", accepted)


def repeated_event_ids(bronze_df: DataFrame, limit: int = MAX_REPEATED_IDS) -> list[str] | None:
    """The event_ids that occur more than once in `bronze_df`, for `classify`; None when there
    are more than `limit` (then every row is ranked). One narrow aggregate: no payload parsed."""
    from pyspark.sql import functions as F

    found = (
        bronze_df.where(F.col("event_id").isNotNull())
        .groupBy("event_id")
        .agg(F.count(F.lit(1)).alias("copies"))
        .where(F.col("copies") > 1)
        .select("event_id")
        .limit(limit + 1)
        .collect()
    )
    return None if len(found) > limit else [r["event_id"] for r in found]


def _details_json(schema_version: Column, payload: Column) -> Column:
    """The section named by the event's source (SOURCES) as JSON text; null for mobile."""
    from pyspark.sql import functions as F

    details = F.lit(None).cast("string")
    for source in SOURCES:
        details = F.when(
            schema_version.startswith(f"{source.family}/"),
            F.get_json_object(payload, f"$.{source.section}"),
        ).otherwise(details)
    return details


def _rescued_json(payload: Column, top_keys: Column) -> Column:
    """Fields of the payload silver does not read yet, so a field a newer schema version added
    is never lost before silver learns it: `{"event": {...}, "<section>": {...}}` holding the
    unknown keys of the event and of each mobile section (values as JSON text), or null.

    Two parses per row, not six: the sections come from one `from_json` as maps, and the event's
    own keys (`top_keys`: `json_object_keys` of the payload, which `check` also needs); only a
    payload that has an unknown top-level key is parsed a third time, for those keys' values.
    """
    from pyspark.sql import functions as F

    def unknown_keys(entries: Column, known: Sequence[str]) -> Column:
        return F.map_filter(entries, lambda k, _: ~k.isin(*known))

    sections = F.from_json(
        payload, ", ".join(f"{name} map<string,string>" for name in KNOWN_SECTION_FIELDS)
    )
    top_unknown = F.filter(top_keys, lambda k: ~k.isin(*KNOWN_FIELDS))
    parts = {
        "event": F.when(
            F.size(top_unknown) > 0,
            unknown_keys(F.from_json(payload, "map<string,string>"), KNOWN_FIELDS),
        )
    }
    for section, names in KNOWN_SECTION_FIELDS.items():
        parts[section] = unknown_keys(sections[section], names)
    unknown = sum((F.coalesce(F.size(m), F.lit(0)) for m in parts.values()), F.lit(0))
    rescued = F.struct(*(F.when(F.size(m) > 0, m).alias(name) for name, m in parts.items()))
    return F.when(unknown > 0, F.to_json(rescued))


def flatten_source(silver_rows: DataFrame, source: Source) -> DataFrame:
    """silver.device_events rows of `source` -> rows of its silver table (section flattened)."""
    from pyspark.sql import functions as F

    section = F.from_json(F.col("details_json"), source.section_ddl)
    common = [c.name for c in source.table.columns if c not in source.section_columns]
    rows = silver_rows.where(F.col("schema_version").startswith(f"{source.family}/")).select(
        *common, section.alias("section")
    )
    return lake.conform(
        rows.select(
            *common, *(F.col("section")[c.name].alias(c.name) for c in source.section_columns)
        ),
        source.table,
    )


def split(classified: DataFrame) -> Split:
    """silver.device_events rows and quarantine.events rows from `classify`'s output."""
    from pyspark.sql import functions as F

    pct = F.col("battery_pct")
    battery_band = (
        F.when(pct.isNull(), F.lit(None).cast("string"))
        .when(pct < CRITICAL_BATTERY_PCT, F.lit("critical"))
        .when(pct < LOW_BATTERY_PCT, F.lit("low"))
        .otherwise(F.lit("normal"))
    )
    rows = classified.where(F.col("accepted")).select(
        "*",
        F.to_date("occurred_at").alias("event_date"),
        F.date_trunc("hour", F.col("occurred_at")).alias("event_hour"),
        battery_band.alias("battery_band"),
    )
    broken = classified.where(F.size("rules") > 0).select("*", F.explode("rules").alias("broken"))
    quarantine = broken.select(
        F.concat(F.col("object_key"), F.lit(":"), F.col("line_no").cast("string")).alias(
            "record_key"
        ),
        F.col("broken.rule").alias("rule"),
        F.lit(STAGE).alias("stage"),
        "object_key",
        "event_id",
        F.col("broken.reason").alias("reason"),
        "payload",
        "run_id",
        F.current_timestamp().alias("quarantined_at"),
    )
    return Split(
        lake.conform(rows, SILVER_DEVICE_EVENTS), lake.conform(quarantine, QUARANTINE_EVENTS)
    )


def transform(
    bronze_df: DataFrame,
    expectations: Sequence[Expectation] = SILVER_DEVICE_EVENTS.expectations,
    clock_skew_threshold_s: float = DEFAULT_CLOCK_SKEW_THRESHOLD_S,
) -> Split:
    """bronze.events rows -> (silver.device_events rows, quarantine.events rows).

    Quarantine rows carry the input's run_id; `load` sets it to the run doing the checking.
    The rows of each origin source go on to its own table through `flatten_source`.
    """
    return split(classify(bronze_df, expectations, clock_skew_threshold_s))


# --- I/O ---------------------------------------------------------------------------------------


def load(
    spark: SparkSession,
    settings: Settings,
    run_id: str,
    object_keys: Sequence[str],
    *,
    expectations: Sequence[Expectation] = SILVER_DEVICE_EVENTS.expectations,
) -> SilverCounts:
    """Transform the bronze rows of `object_keys` and MERGE them into silver and quarantine.

    The transform runs once: its rows are staged as Parquet (spark_jobs.staging, also read by
    the run's quality and gold stages), then one aggregate over them (counts, every
    expectation's checked and failed rows, and the event dates that bound the MERGE), then one
    MERGE per table. The rule counts go to
    analytics.dq_results first; a broken `fail` rule then raises QualityError before either
    MERGE. The silver MERGE matches event_id within those event dates only, so a
    client that reuses an event_id for an event on another day gets a second row; scanning all
    of silver on every run to catch that would make each run cost the size of the lake.
    """
    from pyspark.sql import functions as F

    from spark_jobs.bronze.events import read_run_rows

    if not object_keys:
        return SilverCounts(rows_in=0, written=0, duplicates=0, quarantined=0)
    # Readers (the read API, the catalog, the next stage) may rely on every table, even empty.
    for table in (SILVER_DEVICE_EVENTS, QUARANTINE_EVENTS, *(s.table for s in SOURCES)):
        lake.ensure_created(spark, settings, table)
    bronze = read_run_rows(spark, settings, object_keys, run_id).withColumn("run_id", F.lit(run_id))
    classified = classify(
        bronze,
        expectations,
        settings.clock_skew_threshold_s,
        repeated=repeated_event_ids(bronze),
    )
    # Staged for this stage's MERGEs and the run's quality and gold stages, none of which reads
    # the payload of an accepted row: only a quarantined row keeps it (1M rows: 7.2 s, not 10.4).
    slim = classified.withColumn("payload", F.when(F.size("rules") > 0, F.col("payload"))).drop(
        "object_payload"
    )
    classified = staging.write(spark, settings, run_id, STAGED, slim)
    stats = (
        classified.groupBy(
            "accepted",
            F.when(F.col("accepted"), F.to_date("occurred_at")).alias("event_date"),
            F.when(F.col("accepted"), F.split("schema_version", "/")[0]).alias("family"),
        )
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((F.size("rules") == 0).cast("int")).alias("valid"),
            F.sum(F.size("rules")).alias("broken"),
            *quality.summary(expectations),
        )
        .collect()
    )
    checked = quality.results(SILVER_DEVICE_EVENTS.name, expectations, stats)
    quality.record(settings.database_url, run_id, checked, datetime.now(UTC))
    quality.enforce(checked)
    rows_in = sum(int(r["n"]) for r in stats)
    dates = sorted({r["event_date"] for r in stats if r["accepted"]})
    duplicates = sum(int(r["valid"] or 0) for r in stats if not r["accepted"])
    broken = sum(int(r["broken"] or 0) for r in stats)
    rows, quarantine = split(classified)
    written = quarantined = 0
    if dates:
        accepted = sum(int(r["n"]) for r in stats if r["accepted"])
        written = lake.merge(
            spark,
            settings,
            SILVER_DEVICE_EVENTS,
            rows,
            prune={"event_date": dates},
            filtered=accepted < rows_in,
        )
    if broken:
        quarantined = lake.merge(spark, settings, QUARANTINE_EVENTS, quarantine)
    sources = []
    for source in SOURCES:  # a run without a source's events never touches its table
        source_dates = sorted(
            {r["event_date"] for r in stats if r["accepted"] and r["family"] == source.family}
        )
        if source_dates:
            sources.append(
                (
                    source.table.name,
                    lake.merge(
                        spark,
                        settings,
                        source.table,
                        flatten_source(rows, source),
                        prune={"event_date": source_dates},
                    ),
                )
            )
    return SilverCounts(
        rows_in=rows_in,
        written=written,
        duplicates=duplicates,
        quarantined=quarantined,
        rule_results=tuple(checked),
        sources=tuple(sources),
    )


def run_rows(
    spark: SparkSession, settings: Settings, run_id: str, object_keys: Sequence[str]
) -> DataFrame:
    """`classify` of the run's bronze rows: as its silver stage staged them, or derived again
    from bronze when it did not (a stage run on its own, or the folder already cleared)."""
    from spark_jobs.bronze.events import read_run_rows

    staged = staging.read(spark, settings, run_id, STAGED)
    if staged is not None:
        return staged
    return classify(
        read_run_rows(spark, settings, object_keys),
        clock_skew_threshold_s=settings.clock_skew_threshold_s,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the silver stage for the objects a run holds."""
    parser = argparse.ArgumentParser(description="Load a run's bronze rows into silver.")
    parser.add_argument("--run-id", required=True, help="run that claimed the objects")
    args = parser.parse_args(argv)
    from lake_config.settings import get_settings
    from spark_jobs import pipeline

    print(pipeline.silver(get_settings(), args.run_id))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
