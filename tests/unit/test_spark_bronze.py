"""bronze.events transform: envelope lines parsed, anything else quarantined with its rule."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lake_config.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from spark_jobs.bronze import events

# assertDataFrameEqual imports pandas-on-Spark, which warns about an env var it alone needs.

KEY = "raw/source=mobile/dt=2024-05-01/hour=10/b1.jsonl.gz"
EVENT = {"event_id": "e1", "device_id": "d1", "event_type": "app_open", "nested": {"a": 1}}


def _line(**overrides: Any) -> str:
    envelope = {
        "object_key": KEY,
        "line_no": 0,
        "batch_id": "b1",
        "source": "mobile",
        "schema_version": "mobile/1",
        "received_at": "2024-05-01T10:16:00.250Z",
        "sent_at": "2024-05-01T10:15:59Z",
        "event": EVENT,
    }
    envelope.update(overrides)
    return json.dumps({k: v for k, v in envelope.items() if v is not ...})


def _lines(spark: SparkSession, *lines: str) -> DataFrame:
    return spark.createDataFrame([(line,) for line in lines], "value string")


def _quarantine(df: DataFrame) -> DataFrame:
    # quarantined_at is the wall clock of the run: checked for presence, not value.
    assert df.where("quarantined_at is null").count() == 0
    return df.drop("quarantined_at")


def test_a_valid_line_becomes_one_bronze_row(spark: SparkSession) -> None:
    rows, quarantine = events.transform(_lines(spark, _line()), "run-1")

    expected = spark.createDataFrame(
        [
            (
                KEY,
                0,
                "b1",
                "mobile",
                "mobile/1",
                datetime(2024, 5, 1, 10, 16, 0, 250000, tzinfo=UTC),
                datetime(2024, 5, 1, 10, 15, 59, tzinfo=UTC),
                date(2024, 5, 1),
                "e1",
                "d1",
                "app_open",
                json.dumps(EVENT, separators=(",", ":")),
                "run-1",
            )
        ],
        BRONZE_EVENTS.ddl,
    )
    assert rows.columns == BRONZE_EVENTS.column_names
    assertDataFrameEqual(rows.drop("payload"), expected.drop("payload"))
    (row,) = rows.collect()
    assert json.loads(row["payload"]) == EVENT  # the event, kept as JSON text
    assert quarantine.count() == 0


def test_sent_at_may_be_null(spark: SparkSession) -> None:
    rows, quarantine = events.transform(_lines(spark, _line(sent_at=None)), "run-1")

    assert [r["sent_at"] for r in rows.collect()] == [None]
    assert quarantine.count() == 0


def test_a_line_that_is_not_json_is_quarantined_under_its_hash(spark: SparkSession) -> None:
    garbage = '{"object_key": "raw/x", "line_no": 3, truncated'
    rows, quarantine = events.transform(_lines(spark, garbage, _line()), "run-1")

    assert rows.count() == 1
    assert quarantine.columns == QUARANTINE_EVENTS.column_names
    expected = spark.createDataFrame(
        [
            (
                hashlib.sha256(garbage.encode()).hexdigest(),
                "malformed_line",
                "bronze",
                None,
                None,
                "not a raw line envelope: missing or invalid "
                "object_key, line_no, received_at, event",
                garbage,
                "run-1",
            )
        ],
        QUARANTINE_EVENTS.ddl.replace(", quarantined_at timestamp", ""),
    )
    assertDataFrameEqual(_quarantine(quarantine), expected)


def test_a_line_cut_after_its_last_field_is_still_malformed(spark: SparkSession) -> None:
    # Each holds every field and the whole event, but none is one JSON object: a damaged
    # object's last line without its closing brace, one with text after it, and two lines
    # glued into one. None becomes a row (a parse that scanned for each field by its path,
    # as Sail's get_json_object does, would find them all).
    cut = _line()[:-1]
    trailing = _line(line_no=1) + " {"
    glued = _line(line_no=3) + _line(line_no=4)  # an object whose final newline went missing
    lines = _lines(spark, cut, trailing, _line(line_no=2), glued)
    rows, quarantine = events.transform(lines, "run-1")

    assert [r["line_no"] for r in rows.collect()] == [2]
    found = quarantine.collect()
    assert {r["payload"] for r in found} == {cut, trailing, glued}
    assert {r["rule"] for r in found} == {"malformed_line"}
    assert {r["object_key"] for r in found} == {None}


def test_a_line_missing_metadata_is_quarantined_under_its_position(spark: SparkSession) -> None:
    line = _line(line_no=7, received_at=..., sent_at="yesterday")
    rows, quarantine = events.transform(_lines(spark, line), "run-1")

    assert rows.count() == 0
    got = _quarantine(quarantine).select("record_key", "rule", "event_id", "reason", "payload")
    expected = spark.createDataFrame(
        [
            (
                f"{KEY}:7",
                "malformed_line",
                "e1",
                "not a raw line envelope: missing or invalid received_at, sent_at",
                line,
            )
        ],
        "record_key string, rule string, event_id string, reason string, payload string",
    )
    assertDataFrameEqual(got, expected)


def test_a_line_received_on_another_day_than_its_key_says_is_quarantined(
    spark: SparkSession,
) -> None:
    line = _line(received_at="2024-05-02T00:00:01Z")
    rows, quarantine = events.transform(_lines(spark, line), "run-1")

    assert rows.count() == 0
    got = _quarantine(quarantine).select("record_key", "rule", "reason")
    expected = spark.createDataFrame(
        [
            (
                f"{KEY}:0",
                "key_date_mismatch",
                "received_at date 2024-05-02 differs from the object key's dt=2024-05-01",
            )
        ],
        "record_key string, rule string, reason string",
    )
    assertDataFrameEqual(got, expected)


def test_a_key_without_a_date_is_not_checked_against_received_at(spark: SparkSession) -> None:
    rows, quarantine = events.transform(_lines(spark, _line(object_key="raw/test/a.jsonl.gz")), "r")

    assert [(r["object_key"], r["ingest_date"]) for r in rows.collect()] == [
        ("raw/test/a.jsonl.gz", date(2024, 5, 1))
    ]
    assert quarantine.count() == 0


def test_a_key_date_differs_only_when_the_key_names_another_day(spark: SparkSession) -> None:
    from spark_jobs import lake

    rows = spark.createDataFrame(
        [
            ("raw/source=m/dt=2024-05-01/hour=10/a.gz", False, "2024-05-01"),
            ("raw/source=m/dt=2024-05-02/hour=00/a.gz", True, "2024-05-02"),
            ("raw/source=m/hour=10/a.gz", False, None),  # no dt=: nothing to compare
            ("raw/source=m/dt=yesterday/a.gz", True, "yesterday"),  # not a date: never the day
            ("raw/source=m/dt=2024-05-01", True, "2024-05-01"),  # not a `/dt=<day>/` segment
        ],
        "key string, differs boolean, text string",
    )
    got = rows.select(
        "key",
        lake.key_date_differs(F.col("key"), F.lit(date(2024, 5, 1))).alias("differs"),
        F.when(F.col("key").contains("/dt="), lake.key_date_text(F.col("key"))).alias("text"),
    )
    assert sorted(got.collect()) == sorted(rows.collect())
