"""Airflow for Telemetry Lake: its environment, its metadata database, one in-process DAG run.

Airflow reads its configuration once, when `airflow` is first imported: `AIRFLOW_HOME`, the DAGs
folder and the metadata database are fixed from then on, and a `~/airflow` with SQLite is created
if nothing says otherwise. So nothing here imports Airflow into the calling process.
`airflow_env` builds the variables, and every step that needs Airflow runs in a child process
started with them (`airflow db migrate`, `airflow standalone`, `python -m lake_config.airflow`).
A pytest session, the CLI or `make demo` can then never meet an Airflow configured earlier by an
unrelated import, the caller's warning filters do not turn Airflow's own deprecations into test
errors, and a child's exit code and log say plainly what happened.

`dag.test()` (Airflow 3) runs the tasks inside that child, with no scheduler or executor, but it
still records the DAG run, task instances, XComs and the serialized DAG in the metadata database,
so the database must be migrated first. It is a PostgreSQL database on the registry's server,
named `<registry database>_airflow`; `prepare_airflow` creates and migrates it once, and after
that only compares a stamp with the database (one query).

Connections come from `AIRFLOW_CONN_*` variables, so defining them writes nothing:
`spark_connect` is `settings.spark_remote` (for `@task.pyspark` or hooks), `spark_default` is
`settings.spark_master` (for the spark-submit DAG).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql

from lake_config.errors import OrchestrationError, SettingsError
from lake_config.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO_ROOT / "dags"
PIPELINE_DAG_ID = "telemetry_lake"
SPARK_CONNECT_CONN_ID = "spark_connect"
SPARK_SUBMIT_CONN_ID = "spark_default"
UI_HOST = "127.0.0.1"
UI_PORT = 8080

_RESULT_PREFIX = "TLAKE_AIRFLOW_RESULT "
_STAMP_FILE = "tlake-migrated.json"


@dataclass(frozen=True)
class DagRunResult:
    """The outcome of one `dag.test()` run, as the child process reported it."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str | None]
    xcoms: dict[str, Any]
    seconds: float
    log_path: Path

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


@dataclass(frozen=True)
class DagBagReport:
    """What Airflow's DagBag found in `dags/`, as the DAG processor would see it."""

    import_errors: dict[str, str]
    dags: dict[str, dict[str, Any]]


# --- environment -------------------------------------------------------------------------------


def airflow_home(settings: Settings) -> Path:
    """`<settings.home>/airflow`, absolute, so a child started elsewhere finds the same one."""
    return (settings.home / "airflow").resolve()


def airflow_database_name(settings: Settings) -> str:
    return f"{settings.database_name}_airflow"


def airflow_database_url(settings: Settings, *, driver: str = "psycopg2") -> str:
    """The metadata database URL: the registry's server and credentials, its own database.

    `driver=""` gives the plain `postgresql://` form that psycopg (used here) accepts.
    """
    parts = urlsplit(settings.database_url)
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return parts._replace(scheme=scheme, path=f"/{airflow_database_name(settings)}").geturl()


def spark_connect_connection(settings: Settings) -> dict[str, Any]:
    """The `spark_connect` connection (Airflow's JSON form) for `settings.spark_remote`.

    The provider's SparkConnectHook rebuilds the URL from host, port, login (user_id), password
    (token) and the `use_ssl` extra, and refuses a path; any other URL parameter is refused here
    rather than silently dropped.
    """
    if not settings.spark_remote:  # classic JVM engine: the connection is unused
        return {"conn_type": "spark_connect", "host": "", "description": "TLAKE_SPARK_REMOTE empty"}
    url, _, params = settings.spark_remote.partition(";")
    parts = urlsplit(url.replace("sc://", "http://", 1))
    if parts.path not in ("", "/"):
        raise SettingsError(f"TLAKE_SPARK_REMOTE {url!r}: a Spark Connect URL has no path")
    conn: dict[str, Any] = {"conn_type": "spark_connect", "host": parts.hostname or "127.0.0.1"}
    if parts.port:
        conn["port"] = parts.port
    for key, value in parse_qsl(params.replace(";", "&"), keep_blank_values=True):
        if key == "user_id":
            conn["login"] = unquote(value)
        elif key == "token":
            conn["password"] = unquote(value)
        elif key == "use_ssl":
            conn["extra"] = {"use_ssl": value.lower() == "true"}
        else:
            raise SettingsError(
                f"TLAKE_SPARK_REMOTE parameter {key!r} cannot be carried by an Airflow "
                "spark_connect connection (only user_id, token and use_ssl can)"
            )
    return conn


def airflow_env(settings: Settings) -> dict[str, str]:
    """Every variable an Airflow process of this lake needs; set them before importing Airflow.

    Includes the `TLAKE_*` settings, so tasks calling `get_settings()` inside Airflow see the same
    lake as the caller, and `PYTHONPATH`, so they import `spark_jobs` from this checkout.
    """
    home = airflow_home(settings)
    return {
        **settings.as_env(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_database_url(settings, driver="psycopg2"),
        # Airflow 3 also opens an async engine, by default with asyncpg, which we do not install;
        # psycopg 3 (the registry's driver) is async-capable.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": airflow_database_url(
            settings, driver="psycopg"
        ),
        # `make airflow`: the UI and the Execution API stay on loopback, like the rest of the stack.
        "AIRFLOW__API__HOST": UI_HOST,
        "AIRFLOW__API__PORT": str(UI_PORT),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{UI_HOST}:{UI_PORT}/execution/",
        f"AIRFLOW_CONN_{SPARK_CONNECT_CONN_ID.upper()}": json.dumps(
            spark_connect_connection(settings)
        ),
        f"AIRFLOW_CONN_{SPARK_SUBMIT_CONN_ID.upper()}": json.dumps(
            {"conn_type": "spark", "host": settings.spark_master}
        ),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def child_env(settings: Settings) -> dict[str, str]:
    """The caller's environment with `airflow_env` laid over it (ours win on the same keys).

    This interpreter's bin directory leads PATH: `airflow standalone` starts its components as
    `airflow ...` commands, which must be this venv's even when it is not activated.
    """
    path = os.pathsep.join(
        p for p in (str(Path(sys.executable).parent), os.environ.get("PATH", "")) if p
    )
    return {**os.environ, **airflow_env(settings), "PATH": path}


# --- metadata database -------------------------------------------------------------------------


def _connect_admin(settings: Settings) -> psycopg.Connection[Any]:
    admin = urlsplit(settings.database_url)._replace(path="/postgres").geturl()
    return psycopg.connect(admin, autocommit=True, connect_timeout=10)


def ensure_airflow_database(settings: Settings) -> bool:
    """Create `<registry database>_airflow` if it is missing; True when it was created now."""
    name = airflow_database_name(settings)
    try:
        with _connect_admin(settings) as conn:
            if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                return False
            try:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:  # another process created it meanwhile
                return False
            return True
    except psycopg.Error as exc:
        raise OrchestrationError(f"cannot create the Airflow database {name!r}: {exc}") from exc


def drop_airflow_database(settings: Settings) -> None:
    """Drop the Airflow database (test stacks use a throwaway one) and forget its stamp."""
    name = airflow_database_name(settings)
    try:
        with _connect_admin(settings) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
    except psycopg.Error as exc:
        raise OrchestrationError(f"cannot drop the Airflow database {name!r}: {exc}") from exc
    (airflow_home(settings) / _STAMP_FILE).unlink(missing_ok=True)


def _current_revision(settings: Settings) -> str | None:
    try:
        with psycopg.connect(airflow_database_url(settings, driver=""), connect_timeout=10) as c:
            if c.execute("select to_regclass('alembic_version')").fetchone() == (None,):
                return None
            row = c.execute("select version_num from alembic_version").fetchone()
    except psycopg.Error as exc:
        raise OrchestrationError(f"cannot read the Airflow database: {exc}") from exc
    return row[0] if row else None


def _stamp(settings: Settings, revision: str | None) -> dict[str, str | None]:
    return {
        "airflow": version("apache-airflow-core"),
        "database": airflow_database_url(settings, driver="").rsplit("@", 1)[-1],
        "revision": revision,
    }


def is_migrated(settings: Settings) -> bool:
    """True when the database is at the revision this Airflow version migrated it to.

    The stamp is written after a successful `airflow db migrate`; a dropped or recreated database,
    or another Airflow version, no longer matches it, and the next `prepare_airflow` migrates.
    """
    try:
        stamp = json.loads((airflow_home(settings) / _STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    current = _current_revision(settings)
    return current is not None and stamp == _stamp(settings, current)


def migrate(settings: Settings, *, timeout_s: float = 600) -> float:
    """Run `airflow db migrate` in a child and stamp the result; returns the seconds it took."""
    started = time.monotonic()
    argv = [sys.executable, "-m", "airflow", "db", "migrate"]
    _run_child(settings, argv, "db-migrate", timeout_s)
    stamp = _stamp(settings, _current_revision(settings))
    (airflow_home(settings) / _STAMP_FILE).write_text(json.dumps(stamp))
    return time.monotonic() - started


def check_versions() -> None:
    """Refuse the dependency versions known to break Airflow 3.2's Execution API.

    With fastapi >= 0.156.1 the API cannot be built (`TIStateUpdate` uses a callable
    `Field(discriminator=...)`: "needs a discriminator field"), so every task fails before it
    starts, in `dag.test()` as in `airflow standalone`. Airflow 3.3 caps fastapi itself.
    """
    from packaging.version import Version

    try:
        core, fastapi = Version(version("apache-airflow-core")), Version(version("fastapi"))
    except PackageNotFoundError as exc:
        raise OrchestrationError(f"Airflow is not installed: {exc}") from exc
    if core.release[:2] == (3, 2) and fastapi >= Version("0.156.1"):
        raise OrchestrationError(
            f"fastapi {fastapi} breaks Airflow {core}'s Execution API (every task fails with "
            "'needs a discriminator field'); pin fastapi==0.156.0 in requirements.txt"
        )


def prepare_airflow(settings: Settings) -> dict[str, str]:
    """Make Airflow usable for this lake; returns the environment to start Airflow with.

    Creates `AIRFLOW_HOME` and the metadata database and migrates it unless it already is (a
    stamp check, one query). Safe and cheap to call before every run.
    """
    check_versions()
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    ensure_airflow_database(settings)
    if not is_migrated(settings):
        migrate(settings)
    return child_env(settings)


# --- running Airflow in a child ----------------------------------------------------------------


def _run_child(settings: Settings, argv: list[str], name: str, timeout_s: float) -> Path:
    """Run `argv` with the Airflow environment; returns the file holding its whole output."""
    logs = airflow_home(settings) / "logs" / "tlake"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    with log_path.open("w") as log:
        try:
            done = subprocess.run(
                argv,
                env=child_env(settings),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise OrchestrationError(
                f"{name} did not finish within {timeout_s:.0f} s; log: {log_path}"
            ) from exc
    if done.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise OrchestrationError(f"{name} exited with {done.returncode}; log: {log_path}\n{tail}")
    return log_path


def _child_result(log_path: Path, name: str) -> dict[str, Any]:
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        if line.startswith(_RESULT_PREFIX):
            return dict(json.loads(line[len(_RESULT_PREFIX) :]))
    raise OrchestrationError(f"{name} printed no result; log: {log_path}")


def run_dag(
    settings: Settings,
    dag_id: str = PIPELINE_DAG_ID,
    *,
    conf: dict[str, Any] | None = None,
    retries: int | None = None,
    timeout_s: float = 1800,
) -> DagRunResult:
    """Run one DAG run with `dag.test()` in a child process; the tasks run in that process.

    Prepares Airflow first (one query when already prepared). `retries` overrides every task's
    retries for this run only, so a test of a failure path need not sit through the backoff.
    A DAG run that failed is returned (`state == "failed"`); only a child that could not run
    the DAG at all raises OrchestrationError.
    """
    prepare_airflow(settings)
    started = time.monotonic()
    request = {"dag_id": dag_id, "conf": conf or {}, "retries": retries}
    argv = [sys.executable, "-m", "lake_config.airflow", "test", json.dumps(request)]
    log_path = _run_child(settings, argv, f"dag-test-{dag_id}", timeout_s)
    result = _child_result(log_path, "dag.test")
    return DagRunResult(
        dag_id=dag_id,
        run_id=result["run_id"],
        state=result["state"],
        task_states=result["task_states"],
        xcoms=result["xcoms"],
        seconds=time.monotonic() - started,
        log_path=log_path,
    )


def check_dags(settings: Settings, *, timeout_s: float = 300) -> DagBagReport:
    """Load `dags/` into a DagBag in a child and describe it; no database is touched."""
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "lake_config.airflow", "check"]
    result = _child_result(_run_child(settings, argv, "dagbag", timeout_s), "DagBag")
    return DagBagReport(import_errors=result["import_errors"], dags=result["dags"])


def run_standalone(settings: Settings) -> NoReturn:
    """Replace this process by `airflow standalone` (scheduler, API server and UI) for the lake."""
    env = prepare_airflow(settings)
    os.chdir(REPO_ROOT)
    os.execve(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)


# --- the child side: runs with airflow_env already in os.environ ------------------------------


def _plain(state: Any) -> str | None:
    """A state enum (or None, for a task that never ran) as its plain string value."""
    return None if state is None else str(getattr(state, "value", state))


def _emit(payload: dict[str, Any]) -> None:
    print(_RESULT_PREFIX + json.dumps(payload, default=str), flush=True)


def _describe(dag: Any) -> dict[str, Any]:
    tasks = dag.topological_sort()
    return {
        "fileloc": dag.fileloc,
        "schedule": str(dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "tasks": [t.task_id for t in tasks],
        "operators": {t.task_id: type(t).__name__ for t in tasks},
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in tasks},
        "trigger_rules": {t.task_id: str(t.trigger_rule.value) for t in tasks},
        "retries": {t.task_id: t.retries for t in tasks},
        "retry_delay_s": {t.task_id: t.retry_delay.total_seconds() for t in tasks},
        "retry_exponential_backoff": {t.task_id: t.retry_exponential_backoff for t in tasks},
        "on_failure_callback": {t.task_id: bool(t.on_failure_callback) for t in tasks},
        "packages": {t.task_id: t.packages for t in tasks if hasattr(t, "packages")},
    }


def _load_bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)


def _child_check() -> None:
    bag = _load_bag()
    _emit(
        {
            "import_errors": dict(bag.import_errors),
            "dags": {dag_id: _describe(dag) for dag_id, dag in bag.dags.items()},
        }
    )


def _reuse_execution_api() -> None:
    """Build the in-process Execution API once per `dag.test()` instead of once per task.

    Airflow 3.2 builds a new FastAPI app for every task it runs in-process (about 3 s each here)
    and drops it at once; with svcs >= 26.2 dropping it also tears its service registry down
    while the task's requests still arrive ("'State' object has no attribute 'svcs_registry'").
    Keeping one alive fixes both. Only this child is affected; an Airflow without this function
    is left alone.
    """
    import functools

    from airflow.sdk.execution_time import supervisor

    factory = getattr(supervisor, "in_process_api_server", None)
    if factory is not None and not hasattr(factory, "cache_info"):
        supervisor.in_process_api_server = functools.cache(factory)


def _hand_the_exception_to_failure_callbacks() -> None:
    """Put the task's error into the callbacks' context, as a worker does, under `dag.test()`.

    Airflow 3.2's task runner sets `context["exception"]` before `finalize` runs the failure
    callbacks, but the in-process runner of `dag.test()` calls `finalize` without it, so an
    alert (lake_config.alerts) would lose the error. Only this child is affected.
    """
    import functools

    from airflow.sdk.execution_time import task_runner

    finalize = task_runner.finalize
    if hasattr(finalize, "__wrapped__"):
        return

    @functools.wraps(finalize)
    def with_exception(ti: Any, state: Any, context: Any, log: Any, error: Any = None) -> Any:
        if error is not None and context.get("exception") is None:
            context["exception"] = error
        return finalize(ti, state, context, log, error)

    task_runner.finalize = with_exception


def _child_test(dag_id: str, conf: dict[str, Any], retries: int | None) -> None:
    _reuse_execution_api()
    _hand_the_exception_to_failure_callbacks()
    bag = _load_bag()
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise SystemExit(f"no DAG {dag_id!r} in {DAGS_FOLDER}")
    dag = bag.dags[dag_id]
    if retries is not None:
        for task in dag.tasks:
            task.retries = retries
    dag_run = dag.test(run_conf=conf or None)
    tis = dag_run.get_task_instances()
    _emit(
        {
            "run_id": dag_run.run_id,
            "state": _plain(dag_run.state),
            "task_states": {ti.task_id: _plain(ti.state) for ti in tis},
            "xcoms": {
                ti.task_id: ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
                for ti in tis
                if ti.state == "success"
            },
        }
    )


def main(argv: list[str]) -> None:
    """`python -m lake_config.airflow check` or `... test '{"dag_id": ..., "conf": {...}}'`."""
    if "AIRFLOW_HOME" not in os.environ:
        raise SystemExit("start this through lake_config.airflow (run_dag, check_dags)")
    if argv == ["check"]:
        _child_check()
    elif len(argv) == 2 and argv[0] == "test":
        request = json.loads(argv[1])
        _child_test(request["dag_id"], request.get("conf") or {}, request.get("retries"))
    else:
        raise SystemExit(main.__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
