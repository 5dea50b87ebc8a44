"""`tlake`: the operator's command line. Commands only wire settings to the modules that work."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from lake_config.errors import LakeConfigError
from lake_config.settings import Settings, get_settings
from tlake.errors import TlakeError
from tlake.simulators import Profile

if TYPE_CHECKING:
    from lake_config.registry import Registry

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
app.add_typer(keys_app, name="keys")
files_app = typer.Typer(no_args_is_help=True, help="Raw objects and their processing state.")
app.add_typer(files_app, name="files")
tables_app = typer.Typer(no_args_is_help=True, help="Lake table upkeep (delta-rs).")
app.add_typer(tables_app, name="tables")
# Piped output (make demo, CI logs) gets a fixed readable width instead of rich's 80 columns.
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def _fail(exc: Exception) -> NoReturn:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=1)


def _registry_call(call: Callable[[Registry], T], *, settings: Settings | None = None) -> T:
    """`call` with a one-connection registry; a registry error ends the command (exit 1)."""
    from lake_config.registry import Registry

    try:
        with Registry(settings or get_settings(), max_size=1) as reg:
            return call(reg)
    except LakeConfigError as exc:
        _fail(exc)


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


@app.command("api")
def api_server(
    host: Annotated[str | None, typer.Option(help="Address (default: api_url's)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api_url's)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (api_workers)")] = None,
) -> None:
    """Serve the ingest API in the foreground (uvicorn, as `tlake up` starts it)."""
    import os

    from tlake import stack

    argv = stack.api_argv(get_settings(), host=host, port=port, workers=workers)
    os.execv(argv[0], argv)


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
            state = "[green]ok[/]" if h.ok else "[yellow]off[/]" if h.optional else "[red]down[/]"
            table.add_row(h.name, state, h.endpoint, h.detail)
        console.print(table)
        if counts is not None:
            console.print("registry: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
            console.print(f"quarantine: {quarantine or 'empty'}")
    if not all(h.ok or h.optional for h in checks):
        raise typer.Exit(code=1)


@keys_app.command("create")
def keys_create(
    source: Annotated[str, typer.Option(help="Source the key writes as (e.g. mobile)")],
    scope: Annotated[str, typer.Option(help="write or read")] = "write",
) -> None:
    """Create an API key and print it once; only its hash is stored."""

    if scope not in {"write", "read"}:
        _fail(ValueError("scope must be 'write' or 'read'"))
    secret = _registry_call(lambda reg: reg.create_key(source, scope=scope))
    sys.stdout.write(secret + "\n")


@app.command()
def run(
    limit: Annotated[int | None, typer.Option(help="Claim at most this many objects")] = None,
) -> None:
    """One pipeline pass over pending raw objects: bronze → silver → quality → gold."""
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
    if summary.objects:
        from monitoring.online_share import check_safely

        verdict = check_safely(settings)  # never raises: the run itself succeeded
        if verdict is not None:
            console.print(f"  monitor {verdict.render()}")


@app.command()
def reprocess(
    since: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First event date (UTC)")],
    until: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last event date, inclusive (default: --since)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count the objects that would be derived again")
    ] = False,
) -> None:
    """Rebuild silver and gold for a range of event dates from bronze, idempotently."""
    from spark_jobs import reprocess as rebuild
    from spark_jobs.errors import SparkJobError

    try:
        result = rebuild.reprocess(
            get_settings(),
            since.date(),
            until.date() if until else None,
            dry_run=dry_run,
        )
    except (SparkJobError, LakeConfigError, ValueError) as exc:
        _fail(exc)
    console.print(result.render())


@app.command()
def monitor(
    at: Annotated[
        datetime | None,
        typer.Option(help="Judge the latest snapshot at or before this time (UTC) instead"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """The fleet online-share monitor: latest snapshot vs the rolling baseline; records an alert
    when the drop passes the threshold (TLAKE_MONITOR_HISTORY, TLAKE_MONITOR_DROP_THRESHOLD).

    Exits 0 whatever it finds (an alert is data, not a failure), 1 when it cannot run.
    """
    from monitoring.online_share import check

    try:
        verdict = check(get_settings(), at=at.replace(tzinfo=at.tzinfo or UTC) if at else None)
    except Exception as exc:  # the monitor's errors are psycopg's and ours alike
        err.print(f"[bold red]error:[/] monitor could not run: {type(exc).__name__}: {exc}")
        raise typer.Exit(code=1) from None
    if as_json:
        row = dataclasses.asdict(verdict) if verdict else None
        sys.stdout.write(json.dumps(row, indent=2, default=str) + "\n")
        return
    if verdict is None:
        console.print("no fleet snapshots yet (analytics.fleet_online is empty)")
        return
    style = "bold red" if verdict.breached else "green"
    console.print(f"[{style}]{verdict.render()}[/]")


@files_app.command("list")
def files_list(
    status: Annotated[
        str | None, typer.Option(help="pending, processing, processed or failed")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Raw objects with status, attempts, holder and last error."""
    from lake_config.registry import STATUSES

    if status is not None and status not in STATUSES:
        err.print(f"[bold red]error:[/] unknown status {status!r}; one of {list(STATUSES)}")
        raise typer.Exit(code=2)
    objects = _registry_call(lambda reg: reg.objects(status=status, limit=limit))
    if as_json:
        rows = [dataclasses.asdict(o) for o in objects]
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table("object", "status", "attempts", "claimed by", "last error")
    for o in objects:
        table.add_row(o.object_key, o.status, str(o.attempts), o.claimed_by or "-", o.last_error)
    console.print(table)


@files_app.command("retry")
def files_retry(
    keys: Annotated[list[str] | None, typer.Argument(help="Failed object keys")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed object")] = False,
) -> None:
    """Put failed objects back to pending with their attempts reset."""

    if not keys and not failed:
        err.print("[bold red]error:[/] name object keys or pass --failed")
        raise typer.Exit(code=2)
    retried = _registry_call(lambda reg: reg.retry_failed(None if failed else keys))
    console.print(f"  {retried} failed objects back to pending")


@app.command()
def alerts(
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Recent alerts: DAG tasks that failed for good (analytics.alerts)."""
    from datetime import UTC

    found = _registry_call(lambda reg: reg.alerts(limit=limit))
    if as_json:
        rows = [dataclasses.asdict(a) for a in found]
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table("raised (UTC)", "severity", "dag", "task", "try", "dag run", "message")
    for a in found:
        table.add_row(
            f"{a.raised_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            a.severity,
            a.dag_id or "-",
            a.task_id or "-",
            str(a.try_number) if a.try_number is not None else "-",
            a.dag_run_id or "-",
            a.message,
        )
    console.print(table)


TableOption = Annotated[
    str | None, typer.Option("--table", help="One table, e.g. silver.device_events (default: all)")
]


@tables_app.command("optimize")
def tables_optimize(name: TableOption = None) -> None:
    """Compact small files into larger ones."""
    from spark_jobs import maintenance
    from spark_jobs.errors import SparkJobError

    try:
        settings = get_settings()
        results = maintenance.optimize(settings, maintenance.selected(name))
    except (SparkJobError, LakeConfigError) as exc:
        _fail(exc)
    for r in results:
        console.print(
            f"  {r.table:<22} version {r.version}: {r.files_removed} files compacted into "
            f"{r.files_added} ({r.partitions_optimized} partitions)"
        )


@tables_app.command("vacuum")
def tables_vacuum(
    name: TableOption = None,
    retention_hours: Annotated[int, typer.Option(help="Keep files of versions this recent")] = 168,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go")] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow retention below 168 h")] = False,
) -> None:
    """Delete files no version inside the retention window references."""
    from spark_jobs import maintenance
    from spark_jobs.errors import SparkJobError

    try:
        results = maintenance.vacuum(
            get_settings(),
            maintenance.selected(name),
            retention_hours=retention_hours,
            dry_run=dry_run,
            force=force,
        )
    except (SparkJobError, LakeConfigError) as exc:
        _fail(exc)
    verb = "would delete" if dry_run else "deleted"
    for r in results:
        console.print(f"  {r.table:<22} {verb} {len(r.files)} files")


@tables_app.command("history")
def tables_history(
    name: TableOption = None,
    limit: Annotated[int, typer.Option(help="Commits per table, newest first")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Recent commits of each table: version, time, operation."""
    from spark_jobs import maintenance
    from spark_jobs.errors import SparkJobError

    try:
        settings = get_settings()
        commits = [
            c
            for t in maintenance.selected(name)
            for c in maintenance.history(settings, t, limit=limit)
        ]
    except (SparkJobError, LakeConfigError) as exc:
        _fail(exc)
    if as_json:
        rows = [dataclasses.asdict(c) for c in commits]
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table("table", "version", "committed (UTC)", "operation")
    for c in commits:
        table.add_row(c.table, str(c.version), f"{c.timestamp:%Y-%m-%d %H:%M:%S}", c.operation)
    console.print(table)


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
    order = ["reconcile", "claim", "bronze", "silver", "quality", "gold", "finish", "release"]
    rank = {task_id: i for i, task_id in enumerate(order)}
    table = Table("task", "state")
    for task_id in sorted(result.task_states, key=lambda t: (rank.get(t, len(order)), t)):
        table.add_row(task_id, result.task_states[task_id] or "-")
    console.print(f"  {result.dag_id}: DAG run {result.run_id}")
    console.print(table)
    console.print(f"  {result.state} in {result.seconds:.1f}s; log {result.log_path}")
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
    profile: Annotated[Profile, typer.Option(help="What to simulate")] = Profile.MOBILE,
    devices: Annotated[
        int | None, typer.Option(help="mobile, atm-fleet: devices (20; 2000)")
    ] = None,
    minutes: Annotated[
        int | None,
        typer.Option(help="Simulated minutes, accelerated (mobile 30, atm-fleet 60, else 10)"),
    ] = None,
    hours: Annotated[int | None, typer.Option(help="store-traffic: counted hours (48)")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same events)")] = 7,
    bad_rate: Annotated[float, typer.Option(help="Share of events made invalid")] = 0.0,
    resend_rate: Annotated[
        float | None, typer.Option(help="Share of batches sent again as after a lost answer (0.02)")
    ] = None,
    outage_after_minutes: Annotated[
        int | None, typer.Option(help="atm-fleet: a share of devices falls silent from then on")
    ] = None,
    outage_share: Annotated[
        float | None, typer.Option(help="atm-fleet: share of devices the outage silences (0.4)")
    ] = None,
    streams: Annotated[int | None, typer.Option(help="stream: streams stream-1..N (2)")] = None,
    sensors_file: Annotated[
        Path | None, typer.Option(help="iot-temperature: sensors JSON (tlake/data/sensors.json)")
    ] = None,
    topic_prefix: Annotated[
        str | None, typer.Option(help="iot-temperature: publish to <prefix>/iot/<sensor id>")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="TLAKE_API_KEY", help="Write key (default: a new one)")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight")] = 4,
) -> None:
    """Simulate a client profile on an accelerated clock: over the API, or MQTT for IoT."""
    import time

    from lake_config.registry import Registry
    from tlake.simulators import profiles

    settings = get_settings()
    options = profiles.Options(
        seed=seed,
        bad_rate=bad_rate,
        resend_rate=resend_rate,
        devices=devices,
        minutes=minutes,
        hours=hours,
        streams=streams,
        outage_after_minutes=outage_after_minutes,
        outage_share=outage_share,
        sensors_file=sensors_file,
        topic_prefix=topic_prefix,
        snapshot_minutes=settings.fleet_snapshot_minutes,
    )
    try:
        profiles.check(profile, options)
        source = profiles.SOURCES.get(profile)
        if api_key is None and source is not None:
            with Registry(settings, max_size=1) as reg:
                api_key = reg.create_key(source)
            console.print(f"  (created a write key for source {source!r})")
        started = time.perf_counter()
        result = profiles.run(
            profile,
            options,
            api_url=settings.api_url,
            api_key=api_key,
            mqtt_url=settings.mqtt_url,
            concurrency=concurrency,
        )
    except (TlakeError, LakeConfigError) as exc:
        _fail(exc)
    console.print(f"  {profile}: " + result.render(time.perf_counter() - started).lstrip())


@app.command()
def report() -> None:
    """Print a short report from the analytics tables."""
    from tlake import report as rep

    r = _registry_call(rep.build)
    t = r.totals
    console.rule("Telemetry Lake — analytics.device_hourly")
    console.print(
        f"devices {t.get('devices')}  events {t.get('events')}  sessions {t.get('sessions')}  "
        f"crashes {t.get('crashes')}  avg battery {t.get('avg_battery_pct')}%  "
        f"hours {t.get('first_hour')} → {t.get('last_hour')}"
    )
    hours = Table("hour (UTC)", "devices", "events", "avg battery %", "wifi", "cellular")
    for h in r.hours[-12:]:  # the latest twelve hours
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
    for name, title in (
        ("fleet", "fleet (000): inventory and online share"),
        ("stores", "stores (001): visits per store, busiest first"),
        ("iot", "IoT sensors (002): minute stats"),
        ("stream", "stream (004): latest rolling averages"),
    ):
        _print_rows(title, r.sources[name])
    console.print("registry: " + ", ".join(f"{k}={v}" for k, v in r.registry.items()))
    console.print(f"quarantine (by component): {r.quarantine or 'empty'}")


def _print_rows(title: str, rows: list[dict[str, object]]) -> None:
    """A titled table of query rows, or one line saying there is nothing yet."""
    if not rows:
        console.print(f"{title}: no data yet")
        return
    table = Table(*rows[0], title=title)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    console.print(table)


@app.command()
def reconcile(
    prefix: Annotated[
        str, typer.Option(help="Only raw objects and rows under this prefix (then no quarantine)")
    ] = "raw/",
    min_age_seconds: Annotated[
        int, typer.Option(help="Leave younger unregistered objects (the API may be mid-landing)")
    ] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Register raw objects the registry lacks; mark pending rows whose object is gone failed."""
    from lake_config.registry import Registry
    from lake_config.storage import ObjectStore
    from recovery.reconcile import reconcile as run_reconcile

    settings = get_settings()
    store = ObjectStore(settings)
    try:
        with Registry(settings, max_size=1) as reg:
            result = run_reconcile(
                store,
                reg,
                prefix=prefix,
                quarantine_prefix="quarantine/" if prefix == "raw/" else None,
                min_age_s=min_age_seconds,
            )
    except LakeConfigError as exc:
        _fail(exc)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    else:
        console.print(result.render())


quarantine_app = typer.Typer(no_args_is_help=True, help="Events the ingest API quarantined.")
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    reason: Annotated[
        str | None, typer.Option(help="Only events with a reason whose field or message has this")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only events received at or after (RFC 3339; UTC if naive)")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Quarantined events with their reasons, newest first."""
    from datetime import UTC, datetime

    from recovery.replay import list_quarantine

    after: datetime | None = None
    if since is not None:
        try:
            after = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            _fail(ValueError(f"--since {since!r} is not an RFC 3339 timestamp"))
        if after is not None and after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
    rows = _registry_call(lambda reg: list_quarantine(reg, reason=reason, since=after, limit=limit))
    if as_json:
        docs = [dataclasses.asdict(r) for r in rows]
        sys.stdout.write(json.dumps(docs, indent=2, default=str) + "\n")
        return
    table = Table("id", "received (UTC)", "source", "event_id", "reasons", "replayed into")
    for r in rows:
        reasons = "; ".join(
            f"{x.get('field')}: {x.get('message')}" for x in r.reasons if isinstance(x, dict)
        )
        table.add_row(
            str(r.quarantine_id),
            f"{r.received_at:%Y-%m-%d %H:%M:%S}",
            r.source,
            r.event_id or "-",
            reasons,
            r.replayed_object_key or "-",
        )
    console.print(table)


@quarantine_app.command("replay")
def quarantine_replay(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; land nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Land quarantined events that today's schema accepts; replaying twice adds nothing."""
    from lake_config.registry import Registry
    from lake_config.storage import ObjectStore
    from recovery.errors import RecoveryError
    from recovery.replay import replay

    settings = get_settings()
    store = ObjectStore(settings)
    try:
        with Registry(settings, max_size=2) as reg:
            result = replay(settings, store, reg, dry_run=dry_run)
    except (RecoveryError, LakeConfigError) as exc:
        _fail(exc)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    else:
        console.print(result.render())
        for quarantine_id, why in result.not_replayable.items():
            console.print(f"  not replayable: {quarantine_id}: {why}")


idempotency_app = typer.Typer(no_args_is_help=True, help="Idempotency-Key records of the API.")
app.add_typer(idempotency_app, name="idempotency")


@idempotency_app.command("prune")
def idempotency_prune(
    ttl_hours: Annotated[
        int | None,
        typer.Option(
            min=1, help="Delete records older than this (default: TLAKE_IDEMPOTENCY_TTL_HOURS)"
        ),
    ] = None,
) -> None:
    """Delete expired Idempotency-Key records; their keys may be used again."""
    from ingest_api import idempotency

    settings = get_settings()
    hours = ttl_hours or settings.idempotency_ttl_hours
    deleted = _registry_call(lambda reg: idempotency.prune(reg, ttl_hours=hours), settings=settings)
    console.print(f"  {deleted} idempotency record(s) older than {hours} h deleted")


@app.command("mqtt-bridge")
def mqtt_bridge(
    topic: Annotated[str, typer.Option(help="Topic filter to subscribe to (QoS 1)")],
    source: Annotated[
        str | None,
        typer.Option(help="Source of every message (default: the level the wildcard matched)"),
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option(help="Exit after landing this many messages")
    ] = None,
    flush_events: Annotated[int, typer.Option(help="Land every N messages")] = 500,
    flush_seconds: Annotated[float, typer.Option(help="... or T s after the first one")] = 2.0,
    client_id: Annotated[
        str, typer.Option(help="MQTT client id; its persistent session keeps unacked messages")
    ] = "tlake-mqtt-bridge",
) -> None:
    """Land MQTT messages (TLAKE_MQTT_URL) through the API's validation and landing; ack after."""
    from ingest_mqtt.bridge import Bridge
    from ingest_mqtt.errors import BridgeError
    from lake_config.registry import Registry
    from lake_config.storage import ObjectStore

    settings = get_settings()
    store = ObjectStore(settings)
    try:
        with Registry(settings, max_size=2) as reg:
            bridge = Bridge(
                settings,
                store,
                reg,
                topic=topic,
                source=source,
                client_id=client_id,
                flush_events=flush_events,
                flush_seconds=flush_seconds,
                max_messages=max_messages,
                log=lambda line: err.print(f"  {line}"),
            )
            result = bridge.run()
    except (BridgeError, LakeConfigError) as exc:
        _fail(exc)
    finally:
        store.close()
    console.print(result.render())


if __name__ == "__main__":
    app()
