"""silver.device_events transform: typed and flattened, enriched, checked, deduplicated."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lake_config.tables import BRONZE_EVENTS, QUARANTINE_EVENTS, SILVER_DEVICE_EVENTS
from spark_jobs.silver import device_events

# assertDataFrameEqual imports pandas-on-Spark, which warns about an env var it alone needs.

RECEIVED = datetime(2024, 5, 1, 10, 16, 0, tzinfo=UTC)
FULL_EVENT: dict[str, Any] = {
    "event_id": "e1",
    "device_id": "d1",
    "event_type": "battery_status",
    "occurred_at": "2024-05-01T10:15:58.500Z",
    "app": {"name": "fleet", "version": "2.1.0"},
    "device": {"os": "android", "os_version": "14", "model": "Pixel 8", "manufacturer": "Google"},
    "battery": {"level_pct": 15.5, "charging": False, "temperature_c": 31.25},
    "network": {
        "type": "wifi",
        "ip": "k1:ip-token",
        "ssid": "k1:ssid-token",
        "carrier": None,
        "signal_dbm": -61,
    },
    "session": {"session_id": "s1", "duration_ms": 120000},
    "attributes": {"screen": "home", "retries": 2, "beta": True},
}


def _event(**overrides: Any) -> dict[str, Any]:
    base = {k: FULL_EVENT[k] for k in ("event_id", "device_id", "event_type", "occurred_at")}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def _bronze(
    spark: SparkSession, *rows: tuple[dict[str, Any] | str, str, int, datetime]
) -> DataFrame:
    """Bronze rows from (event or raw payload text, object_key, line_no, received_at)."""

    def row(payload: dict[str, Any] | str, key: str, line_no: int, received: datetime) -> tuple:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        ids = payload if isinstance(payload, dict) else {}
        return (
            key,
            line_no,
            "batch",
            "mobile",
            "mobile/1",
            received,
            None,
            received.date(),
            ids.get("event_id"),
            ids.get("device_id"),
            ids.get("event_type"),
            text,
            "run-bronze",
        )

    return spark.createDataFrame([row(*r) for r in rows], BRONZE_EVENTS.ddl)


def _silver(spark: SparkSession, bronze: DataFrame) -> tuple[DataFrame, DataFrame]:
    rows, quarantine = device_events.transform(bronze)
    assert rows.columns == SILVER_DEVICE_EVENTS.column_names
    assert quarantine.columns == QUARANTINE_EVENTS.column_names
    return rows, quarantine.drop("quarantined_at")


def test_a_full_event_is_flattened_typed_and_enriched(spark: SparkSession) -> None:
    rows, quarantine = _silver(spark, _bronze(spark, (FULL_EVENT, "k1", 4, RECEIVED)))

    occurred = datetime(2024, 5, 1, 10, 15, 58, 500000, tzinfo=UTC)
    expected = spark.createDataFrame(
        [
            (
                "e1",
                "d1",
                "battery_status",
                occurred,
                date(2024, 5, 1),
                datetime(2024, 5, 1, 10, tzinfo=UTC),
                RECEIVED,
                None,
                "mobile",
                "mobile/1",
                "k1",
                "fleet",
                "2.1.0",
                "android",
                "14",
                "Pixel 8",
                "Google",
                15.5,
                False,
                31.25,
                "low",
                "wifi",
                "k1:ip-token",
                "k1:ssid-token",
                None,
                -61,
                "s1",
                120000,
                '{"screen":"home","retries":2,"beta":true}',
                1500,
                None,
                None,
                occurred,
                False,
            )
        ],
        SILVER_DEVICE_EVENTS.ddl,
    )
    # attributes keep their JSON types (2, true): compared as parsed JSON, not as spelling.
    assertDataFrameEqual(rows.drop("attributes_json"), expected.drop("attributes_json"))
    (row,) = rows.collect()
    assert json.loads(row["attributes_json"]) == FULL_EVENT["attributes"]
    assert quarantine.count() == 0


def test_absent_sections_give_nulls_not_rejections(spark: SparkSession) -> None:
    rows, quarantine = _silver(spark, _bronze(spark, (_event(), "k1", 0, RECEIVED)))

    row = rows.first()
    assert row is not None
    assert (row["battery_pct"], row["battery_band"], row["network_type"]) == (None, None, None)
    assert row["attributes_json"] is None
    assert quarantine.count() == 0


@pytest.mark.parametrize(
    ("level_pct", "band"),
    [
        (0.0, "critical"),
        (9.99, "critical"),
        (10.0, "low"),
        (19.9, "low"),
        (20.0, "normal"),
        (100.0, "normal"),
        (None, None),
    ],
)
def test_battery_band(spark: SparkSession, level_pct: float | None, band: str | None) -> None:
    event = _event(battery={"level_pct": level_pct, "charging": True})
    rows, _ = _silver(spark, _bronze(spark, (event, "k1", 0, RECEIVED)))

    assert [r["battery_band"] for r in rows.collect()] == [band]


def test_the_first_received_copy_of_an_event_wins(spark: SparkSession) -> None:
    later = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    bronze = _bronze(
        spark,
        (_event(event_type="late_copy"), "k0", 0, later),
        (_event(event_type="first"), "k2", 5, RECEIVED),
        (_event(event_type="same_time_later_key"), "k3", 0, RECEIVED),
        (_event(event_type="same_key_later_line"), "k2", 6, RECEIVED),
        (_event(event_id="e2"), "k9", 0, later),
    )
    rows, quarantine = _silver(spark, bronze)

    got = rows.select("event_id", "event_type", "object_key")
    expected = spark.createDataFrame(
        [("e1", "first", "k2"), ("e2", "battery_status", "k9")],
        "event_id string, event_type string, object_key string",
    )
    assertDataFrameEqual(got, expected)
    assert quarantine.count() == 0, "duplicates are not bad data"


def test_an_invalid_first_copy_does_not_hide_a_valid_later_one(spark: SparkSession) -> None:
    bronze = _bronze(
        spark,
        (_event(battery={"level_pct": 101.0}), "k1", 0, RECEIVED),
        (_event(battery={"level_pct": 99.0}), "k2", 0, datetime(2024, 5, 2, tzinfo=UTC)),
    )
    rows, quarantine = _silver(spark, bronze)

    assert [(r["object_key"], r["battery_pct"]) for r in rows.collect()] == [("k2", 99.0)]
    assert [(r["record_key"], r["rule"]) for r in quarantine.collect()] == [
        ("k1:0", "battery_out_of_range")
    ]


def test_quality_rules_quarantine_each_broken_rule_by_name(spark: SparkSession) -> None:
    bronze = _bronze(
        spark,
        (_event(event_id=None, device_id=" "), "k", 0, RECEIVED),
        (_event(event_id="e2", event_type=..., occurred_at=...), "k", 1, RECEIVED),
        (_event(event_id="e3", occurred_at="yesterday"), "k", 2, RECEIVED),
        (_event(event_id="e4", battery={"level_pct": -0.5}), "k", 3, RECEIVED),
        (_event(event_id="e5", network={"type": "cellular", "signal_dbm": 3}), "k", 4, RECEIVED),
        (_event(event_id="e6", network={"type": "cellular", "signal_dbm": -151}), "k", 5, RECEIVED),
        ("[1, 2]", "k", 6, RECEIVED),
        ('{"event_id": "e8", truncated', "k", 7, RECEIVED),
        (
            _event(event_id="ok", network={"signal_dbm": -150}, battery={"level_pct": 100.0}),
            "k",
            8,
            RECEIVED,
        ),
    )
    rows, quarantine = _silver(spark, bronze)

    assert [r["event_id"] for r in rows.collect()] == ["ok"]
    got = quarantine.select("record_key", "rule", "stage", "event_id", "reason", "run_id")
    expected = spark.createDataFrame(
        [
            ("k:0", "missing_event_id", None, "event_id is missing"),
            ("k:0", "missing_device_id", None, "device_id is missing"),
            ("k:1", "missing_event_type", "e2", "event_type is missing"),
            ("k:1", "missing_occurred_at", "e2", "occurred_at is missing"),
            (
                "k:2",
                "invalid_occurred_at",
                "e3",
                "occurred_at yesterday is not an RFC 3339 timestamp",
            ),
            ("k:3", "battery_out_of_range", "e4", "battery.level_pct -0.5 outside 0..100"),
            ("k:4", "signal_out_of_range", "e5", "network.signal_dbm 3 outside -150..0"),
            ("k:5", "signal_out_of_range", "e6", "network.signal_dbm -151 outside -150..0"),
            ("k:6", "unparseable_payload", None, "payload is not a JSON object"),
            ("k:7", "unparseable_payload", None, "payload is not a JSON object"),
        ],
        "record_key string, rule string, event_id string, reason string",
    ).selectExpr(
        "record_key", "rule", "'silver' as stage", "event_id", "reason", "'run-bronze' as run_id"
    )
    assertDataFrameEqual(got, expected)
    payloads = {r["record_key"]: r["payload"] for r in quarantine.collect()}
    assert payloads["k:6"] == "[1, 2]", "the rejected record is kept as it was"


def test_fields_the_schema_does_not_know_yet_are_rescued_not_lost(spark: SparkSession) -> None:
    newer = _event(
        app={"name": "shop", "build": 812},  # `build` is new in the section
        locale="pt-BR",  # a new top-level field
        consent={"ads": False},  # a new section
    )
    bronze = _bronze(spark, (newer, "k1", 0, RECEIVED), (_event(event_id="e2"), "k1", 1, RECEIVED))
    # A newer client's version: silver reads what mobile/1 declares and rescues the rest.
    rows, quarantine = _silver(spark, bronze.withColumn("schema_version", F.lit("mobile/2")))

    by_id = {r["event_id"]: r for r in rows.collect()}
    assert by_id["e2"]["rescued_json"] is None
    assert json.loads(by_id["e1"]["rescued_json"]) == {
        "event": {"locale": "pt-BR", "consent": '{"ads":false}'},
        "app": {"build": "812"},
    }
    assert by_id["e1"]["app_name"] == "shop"
    assert by_id["e1"]["schema_version"] == "mobile/2"
    assert quarantine.count() == 0
    # A version silver reads in full is not looked through: the API refuses any field it does
    # not declare (test below), so such a row has nothing to rescue, and bronze keeps its text.
    rows, _ = _silver(spark, bronze)
    assert {r["event_id"]: r["rescued_json"] for r in rows.collect()} == {"e1": None, "e2": None}


def _resolved(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema node with its `$ref` (or the object branch of an optional's anyOf) resolved."""
    if "$ref" in schema:
        return _resolved(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    for branch in schema.get("anyOf", ()):
        if branch.get("type") != "null":
            return _resolved(branch, defs)
    return schema


@pytest.mark.parametrize("version", device_events.READ_IN_FULL)
def test_a_version_read_in_full_declares_nothing_silver_does_not_read(version: str) -> None:
    """The contract that lets silver skip the rescue for these versions, checked against the
    API's own schema: no field beyond what silver reads, and none accepted undeclared."""
    from ingest_api.schemas import SCHEMAS
    from lake_config.tables import SOURCES

    event = SCHEMAS[version].adapter.json_schema()
    defs = event.get("$defs", {})
    assert event["additionalProperties"] is False
    assert set(event["properties"]) <= set(device_events.KNOWN_FIELDS)
    family = version.split("/")[0]
    kept_whole = {s.section for s in SOURCES if s.family == family}  # into details_json
    assert set(event["properties"]) & {s.section for s in SOURCES} <= kept_whole
    for name, known in device_events.KNOWN_SECTION_FIELDS.items():
        if name in event["properties"]:
            section = _resolved(event["properties"][name], defs)
            assert section["additionalProperties"] is False, (version, name)
            assert set(section["properties"]) <= set(known), (version, name)


def test_the_rescue_lists_match_what_silver_parses(spark: SparkSession) -> None:
    from pyspark.sql.types import StructType, _parse_datatype_string

    parsed = _parse_datatype_string(device_events.PAYLOAD_DDL)
    assert isinstance(parsed, StructType)
    sections = {f.name: f.dataType for f in parsed.fields if isinstance(f.dataType, StructType)}
    assert {
        name: tuple(f.name for f in t.fields) for name, t in sections.items()
    } == device_events.KNOWN_SECTION_FIELDS
    top = {f.name for f in parsed.fields}
    assert top <= set(device_events.KNOWN_FIELDS)
    assert set(device_events.KNOWN_FIELDS) - top == {"fleet", "store", "reading", "stream"}


def test_ranking_only_the_repeated_ids_classifies_like_ranking_every_row(
    spark: SparkSession,
) -> None:
    later = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    bronze = _bronze(
        spark,
        (_event(event_type="late_copy"), "k0", 0, later),  # e1: three copies, first wins
        (_event(event_type="first"), "k2", 5, RECEIVED),
        (_event(event_type="same_time_later_key"), "k3", 0, RECEIVED),
        (_event(event_id="e2", battery={"level_pct": 101.0}), "k1", 0, RECEIVED),  # invalid
        (_event(event_id="e2", battery={"level_pct": 99.0}), "k2", 0, later),  # ...valid later
        (_event(event_id="e3"), "k1", 1, RECEIVED),  # the only copy
        (_event(event_id="e4", occurred_at="yesterday"), "k1", 2, RECEIVED),  # only, invalid
        (_event(event_id=None), "k1", 3, RECEIVED),  # no id, twice
        (_event(event_id=None), "k1", 4, RECEIVED),
        ("[1, 2]", "k1", 5, RECEIVED),
    )

    repeated = device_events.repeated_event_ids(bronze)
    every = device_events.classify(bronze)
    some = device_events.classify(bronze, repeated=repeated)

    assert sorted(repeated or []) == ["e1", "e2"], "ids without copies, and null, are not listed"
    assert sorted(some.columns) == sorted(every.columns)
    # copy_no numbers the copies of an event_id; rows without one are never accepted either way.
    numbered = F.when(F.col("event_id").isNotNull(), F.col("copy_no"))
    assertDataFrameEqual(
        some.select(*every.columns).withColumn("copy_no", numbered),
        every.withColumn("copy_no", numbered),
    )
    accepted = {(r["event_id"], r["object_key"]) for r in some.where("accepted").collect()}
    assert accepted == {("e1", "k2"), ("e2", "k2"), ("e3", "k1")}
    unique = next(i for i, e in enumerate(SILVER_DEVICE_EVENTS.expectations) if e.kind == "unique")
    flagged = some.where(F.col(f"_dq_failed_{unique}")).count()
    assert flagged == 3, "every copy after the first of e1 (2) and e2 (1) counts as a duplicate"
    assert device_events.repeated_event_ids(bronze, limit=1) is None, "over the limit: rank all"
