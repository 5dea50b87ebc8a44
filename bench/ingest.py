"""Ingest benchmark: events/s and latency, as ratios against a ceiling measured in the same run.

(a) ceiling   — parse + validate + tokenize + serialize + gzip of a 100-event batch, in-process,
                no HTTP, one core: what one worker could do at most.
(b) API       — the real ingest API (uvicorn, 1 worker) under load from a separate client process
                on loopback: 100-event gzip batches, 16 connections; every request lands a raw
                object in SeaweedFS and registers it in PostgreSQL before its 202.

It starts its own private stack (SeaweedFS, PostgreSQL database, uvicorn) and removes it after.
Usage: `python bench/ingest.py [--seconds 10] [--connections 16] [--workers 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ingest_api.batches import validate_batch
from ingest_api.landing import compress, raw_lines
from ingest_api.tokenize import Tokenizer
from lake_config.registry import Registry, drop_database
from lake_config.settings import Settings
from tlake import simulate, stack

BATCH = 100


def sample_batches(n: int) -> list[bytes]:
    """`n` realistic 100-event envelopes (JSON bytes), from the mobile simulator."""
    out: list[bytes] = []
    events = [
        e for env, _ in simulate.batches(200, 120, seed=1, resend_rate=0.0) for e in env["events"]
    ]
    for i in range(n):
        chunk = [events[(i * BATCH + j) % len(events)] for j in range(BATCH)]
        out.append(orjson.dumps({"sent_at": chunk[-1]["occurred_at"], "events": chunk}))
    return out


def ceiling(settings: Settings, bodies: list[bytes], seconds: float) -> float:
    """Events/s of the pure-Python ingest work on one core."""
    tokenizer = Tokenizer.for_settings(settings)
    now = datetime.now(UTC)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for body in bodies:
            batch = validate_batch(body, settings, tokenizer)
            lines = raw_lines(
                batch.accepted,
                object_key="raw/x.jsonl.gz",
                batch_id=uuid.uuid4(),
                source="bench",
                schema_version=batch.schema_version,
                received_at=now,
                sent_at=batch.sent_at,
            )
            compress(lines)
            done += len(batch.accepted)
    return done / (time.perf_counter() - started)


async def _load(url: str, key: str, bodies: list[bytes], seconds: float, conns: int) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {key}", "Content-Encoding": "gzip"}
    payloads = [gzip.compress(b, compresslevel=5) for b in bodies]
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:

        async def worker(i: int) -> None:
            n = i
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await c.post("/v1/events", content=payloads[n % len(payloads)])
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                n += conns

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(conns)))
        took = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "seconds": took}


def _client(url: str, key: str, seconds: float, conns: int, out: Any) -> None:
    bodies = sample_batches(50)
    out.put(asyncio.run(_load(url, key, bodies, seconds, conns)))


def api_load(settings: Settings, key: str, seconds: float, conns: int) -> dict[str, Any]:
    """Load the running API from a separate process (so client CPU is not ours)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_client, args=(settings.api_url, key, seconds, conns, q))
    p.start()
    result = q.get(timeout=seconds + 120)
    p.join()
    lat = sorted(result["latencies"])
    accepted = result["statuses"].get(202, 0) * BATCH
    return {
        "events_per_s": accepted / result["seconds"],
        "requests": len(lat),
        "statuses": result["statuses"],
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan"),
        "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tlake-bench-") as home:
        settings = stack.private_settings(Path(home), api_workers=args.workers)
        try:
            stack.up(settings, bridge=False)
            with Registry(settings, max_size=1) as reg:
                key = reg.create_key("bench")
            bodies = sample_batches(50)
            raw_bytes = sum(len(b) for b in bodies) / len(bodies)
            gz_bytes = sum(len(gzip.compress(b, 5)) for b in bodies) / len(bodies)
            ceil = ceiling(settings, bodies, min(args.seconds, 5.0))
            api = api_load(settings, key, args.seconds, args.connections)
            objects = Registry(settings, max_size=1).counts()["pending"]
        finally:
            stack.down(settings)
            drop_database(settings)

    ratio = api["events_per_s"] / ceil if ceil else float("nan")
    print("ingest benchmark (100-event batches)")
    print(f"  batch size           {raw_bytes / 1024:.1f} KiB JSON, {gz_bytes / 1024:.1f} KiB gzip")
    print(f"  (a) ceiling, 1 core  {ceil:>10,.0f} events/s  (validate+tokenize+serialize+gzip)")
    print(
        f"  (b) API, {args.workers} worker(s), {args.connections} conns, S3 PUT + registry: "
        f"{api['events_per_s']:,.0f} events/s = {ratio:.2f} x ceiling; "
        f"p50 {api['p50_ms']:.1f} ms, p99 {api['p99_ms']:.1f} ms; "
        f"{api['requests']} requests {api['statuses']}; {objects} objects registered"
    )


if __name__ == "__main__":
    main()
