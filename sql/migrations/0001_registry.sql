-- Registry of raw objects, API keys and ingest quarantine; the analytics schema.
-- depends:

create schema if not exists registry;
create schema if not exists analytics;

-- One row per raw object landed by the ingest API. A run claims pending rows with
-- `for update skip locked`, so concurrent runs never take the same object, and a run's cost grows
-- with what arrived (the partial index below), not with the size of the lake.
create table registry.raw_objects (
    object_id        bigint generated always as identity primary key,
    object_key       text        not null unique,
    source           text        not null,
    batch_id         uuid        not null,
    size_bytes       bigint      not null check (size_bytes >= 0),
    event_count      integer     not null check (event_count >= 0),
    received_at      timestamptz not null,
    registered_at    timestamptz not null default now(),
    status           text        not null default 'pending'
        check (status in ('pending', 'processing', 'processed', 'failed')),
    attempts         integer     not null default 0,
    claimed_by       text,
    claimed_at       timestamptz,
    lease_expires_at timestamptz,
    processed_at     timestamptz,
    last_error       text
);

create index raw_objects_open_idx on registry.raw_objects (object_id)
    where status in ('pending', 'processing');
create index raw_objects_claimed_by_idx on registry.raw_objects (claimed_by)
    where status = 'processing';

-- API keys: only a SHA-256 of the key is stored; the key itself is shown once at creation.
create table registry.api_keys (
    key_id      text primary key,
    key_hash    text        not null unique,
    source      text        not null,
    scope       text        not null default 'write' check (scope in ('write', 'read')),
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);

-- Events the API refused, with every reason. Payloads are stored after tokenization: a raw
-- sensitive value never reaches this table.
create table registry.quarantine (
    quarantine_id bigint generated always as identity primary key,
    batch_id      uuid        not null,
    source        text        not null,
    event_index   integer     not null,
    event_id      text,
    component     text        not null,
    reasons       jsonb       not null,
    payload       jsonb,
    payload_text  text,
    received_at   timestamptz not null,
    replayed_at   timestamptz,
    unique (batch_id, event_index)
);
create index quarantine_received_idx on registry.quarantine (received_at);

-- One row per pipeline pass and stage, for `tlake status` and the dashboard.
create table registry.pipeline_runs (
    run_id       text        not null,
    stage        text        not null,
    started_at   timestamptz not null default now(),
    finished_at  timestamptz,
    status       text        not null default 'running'
        check (status in ('running', 'succeeded', 'failed')),
    objects      integer     not null default 0,
    rows_in      bigint,
    rows_out     bigint,
    error        text,
    primary key (run_id, stage)
);

-- Gold, served to SQL users: one row per (device_id, hour_start), upserted by the gold job.
create table analytics.device_hourly (
    device_id              text        not null,
    hour_start             timestamptz not null,
    events                 bigint      not null,
    sessions               bigint      not null,
    event_types            integer     not null,
    crash_events           bigint      not null,
    avg_battery_pct        double precision,
    min_battery_pct        double precision,
    avg_battery_temperature_c double precision,
    low_battery_events     bigint      not null,
    avg_signal_dbm         double precision,
    wifi_events            bigint      not null,
    cellular_events        bigint      not null,
    first_event_at         timestamptz not null,
    last_event_at          timestamptz not null,
    updated_at             timestamptz not null default now(),
    primary key (device_id, hour_start)
);
create index device_hourly_hour_idx on analytics.device_hourly (hour_start);
