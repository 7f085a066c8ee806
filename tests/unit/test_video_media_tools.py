"""The wheel's static ffmpeg/ffprobe as the pipeline runs them: MPEG-TS input (an uploaded .ts,
our own HLS segments) must probe, and encoder children must run at the lowest CPU priority, in
a scheduling group of their own, and die with their worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from svc_course.media_probe import FFMPEG, MEDIA_ENV, lower_priority, probe
from svc_course.settings import TranscoderSettings
from svc_course.testclip import make_clip
from tests.mesh.polling import eventually


def mpegts_clip(tmp_path: Path) -> Path:
    mp4 = make_clip(tmp_path / "clip.mp4", seconds=2.0, size="320x180")
    ts = tmp_path / "clip.ts"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-i", str(mp4), "-c", "copy", "-f", "mpegts", str(ts)],
        check=True,
        timeout=60,
        env=MEDIA_ENV,
    )
    return ts


def test_video_probe_reads_mpegts_with_the_wheels_static_ffprobe(tmp_path: Path) -> None:
    info = asyncio.run(probe(str(mpegts_clip(tmp_path)), timeout_seconds=60))
    assert abs(info.duration_seconds - 2.0) < 0.2
    assert (info.width, info.height) == (320, 180)
    assert info.has_audio


def test_video_encoder_children_run_niced_in_the_idle_class() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.sched_getscheduler(0), os.nice(0))"],
        preexec_fn=lambda: lower_priority(19, True),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert out == [str(os.SCHED_IDLE), "19"]


def test_video_encoder_children_keep_to_the_cpus_they_are_given() -> None:
    last = max(os.sched_getaffinity(0))
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        preexec_fn=lambda: lower_priority(19, True, cpus=frozenset({last})),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    assert out == f"[{last}]"


def test_video_encoder_leaves_the_first_cpus_to_the_api_when_there_are_more() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    settings = TranscoderSettings(api_cpus=1)
    if len(cpus) > 1:
        assert settings.encoder_cpus() == frozenset(cpus[1:])
    else:
        assert settings.encoder_cpus() is None  # one CPU: nothing to keep free, run there
    assert TranscoderSettings(api_cpus=0).encoder_cpus() is None
    assert TranscoderSettings(api_cpus=len(cpus)).encoder_cpus() is None


def test_video_encoder_children_get_an_autogroup_of_their_own_niced_to_19() -> None:
    report = (
        "import os; from pathlib import Path; p = Path('/proc/self/autogroup'); "
        "print(os.getsid(0) == os.getpid(), p.read_text().split()[-1] if p.exists() else '-')"
    )
    out = subprocess.run(
        [sys.executable, "-c", report],
        preexec_fn=lambda: lower_priority(19, True),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    if Path("/proc/self/autogroup").exists():
        # A session of its own is a scheduling group of its own, niced like the encoder.
        assert out == ["True", "19"]
    else:
        assert out == ["False", "-"]  # no autogroups: the worker's session, nice and class only


def test_video_encoder_child_dies_with_its_worker_though_outside_its_process_group() -> None:
    worker = subprocess.Popen(
        [
            sys.executable, "-c",
            "import subprocess, sys, time; from svc_course.media_probe import lower_priority; "
            "c = subprocess.Popen(['sleep', '60'], preexec_fn=lambda: lower_priority(19, True)); "
            "print(c.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    assert worker.stdout is not None
    child = int(worker.stdout.readline())
    try:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

        async def gone() -> bool:
            try:
                # A zombie until init reaps it is gone too.
                return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        asyncio.run(eventually(gone, within=10))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
