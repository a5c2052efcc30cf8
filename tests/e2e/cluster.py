"""Marquee as real processes, for distributed end-to-end tests.

``running_cluster`` starts every service and one or more gateways with
``python -m marquee serve NAME --port N`` on a private PostgreSQL database, a private Redis key
prefix and a private NATS stream, waits until each answers ``/healthz``, and afterwards stops
them (SIGINT, then kill) and removes the database, the keys and the stream. Unreachable
servers skip the test, or fail it under ``MARQUEE_REQUIRE_SERVICES=1`` (see tests/servers.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from marquee.platform.settings import SERVICES
from tests import servers

JWT_SECRET = "cluster-test-secret-" + "z" * 32
START_TIMEOUT = 40.0
STOP_TIMEOUT = 10.0


@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """The running processes. ``gateways`` are the public base URLs."""

    data_dir: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    @property
    def gateways(self) -> list[str]:
        return [p.url for p in self.processes if p.name == "gateway"]

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.processes if p.name == service]

    def log(self, name: str) -> str:
        """What ``name`` (a service, or "gateway") has written to its log file so far."""
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1.0) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_healthy(processes: list[Process]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(processes)
    while waiting:
        for process in list(waiting):
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} on port {process.port} exited with"
                    f" {process.popen.returncode}:\n{process.tail()}"
                )
            if _healthy(process.url):
                waiting.remove(process)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(f"{p.name}:{p.port}" for p in waiting)
            raise RuntimeError(f"not healthy after {START_TIMEOUT:.0f}s: {names}")
        if waiting:
            time.sleep(0.1)


def _stop(processes: list[Process]) -> None:
    for process in processes:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


async def _destroy_stream(nats_url: str, prefix: str) -> None:
    from marquee_nats import NatsBroker

    janitor = NatsBroker(nats_url, prefix=prefix)
    await janitor.start()
    try:
        await janitor.destroy()
    finally:
        await janitor.close()


@contextmanager
def running_cluster(
    workdir: Path,
    *,
    gateways: int = 2,
    rate_limit_per_second: float = 10.0,
    rate_limit_burst: int = 10,
) -> Iterator[Cluster]:
    """Start the services and ``gateways`` gateway processes; yield once all are healthy."""
    redis_url = servers.require_redis()
    nats_url = servers.require_nats()
    database_url = str(servers.run(servers.create_postgres_database()))
    cache_prefix = servers.unique("marquee-e2e:") + ":"
    broker_prefix = servers.unique("mqe2e")
    data_dir = workdir / "var"
    data_dir.mkdir(parents=True, exist_ok=True)

    plan = [(service, free_port()) for service in SERVICES]
    plan += [("gateway", free_port()) for _ in range(gateways)]
    # Only what this cluster sets: nothing from the developer's own MARQUEE_* environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(
        {
            "MARQUEE_DATABASE_URL": database_url,
            "MARQUEE_CACHE_URL": redis_url,
            "MARQUEE_CACHE_PREFIX": cache_prefix,
            "MARQUEE_BROKER_URL": nats_url,
            "MARQUEE_BROKER_PREFIX": broker_prefix,
            "MARQUEE_DATA_DIR": str(data_dir),
            "MARQUEE_JWT_SECRET": JWT_SECRET,
            "MARQUEE_TRUSTED_PROXIES": "127.0.0.1",
            "MARQUEE_RATE_LIMIT_PER_SECOND": str(rate_limit_per_second),
            "MARQUEE_RATE_LIMIT_BURST": str(rate_limit_burst),
            "MARQUEE_LOG_LEVEL": "INFO",
        }
    )
    for service in SERVICES:
        env[f"MARQUEE_{service.upper()}_URLS"] = ",".join(
            f"http://127.0.0.1:{port}" for name, port in plan if name == service
        )
    cluster = Cluster(data_dir=data_dir, env=env)
    try:
        for name, port in plan:
            output = workdir / f"{name}-{port}.out"
            with output.open("wb") as sink:
                popen = subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "marquee", "serve", name, "--port", str(port)],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            cluster.processes.append(Process(name, port, popen, output))
        _wait_until_healthy(cluster.processes)
        yield cluster
    finally:
        _stop(cluster.processes)
        with suppress(Exception):
            servers.run(servers.delete_redis_prefix(redis_url, cache_prefix))
        with suppress(Exception):
            asyncio.run(_destroy_stream(nats_url, broker_prefix))
        servers.run(servers.drop_postgres_database(database_url))
