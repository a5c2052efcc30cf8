"""Which HTTP client should carry service-to-service calls? One hop, measured.

Starts a bare ASGI hello-world on uvicorn in a child process, then sends the same number of
GETs through Marquee's ``HttpTransport`` (aiohttp) and through an httpx ``AsyncClient`` at the
same concurrency, in alternating rounds, and prints the median requests per second of each.

    .venv/bin/python bench/http_clients.py --requests 5000 --concurrency 64 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable

import httpx

from marquee.platform.transport import HttpTransport

HELLO = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def drive(call: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> float:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def measure(base: str, requests: int, concurrency: int, rounds: int) -> dict[str, float]:
    transport = HttpTransport([base], connections=concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(base_url=base, limits=limits)

    async def via_aiohttp() -> None:
        answer = await transport.request("GET", "/")
        assert answer.status == 200

    async def via_httpx() -> None:
        answer = await client.get("/")
        assert answer.status_code == 200

    results: dict[str, list[float]] = {"aiohttp (HttpTransport)": [], "httpx AsyncClient": []}
    try:
        await drive(via_aiohttp, 200, concurrency)  # warm both pools
        await drive(via_httpx, 200, concurrency)
        for _ in range(rounds):
            results["aiohttp (HttpTransport)"].append(
                await drive(via_aiohttp, requests, concurrency)
            )
            results["httpx AsyncClient"].append(await drive(via_httpx, requests, concurrency))
    finally:
        await transport.close()
        await client.aclose()
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    where = tempfile.mkdtemp(prefix="marquee-bench-")
    with open(os.path.join(where, "_hello_app.py"), "w") as f:
        f.write(HELLO)
    env = dict(os.environ, PYTHONPATH=where)
    server = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_hello_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        medians = asyncio.run(
            measure(f"http://127.0.0.1:{port}", args.requests, args.concurrency, args.rounds)
        )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(where, ignore_errors=True)
    base = medians["httpx AsyncClient"]
    for name, rate in medians.items():
        print(f"{name:26} {rate:8.0f} req/s  ({rate / base:.1f}x httpx)")


if __name__ == "__main__":
    main()
