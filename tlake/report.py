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
    return Report(
        totals=dict(totals or {}),
        top_devices=[dict(r) for r in top_devices],
        hours=[dict(r) for r in hours],
        registry=registry.counts(),
        quarantine=registry.quarantine_counts(),
    )
