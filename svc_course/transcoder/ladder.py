"""The HLS ladder and the ffmpeg command lines that produce it (pure, unit-testable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rung:
    name: str
    height: int
    video_bps: int


LADDER = (
    Rung("360p", 360, 800_000),
    Rung("720p", 720, 2_800_000),
    Rung("1080p", 1080, 5_000_000),
)
AUDIO_BPS = 96_000


def rungs_for(source_height: int) -> list[Rung]:
    """Every rung not above the source; a source smaller than the lowest gets one rung at its
    own height (even, as H.264 needs)."""
    fitting = [r for r in LADDER if r.height <= source_height]
    if fitting:
        return fitting
    height = max(2, source_height - source_height % 2)
    return [Rung(f"{height}p", height, LADDER[0].video_bps)]


def width_for(height: int, source_width: int, source_height: int) -> int:
    width = round(source_width * height / source_height) if source_height else height * 16 // 9
    return max(2, width - width % 2)


def hls_command(
    ffmpeg: str,
    source: str,
    out_dir: Path,
    rungs: list[Rung],
    *,
    has_audio: bool,
    threads: int,
    segment_seconds: int,
) -> list[str]:
    """One ffmpeg run for the whole ladder: decode once, scale per rung, one variant playlist
    per rung plus master.m3u8; `-progress pipe:1` reports out_time_us for the percentage."""
    split = "".join(f"[v{i}]" for i in range(len(rungs)))
    scales = ";".join(f"[v{i}]scale=-2:{r.height}[o{i}]" for i, r in enumerate(rungs))
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y",
        "-threads", str(threads), "-filter_threads", str(threads),
        "-i", source,
        "-filter_complex", f"[0:v]split={len(rungs)}{split};{scales}",
    ]  # fmt: skip
    stream_map = []
    for i, rung in enumerate(rungs):
        argv += ["-map", f"[o{i}]"]
        if has_audio:
            argv += ["-map", "0:a:0"]
        argv += [
            f"-b:v:{i}", str(rung.video_bps),
            f"-maxrate:v:{i}", str(rung.video_bps * 107 // 100),
            f"-bufsize:v:{i}", str(rung.video_bps * 3 // 2),
        ]  # fmt: skip
        stream_map.append(
            f"v:{i},a:{i},name:{rung.name}" if has_audio else f"v:{i},name:{rung.name}"
        )
    argv += [
        # The output's own cap: libx264 otherwise starts 1.5 threads per core whatever the
        # input's -threads says.
        "-threads", str(threads),
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
        # Keyframes on segment boundaries, so every segment starts cleanly.
        "-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})", "-sc_threshold", "0",
    ]  # fmt: skip
    if has_audio:
        argv += ["-c:a", "aac", "-b:a", str(AUDIO_BPS), "-ac", "2"]
    argv += [
        "-f", "hls", "-hls_time", str(segment_seconds), "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(out_dir / "%v" / "seg_%05d.ts"),
        "-master_pl_name", "master.m3u8",
        "-var_stream_map", " ".join(stream_map),
        "-progress", "pipe:1", "-stats_period", "1",
        str(out_dir / "%v" / "index.m3u8"),
    ]  # fmt: skip
    return argv


def poster_command(
    ffmpeg: str, source: str, out: Path, at_seconds: float, height: int
) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-threads", "1",
        "-ss", f"{at_seconds:.2f}", "-i", source,
        "-frames:v", "1", "-vf", f"scale=-2:{min(height, 720)}", "-q:v", "4", str(out),
    ]  # fmt: skip
