"""The wheel's static ffmpeg/ffprobe as the pipeline runs them: MPEG-TS input (an uploaded .ts,
our own HLS segments) must probe, and encoder children must run at the lowest CPU priority."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from svc_course.media_probe import FFMPEG, MEDIA_ENV, lower_priority, probe
from svc_course.testclip import make_clip


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
