"""`python -m devstack up|start|stop|status` (behind `make up`, `make start`, `make stop`,
`make status`).

- up: run the whole stack in the foreground; Ctrl-C or SIGTERM stops it all and exits 0.
- start: the same in a detached supervisor (its own session, output in
  <data-dir>/logs/supervisor.log); returns 0 once everything is SERVING.
- stop: stop the supervisor and make sure none of its processes remains; 0 even if none ran.
- status: what runs, with pids and ports.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from devstack.config import DEFAULT_DATA_DIR, ROOT, StackConfig, parse_replicas
from devstack.processes import (
    Deadline,
    StackAborted,
    StackError,
    alive,
    kill_group,
    tail,
    wait_gone,
    wait_until,
)
from devstack.runstate import ENDPOINTS_FILE, Endpoints, SupervisorLock, read_pids
from devstack.stack import Stack

# How long `stop` waits for the supervisor's own orderly shutdown (services' grace, then
# Postgres's checkpoint) before killing what is left.
STOP_TIMEOUT = 90.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    try:
        code: int = args.command(args)
        return code
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `status | head` closed the pipe: nothing is left to say, and Python would otherwise
        # complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="default .stack/")
    common.add_argument(
        "--replicas", default="", help="replicas per service, e.g. user=2,live=3 (0 leaves out)"
    )
    common.add_argument(
        "--edge-port", type=int, help="Envoy's port (default $ELEARN_EDGE_PORT or 8080)"
    )
    common.add_argument("--timeout", type=float, default=180.0, help="seconds to get all SERVING")
    common.add_argument(
        "--free-ports", action="store_true", help="free ports instead of the fixed defaults"
    )
    common.add_argument(
        "--service-command",
        help="argv of one replica with {name} for the service (default: python -m svc_{name})",
    )
    common.add_argument("--skip-migrations", action="store_true", help="do not run mesh.migrate")
    common.add_argument("--no-envoy", action="store_true", help="do not start the edge")
    common.add_argument(
        "--observe",
        action="store_true",
        help="also start Jaeger and Prometheus (traces, metrics, alerts; needs `make tools`)",
    )

    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="command")
    for name, func, text in [
        ("up", _up, "run everything in the foreground until Ctrl-C"),
        ("start", _start, "run everything detached; return once all is SERVING"),
        ("stop", _stop, "stop the detached stack"),
        ("status", _status, "show what runs"),
    ]:
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(command=func)
    return parser


def _config(args: argparse.Namespace) -> StackConfig:
    overrides: dict[str, Any] = {}
    if args.service_command:
        template = shlex.split(args.service_command)
        overrides["service_command"] = lambda name: [part.format(name=name) for part in template]
    if args.skip_migrations:
        overrides["migrate_command"] = None
    if args.no_envoy:
        overrides["with_envoy"] = False
    if args.observe:
        overrides["observe"] = True
    return StackConfig.for_local(
        data_dir=args.data_dir,
        replicas=parse_replicas(args.replicas),
        edge_port=args.edge_port,
        free_ports=args.free_ports,
        **overrides,
    )


def _up(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s", stream=sys.stdout)
    stack = Stack(_config(args))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stack.request_stop()

    # SIGHUP too: closing the terminal of a foreground `make up` must not orphan the children,
    # which run in sessions of their own and so do not get the terminal's hangup themselves.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        try:
            endpoints = stack.start(timeout=args.timeout)
        except StackAborted:
            print("devstack: start interrupted; everything started was stopped", flush=True)
            return 0
        print(_table(endpoints), flush=True)
        reported: set[str] = set()
        # Idle until Ctrl-C/SIGTERM; meanwhile say once when a process dies on its own.
        while not stack.wait_for_stop_request(1.0):
            for proc in stack.exited():
                if proc.key not in reported:
                    reported.add(proc.key)
                    print(
                        f"devstack: {proc.key} exited with code {proc.exit_code()}; "
                        f"log: {proc.log_path}",
                        file=sys.stderr,
                        flush=True,
                    )
        print("devstack: stopping…", flush=True)
    finally:
        stack.stop()
    print("devstack: stopped", flush=True)
    return 0


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The options of `start`, passed on to the detached `up`."""
    out = ["--data-dir", str(args.data_dir), "--timeout", str(args.timeout)]
    if args.replicas:
        out += ["--replicas", args.replicas]
    if args.edge_port is not None:
        out += ["--edge-port", str(args.edge_port)]
    if args.service_command:
        out += ["--service-command", args.service_command]
    for flag in ("free_ports", "skip_migrations", "no_envoy", "observe"):
        if getattr(args, flag):
            out.append("--" + flag.replace("_", "-"))
    return out


def _start(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    if SupervisorLock.held(data_dir):
        print(f"devstack: a stack is already running from {data_dir}; `make stop` first")
        return 1
    _config(args)  # fail here, not in the detached process, on a bad option
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "supervisor.log"
    endpoints_file = data_dir / ENDPOINTS_FILE
    endpoints_file.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up", *_forwarded(args)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            # Its own session: it outlives this command and the terminal's Ctrl-C.
            start_new_session=True,
        )
    print(f"devstack: starting (supervisor pid {supervisor.pid}, log {log_path})…", flush=True)
    # The supervisor's own timeout plus room for it to stop what it started on failure.
    deadline = Deadline(args.timeout + STOP_TIMEOUT)
    wait_until(
        lambda: endpoints_file.exists() or supervisor.poll() is not None,
        deadline=deadline,
        interval=0.2,
    )
    if endpoints_file.exists() and supervisor.poll() is None:
        print(_table(Endpoints.load(endpoints_file)))
        return 0
    if supervisor.poll() is None:
        supervisor.terminate()
        try:
            supervisor.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_group(supervisor.pid)
    print(
        f"devstack: the stack did not start (supervisor exit {supervisor.poll()}); "
        f"last lines of {log_path}:\n{tail(log_path, 40)}",
        file=sys.stderr,
    )
    return 1


def _stop(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    supervisor, children = read_pids(data_dir)
    stopped_any = False
    if supervisor is not None and alive(supervisor.pid, supervisor.create_time):
        stopped_any = True
        print(f"devstack: stopping supervisor pid {supervisor.pid}…", flush=True)
        os.kill(supervisor.pid, signal.SIGTERM)
        # wait_gone, not psutil's wait: the exited supervisor is not our child and stays a
        # zombie until init reaps it, which psutil would wait for.
        if wait_gone([(supervisor.pid, supervisor.create_time)], Deadline(STOP_TIMEOUT)):
            print(f"devstack: supervisor still running after {STOP_TIMEOUT:.0f} s; killing it")
            kill_group(supervisor.pid)
    leftovers = [c for c in children if alive(c.pid, c.create_time)]
    for record in leftovers:
        stopped_any = True
        print(f"devstack: killing leftover {record.key} (pid {record.pid})")
        kill_group(record.pid)
    if still := wait_gone([(c.pid, c.create_time) for c in leftovers], Deadline(10.0)):
        print(f"devstack: processes survive SIGKILL: {still}", file=sys.stderr)
        return 1
    (data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
    print("devstack: stopped" if stopped_any else f"devstack: nothing was running in {data_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    supervisor, children = read_pids(data_dir)
    running = SupervisorLock.held(data_dir)
    live = [c for c in children if alive(c.pid, c.create_time)]
    if not running and not live:
        print(f"no stack running in {data_dir}")
        return 0
    if running and supervisor is not None:
        ready = (data_dir / ENDPOINTS_FILE).exists()
        state = "ready" if ready else "starting"
        print(f"supervisor  pid {supervisor.pid:<7} {state}  (data {data_dir})")
    else:
        print("supervisor  not running: leftover processes below (`make stop` cleans up)")
    for record in children:
        state = "running" if alive(record.pid, record.create_time) else "exited"
        ports = ", ".join(str(p) for p in record.ports) or "-"
        print(f"{record.key:<12} pid {record.pid:<7} {state:<8} ports {ports:<14} {record.log}")
    return 0


def _table(e: Endpoints) -> str:
    rows: list[tuple[str, str]] = []
    if e.edge:
        rows.append(("edge (gRPC, gRPC-Web, JSON)", e.edge))
        if e.envoy_admin:
            rows.append(("envoy admin", f"http://{e.envoy_admin}"))
    for name, addresses in e.services.items():
        metrics = ", ".join(m.rsplit(":", 1)[1] for m in e.metrics[name])
        rows.append((f"service {name}", f"{', '.join(addresses)}  (metrics port {metrics})"))
    rows += [
        ("admin login", f"{e.admin_email} / {e.admin_password}"),
        ("postgres", e.database_url),
        ("valkey (cache)", e.cache_url),
        ("valkey (state)", e.state_url),
        ("nats", e.nats_url),
        ("object storage (S3)", f"{e.s3_url}  (clients: {e.s3_public_url}/{e.s3_bucket}/)"),
        ("data, logs", f"{e.data_dir}, {e.data_dir}/logs"),
    ]
    if e.jaeger_ui:
        rows.append(
            ("traces (Jaeger UI, query API)", f"{e.jaeger_ui}  (OTLP in: {e.otlp_endpoint})")
        )
    if e.prometheus:
        rows.append(("metrics (Prometheus UI, query API)", e.prometheus))
    width = max(len(k) for k, _ in rows)
    lines = ["", "elearn stack is up:"] + [f"  {k:<{width}}  {v}" for k, v in rows]
    if e.edge and "user" in e.services:
        login = shlex.quote(f'{{"email": "{e.admin_email}", "password": "{e.admin_password}"}}')
        lines += [
            "",
            "try:",
            f"  grpcurl -plaintext {e.services['user'][0]} list",
            f"  grpcurl -plaintext -protoset envoy/elearn.protoset -d {login} {e.edge} "
            "elearn.user.v1.UserService/Login",
            f"  curl -s -XPOST http://{e.edge}/api/auth/login -d {login}",
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
