"""`python -m bench`: run load scenarios against the running stack and judge them by their SLA.

    python -m bench [--scenario health,login,refresh,whoami] [--target edge|direct]
                    [--duration 15 | --count N] [--warmup 3] [--processes 2]
                    [--concurrency 32] [--channels 4] [--rate N [--arrival poisson|fixed]]
                    [--driver python|httpload] [--json PATH]
                    [--endpoints PATH | --address HOST:PORT] [--list]

Exit status: 0 when every scenario ran and met its SLA, 1 otherwise, 2 when no stack is found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from bench import ghz_prepare, httpload, report, sla_report, stack_cpu
from bench.args import DEFAULT_CONCURRENCY, parse_args
from bench.driver import Merged, WorkerFailed, run_workers
from bench.endpoints import (
    Endpoints,
    EndpointsMissing,
    NoSuchTarget,
    load_endpoints,
)
from bench.httpload import HttpLoadFailed, HttpLoadMissing
from bench.scenarios import CEILING, SCENARIOS, Scenario, SetupContext
from bench.scenarios.accounts import AccountPool
from bench.sla import Target, load_sla
from bench.worker import READY_TIMEOUT_S, WorkerPlan

SETUP_TIMEOUT_S = 300.0


def select(names: str | None, slas: dict[str, Target], no_ceiling: bool) -> list[str]:
    """The scenarios to run, the ceiling first: a ratio target needs it measured in this run."""
    chosen = [n.strip() for n in names.split(",") if n.strip()] if names else list(SCENARIOS)
    unknown = [n for n in chosen if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    needs = any(slas[n].min_ratio_of_ceiling for n in chosen if n in slas)
    if CEILING not in chosen and needs and not no_ceiling:
        chosen.insert(0, CEILING)
    if CEILING in chosen:
        chosen.remove(CEILING)
        chosen.insert(0, CEILING)
    return list(dict.fromkeys(chosen))


def list_scenarios(slas: dict[str, Target]) -> str:
    lines = []
    for name, cls in SCENARIOS.items():
        target = slas.get(name)
        lines.append(f"{name:10} {cls.summary}")
        if target:
            lines.append(f"{'':10} SLA {target.describe()} — {target.source}")
        else:
            lines.append(f"{'':10} no SLA entry")
    # One-shot workflows with their own ceilings, not calls per second: listed so they are found.
    lines.append(
        "\nvideo (issue 15): python -m bench.video upload|transcode|isolation|queue|all"
        " [--own-stack] (see bench/README.md)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    slas = load_sla(args.sla)
    if args.list:
        print(list_scenarios(slas))
        return 0
    names = select(args.scenario, slas, args.no_ceiling)
    endpoints = None
    if not args.address:
        try:
            endpoints = load_endpoints(args.endpoints)
        except EndpointsMissing as exc:
            print(exc, file=sys.stderr)
            return 2
    if args.ghz_prepare:
        return _ghz_prepare(args, endpoints)
    result = asyncio.run(run(args, names, slas, endpoints))
    print(report.table(result["scenarios"]))
    path = report.write_json(result, args.json)
    markdown = sla_report.write(result, path)
    print(f"\n{'PASS' if result['passed'] else 'FAIL'} — report: {path}, {markdown}")
    return 0 if result["passed"] else 1


async def run(
    args: argparse.Namespace,
    names: list[str],
    slas: dict[str, Target],
    endpoints: Endpoints | None,
) -> dict[str, Any]:
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
    pool = AccountPool(
        run_id,
        max_users=args.users,
        concurrency=args.setup_concurrency,
        timeout_s=max(args.timeout, 30.0),
    )
    entries: list[dict[str, Any]] = []
    ceiling: float | None = None
    load_before = os.getloadavg()
    for name in names:
        entry = await _run_one(args, name, slas.get(name), endpoints, pool, run_id, ceiling)
        if name == CEILING and entry["status"] == "ok":
            ceiling = entry["throughput"] or None
        entries.append(entry)
    return {
        "schema": report.SCHEMA,
        "run_id": run_id,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": {"kind": "address" if args.address else args.target},
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("list", "json")
        },
        "host": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
        },
        "ceiling": {"scenario": CEILING, "throughput": ceiling} if ceiling else None,
        "passed": report.passed(entries),
        "scenarios": entries,
    }


async def _run_one(
    args: argparse.Namespace,
    name: str,
    target: Target | None,
    endpoints: Endpoints | None,
    pool: AccountPool,
    run_id: str,
    ceiling: float | None,
) -> dict[str, Any]:
    cls = SCENARIOS[name]
    service = args.service or cls.service
    concurrency = args.concurrency or (target and target.concurrency) or DEFAULT_CONCURRENCY
    rate = args.rate if args.rate is not None else (target.rate if target else None)
    driver = choose_driver(args.driver, target)
    load: dict[str, Any] = {
        "driver": driver,
        "mode": "open" if rate else "closed",
        "processes": args.processes,
        "concurrency": concurrency,
        "channels": args.channels,
        "rate": rate or None,
        "arrival": args.arrival if rate else None,
    }
    if cls.standalone:
        return await _run_standalone(args, cls, target, service, load)
    try:
        if args.address:
            addresses = [a.strip() for a in args.address.split(",") if a.strip()]
        else:
            assert endpoints is not None
            addresses = endpoints.addresses(args.target, service)
        # Every replica gets at least one channel from each process.
        load["channels"] = max(args.channels, len(addresses))
        load["addresses"] = addresses
        _progress(f"{name}: setup against {addresses[0]}")
        callers = args.processes * concurrency
        data = await asyncio.wait_for(
            _setup(cls(timeout_s=args.timeout), addresses[0], pool, run_id, callers, endpoints),
            SETUP_TIMEOUT_S,
        )
        plan = WorkerPlan(
            scenario=name,
            index=0,
            addresses=tuple(addresses),
            channels=load["channels"],
            concurrency=concurrency,
            warmup_s=args.warmup,
            duration_s=args.duration,
            count=args.count,
            rate=rate or None,
            poisson=args.arrival == "poisson",
            timeout_s=args.timeout,
            seed=args.seed,
            data=data,
            uvloop=args.loop == "uvloop",
        )
        _progress(f"{name}: {args.warmup:g} s warm-up, then {_span(args)} ({load['mode']} loop)")
        sampler = _stack_sampler(args)
        try:
            if driver == "httpload":
                merged = await asyncio.to_thread(_run_httpload, cls, plan, callers, sampler)
            else:
                merged = await asyncio.to_thread(run_workers, plan, args.processes, sampler)
        finally:
            if sampler is not None:
                sampler.stop()
    except grpc.aio.AioRpcError as exc:
        return report.failed_entry(
            name, service, load, f"setup: {exc.code().name}: {exc.details()}"
        )
    except NoSuchTarget as exc:
        return report.failed_entry(name, service, load, str(exc))
    except (WorkerFailed, HttpLoadFailed, HttpLoadMissing, ConnectionError, TimeoutError) as exc:
        return report.failed_entry(name, service, load, f"{type(exc).__name__}: {exc}")
    if name == CEILING:
        ceiling = merged.throughput or None
    entry = report.scenario_entry(name, service, load, merged, target, ceiling)
    if sampler is not None and merged.window_start_ns:
        end_ns = merged.window_start_ns + round(merged.elapsed_s * 1e9)
        entry["stack_cpu"] = stack_cpu.window_share(
            sampler.samples, merged.window_start_ns, end_ns, merged.throughput
        )
    return entry


def choose_driver(flag: str | None, target: Target | None) -> str:
    """--driver when given, else the driver the scenario's target names, else the Python
    workers."""
    return flag or (target.driver if target else None) or "python"


def _run_httpload(
    cls: type[Scenario], plan: WorkerPlan, callers: int, sampler: stack_cpu.Sampler | None
) -> Merged:
    scenario = cls(timeout_s=plan.timeout_s)
    http_targets = getattr(scenario, "http_targets", None)
    if http_targets is None:
        raise HttpLoadFailed(f"{cls.name} sends no requests httpload could replay")
    if not plan.rate:
        raise HttpLoadFailed("httpload runs an open loop only: give --rate")
    unique_field = getattr(scenario, "unique_field", None)
    return httpload.run(
        http_targets(plan.data, callers),
        rate=plan.rate,
        warmup_s=plan.warmup_s,
        duration_s=plan.duration_s,
        timeout_s=plan.timeout_s,
        sampler=sampler,
        unique=unique_field(plan.data) if unique_field else None,
        poisson=plan.poisson,
        seed=plan.seed,
    )


def _stack_sampler(args: argparse.Namespace) -> stack_cpu.Sampler | None:
    """CPU sampling of the stack's processes when the endpoints file has a pids.json beside
    it (a stack this box started); None against a bare --address."""
    if args.address:
        return None
    processes = stack_cpu.stack_processes(args.endpoints.parent)
    return stack_cpu.Sampler(processes).start() if processes else None


async def _run_standalone(
    args: argparse.Namespace,
    cls: type[Scenario],
    target: Target | None,
    service: str,
    load: dict[str, Any],
) -> dict[str, Any]:
    if args.address:
        return report.failed_entry(cls.name, service, load, "needs --endpoints, not --address")
    _progress(f"{cls.name}: {_span(args)} (its own runner)")
    try:
        return await asyncio.to_thread(
            cls(timeout_s=args.timeout).run_standalone, args, args.endpoints, target
        )
    except (grpc.RpcError, OSError, TimeoutError, KeyError) as exc:
        return report.failed_entry(cls.name, service, load, f"{type(exc).__name__}: {exc}")


async def _setup(
    scenario: Scenario,
    address: str,
    pool: AccountPool,
    run_id: str,
    callers: int,
    endpoints: Endpoints | None,
) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_S)
        except TimeoutError:
            raise ConnectionError(
                f"no connection to {address} within {READY_TIMEOUT_S:.0f} s"
            ) from None
        ctx = SetupContext(channel, pool, run_id, callers, endpoints, address)
        return await scenario.setup(ctx)


def _ghz_prepare(args: argparse.Namespace, endpoints: Endpoints | None) -> int:
    run_id = "ghz" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    try:
        if args.address:
            address = args.address.split(",")[0].strip()
        else:
            assert endpoints is not None
            address = endpoints.addresses(args.target, args.service or "user")[0]
        written = ghz_prepare.prepare(address, run_id, args.users)
    except grpc.aio.AioRpcError as exc:
        print(f"ghz-prepare: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except NoSuchTarget as exc:
        print(f"ghz-prepare: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"ghz-prepare: no connection within {READY_TIMEOUT_S:.0f} s", file=sys.stderr)
        return 1
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def _span(args: argparse.Namespace) -> str:
    if args.count:
        return f"{args.count} calls (at most {args.duration:g} s)"
    return f"{args.duration:g} s"


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
