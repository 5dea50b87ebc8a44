"""Pipeline benchmark: events/s through claim → bronze → silver → gold → finish on Sail.

Lands `--objects` raw objects of `--events` events each (made by the mobile simulator and the
ingest API's own validation and landing code, so they are byte-for-byte what the API writes),
then measures in the same run:

  baseline  — reading those objects as text and counting lines, Sail opening each object;
  bundled   — the same the way bronze reads them: fetched through obstore from threads into a
              few multi-member gzip bundles (spark_jobs.bronze.bundles), then Sail reading
              those; the bench's own scratch bundles are removed after;
  pipeline  — one `pipeline.run_once` over all of them (MERGE into bronze, silver and gold Delta
              tables, upsert into PostgreSQL);
              More objects than `run_batch_objects` (5,000) take several runs, as they
              would on a schedule; their times add up.
  rerun     — a second pass with nothing new (what an idle schedule tick costs);
  increment — a run over 10 new objects on a nearly empty lake (before everything else) against
              the same after the big load: the registry claims only what arrived, so the
              second should cost about the same as the first, not grow with the lake. Each is
              the median of `--repeats` runs (2-core machines are noisy).

It starts its own private stack (SeaweedFS, Sail, a throwaway PostgreSQL database) and removes it.
Usage: `python bench/pipeline.py [--objects 100] [--events 1000] [--repeats 3]`.
The incrementality goal is stated for 10,000 objects: `--objects 10000 --events 100`. By default
all of them land today, the worst case: today's partitions, which a new run's MERGEs and lookups
must read, then hold the whole lake. `--history-days 7` spreads them over a week ending today, as
a lake grows in service (today then holds a seventh).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from ingest_api.batches import validate_batch
from ingest_api.landing import compress, raw_key, raw_lines
from ingest_api.tokenize import Tokenizer
from lake_config.registry import RawObject, Registry, drop_database
from lake_config.settings import Settings
from lake_config.spark import build_session, lake_scheme
from lake_config.storage import ObjectStore, lake_uri
from spark_jobs import pipeline, staging
from spark_jobs.bronze import bundles
from tlake import simulate, stack


def land(
    settings: Settings, objects: int, events: int, *, history_days: int = 1
) -> tuple[list[str], int]:
    """Write `objects` raw objects as the API would, register them; returns keys and bytes.

    With `history_days` > 1 the objects are spread evenly over that many days ending today
    (received, sent and occurred times all moved back together, so each object is what the API
    would have landed that day): a lake that grew over time rather than in one day.
    """
    store = ObjectStore(settings)
    tokenizer = Tokenizer.for_settings(settings)
    # A fixed pool (its events are reused with fresh ids): one device per object would hold
    # millions of events in memory for 10,000 objects.
    pool = [
        e for env, _ in simulate.batches(200, 240, seed=3, resend_rate=0.0) for e in env["events"]
    ]
    keys, total = [], 0
    with Registry(settings, max_size=2) as reg:
        for i in range(objects):
            back = timedelta(days=(objects - 1 - i) * history_days // objects)
            chunk = [dict(pool[(i * events + j) % len(pool)]) for j in range(events)]
            for e in chunk:  # unique ids: the benchmark measures volume, not dedup
                e["event_id"] = str(uuid.uuid4())
                if back:
                    e["occurred_at"] = _rfc3339(_parse(e["occurred_at"]) - back)
            received = datetime.now(UTC) - back
            # sent now, as the SDK does: a sent_at older than the events would read as clock skew
            body = orjson.dumps({"sent_at": _rfc3339(received), "events": chunk})
            batch = validate_batch(
                body,
                settings.model_copy(update={"max_events_per_batch": events}),
                tokenizer,
                received_at=received,
            )
            batch_id = uuid.uuid4()
            key = raw_key("bench", received, batch_id)
            data = compress(
                raw_lines(
                    batch.accepted,
                    object_key=key,
                    batch_id=batch_id,
                    source="bench",
                    schema_version=batch.schema_version,
                    received_at=received,
                    sent_at=batch.sent_at,
                )
            )
            store.put(key, data)
            reg.register(
                RawObject(key, "bench", batch_id, len(data), len(batch.accepted), received)
            )
            keys.append(key)
            total += len(data)
    return keys, total


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def small_runs(settings: Settings, events: int, repeats: int) -> tuple[float, dict[str, float]]:
    """Median seconds of `repeats` runs, each over 10 newly landed objects, and per stage."""
    times: list[float] = []
    stages: dict[str, list[float]] = {}
    for _ in range(repeats):
        land(settings, 10, events)
        t0 = time.perf_counter()
        summary = pipeline.run_once(settings)
        times.append(time.perf_counter() - t0)
        assert summary.processed == 10
        for st in summary.stages:
            stages.setdefault(st.stage, []).append(st.duration_s)
    return statistics.median(times), {k: statistics.median(v) for k, v in stages.items()}


def drain(settings: Settings) -> list[pipeline.RunSummary]:
    """Runs until nothing is pending (one run claims at most `run_batch_objects`)."""
    runs = []
    while (summary := pipeline.run_once(settings)).objects:
        runs.append(summary)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--objects", type=int, default=100)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--history-days",
        type=int,
        default=1,
        help="spread the big load over this many days ending today (1: all of it today)",
    )
    args = ap.parse_args()
    n_events = args.objects * args.events

    with tempfile.TemporaryDirectory(prefix="tlake-bench-") as home:
        settings = stack.private_settings(Path(home))
        try:
            stack.up(settings, api=False)
            land(settings, 10, args.events)
            pipeline.run_once(settings)  # creates the tables
            small_empty_s, empty_stages = small_runs(settings, args.events, args.repeats)

            t0 = time.perf_counter()
            keys, size = land(settings, args.objects, args.events, history_days=args.history_days)
            landing_s = time.perf_counter() - t0

            spark = build_session(settings)
            uris = [lake_uri(settings, k, scheme=lake_scheme(settings)) for k in keys]
            t0 = time.perf_counter()
            lines = spark.read.text(uris).count()
            baseline_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            parts = bundles.write(settings, "bench-bundled", keys)
            bundled = spark.read.text(
                [lake_uri(settings, k, scheme=lake_scheme(settings)) for k in parts]
            )
            bundled_lines = bundled.count()
            bundled_s = time.perf_counter() - t0
            staging.clear(settings, "bench-bundled")

            t0 = time.perf_counter()
            runs = drain(settings)
            run_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            idle = pipeline.run_once(settings)
            idle_s = time.perf_counter() - t0

            small_full_s, full_stages = small_runs(settings, args.events, args.repeats)
        finally:
            stack.down(settings)
            drop_database(settings)

    assert lines == bundled_lines == n_events, (lines, bundled_lines, n_events)
    assert sum(r.processed for r in runs) == args.objects and idle.objects == 0
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    for r in runs:
        for st in r.stages:
            seconds[st.stage] = seconds.get(st.stage, 0.0) + st.duration_s
            rows[st.stage] = rows.get(st.stage, 0) + st.rows_written
    print(
        f"pipeline benchmark: {args.objects} objects x {args.events} events = {n_events:,}"
        f", landed over {args.history_days} day(s) ending today"
    )
    print(f"  landed (gzip)       {size / 2**20:.1f} MiB in {landing_s:.1f} s")
    print(f"  baseline read+count {n_events / baseline_s:>10,.0f} events/s ({baseline_s:.1f} s)")
    print(
        f"  bundled read+count  {n_events / bundled_s:>10,.0f} events/s ({bundled_s:.1f} s, "
        f"{len(parts)} bundle(s)) = {baseline_s / bundled_s:.2f} x baseline"
    )
    print(
        f"  pipeline            {n_events / run_s:>10,.0f} events/s ({run_s:.1f} s in "
        f"{len(runs)} run(s)) = {baseline_s / run_s:.2f} x baseline"
    )
    for stage, took in seconds.items():
        print(f"    {stage:<7} {took:6.1f} s  {rows[stage]:>9,} rows written")
    print(f"  idle rerun          {idle_s:.2f} s (nothing new; Spark not started)")
    print(
        f"  10 new objects      {small_empty_s:.1f} s on a nearly empty lake, {small_full_s:.1f} s "
        f"after {args.objects + 10 * (args.repeats + 1)} processed "
        f"= {small_full_s / small_empty_s:.2f} x (median of {args.repeats})"
    )
    for stage, took in empty_stages.items():
        print(f"    {stage:<7} {took:6.2f} s vs {full_stages.get(stage, float('nan')):6.2f} s")


if __name__ == "__main__":
    main()
