"""`tlake`: the operator's command line. Commands only wire settings to the modules that work."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lake_config.errors import LakeConfigError
from lake_config.settings import get_settings
from tlake.errors import TlakeError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
app.add_typer(keys_app, name="keys")
# Piped output (make demo, CI logs) gets a fixed readable width instead of rich's 80 columns.
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=1)


@app.command()
def up(
    api: Annotated[bool, typer.Option(help="Also start the ingest API")] = True,
) -> None:
    """Start SeaweedFS, Sail and the ingest API in the background; wait until healthy."""
    from tlake import stack

    settings = get_settings()
    try:
        result = stack.up(settings, api=api)
    except (TlakeError, LakeConfigError) as exc:
        _fail(exc)
    for name, what in result.items():
        console.print(f"  {name:<10} {what}")
    _print_endpoints()


@app.command()
def down() -> None:
    """Stop exactly what `tlake up` started."""
    from tlake import stack

    for name, was_running in stack.down(get_settings()).items():
        console.print(f"  {name:<10} {'stopped' if was_running else 'was not running'}")


def _print_endpoints() -> None:
    s = get_settings()
    console.print(f"  API        {s.api_url}  (docs {s.api_url}/docs)")
    console.print(f"  S3         {s.s3_endpoint}  bucket {s.bucket}")
    console.print(f"  Spark      {s.spark_remote or s.spark_master}")
    console.print(f"  Postgres   {s.database_url_safe}")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Health of each component, endpoints and registry counts by status."""
    from lake_config.registry import Registry
    from tlake import stack

    settings = get_settings()
    checks = stack.health(settings)
    counts: dict[str, int] | None = None
    quarantine: dict[str, int] | None = None
    if any(h.name == "postgres" and h.ok for h in checks):
        with Registry(settings, max_size=1) as reg:
            counts, quarantine = reg.counts(), reg.quarantine_counts()
    payload = {
        "components": {
            h.name: {"ok": h.ok, "endpoint": h.endpoint, "detail": h.detail} for h in checks
        },
        "bucket": settings.bucket,
        "registry": counts,
        "quarantine": quarantine,
    }
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        table = Table("component", "health", "endpoint", "detail")
        for h in checks:
            table.add_row(h.name, "[green]ok[/]" if h.ok else "[red]down[/]", h.endpoint, h.detail)
        console.print(table)
        if counts is not None:
            console.print("registry: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
            console.print(f"quarantine: {quarantine or 'empty'}")
    if not all(h.ok for h in checks):
        raise typer.Exit(code=1)


@keys_app.command("create")
def keys_create(
    source: Annotated[str, typer.Option(help="Source the key writes as (e.g. mobile)")],
    scope: Annotated[str, typer.Option(help="write or read")] = "write",
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    from lake_config.registry import Registry

    if scope not in {"write", "read"}:
        _fail(ValueError("scope must be 'write' or 'read'"))
    try:
        with Registry(get_settings(), max_size=1) as reg:
            secret = reg.create_key(source, scope=scope)
    except LakeConfigError as exc:
        _fail(exc)
    sys.stdout.write(secret + "\n")


@app.command()
def run(
    limit: Annotated[int | None, typer.Option(help="Claim at most this many objects")] = None,
) -> None:
    """One pipeline pass over pending raw objects: bronze → silver → gold."""
    from spark_jobs import pipeline
    from spark_jobs.errors import SparkJobError

    settings = get_settings()
    if limit:
        settings = settings.model_copy(update={"run_batch_objects": limit})
    try:
        summary = pipeline.run_once(settings)
    except (SparkJobError, LakeConfigError) as exc:
        _fail(exc)
    console.print(summary.render())


@app.command()
def dag(
    once: Annotated[
        bool, typer.Option("--once", help="One DAG run, in-process (dag.test())")
    ] = True,
    dag_id: Annotated[str, typer.Option(help="DAG to run")] = "telemetry_lake",
) -> None:
    """Run the Airflow DAG once with dag.test() against the running stack."""
    from lake_config import airflow

    if not once:
        _fail(ValueError("only --once is supported; `make airflow` runs the scheduler"))
    try:
        result = airflow.run_dag(get_settings(), dag_id)
    except LakeConfigError as exc:
        _fail(exc)
    table = Table("task", "state", title=f"{result.dag_id} {result.run_id}")
    for task_id, state in result.task_states.items():
        table.add_row(task_id, state or "-")
    console.print(table)
    claimed = result.xcoms.get("claim")
    console.print(
        f"  DAG run {result.state} in {result.seconds:.1f}s (run {claimed}); log {result.log_path}"
    )
    if not result.succeeded:
        raise typer.Exit(code=1)


@app.command("airflow-standalone")
def airflow_standalone() -> None:
    """Airflow standalone (scheduler, API server, UI) with our DAGs, against the running stack."""
    from lake_config import airflow

    try:
        airflow.run_standalone(get_settings())
    except LakeConfigError as exc:
        _fail(exc)


@app.command()
def simulate(
    devices: Annotated[int, typer.Option(help="Number of devices")] = 20,
    minutes: Annotated[int, typer.Option(help="Simulated minutes (accelerated clock)")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same events)")] = 7,
    bad_rate: Annotated[float, typer.Option(help="Share of events made invalid")] = 0.0,
    api_key: Annotated[
        str | None, typer.Option(envvar="TLAKE_API_KEY", help="Write key (default: a new one)")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight")] = 4,
) -> None:
    """Post realistic mobile telemetry through the API with an accelerated clock."""
    import time

    from lake_config.registry import Registry
    from tlake import simulate as sim

    settings = get_settings()
    if not 0.0 <= bad_rate <= 1.0:
        _fail(ValueError("--bad-rate must be between 0 and 1"))
    try:
        if api_key is None:
            with Registry(settings, max_size=1) as reg:
                api_key = reg.create_key("mobile")
            console.print("  (created a write key for source 'mobile')")
        started = time.perf_counter()
        result = sim.run(
            settings.api_url,
            api_key,
            devices=devices,
            minutes=minutes,
            seed=seed,
            bad_rate=bad_rate,
            concurrency=concurrency,
        )
    except (TlakeError, LakeConfigError) as exc:
        _fail(exc)
    took = time.perf_counter() - started
    console.print(
        f"  sent {result.events_sent} events in {result.batches} batches "
        f"({result.resent_batches} re-sent) in {took:.1f}s "
        f"({result.events_sent / took:,.0f} events/s): "
        f"accepted {result.accepted}, rejected {result.rejected}, retries {result.retries}"
    )


@app.command()
def report() -> None:
    """Print a short report from the analytics tables."""
    from lake_config.registry import Registry
    from tlake import report as rep

    try:
        with Registry(get_settings(), max_size=1) as reg:
            r = rep.build(reg)
    except LakeConfigError as exc:
        _fail(exc)
    t = r.totals
    console.rule("Telemetry Lake — analytics.device_hourly")
    console.print(
        f"devices {t.get('devices')}  events {t.get('events')}  sessions {t.get('sessions')}  "
        f"crashes {t.get('crashes')}  avg battery {t.get('avg_battery_pct')}%  "
        f"hours {t.get('first_hour')} → {t.get('last_hour')}"
    )
    hours = Table("hour (UTC)", "devices", "events", "avg battery %", "wifi", "cellular")
    for h in r.hours:
        hours.add_row(
            f"{h['hour_start']:%Y-%m-%d %H:00}",
            str(h["devices"]),
            str(h["events"]),
            str(h["avg_battery_pct"]),
            str(h["wifi_events"]),
            str(h["cellular_events"]),
        )
    console.print(hours)
    top = Table("device", "events", "low-battery events", "min battery %", title="busiest devices")
    for d in r.top_devices:
        top.add_row(
            d["device_id"],
            str(d["events"]),
            str(d["low_battery_events"]),
            str(d["min_battery_pct"]),
        )
    console.print(top)
    console.print("registry: " + ", ".join(f"{k}={v}" for k, v in r.registry.items()))
    console.print(f"quarantine (by component): {r.quarantine or 'empty'}")


if __name__ == "__main__":
    app()
