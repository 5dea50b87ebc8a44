"""The short analytics report `make demo` prints, read from PostgreSQL `analytics` tables only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lake_config.registry import Registry


@dataclass(frozen=True)
class Report:
    totals: dict[str, Any]
    top_devices: list[dict[str, Any]]
    hours: list[dict[str, Any]]
    registry: dict[str, int]
    quarantine: dict[str, int]
    sources: dict[str, list[dict[str, Any]]]


# One compact query per origin source (analytics tables of sql/migrations/0006_sources.sql).
SOURCE_QUERIES: dict[str, str] = {
    "fleet": """
        select (select count(*) from analytics.fleet_devices) as inventory,
               o.ts as latest_snapshot, o.online, round((100 * o.online_share)::numeric, 1)
               as online_pct, round((100 * m.baseline_share)::numeric, 1) as baseline_pct,
               m.breached,
               (select count(*) from analytics.alerts where source = 'fleet-monitor') as alerts
        from analytics.fleet_online o
        left join analytics.fleet_monitor m using (ts)
        order by o.ts desc limit 1
    """,
    "stores": """
        select store, sum(visits) as visits, sum(readings_ok) as readings_ok,
               sum(failed_readings) as failed_readings, sum(anomalies) as anomalies
        from analytics.store_daily group by store order by visits desc, store
    """,
    "iot": """
        select device_id as sensor, max(type) as type, max(unit) as unit,
               sum(readings) as readings, count(*) as minutes,
               round((sum(avg_value * readings) / sum(readings))::numeric, 2) as avg,
               round(min(min_value)::numeric, 2) as min, round(max(max_value)::numeric, 2) as max,
               sum(out_of_range) as out_of_range
        from analytics.iot_sensor_minute group by device_id order by device_id
    """,
    "stream": """
        select distinct on (device_id) device_id as stream, occurred_at as latest,
               round(value::numeric, 2) as value,
               round(rolling_avg_short::numeric, 2) as rolling_avg_short,
               round(rolling_avg_long::numeric, 2) as rolling_avg_long,
               count(*) over (partition by device_id) as messages
        from analytics.stream_rolling order by device_id, occurred_at desc
    """,
}


def build(registry: Registry, *, top: int = 5) -> Report:
    with registry.connection() as conn:
        totals = conn.execute(
            """
            with hourly as (
                select * from analytics.device_hourly
            ),
            final as (
                select count(distinct device_id) as devices,
                       coalesce(sum(events), 0) as events,
                       coalesce(sum(sessions), 0) as sessions,
                       coalesce(sum(crash_events), 0) as crashes,
                       round(avg(avg_battery_pct)::numeric, 1) as avg_battery_pct,
                       min(hour_start) as first_hour,
                       max(hour_start) as last_hour
                from hourly
            )
            select * from final
            """
        ).fetchone()
        top_devices = conn.execute(
            """
            with per_device as (
                select device_id,
                       sum(events) as events,
                       sum(low_battery_events) as low_battery_events,
                       round(min(min_battery_pct)::numeric, 1) as min_battery_pct
                from analytics.device_hourly
                group by device_id
            ),
            final as (
                select * from per_device order by events desc, device_id limit %s
            )
            select * from final
            """,
            (top,),
        ).fetchall()
        hours = conn.execute(
            """
            with final as (
                select hour_start,
                       count(*) as devices,
                       sum(events) as events,
                       round(avg(avg_battery_pct)::numeric, 1) as avg_battery_pct,
                       sum(wifi_events) as wifi_events,
                       sum(cellular_events) as cellular_events
                from analytics.device_hourly
                group by hour_start
            )
            select * from final order by hour_start
            """
        ).fetchall()
        sources = {
            name: [dict(r) for r in conn.execute(query).fetchall()]  # type: ignore[arg-type]
            for name, query in SOURCE_QUERIES.items()
        }
    return Report(
        sources=sources,
        totals=dict(totals or {}),
        top_devices=[dict(r) for r in top_devices],
        hours=[dict(r) for r in hours],
        registry=registry.counts(),
        quarantine=registry.quarantine_counts(),
    )
