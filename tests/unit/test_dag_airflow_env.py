"""The Airflow environment of the lake, built from Settings without importing Airflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lake_config.airflow import (
    DAGS_FOLDER,
    REPO_ROOT,
    airflow_database_url,
    airflow_env,
    spark_connect_connection,
)
from lake_config.errors import SettingsError
from lake_config.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        home=tmp_path / "state",
        database_url="postgresql://lake:s%40cret@db.internal:6543/tlake_x?sslmode=require",
        s3_endpoint="http://127.0.0.1:9333",
        spark_remote="sc://127.0.0.1:15002",
        spark_master="spark://master:7077",
        bucket="lake-x",
    )


def test_airflow_lives_under_the_lake_home_and_reads_our_dags(settings: Settings) -> None:
    env = airflow_env(settings)

    assert env["AIRFLOW_HOME"] == str((settings.home / "airflow").resolve())
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_FOLDER) == str(REPO_ROOT / "dags")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS"] == "False"
    assert env["PYTHONPATH"].split(":")[0] == str(REPO_ROOT)


def test_metadata_database_sits_next_to_the_registry(settings: Settings) -> None:
    env = airflow_env(settings)

    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://lake:s%40cret@db.internal:6543/tlake_x_airflow?sslmode=require"
    )
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+psycopg://")
    assert airflow_database_url(settings, driver="").startswith("postgresql://lake:")


def test_settings_travel_to_the_child_unchanged(settings: Settings) -> None:
    env = settings.as_env()

    rebuilt = Settings(**{k.removeprefix("TLAKE_").lower(): v for k, v in env.items()})
    assert rebuilt == settings.model_copy(update={"home": settings.home.resolve()})
    assert env["TLAKE_S3_SECRET_KEY"] == settings.s3_secret_key.get_secret_value()
    assert Path(env["TLAKE_HOME"]).is_absolute()


def test_connections_come_from_the_environment(settings: Settings) -> None:
    env = airflow_env(settings)

    assert json.loads(env["AIRFLOW_CONN_SPARK_CONNECT"]) == {
        "conn_type": "spark_connect",
        "host": "127.0.0.1",
        "port": 15002,
    }
    assert json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"]) == {
        "conn_type": "spark",
        "host": "spark://master:7077",
    }


def test_spark_connect_parameters_map_to_connection_fields(settings: Settings) -> None:
    remote = settings.model_copy(
        update={"spark_remote": "sc://spark.internal:443/;use_ssl=true;token=abc%2F1;user_id=etl"}
    )

    assert spark_connect_connection(remote) == {
        "conn_type": "spark_connect",
        "host": "spark.internal",
        "port": 443,
        "login": "etl",
        "password": "abc/1",
        "extra": {"use_ssl": True},
    }


def test_a_spark_connect_parameter_airflow_cannot_carry_is_refused(settings: Settings) -> None:
    remote = settings.model_copy(update={"spark_remote": "sc://h:15002/;session_id=42"})

    with pytest.raises(SettingsError, match=r"parameter 'session_id' cannot be carried"):
        spark_connect_connection(remote)
