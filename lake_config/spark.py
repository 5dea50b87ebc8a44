"""The Spark session, built in one place for every job.

Two engines, one code path for the jobs:

- **Spark Connect** (`TLAKE_SPARK_REMOTE=sc://host:port`): the embedded default is a local Sail
  server, which reads and writes Delta on S3 natively; any Spark Connect server works the same.
- **Classic JVM Spark** (`TLAKE_SPARK_REMOTE=` empty, `TLAKE_SPARK_MASTER=spark://...|yarn|local[2]`):
  for a cluster, with delta-spark and hadoop-aws on the classpath (`spark.jars.packages`) and the
  lake reached through `s3a://`. This machine cannot download those jars (no Maven access), so here
  the classic session is exercised on local paths only; see README "Scaling out".
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from lake_config.errors import EngineError
from lake_config.settings import Settings
from lake_config.storage import lake_uri
from lake_config.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Versions that match pyspark 4.0.x; used only by the classic JVM session.
DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.0"
HADOOP_AWS_PACKAGE = "org.apache.hadoop:hadoop-aws:3.4.1"


def is_connect(settings: Settings) -> bool:
    return bool(settings.spark_remote)


def lake_scheme(settings: Settings) -> str:
    """`s3` for Sail (object_store), `s3a` for Hadoop's connector on JVM Spark."""
    return "s3" if is_connect(settings) else "s3a"


def table_uri(settings: Settings, table: Table) -> str:
    return lake_uri(settings, table.path, scheme=lake_scheme(settings))


def classic_conf(settings: Settings, *, with_packages: bool = True) -> dict[str, str]:
    """Spark conf for a classic JVM session on a cluster: Delta plus S3A against our endpoint."""
    conf = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.hadoop.fs.s3a.endpoint": settings.s3_endpoint,
        "spark.hadoop.fs.s3a.access.key": settings.s3_access_key,
        "spark.hadoop.fs.s3a.secret.key": settings.s3_secret_key.get_secret_value(),
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(
            settings.s3_endpoint.startswith("https")
        ).lower(),
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.sql.shuffle.partitions": "8",
    }
    if with_packages:
        conf["spark.jars.packages"] = f"{DELTA_PACKAGE},{HADOOP_AWS_PACKAGE}"
    return conf


_CONNECT_SESSIONS: dict[str, SparkSession] = {}
_CONNECT_LOCK = threading.Lock()


def _connect_session(remote: str) -> SparkSession:
    """One Spark Connect session per server URL and process, kept for the process's life.

    Not getOrCreate(): it hands back any live session, whatever server it talks to. Not a new
    session per call either: pyspark 4.0 shuts down the release thread pool that every
    session's result iterators share when *any* session is garbage-collected
    (`SparkSession.__del__` -> `client.close()`), and a query running in another session at
    that moment fails with "cannot schedule new futures after shutdown".
    """
    from pyspark.sql import SparkSession

    with _CONNECT_LOCK:
        spark = _CONNECT_SESSIONS.get(remote)
        if spark is None or spark.client.is_closed:  # type: ignore[operator]
            spark = SparkSession.builder.remote(remote).create()
            spark.conf.set("spark.sql.session.timeZone", "UTC")
            _CONNECT_SESSIONS[remote] = spark
        return spark


def build_session(settings: Settings, *, app_name: str = "tlake") -> SparkSession:
    """A SparkSession for the configured engine; raises EngineError when none can be built."""
    from pyspark.sql import SparkSession

    try:
        if is_connect(settings):
            return _connect_session(settings.spark_remote)
        builder = SparkSession.builder.master(settings.spark_master).appName(app_name)
        for key, value in classic_conf(settings).items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    except Exception as exc:  # pyspark raises many unrelated types for "cannot connect"
        target = settings.spark_remote or settings.spark_master
        raise EngineError(f"cannot build a Spark session for {target!r}: {exc}") from exc


def ensure_table(spark: SparkSession, settings: Settings, table: Table) -> str:
    """Create the Delta table if missing and register it in the session catalog.

    Returns the SQL name to use in MERGE statements. Sail keeps its catalog in memory, so every
    session registers the tables it touches; the Delta log in the bucket is the source of truth.
    """
    uri = table_uri(settings, table)
    try:
        # An existing table registers from its own log. Sail refuses to re-declare partition
        # and timestamp columns against an existing log, and fails this form on a missing one.
        spark.sql(f"create table if not exists {table.sql_name} using delta location '{uri}'")
        return table.sql_name
    except Exception:
        pass
    columns = ", ".join(
        f"{c.name} {c.type}{'' if c.nullable else ' not null'}" for c in table.columns
    )
    partition = f" partitioned by ({', '.join(table.partition_by)})" if table.partition_by else ""
    spark.sql(
        f"create table if not exists {table.sql_name} ({columns}) using delta"
        f"{partition} location '{uri}'"
    )
    return table.sql_name
