"""The embedded PostgreSQL fallback, for real: wheel binaries, a private port, a private home.

The machine's own server (5432) is left alone; this one listens on a free loopback port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from lake_config.settings import Settings
from tlake import embedded_pg
from tlake.errors import StackError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_embedded_server_starts_serves_and_stops(tmp_path: Path) -> None:
    port = _free_port()
    settings = Settings(
        env="test", home=tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{port}/tlake"
    )
    assert embedded_pg.needed(settings)
    try:
        started = embedded_pg.start(settings, timeout_s=30)
        assert started.startswith("started (embedded PostgreSQL ")
        assert f"from {embedded_pg.WHEEL} " in started
        assert f"data in {(tmp_path / 'pgdata').resolve()})" in started
        assert not embedded_pg.needed(settings)

        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("create database tlake")
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("create table t (id int primary key)")
            conn.execute("insert into t values (1), (2)")
            assert conn.execute("select count(*) from t").fetchone() == (2,)

        assert embedded_pg.start(settings) == "running"
        assert embedded_pg.stop(settings)
        assert embedded_pg.needed(settings)
        assert not embedded_pg.stop(settings)

        # A restart reuses the cluster: initdb runs once, the data is still there.
        assert embedded_pg.start(settings, timeout_s=30).startswith("started")
        with psycopg.connect(settings.database_url) as conn:
            assert conn.execute("select count(*) from t").fetchone() == (2,)
    finally:
        embedded_pg.stop(settings)
    assert embedded_pg.needed(settings)


@pytest.mark.integration
def test_remote_database_is_never_replaced(tmp_path: Path) -> None:
    settings = Settings(env="test", home=tmp_path, database_url="postgresql://u@10.0.0.1:5432/x")
    assert not embedded_pg.needed(settings)
    with pytest.raises(StackError, match=r"serves loopback only, not 10\.0\.0\.1"):
        embedded_pg.start(settings)
