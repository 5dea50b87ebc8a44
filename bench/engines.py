"""Engine benchmark: the same bronze -> silver transform on Sail and on local JVM Spark.

Writes `--events` raw-object lines (the API's contract, mobile events, some re-sent copies and a
few bad lines) to a local JSON Lines file, then in one child interpreter per engine (a classic
session and Spark Connect cannot share a process) measures, best of `--repeat`:

  read      — read the file as text and count the lines (each engine's own I/O floor);
  transform — `bronze.events.transform` then `silver.device_events.transform`, the silver rows
              written to local Parquet (dedup window, expectations, flattening: all of it);
  staged    — the way the stages run it: bronze's rows written to Parquet first (the run's
              staged frame), then silver over them ranking only the event ids repeated in the
              input (`repeated_event_ids`, `classify(repeated=...)`); the same silver rows.

Sail runs in-process (`pysail`), JVM Spark as `local[2]` — the same two cores. No S3 and no Delta
here (the JVM cannot fetch the Delta jars on this machine): it compares the engines on the pure
transforms the jobs share. Prints events/s and the JVM / Sail ratio.
Usage: `python bench/engines.py [--events 500000] [--repeat 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_lines(path: Path, events: int) -> None:
    """`events` raw-object lines: 10 % re-sent copies, 0.1 % lines that are not JSON."""
    key = "raw/source=mobile/dt=2024-05-01/hour=10/bench.jsonl.gz"
    with path.open("w") as out:
        for n in range(events):
            if n % 1000 == 999:
                out.write("not json at all\n")
                continue
            event_no = n - n % 10 if n % 10 == 9 else n  # every tenth line re-sends one
            event = {
                "event_id": f"e{event_no}",
                "device_id": f"d{event_no % 5000}",
                "event_type": ("app_open", "heartbeat", "battery_status", "crash")[event_no % 4],
                "occurred_at": f"2024-05-01T{event_no % 24:02d}:{event_no % 60:02d}:00.5Z",
                "app": {"name": "fleet", "version": "2.1.0"},
                "device": {"os": "android", "os_version": "14", "model": "Pixel 8"},
                "battery": {"level_pct": float(event_no % 101), "charging": n % 2 == 0},
                "network": {"type": "wifi", "ip": "k1:token", "signal_dbm": -40 - n % 90},
                "session": {"session_id": f"s{event_no % 9000}", "duration_ms": n % 100000},
                "attributes": {"screen": "home", "n": n},
            }
            line = {
                "object_key": key,
                "line_no": n,
                "batch_id": "b1",
                "source": "mobile",
                "schema_version": "mobile/1",
                "received_at": "2024-05-01T23:59:00Z",
                "sent_at": "2024-05-01T23:58:59Z",
                "event": event,
            }
            out.write(json.dumps(line, separators=(",", ":")) + "\n")


def measure(engine: str, path: str, out_dir: str, repeat: int) -> dict[str, Any]:
    """Run in the child: best-of-`repeat` seconds for read and transform on one engine."""
    from pyspark.sql import SparkSession

    server = None
    if engine == "sail":
        from pysail.spark import SparkConnectServer

        server = SparkConnectServer(ip="127.0.0.1", port=0)
        server.start(background=True)
        host, port = server.listening_address
        spark = SparkSession.builder.remote(f"sc://{host}:{port}").getOrCreate()
    else:
        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    from spark_jobs.bronze import events
    from spark_jobs.silver import device_events

    def read() -> int:
        return spark.read.text(path).count()

    def transform() -> None:
        bronze, _ = events.transform(spark.read.text(path), "bench")
        silver, _ = device_events.transform(bronze)
        silver.write.mode("overwrite").parquet(f"{out_dir}/{engine}-silver")

    def staged() -> None:
        bronze, _ = events.transform(spark.read.text(path), "bench")
        bronze.write.mode("overwrite").parquet(f"{out_dir}/{engine}-bronze")
        rows = spark.read.parquet(f"{out_dir}/{engine}-bronze")
        repeated = device_events.repeated_event_ids(rows)
        silver, _ = device_events.split(device_events.classify(rows, repeated=repeated))
        silver.write.mode("overwrite").parquet(f"{out_dir}/{engine}-silver-staged")

    times: dict[str, float] = {}
    lines = read()  # warm-up: the JVM compiles, Sail plans; not timed
    for name, action in (("read", read), ("transform", transform), ("staged", staged)):
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            action()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    silver_rows = spark.read.parquet(f"{out_dir}/{engine}-silver").count()
    staged_rows = spark.read.parquet(f"{out_dir}/{engine}-silver-staged").count()
    assert staged_rows == silver_rows, (engine, staged_rows, silver_rows)
    spark.stop()
    if server is not None:
        server.stop()
    return {"engine": engine, "lines": lines, "silver_rows": silver_rows, **times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", choices=["sail", "jvm"], help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.input, args.out, args.repeat)))
        return

    with tempfile.TemporaryDirectory(prefix="tlake-engines-") as tmp:
        path = Path(tmp) / "lines.jsonl"
        write_lines(path, args.events)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
        found = {}
        for engine in ("sail", "jvm"):
            child = subprocess.run(
                [
                    *(sys.executable, __file__, "--child", engine),
                    *("--input", str(path), "--out", tmp, "--repeat", str(args.repeat)),
                ],
                cwd=ROOT,
                env={**env, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise SystemExit(f"{engine} failed:\n{child.stderr[-3000:]}")
            found[engine] = json.loads(child.stdout.strip().splitlines()[-1])
        size = path.stat().st_size

    sail, jvm = found["sail"], found["jvm"]
    assert sail["lines"] == jvm["lines"] == args.events, (sail, jvm)
    assert sail["silver_rows"] == jvm["silver_rows"], (sail, jvm)
    n = args.events
    print(f"engine benchmark: {n:,} lines ({size / 2**20:.0f} MiB), bronze + silver transform")
    for r in (sail, jvm):
        print(
            f"  {r['engine']:<5} read {n / r['read']:>10,.0f} lines/s ({r['read']:.1f} s)  "
            f"transform {n / r['transform']:>9,.0f} events/s ({r['transform']:.1f} s)  "
            f"= {r['read'] / r['transform']:.2f} x its read  "
            f"staged {n / r['staged']:>9,.0f} events/s ({r['staged']:.1f} s)"
        )
    print(f"  silver rows (both) {sail['silver_rows']:,}")
    print(
        f"  JVM / Sail: transform {sail['transform'] / jvm['transform']:.2f} x the speed, "
        f"staged {sail['staged'] / jvm['staged']:.2f} x, read {sail['read'] / jvm['read']:.2f} x"
    )


if __name__ == "__main__":
    main()
