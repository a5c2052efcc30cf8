"""Profile Marquee's processes during a hot sale with py-spy.

Starts Marquee (embedded or distributed), sets the stage and registers the buyers like
``marquee bench flash-sale``, then runs the rush ``--rounds`` times against the same area
(the first sells out, the later ones are all refusals) and records every server process with
``py-spy record`` during round ``--profile``, printing each process's hottest functions.

    .venv/bin/python bench/profile_rush.py --mode distributed --buyers 200 --attempts 25
    .venv/bin/python bench/profile_rush.py --mode distributed --rounds 3 --profile 0

Needs py-spy (``pip install py-spy``) and permission to attach to the processes (ptrace).
Flame graphs (SVG) are left in --out.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
from collections import Counter
from pathlib import Path

import aiohttp

from marquee.bench import flashsale, stack
from marquee.bench.load import fire, run


def hottest(raw: Path, top: int) -> str:
    """The functions with the most samples in a py-spy raw (collapsed) profile."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        names = frames.split(";")
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    lines = [f"  {samples} samples; own time:"]
    lines += [f"    {100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  total time (self and callees):")
    lines += [f"    {100 * n / samples:5.1f}%  {name}" for name, n in total.most_common(top * 2)]
    return "\n".join(lines)


async def record(running: stack.Stack, out: Path) -> list[asyncio.subprocess.Process]:
    """Start ``py-spy record`` on every process of the stack (raw stacks and a flame graph)."""
    recorders = []
    for process in running.processes:
        for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
            target = out / f"{process.name}-{process.port}.{suffix}"
            recorders.append(
                await asyncio.create_subprocess_exec(
                    *[
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--pid",
                        str(process.pid),
                        "--format",
                        fmt,
                        "--rate",
                        "200",
                        "--output",
                        str(target),
                        "--nonblocking",
                    ],
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
    await asyncio.sleep(1.0)
    return recorders


async def rush(
    plan: flashsale.Plan,
    running: stack.Stack,
    password: str,
    *,
    rounds: int,
    profiled: int | None,
    out: Path,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = flashsale.Client(http, running.url)
        stage = await flashsale.set_stage(client, plan, password)
        buyers = await flashsale.register_buyers(
            client, plan.buyers, secrets.token_hex(4), lambda *_: None
        )
    for number in range(1, rounds + 1):
        recorders = await record(running, out) if number == profiled else []
        calls = flashsale.order_calls(running.gateways, stage, buyers, plan.attempts)
        before = running.cpu_seconds()
        run = await fire(calls, concurrency=plan.concurrency)
        result = flashsale.summarize(run, before, running.cpu_seconds())
        for recorder in recorders:
            recorder.send_signal(2)
        for recorder in recorders:
            await asyncio.wait_for(recorder.wait(), 60)
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in result.server_cpu_seconds.items())
        print(
            f"round {number}: {result.attempts} attempts in {result.drain_seconds:.2f} s "
            f"= {result.attempts_per_second:,.0f}/s; statuses {result.statuses}; "
            f"last sale {result.last_sale_seconds or 0:.2f} s; "
            f"p50/p99 {result.latency_ms['p50']:.0f}/{result.latency_ms['p99']:.0f} ms; "
            f"CPU s: {cpu}; load generator {result.client_cpu_seconds:.2f}; "
            f"errors {result.errors}",
            flush=True,
        )
    if profiled is None:
        return
    for process in running.processes:
        raw = out / f"{process.name}-{process.port}.txt"
        if raw.exists():
            print(f"\n{process.name}:{process.port}\n{hottest(raw, 25)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "distributed"], default="embedded")
    parser.add_argument("--tickets", type=int, default=100)
    parser.add_argument("--buyers", type=int, default=300)
    parser.add_argument("--attempts", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--booking", type=int, default=2)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="rushes, one after another")
    parser.add_argument("--profile", type=int, default=1, help="which round to profile (0: none)")
    parser.add_argument("--out", type=Path, default=Path("var/profile"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plan = flashsale.Plan(
        mode=args.mode,
        tickets=args.tickets,
        buyers=args.buyers,
        attempts=args.attempts,
        concurrency=args.concurrency,
        booking=args.booking,
        gateways=args.gateways,
    )
    password = "Bench" + secrets.token_urlsafe(12) + "9"
    with (
        tempfile.TemporaryDirectory() as workdir,
        flashsale.open_stack(plan, Path(workdir), password) as running,
    ):
        run(
            rush(
                plan,
                running,
                password,
                rounds=args.rounds,
                profiled=args.profile or None,
                out=args.out,
            )
        )


if __name__ == "__main__":
    main()
