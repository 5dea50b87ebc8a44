"""Ingest benchmark: events/s and latency, as ratios against a ceiling measured in the same run.

(a) ceiling  — parse + validate + tokenize + serialize + gzip of a 100-event batch (the
               worker's own `validate_batch` and `prepare`: raw and quarantine objects),
               in-process, no HTTP, one core: what one worker could do at most.
(b) API      — the real app (1 and 2 workers) with its storage left out: the
               object store and the batch registrar are no-ops (`discard_app` below),
               keys still come from PostgreSQL. HTTP, auth, limits, body, validation, tokens,
               serialization and gzip, with nothing written.
(c) landing  — the app as deployed: every request's events are PUT to SeaweedFS and
               registered in PostgreSQL before its 202 (in group-commit rounds: the batches
               that arrive while a round is written share the next round's object; each
               row says how many objects its load registered, and their mean size in events).
(i) in-process — the (b) app called as ASGI in the bench's process, no HTTP and no load
               generator, each request followed by the ceiling's work on the same body: the
               app's own cost against the ceiling, robust to the core's drift (`in_process`).

`--rounds N` repeats the whole set of loads N times and prints each row's median (these
machines drift by 20 % within minutes).

Load comes from `wrk` (Debian's package; `make bench` installs it) in its own process on
loopback: 100-event gzip batches cycled from 50 bodies, 16 connections, one wrk thread.
The bench starts its own private stack (SeaweedFS, a PostgreSQL database, the API) and removes
it after.
Usage: `python bench/ingest.py [--seconds 10] [--connections 16] [--workers 1,2]
[--parts i,b,c] [--rounds 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI

from ingest_api.batches import validate_batch
from ingest_api.deps import settle_heap
from ingest_api.landing import prepare
from ingest_api.log import LOGGER
from ingest_api.main import create_app
from ingest_api.tokenize import Tokenizer
from lake_config.registry import AsyncRegistrar, Registry, drop_database
from lake_config.settings import Settings
from tlake import simulate, stack

BATCH = 100

# wrk: cycle through the body files, print the figures as one JSON line when done.
WRK_SCRIPT = """
local bodies, n, i = {}, 0, 0
local dir = os.getenv("TLAKE_BENCH_BODIES")
for k = 1, 1000 do
  local f = io.open(dir .. "/" .. k .. ".gz", "rb")
  if f == nil then break end
  bodies[k] = f:read("*a"); f:close(); n = k
end
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TLAKE_BENCH_KEY")
wrk.headers["Content-Encoding"] = "gzip"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % n + 1
  return wrk.format(nil, "/v1/events", nil, bodies[i])
end
-- response() runs in each thread's Lua state, done() in another: collect through setup().
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local all, s = {}, {}
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do all[code] = (all[code] or 0) + count end
  end
  for code, count in pairs(all) do s[#s + 1] = string.format('"%d": %d', code, count) end
  io.write(string.format(
    'WRK {"requests": %d, "seconds": %.6f, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, '
      .. '"non2xx": %d, "socket_errors": %d, "statuses": {%s}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    latency.mean, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(s, ", ")))
end
"""


# --- (b): the app with its storage left out -------------------------------------------------


class DiscardStore:
    """An object store that keeps nothing.

    A real PUT suspends the request while its I/O is in flight, and the loop serves other
    connections meanwhile; this one suspends it once without any I/O (`asyncio.sleep(0)`), so
    that requests are scheduled as with storage. A request that never yields the loop is
    answered as fast but less fairly: in same-hour runs on one worker, p99 206-228 ms without
    the yields (5 runs) against 83-162 ms with them (10 runs), at the same events/s.
    """

    def put(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        return None

    async def put_async(self, key: str, body: bytes, *, if_absent: bool = False) -> None:
        await asyncio.sleep(0)


class DiscardRegistrar:
    """Registers nothing (the API's `AsyncRegistrar` in (b)), suspending the request once as
    the registry's round trip would (see `DiscardStore`); API keys still come from PostgreSQL
    through the app's real `Registry`."""

    def __init__(self, registrar: AsyncRegistrar) -> None:
        self._registrar = registrar

    async def register(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)

    async def close(self) -> None:
        await self._registrar.close()


def discard_app(settings: Settings | None = None) -> FastAPI:
    """`create_app(settings)` with storage left out (served as the factory
    `bench.ingest:discard_app`, and driven in-process by (i)).

    The app's own lifespan opens its clients, then the store and the registrar are swapped on
    `app.state`: `dependency_overrides` would cost FastAPI a signature inspection
    per request, which the deployed app does not pay.
    """
    app = create_app(settings)
    opened = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with opened(app):
            app.state.store = DiscardStore()
            app.state.registrar = DiscardRegistrar(app.state.registrar)
            yield

    app.router.lifespan_context = lifespan
    return app


# --- the measurements ---------------------------------------------------------------------------


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
    """Events/s of the pure-Python ingest work on one core: a worker's own CPU path for a
    decoded body (`validate_batch`, then `prepare`: the raw object's and the quarantine
    object's lines, gzipped, and the registry rows), with the heap settled as a worker's is."""
    settle_heap()
    tokenizer = Tokenizer.for_settings(settings)
    now = datetime.now(UTC)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for body in bodies:
            batch = validate_batch(body, settings, tokenizer)
            prepare(batch, batch_id=uuid.uuid4(), source="bench", received_at=now)
            done += len(batch.results)  # every event handled, as the API's figure counts
    return done / (time.perf_counter() - started)


def in_process(
    settings: Settings, key: str, bodies: list[bytes], seconds: float, log: Path
) -> tuple[float, float]:
    """(i): the (b) app called as ASGI in this process, without HTTP, alternating request by
    request with the ceiling's own work on the same body: (µs per request, µs per batch).

    Each request and each ceiling batch run back to back, so a drift of the core's speed
    touches both alike: the ratio of the two sums holds where the loads' figures wander.
    """
    app = discard_app(settings)
    tokenizer = Tokenizer.for_settings(settings)
    gzipped = [gzip.compress(b, compresslevel=5) for b in bodies]
    auth = b"Bearer " + key.encode()
    now = datetime.now(UTC)

    async def request(body: bytes) -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/events",
            "raw_path": b"/v1/events", "query_string": b"", "root_path": "",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
            "headers": [
                (b"host", b"127.0.0.1:8000"), (b"authorization", auth),
                (b"content-encoding", b"gzip"), (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }  # fmt: skip
        await app(scope, receive, send)  # type: ignore[arg-type]
        if status != [202]:
            raise RuntimeError(f"in-process request answered {status}")

    async def run() -> tuple[float, float]:
        app_s = ceiling_s = 0.0
        n = 0
        async with app.router.lifespan_context(app):
            for body in gzipped[:5]:  # warm up: key lookup, first-call caches
                await request(body)
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                for body, raw in zip(gzipped, bodies, strict=True):
                    t0 = time.perf_counter()
                    await request(body)
                    t1 = time.perf_counter()
                    batch = validate_batch(raw, settings, tokenizer)
                    prepare(batch, batch_id=uuid.uuid4(), source="bench", received_at=now)
                    app_s += t1 - t0
                    ceiling_s += time.perf_counter() - t1
                    n += 1
        return app_s / n * 1e6, ceiling_s / n * 1e6

    # The request log lines go to a file, as a served worker's go to its log.
    handler = logging.getLogger(LOGGER).handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    with log.open("a") as stream:
        previous = handler.setStream(stream)
        try:
            return asyncio.run(run())
        finally:
            handler.setStream(previous)


@contextlib.contextmanager
def serving(settings: Settings, factory: str, workers: int) -> Iterator[str]:
    """The stack's own API service running `factory` with `workers` processes; yields its URL."""
    served = settings.model_copy(update={"api_workers": workers})
    stack.start_api(served, factory=factory)
    try:
        yield served.api_url
    finally:
        stack.Service(served, "api").stop()


def wrk_load(url: str, key: str, bodies_dir: Path, seconds: float, conns: int) -> dict[str, Any]:
    """Load `url` with wrk from its own process; events/s and latency percentiles."""
    script = bodies_dir / "load.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "TLAKE_BENCH_BODIES": str(bodies_dir), "TLAKE_BENCH_KEY": key}
    # Warm up (first key lookup, imports, caches), then measure.
    argv = ["wrk", "-t1", f"-c{conns}", "-s", str(script), "--timeout", "30s"]
    subprocess.run([*argv, "-d2s", url], env=env, capture_output=True, check=True)
    out = subprocess.run(
        [*argv, f"-d{seconds:g}s", url], env=env, capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    r = json.loads(line[4:])
    accepted = r["statuses"].get("202", 0)
    return {
        "events_per_s": accepted * BATCH / r["seconds"],
        "requests": r["requests"],
        "statuses": r["statuses"],
        "socket_errors": r["socket_errors"],
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
    }


def median_round(ratios: list[float]) -> tuple[int, float, str]:
    """Which round of a part to print: the index of the median one (the lower middle, so a
    round that was measured), its ratio, and the spread of all rounds (empty for one)."""
    median = statistics.median_low(ratios)
    spread = f" (rounds {min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return ratios.index(median), median, spread


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument(
        "--parts",
        default="i,b,c",
        help="which: i (in-process, no HTTP), b (no storage), c (landing)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="repeat the set; rows print medians")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/ingest.py needs wrk: `make bench` installs it (apt-get install wrk)")
    worker_counts = [int(w) for w in args.workers.split(",")]
    parts = args.parts.split(",")

    runs: dict[tuple[str, int], list[tuple[float, dict[str, Any]]]] = {}
    inprocess: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="tlake-bench-") as home:
        # No per-key rate limit: the bench measures throughput (16 connections < max_inflight 64).
        settings = stack.private_settings(Path(home), rate_limit_events_per_s=0, spark_remote="")
        bodies = sample_batches(50)
        bodies_dir = Path(home) / "bodies"
        bodies_dir.mkdir()
        for i, b in enumerate(bodies, 1):
            (bodies_dir / f"{i}.gz").write_bytes(gzip.compress(b, compresslevel=5))
        raw_bytes = sum(len(b) for b in bodies) / len(bodies)
        gz_bytes = sum(len(gzip.compress(b, 5)) for b in bodies) / len(bodies)
        try:
            stack.up(settings, api=False, bridge=False)
            with Registry(settings, max_size=1) as reg:
                key = reg.create_key("bench")
            # The ceiling is measured again right before and right after each load, and the
            # load is set against their mean: on these machines the speed of a core drifts by
            # 20 % within minutes (and by more within seconds), so each ratio uses its
            # neighbours.
            loads = {
                "b": ("(b) API, no storage", "bench.ingest:discard_app"),
                "c": ("(c) API + S3 PUT + registry", "ingest_api.main:create_app"),
            }
            for _ in range(args.rounds):
                if "i" in parts:
                    log = Path(home) / "in-process.log"
                    inprocess.append(in_process(settings, key, bodies, args.seconds, log))
                for label, factory in (loads[part] for part in parts if part in loads):
                    for workers in worker_counts:
                        before = ceiling(settings, bodies, 3.0)
                        landed = registered(settings)
                        with serving(settings, factory, workers) as url:
                            load = wrk_load(url, key, bodies_dir, args.seconds, args.connections)
                        objects, events = (
                            a - b for a, b in zip(registered(settings), landed, strict=True)
                        )
                        if objects:  # (c): how many batches group commit put in an object
                            load["objects"], load["events_per_object"] = objects, events / objects
                        ceil = (before + ceiling(settings, bodies, 3.0)) / 2
                        runs.setdefault((label, workers), []).append((ceil, load))
        finally:
            stack.down(settings)
            drop_database(settings)

    print(f"ingest benchmark (100-event batches, {args.connections} connections, wrk)")
    print(f"  batch size      {raw_bytes / 1024:.1f} KiB JSON, {gz_bytes / 1024:.1f} KiB gzip")
    if inprocess:
        i, median, spread = median_round([ceil / app for app, ceil in inprocess])
        app, ceil = inprocess[i]
        print(
            f"  (i) app in-process, no HTTP: {app:,.0f} us per request against the ceiling's "
            f"{ceil:,.0f} us per batch, alternating = {median:.2f} x ceiling{spread}"
        )
    ceilings = [ceil for measured in runs.values() for ceil, _ in measured]
    if not ceilings:
        return
    print(
        f"  (a) ceiling  {statistics.median(ceilings):>9,.0f} events/s, one core "
        f"(validate+tokenize+serialize+gzip; {min(ceilings):,.0f}-{max(ceilings):,.0f} in this run)"
    )
    for (label, workers), measured in runs.items():
        i, median, spread = median_round(
            [r["events_per_s"] / workers / ceil for ceil, r in measured]
        )
        ceil, r = measured[i]
        print(
            f"  {label:<28} {workers} worker(s): {r['events_per_s']:>9,.0f} events/s "
            f"= {median:.2f} x ceiling per worker{spread} "
            f"(ceiling {ceil:,.0f}); p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; "
            f"{r['requests']} requests {r['statuses']}"
            + (f", {r['socket_errors']} socket errors" if r["socket_errors"] else "")
            + (
                f"; {r['objects']:,} objects (the warm-up's too) of "
                f"{r['events_per_object']:,.0f} events on average"
                if "objects" in r
                else ""
            )
        )


def registered(settings: Settings) -> tuple[int, int]:
    """Raw objects registered so far, and the events in them (wrk's warm-up included)."""
    with Registry(settings, max_size=1) as reg, reg.connection() as conn:
        row = conn.execute(
            "select count(*) as n, coalesce(sum(event_count), 0) as events "
            "from registry.raw_objects"
        ).fetchone()
    assert row is not None
    return int(row["n"]), int(row["events"])


if __name__ == "__main__":
    main()
