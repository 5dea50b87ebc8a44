"""DuckDB over the lake: a third, independent reader of our Delta tables.

`connect(settings)` gives an in-memory DuckDB connection that reads Delta tables from the
lake bucket with `delta_scan('s3://...')` (`scan(settings, table)` spells that for a table
declaration). The `delta`, `httpfs` and `aws` extensions come from the `duckdb-ext-*` wheels
pinned in requirements.txt, loaded from site-packages: DuckDB never downloads an extension
(this machine cannot reach extensions.duckdb.org, and a pinned wheel is reproducible anyway).
Those wheels exist for DuckDB 1.4.4, which is why duckdb is pinned there.

    con = duck.connect(settings)
    con.sql(f"select count(*) from {duck.scan(settings, SILVER_DEVICE_EVENTS)}").fetchone()
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import duckdb_ext

from lake_config.errors import StorageError
from lake_config.settings import Settings
from lake_config.storage import lake_uri
from lake_config.tables import Table

EXTENSIONS = ("httpfs", "aws", "delta")


def extension_directory() -> Path:
    """Where the `duckdb-ext-*` wheels put their extension binaries."""
    return Path(next(iter(duckdb_ext.__path__))) / "extensions"


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection able to `delta_scan` the lake bucket."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute("SET extension_directory = ?", [str(extension_directory())])
    for name in EXTENSIONS:
        try:
            con.load_extension(name)
        except duckdb.Error as exc:
            con.close()
            raise StorageError(
                f"DuckDB extension {name!r} is not installed: pip install duckdb-ext-{name}"
            ) from exc
    endpoint = urlsplit(settings.s3_endpoint)
    con.execute(
        """
        CREATE SECRET lake (
            TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?
        )
        """,
        [
            settings.s3_access_key,
            settings.s3_secret_key.get_secret_value(),
            settings.s3_region,
            endpoint.netloc,
            endpoint.scheme == "https",
        ],
    )
    return con


def scan(settings: Settings, table: Table) -> str:
    """`delta_scan('s3://<bucket>/<path>')` of a declared table, for a FROM clause."""
    return f"delta_scan('{lake_uri(settings, table.path)}')"
