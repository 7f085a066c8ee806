"""Make a test clip with ffmpeg's own test sources (no media files in git):

    python -m svc_course.testclip clip.mp4 --seconds 10 --size 1280x720

A moving test pattern with a timecode and a 1 kHz tone, H.264/AAC in MP4.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from svc_course.media_probe import FFMPEG, MEDIA_ENV


def make_clip(
    path: Path,
    *,
    seconds: float = 3.0,
    size: str = "640x360",
    rate: int = 25,
    faststart: bool = False,
) -> Path:
    argv = [
        FFMPEG, "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=44100:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-shortest",
    ]  # fmt: skip
    if faststart:
        argv += ["-movflags", "+faststart"]
    subprocess.run([*argv, str(path)], check=True, timeout=max(60.0, seconds * 5), env=MEDIA_ENV)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--rate", type=int, default=25)
    args = parser.parse_args(argv)
    make_clip(args.output, seconds=args.seconds, size=args.size, rate=args.rate)
    print(f"{args.output}: {args.output.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
