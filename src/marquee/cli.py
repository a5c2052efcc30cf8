"""The ``marquee`` command: run the platform, migrate it, and operate it."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from marquee.platform.settings import SERVICES, Settings, SettingsError, load_settings

app = typer.Typer(
    name="marquee",
    help="Marquee, a ticketing platform: run it, migrate it, operate it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

RUNNABLE = (*SERVICES, "gateway")


def fail(message: str, hint: str | None = None) -> typer.Exit:
    """Print one clear error line (and what to do next), then exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if hint:
        console.print(f"[dim]{hint}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def settings_from(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise fail(str(exc), "Fix or unset that environment variable and try again.") from None


async def _preflight(settings: Settings, services: tuple[str, ...], *, broker: bool) -> None:
    """Reach every dependency once before serving, so a bad URL is one line, not a traceback."""
    from marquee.platform import db
    from marquee.platform.broker import open_broker
    from marquee.platform.cache import open_cache
    from marquee.platform.kernel import StartupError

    cache = open_cache(settings.cache_url, prefix=settings.cache_prefix)
    try:
        await asyncio.wait_for(cache.ping(), 5)
    except Exception as exc:
        raise StartupError(
            f"cache unreachable at {settings.cache_url}: {exc or type(exc).__name__}"
            " (start Redis, or set MARQUEE_CACHE_URL=memory://)"
        ) from None
    finally:
        await cache.close()
    if broker:
        try:
            bus = open_broker(settings.broker_url, prefix=settings.broker_prefix)
        except ValueError as exc:
            raise StartupError(f"MARQUEE_BROKER_URL: {exc}") from None
        try:
            await asyncio.wait_for(bus.start(), 10)
        except Exception as exc:
            raise StartupError(
                f"broker unreachable at {settings.broker_url}: {exc or type(exc).__name__}"
                " (start NATS with JetStream, or set MARQUEE_BROKER_URL=memory://)"
            ) from None
        finally:
            await bus.close()
    for service in services:
        url = settings.database_url_for(service)
        engine = db.create_engine(url, schema=service, pool_size=1)
        try:
            await asyncio.wait_for(db.ping(engine), 10)
        except Exception as exc:
            where = url.split("@")[-1]
            raise StartupError(
                f"{service} database unreachable at {where}: {exc or type(exc).__name__}"
                " (start PostgreSQL, or unset MARQUEE_DATABASE_URL to use SQLite)"
            ) from None
        finally:
            await engine.dispose()


def preflight(settings: Settings, services: tuple[str, ...], *, broker: bool = True) -> None:
    from marquee.platform.kernel import StartupError

    try:
        asyncio.run(_preflight(settings, services, broker=broker))
    except StartupError as exc:
        raise fail(str(exc)) from None


KEEP_ALIVE_SECONDS = 75


def serve_asgi(asgi: Any, host: str, port: int, banner: str | None) -> None:
    """Serve ``asgi`` on uvicorn as every Marquee process does: one worker, uvloop when
    installed, no access log (the gateway writes its own), no proxy-header rewriting (the
    gateway decides whom to believe about X-Forwarded-For)."""
    import uvicorn

    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        lifespan="on",
        server_header=False,
        date_header=False,
        # Longer than any client of ours keeps an idle connection (aiohttp: 15 s): the client
        # closes first. The other way round, a request can be written to a connection the
        # server is closing, and a POST so lost cannot be retried safely (a spurious 502).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.05)
        if server.started and banner:
            console.print(banner, highlight=False)
        await task

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(run())
    if not server.started:
        raise typer.Exit(code=1)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it is with uvicorn[standard]), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _configure_logging(settings: Settings, name: str) -> None:
    from marquee.platform.logging import configure_logging

    configure_logging(
        settings.log_level,
        settings.log_format,
        settings.data_dir / "logs",
        default_service=name,
    )


DEFAULT_ADMIN = "admin@marquee.local"


def _local_admin_password(settings: Settings) -> str:
    """The all-in-one organiser password: MARQUEE_ADMIN_PASSWORD, or one made once and kept."""
    if settings.admin_password:
        return settings.admin_password
    path = settings.data_dir / "admin-password"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    password = "Mq" + secrets.token_urlsafe(12) + "7"
    path.write_text(password)
    path.chmod(0o600)
    return password


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on [MARQUEE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [MARQUEE_PORT].")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where SQLite files, logs and mail go [MARQUEE_DATA_DIR].")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo shows on first start.")] = True,
) -> None:
    """Start every service in this process behind the gateway (embedded defaults)."""
    settings = settings_from(host=host, port=port, data_dir=data_dir, demo_data=demo)
    if not (settings.admin_email and settings.admin_password):
        # A laptop copy gets an organiser account, with a password kept in the data dir.
        settings = settings.model_copy(
            update={
                "admin_email": settings.admin_email or DEFAULT_ADMIN,
                "admin_password": _local_admin_password(settings),
            }
        )
    _configure_logging(settings, "marquee")
    preflight(settings, SERVICES)
    from marquee.compose import all_in_one

    base = f"http://{settings.host}:{settings.port}"
    banner = (
        f"\n[bold green]Marquee is up[/] at [link={base}]{base}[/]\n"
        f"  API docs     {base}/docs\n"
        f"  health       {base}/healthz\n"
        f"  organiser    {settings.admin_email} / {settings.admin_password}\n"
        f"  data         {settings.data_dir.resolve()}\n"
        f"  logs         {(settings.data_dir / 'logs').resolve()}\n"
        "  stop         Ctrl-C\n"
    )
    from marquee.platform.kernel import StartupError

    try:
        gateway = all_in_one(settings)
    except StartupError as exc:
        raise fail(str(exc)) from None
    serve_asgi(gateway, settings.host, settings.port, banner)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(RUNNABLE)}.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")],
    host: Annotated[str | None, typer.Option(help="Address to listen on [MARQUEE_HOST].")] = None,
) -> None:
    """Run one service (or the gateway) in this process, for distributed mode."""
    if service not in RUNNABLE:
        raise fail(f"unknown service {service!r}", f"Choose one of: {', '.join(RUNNABLE)}.")
    settings = settings_from(host=host)
    _configure_logging(settings, service)
    if service != "gateway":
        preflight(settings, (service,))
    from marquee.compose import one_service
    from marquee.platform.kernel import StartupError

    try:
        asgi = one_service(service, settings)
    except StartupError as exc:
        raise fail(str(exc)) from None
    host_ = settings.host
    serve_asgi(asgi, host_, port, f"{service} listening on http://{host_}:{port}")


@app.command()
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all).")
    ] = None,
) -> None:
    """Apply every service's database migrations (safe to run repeatedly and concurrently)."""
    chosen = tuple(services or SERVICES)
    unknown = [s for s in chosen if s not in SERVICES]
    if unknown:
        raise fail(f"unknown service {unknown[0]!r}", f"Choose from: {', '.join(SERVICES)}.")
    settings = settings_from()
    preflight(settings, chosen, broker=False)
    from marquee.platform import db
    from marquee.platform.migrations import upgrade

    async def run() -> None:
        for service in chosen:
            engine = db.create_engine(settings.database_url_for(service), schema=service)
            try:
                module = __import__(f"marquee.{service}.app", fromlist=["MIGRATIONS"])
                await upgrade(engine, module.MIGRATIONS, schema=service)
            finally:
                await engine.dispose()
            console.print(f"[green]✓[/] {service} migrated")

    asyncio.run(run())


@app.command()
def status(
    url: Annotated[
        str | None, typer.Option(help="The gateway's base URL (default: MARQUEE_HOST:PORT).")
    ] = None,
) -> None:
    """Print the health of the gateway and of every service it reaches (and their instances
    listed in MARQUEE_<SERVICE>_URLS), with each dependency's state."""
    import urllib.error
    import urllib.request

    import orjson
    from rich.table import Table

    settings = settings_from()
    targets = [("gateway", url or f"http://{settings.host}:{settings.port}")]
    for service in SERVICES:
        targets += [(service, base) for base in settings.upstream_urls(service)]
    table = Table("service", "address", "ready", "checks")
    healthy = True
    for name, base in targets:
        try:
            with urllib.request.urlopen(f"{base.rstrip('/')}/readyz", timeout=5) as answer:  # noqa: S310
                body = orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = orjson.loads(exc.read() or b"{}")
        except OSError as exc:
            body = {"status": "down", "checks": {"connection": str(exc)}}
        ready = body.get("status") == "ready"
        healthy &= ready
        checks = ", ".join(f"{k}={v}" for k, v in (body.get("checks") or {}).items())
        table.add_row(name, base, "[green]yes[/]" if ready else "[red]no[/]", checks)
    Console().print(table)
    if not healthy:
        raise typer.Exit(code=1)


@app.command()
def trace(
    request_id: Annotated[str, typer.Argument(help="The X-Request-ID to follow.")],
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the logs are [MARQUEE_DATA_DIR].")
    ] = None,
) -> None:
    """Print one request's log lines from every service as a time-ordered tree."""
    from rich.tree import Tree

    from marquee.platform.tracelog import TraceNode, build_tree, collect

    settings = settings_from(data_dir=data_dir)
    log_dir = settings.data_dir / "logs"
    if not log_dir.is_dir():
        raise fail(f"no logs under {log_dir}", "Pass --data-dir, or set MARQUEE_DATA_DIR.")
    lines = collect(log_dir, request_id)
    if not lines:
        raise fail(
            f"no log line carries request ID {request_id!r} under {log_dir}",
            "Check the ID (it is echoed in every answer's X-Request-ID header).",
        )
    span = (lines[-1].at - lines[0].at).total_seconds() * 1000
    tree = Tree(f"[bold]{request_id}[/]  {lines[0].at:%Y-%m-%dT%H:%M:%SZ}  span={span:.0f}ms")

    def add(parent: Tree, node: TraceNode) -> None:
        timed = [line.duration_ms for line in node.lines if line.duration_ms is not None]
        label = f"[bold cyan]{node.service}[/]" + (f"  {max(timed):.0f}ms" if timed else "")
        branch = parent.add(label)
        for line in node.lines:
            branch.add(f"[dim]{line.at:%H:%M:%S}[/] {line.message}", highlight=False)
        for child in node.children:
            add(branch, child)

    for root in build_tree(lines):
        add(tree, root)
    Console().print(tree)


LOCAL_SERVERS = {
    "MARQUEE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/marquee",
    "MARQUEE_CACHE_URL": "redis://127.0.0.1:6379/0",
    "MARQUEE_BROKER_URL": "nats://127.0.0.1:4222",
}


@app.command()
def cluster(
    port: Annotated[
        int, typer.Option(help="The gateway's port; services take the next ones.")
    ] = 8000,
    booking: Annotated[int, typer.Option(help="How many booking instances.")] = 2,
    gateways: Annotated[int, typer.Option(help="How many gateway processes (SO_REUSEPORT).")] = 1,
) -> None:
    """Start every service as its own process on PostgreSQL, Redis and NATS (Ctrl-C stops all).

    Uses MARQUEE_DATABASE_URL / MARQUEE_CACHE_URL / MARQUEE_BROKER_URL when set, else the
    servers on this machine (database ``marquee``, created if missing).
    """
    env = dict(os.environ)
    for key, value in LOCAL_SERVERS.items():
        env.setdefault(key, value)
    settings = settings_from(
        **{
            "database_url": env["MARQUEE_DATABASE_URL"],
            "cache_url": env["MARQUEE_CACHE_URL"],
            "broker_url": env["MARQUEE_BROKER_URL"],
        }
    )
    asyncio.run(_ensure_database(env["MARQUEE_DATABASE_URL"]))
    preflight(settings, SERVICES)
    plan: list[tuple[str, int]] = []
    next_port = port + 1
    for service in SERVICES:
        for _ in range(booking if service == "booking" else 1):
            plan.append((service, next_port))
            next_port += 1
    for service in SERVICES:
        env[f"MARQUEE_{service.upper()}_URLS"] = ",".join(
            f"http://127.0.0.1:{p}" for s, p in plan if s == service
        )
    subprocess.run([sys.executable, "-m", "marquee", "migrate"], env=env, check=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for service, service_port in plan:
            processes.append(_spawn(["serve", service, "--port", str(service_port)], env))
        for _ in range(gateways):
            processes.append(_spawn(["serve", "gateway", "--port", str(port)], env))
        console.print(
            f"[bold green]Marquee cluster[/]: gateway http://127.0.0.1:{port}, "
            + ", ".join(f"{s}:{p}" for s, p in plan)
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        raise fail("a service process exited; stopping the cluster")
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "marquee", *args], env=env)  # noqa: S603


async def _ensure_database(url: str) -> None:
    """Create the cluster's PostgreSQL database if it does not exist yet."""
    import asyncpg

    plain = url.replace("+asyncpg", "")
    base, name = plain.rsplit("/", 1)
    try:
        conn = await asyncpg.connect(f"{base}/postgres", timeout=5)
    except Exception as exc:
        raise fail(f"PostgreSQL unreachable at {base.split('@')[-1]}: {exc}") from None
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _add_subcommands() -> None:
    from marquee.bench.cli import app as bench
    from marquee.identity.cli import admin
    from marquee.notification.cli import app as notifications

    app.add_typer(admin)
    app.add_typer(notifications, name="notifications")
    app.add_typer(bench, name="bench")


def main() -> None:
    _add_subcommands()
    app()


if __name__ == "__main__":
    main()
