-- Ingest edge: the Idempotency-Key of each ingest request and the answer it got, per source.
-- depends: 0001_registry

-- One row per (source, idempotency key). The row is claimed (`in_progress`, with a lease) before
-- anything is written, and completed with the answer in the same transaction that registers the
-- batch, so a completed row always means the batch is registered. `received_at` is the first
-- attempt's: a retry after a crash rebuilds byte-identical objects at the same keys.
create table registry.idempotency (
    source          text        not null,
    idempotency_key text        not null,
    batch_id        uuid        not null,
    fingerprint     text        not null,  -- sha256 hex of the request body after decompression
    received_at     timestamptz not null,
    status          text        not null default 'in_progress'
        check (status in ('in_progress', 'completed')),
    attempt         integer     not null default 1,
    locked_until    timestamptz,
    status_code     integer,
    response        jsonb,
    created_at      timestamptz not null default now(),
    completed_at    timestamptz,
    primary key (source, idempotency_key)
);
create index idempotency_created_idx on registry.idempotency (created_at);
