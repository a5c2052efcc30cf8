"""Marquee as real processes: all-in-one, or one process per service on real servers.

``embedded`` runs ``marquee up`` (SQLite, in-process cache and broker) in a private data
directory. ``distributed`` runs ``marquee serve NAME`` for every service, with several
booking instances and gateways if asked, on a private PostgreSQL database, a private Redis
key prefix and a private NATS stream, and removes all three afterwards. Both run their
processes under ``marquee.supervisor`` (as ``marquee cluster`` does), wait until every one
answers ``/readyz``, and stop them on the way out.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from marquee.platform.settings import SERVICES
from marquee.supervisor import Child, Program, Supervisor, SupervisorError

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time a process has used so far (0 once it has gone)."""
    import psutil  # the bench extra: only measuring needs it

    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass
class Stack:
    """Running processes; ``url`` is the public base URL (the gateway)."""

    mode: str
    data_dir: Path
    env: dict[str, str]
    supervisor: Supervisor = field(default_factory=Supervisor)

    @property
    def processes(self) -> list[Child]:
        return self.supervisor.children

    @property
    def url(self) -> str:
        return self.gateways[0]

    @property
    def gateways(self) -> list[str]:
        return [p.url for p in self.processes if p.name in {"gateway", "marquee"}]

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.processes if p.name == service]

    def log(self, name: str) -> str:
        """What ``name`` (a service, "gateway" or "marquee") has logged."""
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
            used[name] = cpu_seconds(process.pid)
        if self.mode == "distributed":
            used.update(infrastructure_cpu_seconds())
        return used


INFRASTRUCTURE = {"postgres": "postgres", "redis-server": "redis", "nats-server": "nats"}


def infrastructure_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every PostgreSQL, Redis and NATS process on this machine."""
    import psutil

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


def program(name: str, port: int, args: list[str], env: Mapping[str, str], output: Path) -> Program:
    """``python -m marquee ARGS`` called ``name`` on ``port``, its output appended to ``output``."""
    return Program(name=name, port=port, args=tuple(args), env=env, output=output)


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
    # `marquee up` writes its own per-service log files; its stdout goes beside them.
    up = program("marquee", port, ["up", "--no-demo"], env, workdir / "marquee.out")
    stack = Stack(mode="embedded", data_dir=data_dir, env=env, supervisor=Supervisor([up]))
    with stack.supervisor:
        stack.supervisor.wait_ready()
        yield stack


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
    logs = data_dir / "logs"
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
    processes = [
        # Each service's lines in DATA_DIR/logs/<service>.log, as `marquee cluster` keeps them.
        program(name, port, ["serve", name, "--port", str(port)], env, logs / f"{name}.log")
        for name, port in plan
    ]
    stack = Stack(mode="distributed", data_dir=data_dir, env=env)
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "marquee", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if migrate.returncode != 0:
            raise SupervisorError(f"marquee migrate failed:\n{migrate.stdout}{migrate.stderr}")
        stack.supervisor = Supervisor(processes)
        with stack.supervisor:
            stack.supervisor.wait_ready()
            yield stack
    finally:
        with suppress(Exception):
            asyncio.run(delete_cache_prefix(redis_url, cache_prefix))
        with suppress(Exception):
            asyncio.run(destroy_stream(nats_url, broker_prefix))
        asyncio.run(drop_database(database_url))
