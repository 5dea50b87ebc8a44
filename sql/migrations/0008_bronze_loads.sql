-- How many times a bronze stage set out to load each raw object (spark_jobs.bronze.events).
-- A load that is the object's first cannot meet rows of an earlier one, so bronze appends its
-- lines without reading the table; any later load (a crashed run's objects taken over, a
-- retried Airflow task, `tlake files retry`) MERGEs on (object_key, line_no) instead.
-- Objects registered before this migration may have been loaded already: they count one.
-- depends: 0007_quality_stage

alter table registry.raw_objects add column bronze_loads integer not null default 1;
alter table registry.raw_objects alter column bronze_loads set default 0;
