"""Every query the dashboard runs, and the one function that runs them.

Only PostgreSQL's `analytics` and `registry` schemas are read, never the lake: the dashboard shows
what SQL users see, and it keeps working while the lake is being written. Each query opens a
short-lived connection, so a database that comes back is picked up on the next rerun. Sums are
cast to bigint (PostgreSQL sums bigints as numeric) and ratios to double precision, so pandas gets
plain numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import psycopg

from dashboard.errors import DatabaseUnavailableError, QueryError
from lake_config.settings import get_settings

CONNECT_TIMEOUT_S = 5
TOP_DEVICES = 10
RECENT_RUNS = 20
RECENT_ALERTS = 20

# --- Devices: analytics.device_hourly, one row per (device_id, hour_start) ------------------------

DEVICE_TOTALS = """
with device_hours as (
    select dh.device_id, dh.hour_start, dh.events, dh.sessions, dh.crash_events
    from analytics.device_hourly as dh
),

final as (
    select
        count(distinct h.device_id) as devices,
        count(*) as device_hours,
        coalesce(sum(h.events), 0)::bigint as events,
        coalesce(sum(h.sessions), 0)::bigint as sessions,
        coalesce(sum(h.crash_events), 0)::bigint as crash_events,
        min(h.hour_start) as first_hour_start,
        max(h.hour_start) as last_hour_start
    from device_hours as h
)

select * from final
"""

# Battery is averaged over events, not over devices: a busy device weighs more.
EVENTS_BY_HOUR = """
with device_hours as (
    select dh.hour_start, dh.device_id, dh.events, dh.crash_events,
        dh.avg_battery_pct, dh.min_battery_pct
    from analytics.device_hourly as dh
),

final as (
    select
        h.hour_start,
        count(*) as devices,
        sum(h.events)::bigint as events,
        sum(h.crash_events)::bigint as crash_events,
        (sum(h.avg_battery_pct * h.events)
            / nullif(sum(h.events) filter (where h.avg_battery_pct is not null), 0)
        )::double precision as avg_battery_pct,
        min(h.min_battery_pct)::double precision as min_battery_pct
    from device_hours as h
    group by h.hour_start
)

select * from final order by hour_start
"""

TOP_DEVICES_BY_EVENTS = """
with device_hours as (
    select dh.device_id, dh.hour_start, dh.events, dh.crash_events, dh.avg_battery_pct,
        dh.last_event_at
    from analytics.device_hourly as dh
),

final as (
    select
        h.device_id,
        sum(h.events)::bigint as events,
        count(*) as hours,
        sum(h.crash_events)::bigint as crash_events,
        round(avg(h.avg_battery_pct)::numeric, 1)::double precision as avg_battery_pct,
        max(h.last_event_at) as last_event_at
    from device_hours as h
    group by h.device_id
)

select * from final order by events desc, device_id limit %(limit)s
"""

DEVICE_IDS = """
with final as (
    select dh.device_id, sum(dh.events)::bigint as events
    from analytics.device_hourly as dh
    group by dh.device_id
)

select * from final order by events desc, device_id
"""

DEVICE_HOURS = """
with final as (
    select
        dh.hour_start, dh.events, dh.sessions, dh.event_types, dh.crash_events,
        dh.avg_battery_pct, dh.min_battery_pct, dh.avg_battery_temperature_c,
        dh.low_battery_events, dh.avg_signal_dbm, dh.wifi_events, dh.cellular_events,
        dh.first_event_at, dh.last_event_at
    from analytics.device_hourly as dh
    where dh.device_id = %(device_id)s
)

select * from final order by hour_start
"""

# --- Pipeline health: the registry ---------------------------------------------------------------

# Every status is listed, with zeros, so an empty or drained registry still reads as such.
RAW_OBJECTS_BY_STATUS = """
with statuses as (
    select s.status
    from unnest(array['pending', 'processing', 'processed', 'failed']) as s (status)
),

objects as (
    select o.status, count(*) as objects, sum(o.event_count)::bigint as events,
        sum(o.size_bytes)::bigint as size_bytes
    from registry.raw_objects as o
    group by o.status
),

final as (
    select s.status, coalesce(o.objects, 0) as objects, coalesce(o.events, 0) as events,
        coalesce(o.size_bytes, 0) as size_bytes
    from statuses as s
    left join objects as o on o.status = s.status
)

select * from final
order by array_position(array['pending', 'processing', 'processed', 'failed'], status)
"""

OLDEST_PENDING = """
with pending as (
    select o.object_key, o.received_at
    from registry.raw_objects as o
    where o.status = 'pending'
),

final as (
    select
        count(*) as pending_objects,
        min(p.received_at) as oldest_received_at,
        extract(epoch from now() - min(p.received_at))::double precision as oldest_age_s
    from pending as p
)

select * from final
"""

RECENT_PIPELINE_RUNS = """
with runs as (
    select r.run_id, r.stage, r.status, r.started_at, r.finished_at, r.objects, r.rows_in,
        r.rows_out, r.error
    from registry.pipeline_runs as r
    order by r.started_at desc, r.run_id, r.stage
    limit %(limit)s
),

final as (
    select
        r.started_at, r.run_id, r.stage, r.status,
        round(extract(epoch from coalesce(r.finished_at, now()) - r.started_at) * 1000)::bigint
            as duration_ms,
        r.objects, r.rows_in, r.rows_out, left(r.error, 200) as error
    from runs as r
)

select * from final order by started_at desc, run_id, stage
"""

# `reasons` is a jsonb list of {field, message}; one event can fail on several fields.
QUARANTINE_BY_FIELD = """
with quarantined as (
    select q.quarantine_id, q.reasons
    from registry.quarantine as q
    where jsonb_typeof(q.reasons) = 'array'
),

reasons as (
    select q.quarantine_id, coalesce(r.reason ->> 'field', '(no field)') as field
    from quarantined as q
    cross join lateral jsonb_array_elements(q.reasons) as r (reason)
),

final as (
    select r.field, count(*) as reasons, count(distinct r.quarantine_id) as events
    from reasons as r
    group by r.field
)

select * from final order by reasons desc, field
"""

QUARANTINE_TOTALS = """
with quarantined as (
    select q.quarantine_id, q.replayed_at
    from registry.quarantine as q
),

final as (
    select count(*) as events, count(q.replayed_at) as replayed
    from quarantined as q
)

select * from final
"""

DQ_RESULTS_EXISTS = """
with final as (
    select to_regclass('analytics.dq_results') is not null as present
)

select * from final
"""

# The latest result of each (table, rule), whichever run checked it last.
LATEST_DQ_RESULTS = """
with latest as (
    select distinct on (d.table_name, d.rule)
        d.table_name, d.rule, d.dimension, d.action, d.rows_checked, d.rows_failed,
        d.checked_at, d.run_id
    from analytics.dq_results as d
    order by d.table_name, d.rule, d.checked_at desc
),

final as (
    select
        l.table_name, l.rule, l.dimension, l.action, l.rows_checked, l.rows_failed,
        round(100.0 * l.rows_failed / nullif(l.rows_checked, 0), 2)::double precision
            as failed_pct,
        l.checked_at, l.run_id
    from latest as l
)

select * from final order by rows_failed desc, table_name, rule
"""

ALERTS_EXIST = """
with final as (
    select to_regclass('analytics.alerts') is not null as present
)

select * from final
"""

# Tasks that failed for good (the DAGs' failure callback), newest first.
RECENT_DAG_ALERTS = """
with alerts as (
    select a.alert_id, a.raised_at, a.severity, a.dag_id, a.task_id, a.try_number,
        a.dag_run_id, a.message, a.resolved_at
    from analytics.alerts as a
    order by a.raised_at desc, a.alert_id desc
    limit %(limit)s
),

final as (
    select
        a.raised_at, a.severity, a.dag_id, a.task_id, a.try_number, a.dag_run_id,
        left(a.message, 200) as message, a.resolved_at
    from alerts as a
)

select * from final order by raised_at desc
"""


def read(query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run one query on a fresh connection and return its rows.

    Raises DatabaseUnavailableError when PostgreSQL cannot be reached, QueryError when it
    answers with an error (a missing table means migrations were not applied).
    """
    settings = get_settings()
    try:
        conn = psycopg.connect(
            settings.database_url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(
            f"cannot reach PostgreSQL at {settings.database_url_safe}: {exc}".strip()
        ) from exc
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            columns = [col.name for col in cur.description or ()]
            rows = cur.fetchall()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"lost PostgreSQL at {settings.database_url_safe}: {exc}".strip()
        ) from exc
    except psycopg.Error as exc:
        raise QueryError(
            f"query failed on {settings.database_url_safe}: {exc}".strip()
            + " (are the migrations applied? `make up` applies them)"
        ) from exc
    return pd.DataFrame.from_records(rows, columns=columns)


def dq_results_exist() -> bool:
    """Whether `analytics.dq_results` exists (the data-quality stage creates it)."""
    return bool(read(DQ_RESULTS_EXISTS)["present"].iloc[0])


def alerts_exist() -> bool:
    """Whether `analytics.alerts` exists (migration 0005 creates it)."""
    return bool(read(ALERTS_EXIST)["present"].iloc[0])
