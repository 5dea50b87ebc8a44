"""lake_config.spark: one Spark Connect session per server and process."""

from __future__ import annotations

import gc

from pyspark.sql import SparkSession

from lake_config.settings import Settings
from lake_config.spark import build_session


def test_connect_sessions_are_shared_so_none_is_collected_mid_query(sail_remote: str) -> None:
    # pyspark 4.0 shuts down the release thread pool that every session's result iterators
    # share when any session is garbage-collected; a fresh session per pipeline stage made a
    # query in another session fail with "cannot schedule new futures after shutdown".
    settings = Settings(env="test", spark_remote=sail_remote)
    first = build_session(settings)
    assert build_session(settings) is first
    assert first.conf.get("spark.sql.session.timeZone") == "UTC"
    other = SparkSession.builder.remote(sail_remote).create()
    del other  # another session dropped and collected...
    gc.collect()
    assert build_session(settings).range(3).count() == 3  # ...the shared one still works
