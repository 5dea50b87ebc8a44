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
INTEGER_OIDS = frozenset({20, 21, 23})  # int8, int2, int4
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

# --- Fleet (000): analytics.fleet_online, fleet_segments, fleet_monitor, alerts ------------------

# The online-share monitor of 000, per snapshot: the mean share of the previous `history`
# snapshots (fewer at the start: `baseline_snapshots` says how many) and the drop against it as a
# fraction of the baseline; breached when the drop exceeds `threshold`. The sidebar's N and
# threshold apply here, so this may differ from what `tlake monitor` recorded with its settings.
FLEET_ONLINE_SERIES = """
with snapshots as (
    select o.ts, o.online, o.reporting, o.errors, o.inventory, o.online_share
    from analytics.fleet_online as o
    where o.online_share is not null
),

baselines as (
    select
        s.ts, s.online, s.reporting, s.errors, s.inventory, s.online_share,
        avg(s.online_share) over previous as baseline_share,
        count(*) over previous as baseline_snapshots
    from snapshots as s
    window previous as (
        order by s.ts rows between %(history)s::int preceding and 1 preceding
    )
),

final as (
    select
        b.ts, b.online, b.reporting, b.errors, b.inventory,
        b.online_share::double precision as online_share,
        b.baseline_share::double precision as baseline_share,
        b.baseline_snapshots,
        ((b.baseline_share - b.online_share) / nullif(b.baseline_share, 0))::double precision
            as drop_fraction,
        coalesce((b.baseline_share - b.online_share) / nullif(b.baseline_share, 0)
            > %(threshold)s::double precision, false) as breached
    from baselines as b
)

select * from final order by ts
"""

# What `tlake monitor` recorded, newest first.
FLEET_MONITOR_RECENT = """
with verdicts as (
    select m.ts, m.online_share, m.baseline_share, m.drop_fraction, m.threshold, m.history,
        m.breached, m.alert_id, m.checked_at
    from analytics.fleet_monitor as m
    order by m.ts desc
    limit %(limit)s
),

final as (
    select
        v.ts, v.breached,
        round((100 * v.online_share)::numeric, 1)::double precision as online_pct,
        round((100 * v.baseline_share)::numeric, 1)::double precision as baseline_pct,
        round((100 * v.drop_fraction)::numeric, 1)::double precision as drop_pct,
        round((100 * v.threshold)::numeric, 1)::double precision as threshold_pct,
        v.history, v.alert_id, v.checked_at
    from verdicts as v
)

select * from final order by ts desc
"""

# The monitor's alerts: those a verdict points at, and any raised under a fleet source.
FLEET_ALERTS = """
with linked as (
    select m.alert_id
    from analytics.fleet_monitor as m
    where m.alert_id is not null
),

alerts as (
    select a.alert_id, a.raised_at, a.source, a.severity, a.message, a.resolved_at
    from analytics.alerts as a
    where a.alert_id in (select l.alert_id from linked as l)
        or a.source ilike 'fleet%%'
    order by a.raised_at desc, a.alert_id desc
    limit %(limit)s
),

final as (
    select a.raised_at, a.severity, a.source, left(a.message, 300) as message, a.resolved_at
    from alerts as a
)

select * from final order by raised_at desc
"""

FLEET_SEGMENT_NAMES = """
with segments as (
    select fs.segment, count(distinct fs.ts) as snapshots
    from analytics.fleet_segments as fs
    group by fs.segment
),

final as (
    select s.segment, s.snapshots
    from segments as s
)

select * from final order by segment
"""

# Segment breakouts: for each chosen segment, its `top` dimension values by machines online over
# every snapshot, one row per (snapshot, value). `share_pct` is the value's share of the machines
# online in that snapshot (the segment's own total: every online machine has exactly one value
# per segment, unknown included).
FLEET_SEGMENT_SERIES = """
with segment_rows as (
    select fs.ts, fs.segment, fs.count,
        concat_ws(' / ', nullif(fs.dim1_value, ''), nullif(fs.dim2_value, ''),
            nullif(fs.dim3_value, '')) as dim_values
    from analytics.fleet_segments as fs
    where fs.segment = any(%(segments)s::text[])
),

with_totals as (
    select r.ts, r.segment, r.dim_values, r.count,
        sum(r.count) over (partition by r.ts, r.segment) as snapshot_online
    from segment_rows as r
),

ranked as (
    select t.segment, t.dim_values,
        row_number() over (
            partition by t.segment order by sum(t.count) desc, t.dim_values
        ) as value_rank
    from with_totals as t
    group by t.segment, t.dim_values
),

final as (
    select
        t.ts, t.segment, t.dim_values, t.segment || ': ' || t.dim_values as series,
        k.value_rank, t.count,
        round((100.0 * t.count / nullif(t.snapshot_online, 0))::numeric, 1)::double precision
            as share_pct
    from with_totals as t
    inner join ranked as k on k.segment = t.segment and k.dim_values = t.dim_values
    where k.value_rank <= %(top)s
)

select * from final order by ts, segment, value_rank
"""

# --- Stores (001): analytics.store_sensor_hourly and its three views ----------------------------

# Every resolution gets a `status`: `failed` (nothing counted: `visits` is null, never zero),
# `partly failed` (some readings failed: `visits` counts the others), `anomaly`, `zero traffic`
# (a closed store) or `ok`.
STORE_TOTALS = """
with days as (
    select d.store, d.day, d.visits, d.readings_ok, d.failed_readings, d.anomalies
    from analytics.store_daily as d
),

sensors as (
    select sd.store, count(distinct sd.sensor_id) as sensors
    from analytics.store_sensor_daily as sd
    group by sd.store
),

final as (
    select
        d.store, s.sensors, count(*) as days, sum(d.visits)::bigint as visits,
        sum(d.readings_ok)::bigint as readings_ok,
        sum(d.failed_readings)::bigint as failed_readings,
        sum(d.anomalies)::bigint as anomalies, min(d.day) as first_day, max(d.day) as last_day
    from days as d
    inner join sensors as s on s.store = d.store
    group by d.store, s.sensors
)

select * from final order by visits desc, store
"""

STORE_SENSOR_IDS = """
with final as (
    select distinct sd.sensor_id
    from analytics.store_sensor_daily as sd
    where sd.store = %(store)s
)

select * from final order by sensor_id
"""

STORE_DAILY = """
with days as (
    select d.day, d.visits, d.readings_ok, d.failed_readings, d.anomalies
    from analytics.store_daily as d
    where d.store = %(store)s
),

final as (
    select
        d.day, case when d.readings_ok > 0 then d.visits end as visits, d.readings_ok,
        d.failed_readings, d.anomalies,
        case
            when d.readings_ok = 0 then 'failed'
            when d.failed_readings > 0 then 'partly failed'
            when d.anomalies > 0 then 'anomaly'
            when d.visits = 0 then 'zero traffic'
            else 'ok'
        end as status
    from days as d
)

select * from final order by day
"""

STORE_HOURLY = """
with hours as (
    select h.hour_start, h.visits, h.sensors_ok, h.failed_readings, h.anomalies
    from analytics.store_hourly as h
    where h.store = %(store)s
),

final as (
    select
        h.hour_start, case when h.sensors_ok > 0 then h.visits end as visits, h.sensors_ok,
        h.failed_readings, h.anomalies,
        case
            when h.sensors_ok = 0 then 'failed'
            when h.failed_readings > 0 then 'partly failed'
            when h.anomalies > 0 then 'anomaly'
            when h.visits = 0 then 'zero traffic'
            else 'ok'
        end as status
    from hours as h
)

select * from final order by hour_start
"""

STORE_SENSOR_DAILY = """
with days as (
    select sd.day, sd.visits, sd.readings_ok, sd.failed_readings, sd.anomalies
    from analytics.store_sensor_daily as sd
    where sd.store = %(store)s and sd.sensor_id = %(sensor_id)s
),

final as (
    select
        d.day, case when d.readings_ok > 0 then d.visits end as visits, d.readings_ok,
        d.failed_readings, d.anomalies,
        case
            when d.readings_ok = 0 then 'failed'
            when d.failed_readings > 0 then 'partly failed'
            when d.anomalies > 0 then 'anomaly'
            when d.visits = 0 then 'zero traffic'
            else 'ok'
        end as status
    from days as d
)

select * from final order by day
"""

# `visits` stays null for a failed reading.
STORE_SENSOR_HOURLY = """
with hours as (
    select sh.hour_start, sh.visits, sh.failed, sh.anomaly
    from analytics.store_sensor_hourly as sh
    where sh.store = %(store)s and sh.sensor_id = %(sensor_id)s
),

final as (
    select
        h.hour_start, h.visits,
        case
            when h.failed then 'failed'
            when h.anomaly then 'anomaly'
            when h.visits = 0 then 'zero traffic'
            else 'ok'
        end as status
    from hours as h
)

select * from final order by hour_start
"""

# --- IoT (002): analytics.iot_sensor_minute -----------------------------------------------------

IOT_SENSORS = """
with minutes as (
    select m.device_id, m.minute_start, m.type, m.unit, m.location
    from analytics.iot_sensor_minute as m
),

latest as (
    select distinct on (m.device_id) m.device_id, m.type, m.unit, m.location
    from minutes as m
    order by m.device_id, m.minute_start desc
),

final as (
    select l.device_id, coalesce(l.type, '') as type, coalesce(l.unit, '') as unit,
        coalesce(l.location, '') as location
    from latest as l
)

select * from final order by device_id
"""

# The filters are lists; an empty one filters nothing. Averages are weighted by readings.
IOT_SUMMARY = """
with minutes as (
    select m.device_id, m.minute_start, m.readings, m.avg_value, m.min_value, m.max_value,
        m.out_of_range, coalesce(m.type, '') as type, coalesce(m.unit, '') as unit,
        coalesce(m.location, '') as location
    from analytics.iot_sensor_minute as m
    where (cardinality(%(devices)s::text[]) = 0 or m.device_id = any(%(devices)s::text[]))
        and (cardinality(%(types)s::text[]) = 0 or coalesce(m.type, '') = any(%(types)s::text[]))
        and (cardinality(%(units)s::text[]) = 0 or coalesce(m.unit, '') = any(%(units)s::text[]))
),

final as (
    select
        m.device_id, max(m.type) as type, max(m.unit) as unit, max(m.location) as location,
        count(*) as minutes, sum(m.readings)::bigint as readings,
        (sum(m.avg_value * m.readings) / sum(m.readings))::double precision as avg_value,
        min(m.min_value)::double precision as min_value,
        max(m.max_value)::double precision as max_value,
        sum(m.out_of_range)::bigint as out_of_range,
        round((100.0 * sum(m.out_of_range) / sum(m.readings))::numeric, 2)::double precision
            as out_of_range_pct,
        max(m.minute_start) as last_minute_start
    from minutes as m
    group by m.device_id
)

select * from final order by device_id
"""

# The last `minutes` minutes before the newest one of the chosen sensors.
IOT_MINUTES = """
with minutes as (
    select m.device_id, m.minute_start, m.readings, m.avg_value, m.min_value, m.max_value,
        m.out_of_range
    from analytics.iot_sensor_minute as m
    where m.device_id = any(%(devices)s::text[])
),

newest as (
    select max(m.minute_start) as minute_start
    from minutes as m
),

final as (
    select m.device_id, m.minute_start, m.readings, m.avg_value, m.min_value, m.max_value,
        m.out_of_range
    from minutes as m
    cross join newest as n
    where m.minute_start > n.minute_start - make_interval(mins => %(minutes)s::int)
)

select * from final order by minute_start, device_id
"""

# --- Stream (004): analytics.stream_rolling and the melt/pivot views ----------------------------

STREAM_TOTALS = """
with latest as (
    select distinct on (r.device_id)
        r.device_id, r.occurred_at, r.value, r.rolling_avg_short, r.rolling_avg_long
    from analytics.stream_rolling as r
    order by r.device_id, r.occurred_at desc, r.event_id desc
),

counts as (
    select r.device_id, count(*) as messages, min(r.occurred_at) as first_at
    from analytics.stream_rolling as r
    group by r.device_id
),

final as (
    select l.device_id, c.messages, c.first_at, l.occurred_at as last_at,
        l.value as last_value, l.rolling_avg_short, l.rolling_avg_long
    from latest as l
    inner join counts as c on c.device_id = l.device_id
)

select * from final order by device_id
"""

# The newest `limit` messages of each chosen stream, oldest first.
STREAM_SERIES = """
with ranked as (
    select r.device_id, r.occurred_at, r.value, r.rolling_avg_short, r.rolling_avg_long,
        row_number() over (
            partition by r.device_id order by r.occurred_at desc, r.event_id desc
        ) as recency
    from analytics.stream_rolling as r
    where r.device_id = any(%(devices)s::text[])
),

final as (
    select r.device_id, r.occurred_at, r.value, r.rolling_avg_short, r.rolling_avg_long
    from ranked as r
    where r.recency <= %(limit)s
)

select * from final order by occurred_at, device_id
"""

STREAM_MELTED = """
with recent as (
    select m.event_id, m.device_id, m.occurred_at, m.variable, m.value
    from analytics.stream_melted as m
    where m.device_id = any(%(devices)s::text[])
    order by m.occurred_at desc, m.device_id, m.event_id, m.variable
    limit %(limit)s
),

final as (
    select r.occurred_at, r.device_id, r.event_id, r.variable, r.value
    from recent as r
)

select * from final order by occurred_at desc, device_id, event_id, variable
"""

# `by_stream` is a jsonb object {stream: mean of that second}; the page spreads it into columns.
STREAM_PIVOT = """
with seconds as (
    select distinct p.ts
    from analytics.stream_pivot as p
    order by p.ts desc
    limit %(limit)s
),

final as (
    select p.ts, p.variable, p.by_stream
    from analytics.stream_pivot as p
    inner join seconds as s on s.ts = p.ts
)

select * from final order by ts desc, variable
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

# One row per source, a column per status: where a backlog or failures come from.
RAW_OBJECTS_BY_SOURCE = """
with objects as (
    select o.source, o.status, o.event_count, o.received_at
    from registry.raw_objects as o
),

final as (
    select
        o.source,
        count(*) filter (where o.status = 'pending') as pending,
        count(*) filter (where o.status = 'processing') as processing,
        count(*) filter (where o.status = 'processed') as processed,
        count(*) filter (where o.status = 'failed') as failed,
        sum(o.event_count)::bigint as events,
        min(o.received_at) filter (where o.status = 'pending') as oldest_pending_at,
        max(o.received_at) as last_received_at
    from objects as o
    group by o.source
)

select * from final order by source
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

QUARANTINE_BY_SOURCE = """
with quarantined as (
    select q.source, q.component, q.replayed_at, q.received_at
    from registry.quarantine as q
),

final as (
    select q.source, q.component, count(*) as events, count(q.replayed_at) as replayed,
        max(q.received_at) as last_received_at
    from quarantined as q
    group by q.source, q.component
)

select * from final order by events desc, source, component
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

# Every alert, newest first: tasks that failed for good (source airflow, the DAGs' failure
# callback) and the fleet monitor's.
RECENT_DAG_ALERTS = """
with alerts as (
    select a.alert_id, a.raised_at, a.severity, a.source, a.dag_id, a.task_id, a.try_number,
        a.dag_run_id, a.message, a.resolved_at
    from analytics.alerts as a
    order by a.raised_at desc, a.alert_id desc
    limit %(limit)s
),

final as (
    select
        a.raised_at, a.severity, a.source, a.dag_id, a.task_id, a.try_number, a.dag_run_id,
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
            description = cur.description or ()
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
    frame = pd.DataFrame.from_records(rows, columns=[col.name for col in description])
    # Integer columns stay integers when they hold nulls (pandas would make them floats).
    for col in description:
        if col.type_code in INTEGER_OIDS:
            frame[col.name] = frame[col.name].astype("Int64")
    return frame


def dq_results_exist() -> bool:
    """Whether `analytics.dq_results` exists (the data-quality stage creates it)."""
    return bool(read(DQ_RESULTS_EXISTS)["present"].iloc[0])


def alerts_exist() -> bool:
    """Whether `analytics.alerts` exists (migration 0005 creates it)."""
    return bool(read(ALERTS_EXIST)["present"].iloc[0])
