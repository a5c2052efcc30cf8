"""Marquee as real processes: all-in-one, or one process per service on real servers.

``embedded`` runs ``marquee up`` (SQLite, in-process cache and broker) in a private data
directory. ``distributed`` runs ``marquee serve NAME`` for every service, with several
booking instances and gateways if asked, on a private PostgreSQL database, a private Redis
key prefix and a private NATS stream, and removes all three afterwards. Both wait until every
process answers ``/healthz`` and stop them (SIGINT, then kill) on the way out.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from marquee.platform.settings import SERVICES

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"


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

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far (0 once the process has gone)."""
        try:
            times = psutil.Process(self.popen.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)


@dataclass
class Stack:
    """Running processes; ``url`` is the public base URL (the gateway)."""

    mode: str
    data_dir: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateways[0]

    @property
    def gateways(self) -> list[str]:
        return [p.url for p in self.processes if p.name in {"gateway", "marquee"}]

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.processes if p.name == service]

    def log(self, name: str) -> str:
        """What ``name`` (a service, "gateway" or "marquee") has written to its log file."""
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far, per process (``booking-1``, ``booking-2``... when several),
        and in distributed mode by the servers it uses (all of their processes on this
        machine: ``postgres``, ``redis``, ``nats``)."""
        counts = Counter(p.name for p in self.processes)
        seen: Counter[str] = Counter()
        used: dict[str, float] = {}
        for process in self.processes:
            seen[process.name] += 1
            name = process.name
            if counts[name] > 1:
                name = f"{name}-{seen[name]}"
            used[name] = process.cpu_seconds()
        if self.mode == "distributed":
            used.update(infrastructure_cpu_seconds())
        return used


INFRASTRUCTURE = {"postgres": "postgres", "redis-server": "redis", "nats-server": "nats"}


def infrastructure_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every PostgreSQL, Redis and NATS process on this machine."""
    used = dict.fromkeys(INFRASTRUCTURE.values(), 0.0)
    for process in psutil.process_iter(["name", "cpu_times"]):
        label = INFRASTRUCTURE.get(process.info["name"] or "")
        times = process.info["cpu_times"]
        if label is not None and times is not None:
            used[label] += float(times.user + times.system)
    return used


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


def clean_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any MARQUEE_* of the caller's, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(settings)
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1.0) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until_healthy(processes: list[Process], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
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
            raise RuntimeError(f"not healthy after {timeout:.0f}s: {names}")
        if waiting:
            time.sleep(0.1)


def stop(processes: list[Process], timeout: float = STOP_TIMEOUT) -> None:
    for process in processes:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


def spawn(name: str, port: int, args: list[str], env: Mapping[str, str], workdir: Path) -> Process:
    """Start ``python -m marquee ARGS`` with its output in ``workdir/NAME-PORT.out``."""
    output = workdir / f"{name}-{port}.out"
    with output.open("wb") as sink:
        popen = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "marquee", *args],
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Process(name, port, popen, output)


# -- private namespaces on the real servers ----------------------------------------------------


async def create_database(server_url: str = POSTGRES_URL, prefix: str = "marquee_") -> str:
    """Create a private database on the server of ``server_url``; returns its URL."""
    import asyncpg

    name = unique(prefix)
    conn = await asyncpg.connect(server_url.replace("+asyncpg", ""), timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{server_url.rsplit('/', 1)[0]}/{name}"


async def drop_database(url: str) -> None:
    import asyncpg

    base, name = url.replace("+asyncpg", "").rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres", timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_cache_prefix(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def destroy_stream(nats_url: str, prefix: str) -> None:
    from marquee_nats import NatsBroker

    janitor = NatsBroker(nats_url, prefix=prefix)
    await janitor.start()
    try:
        await janitor.destroy()
    finally:
        await janitor.close()


# -- the two shapes ------------------------------------------------------------------------------


@contextmanager
def embedded(workdir: Path, settings: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """``marquee up`` in ``workdir/var`` on a free port, with ``settings`` (MARQUEE_* names)."""
    data_dir = workdir / "var"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = clean_environment(MARQUEE_DATA_DIR=str(data_dir), MARQUEE_PORT=str(port))
    env.update(settings or {})
    stack = Stack(mode="embedded", data_dir=data_dir, env=env)
    try:
        stack.processes.append(spawn("marquee", port, ["up", "--no-demo"], env, workdir))
        wait_until_healthy(stack.processes)
        yield stack
    finally:
        stop(stack.processes)


@contextmanager
def distributed(
    workdir: Path,
    settings: Mapping[str, str] | None = None,
    *,
    booking: int = 2,
    gateways: int = 1,
    postgres_url: str = POSTGRES_URL,
    redis_url: str = REDIS_URL,
    nats_url: str = NATS_URL,
) -> Iterator[Stack]:
    """Every service as its own process (``booking`` booking instances, ``gateways``
    gateways) on a private database, key prefix and stream, all removed afterwards."""
    database_url = asyncio.run(create_database(postgres_url))
    cache_prefix = unique("marquee-bench:") + ":"
    broker_prefix = unique("mqbench")
    data_dir = workdir / "var"
    data_dir.mkdir(parents=True, exist_ok=True)
    plan = [(service, free_port()) for service in SERVICES]
    plan += [("booking", free_port()) for _ in range(booking - 1)]
    plan += [("gateway", free_port()) for _ in range(gateways)]
    env = clean_environment(
        MARQUEE_DATABASE_URL=database_url,
        MARQUEE_CACHE_URL=redis_url,
        MARQUEE_CACHE_PREFIX=cache_prefix,
        MARQUEE_BROKER_URL=nats_url,
        MARQUEE_BROKER_PREFIX=broker_prefix,
        MARQUEE_DATA_DIR=str(data_dir),
        MARQUEE_JWT_SECRET=secrets.token_urlsafe(48),
        MARQUEE_TRUSTED_PROXIES="127.0.0.1",
    )
    env.update(settings or {})
    for service in SERVICES:
        env[f"MARQUEE_{service.upper()}_URLS"] = ",".join(
            f"http://127.0.0.1:{port}" for name, port in plan if name == service
        )
    stack = Stack(mode="distributed", data_dir=data_dir, env=env)
    try:
        for name, port in plan:
            args = ["serve", name, "--port", str(port)]
            stack.processes.append(spawn(name, port, args, env, workdir))
        wait_until_healthy(stack.processes)
        yield stack
    finally:
        stop(stack.processes)
        with suppress(Exception):
            asyncio.run(delete_cache_prefix(redis_url, cache_prefix))
        with suppress(Exception):
            asyncio.run(destroy_stream(nats_url, broker_prefix))
        asyncio.run(drop_database(database_url))
