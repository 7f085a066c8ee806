"""Postgres data dirs kept outside a test's temp dir when the tests run as root.

As root, Postgres runs as another user, which must be able to traverse every directory above
its data dir. pytest's temp root (/tmp/pytest-of-root) is reset to mode 0700 whenever *any*
pytest session starts, so a concurrent run would lock the postgres user out of a data dir
below it in mid-run (initdb then fails with "Permission denied"). Test stacks therefore keep
their Postgres data under /tmp/elearn-devstack-pg/<digest of the stack's data dir>/data, which
nothing resets. Each such home records its stack's data dir in `owner`; homes whose owner is
gone (pytest deletes old temp dirs) and whose postmaster is not running are swept on the next
start, so they do not pile up. `make up` as root puts its data here too when the postgres user
cannot reach the checkout (a 0700 parent), and devstack.pg_install keeps its copies of the
server binaries here, each recording its source as owner.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import psutil

from devstack.processes import StackError

ROOT_DIR = Path(tempfile.gettempdir()) / "elearn-devstack-pg"


def path_for(stack_data_dir: Path) -> Path:
    """The detached Postgres data dir of a stack (a pure function of its data dir)."""
    digest = hashlib.sha256(str(stack_data_dir.resolve()).encode()).hexdigest()[:16]
    return ROOT_DIR / digest / "data"


def is_detached(pgdata: Path) -> bool:
    return pgdata.parent.parent == ROOT_DIR


def ensure_root() -> None:
    """Create ROOT_DIR: ours, searchable but not listable by others."""
    ROOT_DIR.mkdir(mode=0o711, exist_ok=True)
    # /tmp is shared: refuse a directory someone else planted there.
    info = ROOT_DIR.lstat()
    if ROOT_DIR.is_symlink() or info.st_uid != os.geteuid():
        raise StackError(f"{ROOT_DIR} is not a directory owned by this user; remove it")
    ROOT_DIR.chmod(0o711)


def adopt(pgdata: Path, stack_data_dir: Path) -> None:
    """Create the home of `pgdata`, record its owner, and sweep homes of vanished stacks."""
    ensure_root()
    home = pgdata.parent
    home.mkdir(mode=0o711, exist_ok=True)
    (home / "owner").write_text(str(stack_data_dir.resolve()) + "\n")
    _sweep(keep=home)


def _postmaster_running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return False


def _sweep(keep: Path) -> None:
    for home in ROOT_DIR.iterdir():
        owner_file = home / "owner"
        # A home without an owner file may be another process's, being created right now.
        if home == keep or not owner_file.exists():
            continue
        if Path(owner_file.read_text().strip()).exists() or _postmaster_running(home / "data"):
            continue
        shutil.rmtree(home, ignore_errors=True)
