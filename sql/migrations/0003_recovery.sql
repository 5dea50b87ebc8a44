-- Recovery: where a replayed quarantine row went, so a replay is traceable and never repeated.
-- depends: 0001_registry

alter table registry.quarantine add column replayed_object_key text;

-- `tlake quarantine replay` scans rows not replayed yet; keep that scan proportional to them.
create index quarantine_not_replayed_idx on registry.quarantine (quarantine_id)
    where replayed_at is null;
