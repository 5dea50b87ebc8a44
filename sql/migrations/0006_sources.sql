-- The origin sources' analytics (lake_config.tables: the gold.* declarations they mirror), and
-- the views that give the other resolutions and shapes their documents asked for.
-- depends: 0005_alerts

-- 000: the fleet inventory, machines online per snapshot and segment, and the monitor's input.
create table analytics.fleet_devices (
    device_id        text        primary key,
    machine_type     text,
    machine_model    text,
    supplier         text,
    state            text,
    branch_id        text,
    operating_system text,
    os_version       text,
    acquisition_date text,
    first_seen_at    timestamptz not null,
    last_seen_at     timestamptz not null,
    last_status      text,
    has_error        boolean,
    updated_at       timestamptz not null default now()
);

-- segment_timeseries of 000: '' where a segment has fewer than three dimensions.
create table analytics.fleet_segments (
    ts         timestamptz not null,
    segment    text        not null,
    count      bigint      not null check (count >= 0),
    dim1_name  text        not null,
    dim1_value text        not null,
    dim2_name  text        not null,
    dim2_value text        not null,
    dim3_name  text        not null,
    dim3_value text        not null,
    updated_at timestamptz not null default now(),
    primary key (ts, segment, dim1_value, dim2_value, dim3_value)
);
create index fleet_segments_segment_idx on analytics.fleet_segments (segment, ts);

create table analytics.fleet_online (
    ts           timestamptz primary key,
    online       bigint      not null check (online >= 0),
    reporting    bigint      not null check (reporting >= 0),
    errors       bigint      not null check (errors >= 0),
    inventory    bigint      not null check (inventory >= 0),
    online_share double precision,
    updated_at   timestamptz not null default now()
);

-- The online-share monitor's verdict per snapshot it looked at (tlake monitor).
create table analytics.fleet_monitor (
    ts              timestamptz primary key,
    online_share    double precision not null,
    baseline_share  double precision,
    drop_fraction   double precision,
    threshold       double precision not null,
    history         integer          not null,
    breached        boolean          not null,
    alert_id        bigint references analytics.alerts (alert_id),
    checked_at      timestamptz      not null default now()
);

-- 001: door-sensor traffic. The table holds hourly counts per sensor; the views give the
-- other three resolutions. A failed reading counts in failed_readings, never as zero visits.
create table analytics.store_sensor_hourly (
    store      text        not null,
    sensor_id  integer     not null,
    hour_start timestamptz not null,
    visits     bigint      check (visits >= 0),
    failed     boolean     not null,
    anomaly    boolean     not null,
    updated_at timestamptz not null default now(),
    primary key (store, sensor_id, hour_start),
    check (failed = (visits is null))
);
create index store_sensor_hourly_hour_idx on analytics.store_sensor_hourly (hour_start);

create view analytics.store_sensor_daily as
select store, sensor_id, (hour_start at time zone 'UTC')::date as day,
       coalesce(sum(visits), 0)::bigint as visits,
       count(*) filter (where not failed)::int as readings_ok,
       count(*) filter (where failed)::int as failed_readings,
       count(*) filter (where anomaly)::int as anomalies
from analytics.store_sensor_hourly
group by store, sensor_id, day;

create view analytics.store_hourly as
select store, hour_start,
       coalesce(sum(visits), 0)::bigint as visits,
       count(*) filter (where not failed)::int as sensors_ok,
       count(*) filter (where failed)::int as failed_readings,
       count(*) filter (where anomaly)::int as anomalies
from analytics.store_sensor_hourly
group by store, hour_start;

create view analytics.store_daily as
select store, (hour_start at time zone 'UTC')::date as day,
       coalesce(sum(visits), 0)::bigint as visits,
       count(*) filter (where not failed)::int as readings_ok,
       count(*) filter (where failed)::int as failed_readings,
       count(*) filter (where anomaly)::int as anomalies
from analytics.store_sensor_hourly
group by store, day;

-- 002: one-minute aggregates per sensor.
create table analytics.iot_sensor_minute (
    device_id    text             not null,
    minute_start timestamptz      not null,
    readings     bigint           not null check (readings > 0),
    avg_value    double precision not null,
    min_value    double precision not null,
    max_value    double precision not null,
    out_of_range bigint           not null check (out_of_range >= 0),
    unit         text,
    type         text,
    location     text,
    updated_at   timestamptz      not null default now(),
    primary key (device_id, minute_start)
);
create index iot_sensor_minute_minute_idx on analytics.iot_sensor_minute (minute_start);

-- 004: stream values with rolling averages; melt and pivot as views.
create table analytics.stream_rolling (
    event_id          text             primary key,
    device_id         text             not null,
    occurred_at       timestamptz      not null,
    value             double precision not null,
    rolling_avg_short double precision not null,
    rolling_avg_long  double precision not null,
    updated_at        timestamptz      not null default now()
);
create index stream_rolling_time_idx on analytics.stream_rolling (device_id, occurred_at);

-- melt: one row per (message, variable).
create view analytics.stream_melted as
select r.event_id, r.device_id, r.occurred_at, v.variable, v.value
from analytics.stream_rolling r
cross join lateral (values ('value', r.value),
                           ('rolling_avg_short', r.rolling_avg_short),
                           ('rolling_avg_long', r.rolling_avg_long)) as v (variable, value);

-- pivot: one row per (second, variable), one key per stream holding its mean that second.
create view analytics.stream_pivot as
select date_trunc('second', occurred_at) as ts, variable,
       jsonb_object_agg(device_id, value) as by_stream
from (select date_trunc('second', occurred_at) as occurred_at, device_id, variable,
             avg(value) as value
      from analytics.stream_melted
      group by 1, 2, 3) per_stream
group by 1, 2;
