-- Processing: claims tied to the claiming run's database session; data-quality results.
-- depends: 0001_registry

-- A claim made by a run that holds the advisory lock on its run id for its whole life
-- (lake_config.registry.RunHold). When that session is gone the run is dead, and the next claim
-- takes its objects at once instead of waiting out lease_expires_at, which stays the backstop.
-- Claims made without a held session (the Airflow DAG's tasks) keep the lease alone.
alter table registry.raw_objects
    add column session_tied boolean not null default false;

-- Data-quality results: one row per run, lake table and declared rule (lake_config.quality),
-- replaced when a stage is re-run for the same run.
create table analytics.dq_results (
    run_id       text        not null,
    table_name   text        not null,
    rule         text        not null,
    dimension    text        not null
        check (dimension in ('completeness', 'validity', 'consistency', 'timeliness',
                             'uniqueness', 'integrity')),
    action       text        not null check (action in ('warn', 'quarantine', 'fail')),
    rows_checked bigint      not null check (rows_checked >= 0),
    rows_failed  bigint      not null check (rows_failed >= 0),
    checked_at   timestamptz not null,
    primary key (run_id, table_name, rule)
);
create index dq_results_checked_idx on analytics.dq_results (checked_at);
