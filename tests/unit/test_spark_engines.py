"""The pure transforms give the same rows on classic JVM Spark as on Sail.

The jobs set nothing engine-specific, so a cluster can run them on JVM Spark. A classic session
cannot share a process with Spark Connect (pyspark picks the Column implementation per process),
so the JVM side runs in a child interpreter that prints its rows as JSON. Both read the lines
from a file as bronze's bundles hold them (several objects' gzip members in one file,
spark_jobs.bronze.bundles), so the JVM's reading of such a file is checked too.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from spark_jobs.bronze import bundles, events
from spark_jobs.gold import device_hourly
from spark_jobs.silver import device_events

ROOT = Path(__file__).resolve().parents[2]
KEY = "raw/source=mobile/dt=2024-05-01/hour=10/b1.jsonl.gz"


def _lines() -> list[str]:
    def line(n: int, **event: Any) -> str:
        body = {
            "event_id": f"e{n % 4}",  # four events, some sent twice
            "device_id": f"d{n % 2}",
            "event_type": "crash" if n % 3 == 0 else "heartbeat",
            "occurred_at": f"2024-05-01T{9 + n % 2:02d}:{n:02d}:00.5Z",
            "battery": {"level_pct": float(n * 9), "charging": n % 2 == 0},
            "network": {"type": "wifi" if n % 2 else "cellular", "signal_dbm": -40 - n},
            "session": {"session_id": f"s{n % 3}", "duration_ms": n * 1000},
            "attributes": {"n": n, "odd": n % 2 == 1},
            **event,
        }
        return json.dumps(
            {
                "object_key": KEY,
                "line_no": n,
                "batch_id": "b1",
                "source": "mobile",
                "schema_version": "mobile/1",
                "received_at": f"2024-05-01T10:{n:02d}:00Z",
                "sent_at": None,
                "event": body,
            }
        )

    return [
        *(line(n) for n in range(10)),
        line(10, battery={"level_pct": 101.0}),
        line(11, occurred_at="soon"),
        "not json at all",
    ]


def write_bundle(path: Path) -> None:
    """The lines as a bundle: three objects' gzip members, the second without a final newline
    (which `bundles.checked` supplies)."""
    lines = _lines()
    objects = ["\n".join(lines[:5]) + "\n", "\n".join(lines[5:9]), "\n".join(lines[9:]) + "\n"]
    path.write_bytes(b"".join(bundles.checked(gzip.compress(o.encode())) for o in objects))


def results(spark: SparkSession, bundle: Path) -> dict[str, list[dict[str, Any]]]:
    """Every transform's output on the same input, as JSON-ready rows in a stable order."""
    lines = spark.read.text(str(bundle))
    bronze, bronze_bad = events.transform(lines, "run-1")
    silver, silver_bad = device_events.transform(bronze)
    repeated = device_events.repeated_event_ids(bronze)  # how the silver stage ranks copies
    silver_ranked, _ = device_events.split(device_events.classify(bronze, repeated=repeated))
    gold = device_hourly.transform(silver)

    def rows(df: Any, *order: str) -> list[dict[str, Any]]:
        df = df.drop("quarantined_at") if "quarantined_at" in df.columns else df
        return json.loads(json.dumps(df.orderBy(*order).toArrow().to_pylist(), default=str))

    return {
        "bronze": rows(bronze, "line_no"),
        "bronze_quarantine": rows(bronze_bad, "record_key"),
        "silver": rows(silver, "event_id"),
        "silver_repeats_ranked": rows(silver_ranked, "event_id"),
        "silver_quarantine": rows(silver_bad, "record_key", "rule"),
        "gold": rows(gold, "device_id", "hour_start"),
    }


def _classic_results(bundle: str) -> None:
    """Run in the child interpreter: the same transforms on a local JVM session."""
    classic = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    print(json.dumps(results(classic, Path(bundle))))


@pytest.mark.jvm
def test_transforms_give_the_same_rows_on_jvm_spark_and_on_sail(
    spark: SparkSession, tmp_path: Path
) -> None:
    bundle = tmp_path / "part-00000.jsonl.gz"
    write_bundle(bundle)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
    child = subprocess.run(
        [sys.executable, "-c", f"import {__name__} as m; m._classic_results({str(bundle)!r})"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    jvm = json.loads(child.stdout.strip().splitlines()[-1])

    sail = results(spark, bundle)

    assert sail["silver"], "the input must produce silver rows to compare"
    assert {name: len(rows) for name, rows in sail.items()} == {
        "bronze": 12,
        "bronze_quarantine": 1,
        "silver": 4,
        "silver_repeats_ranked": 4,
        "silver_quarantine": 2,
        "gold": 2,
    }
    assert sail["silver_repeats_ranked"] == sail["silver"]
    assert jvm == sail
