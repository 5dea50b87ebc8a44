"""docker-compose.yml is valid, and safe to start: health checks, named volumes, no secret in it.

`docker-compose config -q` validates the file and its interpolation exactly as `up` would, without
a Docker engine (none on CI). It runs with a scrubbed environment, so only the `.env` given here
can supply the secrets. Nothing is built or started: see README "Docker Compose".
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from lake_config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ONE_SHOT = {"init"}
# Services whose processes read lake_config.settings.
TLAKE_SERVICES = {"init", "api", "airflow", "dashboard", "mqtt-bridge"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY")
REFERENCE = re.compile(r"^\$\{(?P<var>[A-Z0-9_]+)(?P<op>:\?|:-)?[^}]*\}$")
URL_PASSWORD = re.compile(r"://[^/:@]+:(?P<password>[^@]+)@")


def _compose(tmp_path: Path, env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed; it validates docker-compose.yml without a Docker "
            "engine: apt-get install -y docker-compose (`make test` does this)"
        )
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as written (anchors merged), before any interpolation."""
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _environments(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: {k: str(v) for k, v in (service.get("environment") or {}).items()}
        for name, service in compose["services"].items()
    }


def test_config_validates_with_env_built_from_example(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    done = _compose(tmp_path, env_file, "--profile", "cluster", "config", "-q")
    assert done.returncode == 0, done.stderr


def test_config_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("")
    done = _compose(tmp_path, env_file, "config", "-q")
    assert done.returncode != 0
    assert re.search(r": set [A-Z0-9_]+ in \.env$", done.stderr.strip()), done.stderr


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    missing = [
        name
        for name, service in compose["services"].items()
        if name not in ONE_SHOT and not service.get("healthcheck", {}).get("test")
    ]
    assert missing == []
    assert compose["services"]["init"]["restart"] == "no"


def test_dependencies_wait_for_health_or_completion(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert rule == {"condition": expected}, (name, dependency, rule)


def test_no_literal_secret_values(compose: dict[str, Any]) -> None:
    """Secret-named variables and passwords inside URLs are `${VAR}` references, never values;
    a real secret must also be mandatory (`:?`), so a forgotten one stops compose."""
    problems = []
    for service, env in _environments(compose).items():
        for name, value in env.items():
            for password in URL_PASSWORD.findall(value):
                if not REFERENCE.match(password):
                    problems.append(f"{service}.{name}: literal password in URL")
            if not SECRET_NAME.search(name):
                continue
            ref = REFERENCE.match(value)
            if ref is None:
                problems.append(f"{service}.{name}: literal value")
            elif not name.endswith("_ID") and ref["op"] != ":?":
                problems.append(f"{service}.{name}: {value} is not mandatory (use :?)")
    assert problems == []


def test_env_example_holds_only_placeholders_for_every_mandatory_variable(
    compose: dict[str, Any],
) -> None:
    mandatory = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE.read_text()))
    example = _env_example()
    assert mandatory, "no mandatory variable found"
    assert mandatory <= set(example), mandatory - set(example)
    assert {example[name] for name in mandatory} == {"change-me"}


def test_state_lives_in_declared_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used <= declared, used - declared
    assert {"minio-data", "postgres-data"} <= used


def test_tlake_services_run_in_production_mode(compose: dict[str, Any]) -> None:
    envs = _environments(compose)
    assert {name: envs[name].get("TLAKE_ENV") for name in TLAKE_SERVICES} == dict.fromkeys(
        TLAKE_SERVICES, "production"
    )


def test_spark_cluster_image_matches_pyspark(compose: dict[str, Any]) -> None:
    pinned = re.search(
        r"^pyspark\[connect\]==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M
    )
    assert pinned is not None
    for name in ("spark-master", "spark-worker"):
        assert compose["services"][name]["image"] == f"apache/spark:{pinned[1]}"
        assert compose["services"][name]["profiles"] == ["cluster"]


def _api_environment(tmp_path: Path, values: dict[str, str]) -> dict[str, str]:
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    done = _compose(tmp_path, env_file, "config")
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    return {k: str(v) for k, v in resolved["services"]["api"]["environment"].items()}


def test_settings_accept_the_api_environment_with_real_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = {name: secrets.token_urlsafe(24) for name in _env_example()}
    for name, value in _api_environment(tmp_path, real).items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.env == "production"
    assert settings.s3_endpoint == "http://minio:9000"
    assert settings.token_key.get_secret_value() == real["TLAKE_TOKEN_KEY"]


def test_settings_refuse_development_secrets_in_the_api_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lake_config.settings import DEV_S3_ACCESS_KEY, DEV_S3_SECRET_KEY, DEV_TOKEN_KEY

    values = {name: secrets.token_urlsafe(24) for name in _env_example()}
    values |= {
        "TLAKE_S3_ACCESS_KEY": DEV_S3_ACCESS_KEY,
        "TLAKE_S3_SECRET_KEY": DEV_S3_SECRET_KEY,
        "TLAKE_TOKEN_KEY": DEV_TOKEN_KEY,
    }
    for name, value in _api_environment(tmp_path, values).items():
        monkeypatch.setenv(name, value)
    # SettingsError is a ValueError, so pydantic reports it inside a ValidationError.
    with pytest.raises(ValidationError, match=r"development default secrets \[.+\] refused"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_image_context_keeps_the_code_and_drops_secrets_and_state() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    needed = {"requirements.txt", "pyproject.toml", "lake_config", "ingest_api", "spark_jobs"}
    assert not ignored & (needed | {"tlake", "dags", "sql"})
    assert {".env", ".venv", ".tlake", ".git"} <= ignored


def test_settings_refuse_the_env_example_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _api_environment(tmp_path, _env_example()).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=r"secrets \[.+\] refused"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_dashboard_service_runs_streamlit_from_the_api_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    dashboard = services["dashboard"]
    assert dashboard["image"] == services["api"]["image"]
    assert dashboard["build"] == services["api"]["build"]
    assert dashboard["command"][:3] == ["streamlit", "run", "dashboard/app.py"]
    assert (ROOT / "dashboard" / "app.py").is_file()
    assert "--server.port=8501" in dashboard["command"]
    assert "/_stcore/health" in " ".join(dashboard["healthcheck"]["test"])
    assert set(dashboard["depends_on"]) == {"postgres", "init"}
    assert dashboard["environment"]["TLAKE_DATABASE_URL"].startswith("postgresql://")
    # No login of its own: published on the host's loopback only.
    assert dashboard["ports"] == ["127.0.0.1:8501:8501"]


def test_mqtt_broker_uses_the_mounted_config(compose: dict[str, Any]) -> None:
    mqtt = compose["services"]["mqtt"]
    image, _, tag = mqtt["image"].partition(":")
    assert image == "eclipse-mosquitto"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin a release, not {tag!r}"
    mounts = {m.split(":")[0]: m.split(":")[1:] for m in mqtt["volumes"]}
    assert mounts["./docker/mosquitto.conf"] == ["/mosquitto/config/mosquitto.conf", "ro"]
    assert mounts["mosquitto-data"] == ["/mosquitto/data"]
    text = (ROOT / "docker" / "mosquitto.conf").read_text()
    assert re.search(r"^listener 1883 0\.0\.0\.0$", text, re.M)
    assert re.search(r"^persistence true$", text, re.M)
    assert mqtt["ports"] == ["127.0.0.1:1883:1883"]
    probe = mqtt["healthcheck"]["test"]
    assert probe[:2] == ["CMD", "mosquitto_sub"]
    # `$$` is compose's escape for a literal `$`: the broker's own $SYS topic.
    assert "$$SYS/broker/uptime" in probe


def test_mqtt_bridge_subscribes_to_telemetry_at_the_broker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bridge = services["mqtt-bridge"]
    assert bridge["image"] == services["api"]["image"]
    assert bridge["command"] == ["tlake", "mqtt-bridge", "--topic", "telemetry/#"]
    url = bridge["environment"]["TLAKE_MQTT_URL"]
    assert url == "mqtt://mqtt:1883"
    assert bridge["depends_on"]["mqtt"] == {"condition": "service_healthy"}
    assert bridge["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    # Its health check looks for an established connection to the broker's port, in hex.
    assert f":{1883:04X}'" in " ".join(bridge["healthcheck"]["test"])


def test_new_services_resolve_with_the_example_env(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    done = _compose(tmp_path, env_file, "config")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert {"dashboard", "mqtt", "mqtt-bridge"} <= set(services)
    for name in ("dashboard", "mqtt", "mqtt-bridge"):
        assert services[name]["healthcheck"]["test"], name
    assert "mosquitto-data" in yaml.safe_load(done.stdout)["volumes"]
