"""What Marquee's HTTP protocol (``platform/server.py``) costs over uvicorn's own, measured.

Serves the bare ASGI hello world with ``marquee bench hello-server`` (Marquee's server stack)
from two source trees in turn, the same requests at the same concurrency, in alternating
rounds: ``--before`` is a tree whose ``serve_asgi`` still uses uvicorn's protocol (an export of
the commit before the change, say), the other this checkout. The requests are what a rush
sends: POSTs with a small JSON body, each from its own address. Prints the median requests
per second and the server's CPU time per request of each.

    git archive main | tar -x -C /tmp/before
    .venv/bin/python bench/server_layer.py --before /tmp/before/src --requests 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from marquee.bench import hello
from marquee.bench.load import Call

BODY = b'{"session_id":"session-001","seat_area_id":"vip-a","quantity":1}'


def measure(source: str | None, calls: list[Call], concurrency: int) -> dict[str, float]:
    """One round against the hello world served from ``source`` (None: this checkout)."""
    saved = os.environ.get("PYTHONPATH")
    if source is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = source
    try:
        with tempfile.TemporaryDirectory() as workdir:
            result = hello.measure("asgi", calls, concurrency=concurrency, workdir=Path(workdir))
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    assert result["ok"] == len(calls), result
    return {
        "rps": result["requests_per_second"],
        "cpu_us": 1e6 * result["server_cpu_seconds"] / len(calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="src/ of the tree to compare with")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    calls = [
        Call(
            "POST",
            "http://127.0.0.1/api/v1/orders",
            f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            BODY,
        )
        for i in range(args.requests)
    ]
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for round_number in range(1, args.rounds + 1):
        for name, source in (("before", args.before), ("after", None)):
            results[name].append(measure(source, calls, args.concurrency))
            latest = results[name][-1]
            print(
                f"round {round_number} {name}: {latest['rps']:,.0f} req/s,"
                f" {latest['cpu_us']:.0f} µs CPU/request"
            )
    print()
    print("| server | median req/s | median server CPU per request |")
    print("|---|---:|---:|")
    for name, label in (
        ("before", "uvicorn's httptools protocol"),
        ("after", "Marquee's HttpProtocol"),
    ):
        rps = statistics.median(r["rps"] for r in results[name])
        cpu = statistics.median(r["cpu_us"] for r in results[name])
        print(f"| {label} | {rps:,.0f} | {cpu:.0f} µs |")


if __name__ == "__main__":
    main()
