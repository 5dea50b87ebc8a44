-- The quality stage's referential check (spark_jobs.checks): when a machine's inventory record
-- arrived, mirrored from gold.fleet_devices.inventoried_at (null: only heartbeats so far).
-- depends: 0006_sources

alter table analytics.fleet_devices add column inventoried_at timestamptz;
