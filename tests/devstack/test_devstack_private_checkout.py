"""A checkout in a private folder (`mktemp -d` is 0700, so is /root): as root, Postgres runs as
a system user that cannot enter it, yet the launcher must start Postgres without opening up any
folder it does not own."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import psutil
import psycopg

from devstack import detached_pgdata, pg_install, postgres
from devstack.config import StackConfig
from devstack.ports import SERVICE_ORDER
from devstack.processes import RunAs
from devstack.stack import Stack
from mesh.db import libpq_url


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def modes(paths: list[Path]) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in paths}


def test_reachable_needs_search_permission_on_every_folder_down_to_the_path() -> None:
    private = Path(tempfile.mkdtemp())  # /tmp/tmpXXXX, mode 0700, as `mktemp -d`
    try:
        inside = private / "inside"
        inside.mkdir(mode=0o755)
        stranger = RunAs(uid=os.geteuid() + 1, gid=os.getegid() + 1)
        assert not pg_install.reachable(inside, stranger)
        private.chmod(0o711)
        assert pg_install.reachable(inside, stranger)
        inside.chmod(0o700)
        assert not pg_install.reachable(inside, stranger)
    finally:
        shutil.rmtree(private)


def test_postgres_starts_from_a_checkout_in_a_0700_folder_without_widening_it(
    tmp_path: Path,
) -> None:
    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    parent.chmod(0o700)  # whatever the umask
    checkout = parent / "checkout"
    # The checkout's own server installation, laid out as in its venv's site-packages (the
    # binaries find their libraries relative to themselves); hard links keep this fast.
    wheel = postgres.install_dir()
    site = wheel.parents[1]
    venv_site = checkout / ".venv" / "site-packages"
    install = venv_site / wheel.relative_to(site)
    trees = [wheel.relative_to(site) / part for part in pg_install.PARTS]
    trees.append(Path(f"{wheel.parent.name}.libs"))
    for tree in trees:
        shutil.copytree(site / tree, venv_site / tree, symlinks=True, copy_function=_link_or_copy)
    before = modes([parent, *parent.parents])
    config = StackConfig.for_local(
        data_dir=checkout / ".stack",
        replicas=dict.fromkeys(SERVICE_ORDER, 0),
        free_ports=True,
        environ={},
        migrate_command=None,
        with_envoy=False,
        postgres_install=install,
    )
    try:
        with Stack(config) as stack:
            url = libpq_url(stack.endpoints.database_url)
            with psycopg.connect(url, connect_timeout=5) as conn:
                assert conn.execute("SELECT current_user").fetchone() == ("elearn",)
            server = psutil.Process(stack.process("postgres").pid)
            if os.geteuid() == 0:
                assert server.uids().real != 0
                # It runs a copy it can reach, not the binary inside the closed folder.
                assert not Path(server.exe()).is_relative_to(parent)
        assert modes([parent, *parent.parents]) == before
    finally:
        # The detached data home is swept once its stack's data dir is gone; drop it now.
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(detached_pgdata.path_for(config.data_dir).parent)
