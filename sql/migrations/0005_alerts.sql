-- Alerts: one row per Airflow task that failed for good (its retries spent), newest first.
-- depends: 0004_processing

-- Written by the DAGs' failure callback (lake_config.alerts). `message` is the exception's first
-- line only, bounded, so no payload that a later line of an error might quote lands here.
create table analytics.alerts (
    alert_id    bigint generated always as identity primary key,
    raised_at   timestamptz not null default now(),
    source      text        not null,
    dag_id      text,
    dag_run_id  text,
    task_id     text,
    try_number  int,
    severity    text        not null check (severity in ('warning', 'critical')),
    message     text        not null check (length(message) <= 2000),
    resolved_at timestamptz
);
create index alerts_raised_idx on analytics.alerts (raised_at);
