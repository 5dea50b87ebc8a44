"""silver.device_events: bronze events parsed, checked, deduplicated, flattened and enriched.

Grain: one row per event_id, the first copy received. Within one input the copy with the
earliest (received_at, object_key, line_no) wins; across runs the MERGE is insert-only, so a
copy already in silver stays as it was. A row that fails a quality rule goes to
quarantine.events (stage silver) once per rule it broke, and never into silver.

    spark-submit spark_jobs/silver/device_events.py --run-id <run id>
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lake_config.settings import Settings
from lake_config.tables import QUARANTINE_EVENTS, SILVER_DEVICE_EVENTS
from spark_jobs import lake
from spark_jobs.lake import Split

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

STAGE = "silver"

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

BATTERY_PCT_RANGE = (0.0, 100.0)
SIGNAL_DBM_RANGE = (-150, 0)
CRITICAL_BATTERY_PCT = 10.0
LOW_BATTERY_PCT = 20.0

# Quality rules, in the order a reader of quarantine meets them.
RULE_UNPARSEABLE = "unparseable_payload"
RULE_MISSING = "missing_{}"  # missing_event_id, missing_device_id, ...
RULE_BAD_OCCURRED_AT = "invalid_occurred_at"
RULE_BATTERY = "battery_out_of_range"
RULE_SIGNAL = "signal_out_of_range"


@dataclass(frozen=True)
class SilverCounts:
    rows_in: int  # bronze rows of the run's objects
    written: int  # events new to silver; 0 when a re-run finds them all there
    duplicates: int  # copies of an event already accepted from the same input
    quarantined: int  # quarantine rows new to quarantine.events


def classify(bronze_df: DataFrame) -> DataFrame:
    """Each bronze row parsed and flattened, with its broken `rules` and an `accepted` flag.

    `accepted` marks the one copy of each valid event that silver keeps: valid rows sort
    before invalid ones within an event_id, then by (received_at, object_key, line_no).
    """
    from pyspark.sql import Window
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
        # json_object_keys is null unless the payload is a JSON object.
        F.json_object_keys(F.col("payload")).isNotNull().alias("is_object"),
    )
    flat = parsed.select(
        "*",
        ev["event_id"].alias("event_id"),
        ev["device_id"].alias("device_id"),
        ev["event_type"].alias("event_type"),
        ev["occurred_at"].alias("occurred_at_text"),
        F.try_to_timestamp(ev["occurred_at"]).alias("occurred_at"),
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
    ).drop("ev")
    rules = F.array_compact(F.array(*_rule_checks()))
    checked = flat.withColumn("rules", rules)
    first_received = Window.partitionBy("event_id").orderBy(
        F.size("rules").asc(), "received_at", "object_key", "line_no"
    )
    ranked = checked.withColumn("copy_no", F.row_number().over(first_received))
    accepted = (F.size("rules") == 0) & (F.col("copy_no") == 1)
    return ranked.withColumn("accepted", accepted)


def _rule_checks() -> list[Column]:
    """One nullable struct<rule, reason> per quality rule; null when the rule holds."""
    from pyspark.sql import functions as F

    def broken(condition: Column, rule: str, reason: Column) -> Column:
        return F.when(condition, F.struct(F.lit(rule).alias("rule"), reason.alias("reason")))

    def text(*parts: Column | str) -> Column:
        cols = [F.lit(p) if isinstance(p, str) else p.cast("string") for p in parts]
        return F.concat(*cols)

    parseable = F.col("is_object")
    checks = [
        broken(~parseable, RULE_UNPARSEABLE, F.lit("payload is not a JSON object")),
    ]
    for field in ("event_id", "device_id", "event_type"):
        empty = F.col(field).isNull() | (F.trim(F.col(field)) == "")
        checks.append(
            broken(parseable & empty, RULE_MISSING.format(field), F.lit(f"{field} is missing"))
        )
    checks += [
        broken(
            parseable & F.col("occurred_at_text").isNull(),
            RULE_MISSING.format("occurred_at"),
            F.lit("occurred_at is missing"),
        ),
        broken(
            F.col("occurred_at_text").isNotNull() & F.col("occurred_at").isNull(),
            RULE_BAD_OCCURRED_AT,
            text("occurred_at ", F.col("occurred_at_text"), " is not an RFC 3339 timestamp"),
        ),
        broken(
            ~F.col("battery_pct").between(*BATTERY_PCT_RANGE),
            RULE_BATTERY,
            text(
                "battery.level_pct ",
                F.col("battery_pct"),
                f" outside {BATTERY_PCT_RANGE[0]:g}..{BATTERY_PCT_RANGE[1]:g}",
            ),
        ),
        broken(
            ~F.col("network_signal_dbm").between(*SIGNAL_DBM_RANGE),
            RULE_SIGNAL,
            text(
                "network.signal_dbm ",
                F.col("network_signal_dbm"),
                f" outside {SIGNAL_DBM_RANGE[0]}..{SIGNAL_DBM_RANGE[1]}",
            ),
        ),
    ]
    return checks


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
        (F.unix_millis(F.col("received_at")) - F.unix_millis(F.col("occurred_at"))).alias(
            "ingest_lag_ms"
        ),
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


def transform(bronze_df: DataFrame) -> Split:
    """bronze.events rows -> (silver.device_events rows, quarantine.events rows).

    Quarantine rows carry the input's run_id; `load` sets it to the run doing the checking.
    """
    return split(classify(bronze_df))


# --- I/O ---------------------------------------------------------------------------------------


def load(
    spark: SparkSession, settings: Settings, run_id: str, object_keys: Sequence[str]
) -> SilverCounts:
    """Transform the bronze rows of `object_keys` and MERGE them into silver and quarantine.

    Three Spark actions: one aggregate (counts and the event dates that bound the MERGE), then
    one MERGE per table. The silver MERGE matches event_id within those event dates only, so a
    client that reuses an event_id for an event on another day gets a second row; scanning all
    of silver on every run to catch that would make each run cost the size of the lake.
    """
    from pyspark.sql import functions as F

    from spark_jobs.bronze.events import read_run_rows

    if not object_keys:
        return SilverCounts(rows_in=0, written=0, duplicates=0, quarantined=0)
    for table in (SILVER_DEVICE_EVENTS, QUARANTINE_EVENTS):  # readers may rely on them, even empty
        lake.ensure_created(spark, settings, table)
    bronze = read_run_rows(spark, settings, object_keys).withColumn("run_id", F.lit(run_id))
    classified = classify(bronze)
    stats = (
        classified.groupBy(
            "accepted", F.when(F.col("accepted"), F.to_date("occurred_at")).alias("event_date")
        )
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((F.size("rules") == 0).cast("int")).alias("valid"),
            F.sum(F.size("rules")).alias("broken"),
        )
        .collect()
    )
    rows_in = sum(int(r["n"]) for r in stats)
    dates = [r["event_date"] for r in stats if r["accepted"]]
    duplicates = sum(int(r["valid"] or 0) for r in stats if not r["accepted"])
    broken = sum(int(r["broken"] or 0) for r in stats)
    rows, quarantine = split(classified)
    written = quarantined = 0
    if dates:
        written = lake.merge(
            spark, settings, SILVER_DEVICE_EVENTS, rows, prune={"event_date": dates}
        )
    if broken:
        quarantined = lake.merge(spark, settings, QUARANTINE_EVENTS, quarantine)
    return SilverCounts(
        rows_in=rows_in, written=written, duplicates=duplicates, quarantined=quarantined
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
