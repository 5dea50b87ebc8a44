"""The whole path for real: simulator → ingest API → SeaweedFS + registry → Sail → Delta + Postgres.

One module-scoped scenario (simulated fleet with bad events, plus an SDK that re-sends a batch),
then one assertion per promise the README makes.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pyspark.sql import SparkSession

from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.spark import table_uri
from lake_config.storage import ObjectStore
from lake_config.tables import GOLD_DEVICE_HOURLY, QUARANTINE_EVENTS, SILVER_DEVICE_EVENTS, TABLES
from spark_jobs import pipeline
from tlake import simulate

SIM = {"devices": 6, "minutes": 40, "seed": 11, "bad_rate": 0.05}


def _envelope(n: int) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=5)
    return {
        "sent_at": at.isoformat().replace("+00:00", "Z"),
        "events": [
            {
                "event_id": str(uuid.uuid4()),
                "device_id": "dup-device",
                "event_type": "heartbeat",
                "occurred_at": (at - timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "battery": {"level_pct": 50.0 + i, "charging": False},
                "network": {"type": "wifi", "ip": "203.0.113.77", "ssid": "SecretCafeWifi"},
            }
            for i in range(n)
        ],
    }


SOURCE = "e2e"  # the scenario's own source: other modules share this session's stack


def _silver(spark: SparkSession, settings: Settings) -> Any:
    """This scenario's silver rows."""
    table = spark.read.format("delta").load(table_uri(settings, SILVER_DEVICE_EVENTS))
    return table.where(f"source = '{SOURCE}'")


def _pg_hourly(registry: Registry) -> list[dict[str, Any]]:
    with registry.connection() as conn:
        rows = conn.execute(
            "select device_id, hour_start, events, sessions, avg_battery_pct "
            "from analytics.device_hourly order by device_id, hour_start"
        ).fetchall()
    return [dict(r) for r in rows]


@pytest.fixture(scope="module")
def scenario(settings: Settings, api_url: str, registry: Registry) -> dict[str, Any]:
    """Land a simulated fleet plus one batch sent twice, then run the pipeline once."""
    write_key = registry.create_key(SOURCE)
    sim = simulate.run(api_url, write_key, concurrency=2, **SIM)  # type: ignore[arg-type]
    dup = _envelope(5)
    headers = {"Authorization": f"Bearer {write_key}"}
    first = httpx.post(f"{api_url}/v1/events", json=dup, headers=headers, timeout=30)
    second = httpx.post(f"{api_url}/v1/events", json=dup, headers=headers, timeout=30)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    summary = pipeline.run_once(settings)
    return {"sim": sim, "dup": dup, "summary": summary}


def test_every_landed_object_is_processed(scenario: dict[str, Any], registry: Registry) -> None:
    with registry.connection() as conn:
        rows = conn.execute(
            "select status, count(*) as n, sum(event_count) as events from registry.raw_objects "
            "where source = %s group by status",
            (SOURCE,),
        ).fetchall()
    counts = {r["status"]: (r["n"], r["events"]) for r in rows}
    assert list(counts) == ["processed"]
    objects, events = counts["processed"]
    # Batches landed at the same moment share an object (group commit): at most one object per
    # batch that had an accepted event, and every accepted event in one of them.
    assert objects <= scenario["sim"].batches + 2 - _all_rejected_batches(scenario)
    assert events == scenario["sim"].accepted + 2 * 5


def _all_rejected_batches(scenario: dict[str, Any]) -> int:
    # A batch whose every event was invalid got a 422 and landed no raw object.
    return scenario["sim"].statuses.get(422, 0)


def test_silver_has_each_accepted_event_once(
    scenario: dict[str, Any], spark: SparkSession, settings: Settings
) -> None:
    silver = _silver(spark, settings)
    total = silver.count()
    distinct = silver.select("event_id").distinct().count()
    assert total == distinct
    sim = scenario["sim"]
    # Re-sent simulator batches and the explicit duplicate batch add no rows.
    assert total == sim.accepted - _resent_accepted(sim) + 5


def _resent_accepted(sim: simulate.SimulationResult) -> int:
    replay = list(
        simulate.batches(SIM["devices"], SIM["minutes"], seed=SIM["seed"], bad_rate=SIM["bad_rate"])
    )
    ids_seen: set[str] = set()
    dup = 0
    for envelope, _ in replay:
        for e in envelope["events"]:
            if "event_id" in e and e["event_id"] in ids_seen and _valid_looking(e):
                dup += 1
            ids_seen.add(e.get("event_id", ""))
    return dup


def _valid_looking(e: dict[str, Any]) -> bool:
    return (
        "device_id" in e
        and "debug_blob" not in e
        and e["occurred_at"] != "yesterday"
        and e["battery"]["level_pct"] <= 100
        and e["network"]["type"] in {"wifi", "cellular"}
    )


def test_duplicate_batch_lands_twice_but_appears_once_in_silver(
    scenario: dict[str, Any], spark: SparkSession, settings: Settings, registry: Registry
) -> None:
    ids = [e["event_id"] for e in scenario["dup"]["events"]]
    rows = _silver(spark, settings).where("device_id = 'dup-device'").collect()
    assert sorted(r.event_id for r in rows) == sorted(ids)
    with registry.connection() as conn:
        n = conn.execute(
            "select sum(events) as n from analytics.device_hourly where device_id = 'dup-device'"
        ).fetchone()
    assert n is not None and int(n["n"]) == 5


def test_invalid_events_are_quarantined_with_reasons(
    scenario: dict[str, Any], registry: Registry
) -> None:
    sim = scenario["sim"]
    assert sim.rejected > 0, "the scenario must include invalid events"
    with registry.connection() as conn:
        rows = conn.execute(
            "select reasons, component from registry.quarantine where source = %s", (SOURCE,)
        ).fetchall()
    assert len(rows) == sim.rejected
    for row in rows:
        assert row["component"] == "ingest_api"
        assert row["reasons"], "every quarantined event carries its reasons"
        assert all(r.get("field") is not None and r.get("message") for r in row["reasons"])
    fields = {r["field"] for row in rows for r in row["reasons"]}
    assert fields & {"battery.level_pct", "device_id", "debug_blob", "network.type", "occurred_at"}


def test_gold_delta_and_postgres_agree(
    scenario: dict[str, Any], spark: SparkSession, settings: Settings, registry: Registry
) -> None:
    gold = spark.read.format("delta").load(table_uri(settings, GOLD_DEVICE_HOURLY))
    delta_rows = {
        (
            r.device_id,
            r.hour_start.replace(tzinfo=UTC) if r.hour_start.tzinfo is None else r.hour_start,
        ): r.events
        for r in gold.select("device_id", "hour_start", "events").collect()
    }
    pg_rows = {(r["device_id"], r["hour_start"]): r["events"] for r in _pg_hourly(registry)}
    assert delta_rows == pg_rows
    silver_all = spark.read.format("delta").load(table_uri(settings, SILVER_DEVICE_EVENTS))
    assert sum(pg_rows.values()) == silver_all.count()


def test_rerun_changes_nothing(
    scenario: dict[str, Any], spark: SparkSession, settings: Settings, registry: Registry
) -> None:
    before_silver = sorted(
        r.event_id for r in _silver(spark, settings).select("event_id").collect()
    )
    before_pg = _pg_hourly(registry)
    again = pipeline.run_once(settings)
    assert again.objects == 0
    after_silver = sorted(r.event_id for r in _silver(spark, settings).collect())
    assert after_silver == before_silver
    assert _pg_hourly(registry) == before_pg


def test_raw_ip_and_ssid_appear_nowhere(
    scenario: dict[str, Any],
    settings: Settings,
    store: ObjectStore,
    spark: SparkSession,
    registry: Registry,
) -> None:
    secrets_sent = {"203.0.113.77", "SecretCafeWifi"}
    for envelope, _ in simulate.batches(
        SIM["devices"], SIM["minutes"], seed=SIM["seed"], bad_rate=SIM["bad_rate"]
    ):
        for e in envelope["events"]:
            net = e.get("network", {})
            secrets_sent |= {str(net[k]) for k in ("ip", "ssid") if k in net}
    assert len(secrets_sent) > 4

    def leaks(text: str) -> set[str]:
        return {s for s in secrets_sent if s in text}

    # Every object in the bucket: raw, quarantine and the Delta logs.
    for obj in store.list(""):
        body = store.get(obj.key)
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        if obj.key.endswith(".parquet"):
            continue  # compressed columns: checked through Spark below
        assert not leaks(body.decode("utf-8", "replace")), obj.key
    # Every lake table, every column, as text.
    for t in TABLES:
        df = spark.read.format("delta").load(table_uri(settings, t))
        text = "\n".join(json.dumps(r.asDict(), default=str) for r in df.collect())
        assert not leaks(text), t.name
    # Every table in Postgres.
    with registry.connection() as conn:
        tables = conn.execute(
            "select table_schema as s, table_name as t from information_schema.tables "
            "where table_schema in ('registry', 'analytics')"
        ).fetchall()
        assert len(tables) >= 5
        for row in tables:
            dump = conn.execute(
                f'select x::text as row from "{row["s"]}"."{row["t"]}" x'
            ).fetchall()
            assert not leaks("\n".join(r["row"] for r in dump)), f"{row['s']}.{row['t']}"
    # The API's own log.
    log = (settings.home / "logs" / "api.log").read_text(errors="replace")
    assert not leaks(log)


def test_quarantine_table_holds_no_ingest_rejects_twice(
    scenario: dict[str, Any], spark: SparkSession, settings: Settings
) -> None:
    q = spark.read.format("delta").load(table_uri(settings, QUARANTINE_EVENTS))
    assert q.count() == q.select("record_key", "rule").distinct().count()


def test_cli_status_json_reports_the_stack(settings: Settings, api_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tlake.cli", "status", "--json"],
        env={**settings.as_env(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert {k for k, v in status["components"].items() if v["ok"]} == {
        "postgres",
        "s3",
        "spark",
        "api",
    }
    assert set(status["registry"]) == {"pending", "processing", "processed", "failed"}
    userinfo = status["components"]["postgres"]["endpoint"].split("//", 1)[1].split("@")[0]
    assert ":" not in userinfo, "the database password must never be printed"
