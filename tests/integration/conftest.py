"""Integration fixtures: a real, private stack per test session.

The session starts its own SeaweedFS and Sail on free ports, a throwaway PostgreSQL database and,
on first use, the ingest API in uvicorn — the same code paths as `tlake up` — and tears all of it
down afterwards. Nothing here is mocked. Several sessions can run side by side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lake_config.airflow import drop_airflow_database
from lake_config.registry import Registry, drop_database
from lake_config.settings import Settings, get_settings
from lake_config.spark import build_session
from lake_config.storage import ObjectStore
from tlake import stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of this session's private stack, with the stack (minus the API) running."""
    cfg = stack.private_settings(tmp_path_factory.mktemp("tlake-home"))
    # Child processes and code that calls get_settings() (Airflow tasks) see this stack.
    saved = dict(os.environ)
    os.environ.update(cfg.as_env())
    get_settings.cache_clear()
    try:
        stack.up(cfg, api=False)
        yield cfg
    finally:
        stack.down(cfg)
        drop_airflow_database(cfg)
        drop_database(cfg)
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def registry(settings: Settings) -> Iterator[Registry]:
    with Registry(settings) as reg:
        yield reg


@pytest.fixture(scope="session")
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings)


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[SparkSession]:
    session = build_session(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def api_url(settings: Settings) -> str:
    """Base URL of the real ingest API (uvicorn) serving this session's stack."""
    stack.start_api(settings)
    return settings.api_url


@pytest.fixture(scope="session")
def write_key(registry: Registry) -> str:
    return registry.create_key("mobile", scope="write")


@pytest.fixture(scope="session")
def read_key(registry: Registry) -> str:
    return registry.create_key("mobile", scope="read")
