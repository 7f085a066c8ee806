"""The live benchmarks' receivers as Go processes (tools/livercv, `make tools-livercv`).

Same streams, same measures and the same result as bench.live_receivers (whose `summarize`
merges both), at a fraction of the CPU: the Python receivers parse every delivery with
protobuf in Python, 10,000 a second in the 1,000 x 10/s run, and on a 2-core box that CPU is
taken from the service being measured. `--receiver go` picks these; without the binary the
bench stays on the Python ones. No resume: the loss run keeps the Python receivers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from bench.histogram import clamp_us, encode, new_histogram
from bench.live_receivers import Receivers, Tally, summarize

BINARY = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "livercv"


def go_receiver() -> Path | None:
    """The built receiver, if any (`make tools-livercv`)."""
    if BINARY.is_file():
        return BINARY
    found = shutil.which("livercv")
    return Path(found) if found else None


def _tally(raw: dict[str, Any]) -> Tally:
    def hist(values: list[int] | None) -> str:
        h = new_histogram()
        for v in values or ():
            h.record_value(clamp_us(v))
        return encode(h)

    return Tally(
        deliveries=raw["deliveries"],
        gaps=raw["gaps"],
        dropped=raw["dropped"],
        errors=raw.get("errors") or {},
        duplicates=raw["duplicates"],
        streams=raw["streams"],
        cpu_seconds=raw["cpu_seconds"],
        histogram=hist(raw.get("latency_us")),
        to_publish=hist(raw.get("publish_us")),
        by_target={int(k): hist(v) for k, v in (raw.get("by_target_us") or {}).items()},
    )


class GoReceivers:
    """P livercv processes sharing `streams` over `channels` connections each; the interface
    of bench.live_receivers.Receivers."""

    kind = "go"

    def __init__(
        self,
        targets: list[str],
        streams: list[tuple[str, str]],
        *,
        processes: int,
        channels: int,
        seconds: float,
        binary: Path,
    ) -> None:
        self._binary = binary
        self._plans = [
            {
                "targets": targets,
                "streams": [list(s) for s in streams[p::processes]],
                "channels": channels,
                "seconds": seconds,
            }
            for p in range(processes)
        ]
        self._procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        for plan in self._plans:
            proc = subprocess.Popen(
                [str(self._binary)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(plan) + "\n")
            proc.stdin.flush()
            self._procs.append(proc)

    def wait_open(self, timeout: float = 180.0) -> int:
        opened = 0
        for proc in self._procs:
            assert proc.stdout is not None
            line = _readline(proc, timeout)
            if not line.startswith("ready "):
                raise RuntimeError(f"livercv did not get ready: {line!r}")
            opened += int(line.split()[1])
        return opened

    def finish(self, timeout: float = 300.0) -> dict[str, Any]:
        """Call once the sender is done: the receivers stop after a quiet second."""
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        tallies = []
        for proc in self._procs:
            line = _readline(proc, timeout)
            tallies.append(_tally(json.loads(line)))
            proc.wait(timeout=10)
        return summarize(tallies)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One stdout line, or an error after `timeout` (the process is killed)."""
    assert proc.stdout is not None
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not out or not out[0]:
        proc.kill()
        raise RuntimeError(f"livercv (pid {proc.pid}) gave no answer within {timeout:.0f} s")
    return out[0]


def make_receivers(
    kind: str,
    targets: list[str],
    streams: list[tuple[str, str]],
    *,
    processes: int,
    channels: int,
    seconds: float,
    resume: bool = False,
) -> Receivers | GoReceivers:
    """`kind` "go" when the binary is built and no resume is needed, else the Python ones."""
    binary = go_receiver() if kind == "go" and not resume else None
    if binary is not None:
        return GoReceivers(
            targets, streams, processes=processes, channels=channels, seconds=seconds,
            binary=binary,
        )  # fmt: skip
    return Receivers(
        targets, streams, processes=processes, channels=channels, seconds=seconds, resume=resume
    )
