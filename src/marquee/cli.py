"""The ``marquee`` command: run the platform, migrate it, and operate it."""

from __future__ import annotations

import asyncio
import errno
import importlib
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from marquee.platform.settings import SERVICES, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from marquee.supervisor import Program

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


async def _preflight(
    settings: Settings, services: tuple[str, ...], *, broker: bool, migrated: bool
) -> None:
    """Reach every dependency once before serving, so a bad URL is one line, not a traceback.
    ``migrated``: each service's database must already be at this release's schema."""
    from marquee.platform import db
    from marquee.platform.broker import open_broker
    from marquee.platform.cache import open_cache
    from marquee.platform.kernel import StartupError
    from marquee.platform.migrations import NotMigratedError, require_current

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
        engine = db.create_engine(url, schema=service, pool_size=1, pooler=settings.db_pooler)
        try:
            await asyncio.wait_for(db.ping(engine), 10)
        except Exception as exc:
            where = url.split("@")[-1]
            raise StartupError(
                f"{service} database unreachable at {where}: {exc or type(exc).__name__}"
                " (start PostgreSQL, or unset MARQUEE_DATABASE_URL to use SQLite)"
            ) from None
        try:
            if migrated:
                await require_current(engine, migrations_of(service), schema=service)
        except NotMigratedError as exc:
            raise StartupError(str(exc)) from None
        finally:
            await engine.dispose()


def preflight(
    settings: Settings,
    services: tuple[str, ...],
    *,
    broker: bool = True,
    migrated: bool = False,
) -> None:
    from marquee.platform.kernel import StartupError

    try:
        asyncio.run(_preflight(settings, services, broker=broker, migrated=migrated))
    except StartupError as exc:
        raise fail(str(exc)) from None


def migrations_of(service: str) -> Path:
    """Where a service's Alembic scripts live."""
    module = importlib.import_module(f"marquee.{service}.app")
    location: Path = module.MIGRATIONS
    return location


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The listening socket, bound before anything else happens, so that a busy port is one
    line and not a traceback after migrations ran. ``reuse_port``: several processes may
    listen on the port (SO_REUSEPORT); the kernel spreads connections between them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise fail(
                f"port {port} on {host} is already in use",
                f"Stop what listens there (ss -ltnp 'sport = :{port}'), or choose another"
                " port: MARQUEE_PORT=N or --port N.",
            ) from None
        raise fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "Check MARQUEE_HOST and MARQUEE_PORT.",
        ) from None
    return sock


KEEP_ALIVE_SECONDS = 75


def serve_asgi(
    asgi: Any, sock: socket.socket, banner: str | None, settings: Settings | None = None
) -> None:
    """Serve ``asgi`` on uvicorn, on the bound ``sock``, as every Marquee process does: one
    worker, uvloop when installed, Marquee's HTTP protocol (raw UTF-8 request lines, problem
    details for what the server refuses, header and body read timeouts: ``platform/server.py``),
    no access log (the gateway writes its own), no proxy-header rewriting (the gateway decides
    whom to believe about X-Forwarded-For)."""
    import uvicorn

    from marquee.platform.server import HttpProtocol

    host, port = sock.getsockname()[:2]
    protocol = HttpProtocol
    if settings is not None:
        protocol = HttpProtocol.configured(
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
        )
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        http=protocol,
        ws="none",
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
        task = asyncio.create_task(server.serve(sockets=[sock]))
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


def _configure_logging(settings: Settings, name: str, *, files: bool) -> None:
    """Log lines to stdout; ``files``: also to rotated per-service files (all-in-one mode,
    where they are what ``marquee trace`` reads)."""
    from marquee.platform.logging import configure_logging

    configure_logging(
        settings.log_level,
        settings.log_format,
        settings.data_dir / "logs" if files else None,
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
    sock = listen(settings.host, settings.port)
    _configure_logging(settings, "marquee", files=True)
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
    serve_asgi(gateway, sock, banner, settings)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(RUNNABLE)}.")],
    port: Annotated[
        int | None, typer.Option(help="Port to listen on [MARQUEE_PORT].", show_default=False)
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [MARQUEE_HOST].")] = None,
    reuse_port: Annotated[
        bool,
        typer.Option(
            help="Let several processes listen on this port (SO_REUSEPORT); the kernel"
            " spreads connections between them."
        ),
    ] = False,
) -> None:
    """Run one service (or the gateway) in this process, for distributed mode.

    Its database must already be migrated (`marquee migrate`); it logs to stdout only
    (MARQUEE_LOG_FORMAT=json for log shippers).
    """
    if service not in RUNNABLE:
        raise fail(f"unknown service {service!r}", f"Choose one of: {', '.join(RUNNABLE)}.")
    settings = settings_from(host=host)
    sock = listen(settings.host, settings.port if port is None else port, reuse_port=reuse_port)
    _configure_logging(settings, service, files=False)
    if service != "gateway":
        preflight(settings, (service,), migrated=True)
    from marquee.compose import one_service
    from marquee.platform.kernel import StartupError

    try:
        asgi = one_service(service, settings)
    except StartupError as exc:
        raise fail(str(exc)) from None
    host_, port_ = sock.getsockname()[:2]
    serve_asgi(asgi, sock, f"{service} listening on http://{host_}:{port_}", settings)


@app.command()
def migrate(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all).")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Change nothing: exit 1 unless every schema is already current."
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="With --check: keep checking this many seconds before giving up (for a"
            " container that must not start before the migration step has run).",
        ),
    ] = 0,
) -> None:
    """Apply every service's database migrations (safe to run repeatedly and concurrently).

    In a distributed deployment this is a step of its own (the Compose `migrate` service, the
    Kubernetes Job); `marquee serve` refuses to start against an older schema.
    """
    chosen = tuple(services or SERVICES)
    unknown = [s for s in chosen if s not in SERVICES]
    if unknown:
        raise fail(f"unknown service {unknown[0]!r}", f"Choose from: {', '.join(SERVICES)}.")
    settings = settings_from()
    if not check:
        preflight(settings, chosen, broker=False)
        run_migrations(settings, chosen)
        return
    from marquee.platform.kernel import StartupError

    deadline = time.monotonic() + wait
    while True:
        try:
            asyncio.run(_preflight(settings, chosen, broker=False, migrated=True))
        except StartupError as exc:
            if time.monotonic() >= deadline:
                raise fail(str(exc)) from None
            time.sleep(2)  # quietly: the migration step is probably still running
            continue
        console.print(f"[green]✓[/] {', '.join(chosen)}: schema current")
        return


def run_migrations(settings: Settings, services: tuple[str, ...]) -> None:
    from marquee.platform import db
    from marquee.platform.migrations import upgrade

    async def run() -> None:
        for service in services:
            engine = db.create_engine(
                settings.database_url_for(service), schema=service, pooler=settings.db_pooler
            )
            try:
                await upgrade(engine, migrations_of(service), schema=service)
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
    "MARQUEE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
    "MARQUEE_CACHE_URL": "redis://127.0.0.1:6379/0",
    "MARQUEE_BROKER_URL": "nats://127.0.0.1:4222",
}


@app.command()
def cluster(
    port: Annotated[
        int | None,
        typer.Option(
            help="The gateway's port [MARQUEE_PORT, else 8000]; the services take the next ones.",
            show_default=False,
        ),
    ] = None,
    booking: Annotated[int, typer.Option(min=1, help="How many booking instances.")] = 2,
    gateways: Annotated[
        int, typer.Option(min=1, help="How many gateway processes, sharing its port.")
    ] = 1,
    demo: Annotated[
        bool, typer.Option(help="Load the demo shows and the organiser account.")
    ] = True,
    database: Annotated[
        str,
        typer.Option(
            help="The database on this machine's PostgreSQL (created if missing), when"
            " MARQUEE_DATABASE_URL is not set."
        ),
    ] = "marquee",
) -> None:
    """Start every service as its own process on PostgreSQL, Redis and NATS, supervised.

    Migrates first, then starts the processes, and prints where to look once every one of
    them answers /readyz. A process that exits is reported and started again (after 1 s,
    doubling to 30 s). Ctrl-C or SIGTERM stops them all. Each service's log lines go to
    DATA_DIR/logs/SERVICE.log, which `marquee trace` reads.

    Uses MARQUEE_DATABASE_URL, MARQUEE_CACHE_URL and MARQUEE_BROKER_URL when set, else the
    servers on this machine. To run a second cluster beside the first, give it its own
    MARQUEE_PORT, MARQUEE_DATA_DIR, database (--database or MARQUEE_DATABASE_URL), Redis key
    prefix (MARQUEE_CACHE_PREFIX) and NATS stream and subjects (MARQUEE_BROKER_PREFIX).
    """
    from marquee.supervisor import Supervisor, SupervisorError

    env = {
        key: os.environ.get(key) or value.format(database=database)
        for key, value in LOCAL_SERVERS.items()
    }
    settings = settings_from(
        port=port,
        database_url=env["MARQUEE_DATABASE_URL"],
        cache_url=env["MARQUEE_CACHE_URL"],
        broker_url=env["MARQUEE_BROKER_URL"],
    )
    plan = cluster_plan(settings, booking=booking, gateways=gateways)
    for each_port in sorted({p.port for p in plan}):
        listen(settings.host, each_port).close()  # every port free, or one clear line
    if demo and not (settings.admin_email and settings.admin_password):
        settings = settings.model_copy(
            update={
                "admin_email": settings.admin_email or DEFAULT_ADMIN,
                "admin_password": _local_admin_password(settings),
            }
        )
    url = settings.database_url_for("booking")
    if url.startswith("postgresql") and not os.environ.get("MARQUEE_DATABASE_URL"):
        asyncio.run(_ensure_database(url))
    preflight(settings, SERVICES)
    warning = asyncio.run(_connection_budget_warning(settings, plan))
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    run_migrations(settings, SERVICES)
    # Made once here: processes starting together would each generate a different one.
    settings.resolved_jwt_secret()
    programs = cluster_programs(settings, plan, demo=demo)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())

    def report(line: str) -> None:
        console.print(f"[yellow]cluster:[/] {line}", highlight=False, soft_wrap=True)

    supervisor = Supervisor(programs, restart=True, report=report)
    with supervisor:
        try:
            supervisor.wait_ready(until=stop)
        except SupervisorError as exc:
            raise fail(str(exc), f"The logs are under {settings.data_dir / 'logs'}.") from None
        if not stop.is_set():
            console.print(cluster_banner(settings, programs), highlight=False)
            supervisor.run(until=stop)
        console.print("stopping the cluster")
    console.print("cluster stopped")


@dataclass(frozen=True)
class Planned:
    name: str
    port: int


def cluster_plan(settings: Settings, *, booking: int, gateways: int) -> list[Planned]:
    """Which process listens where: the gateways on MARQUEE_PORT, the services after it."""
    plan = [Planned("gateway", settings.port) for _ in range(gateways)]
    next_port = settings.port + 1
    for service in SERVICES:
        for _ in range(booking if service == "booking" else 1):
            plan.append(Planned(service, next_port))
            next_port += 1
    return plan


def _reachable_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "", "::"} else host  # noqa: S104


def cluster_programs(settings: Settings, plan: list[Planned], *, demo: bool) -> list[Program]:
    """The processes of ``plan`` with the environment each needs."""
    from marquee.supervisor import Program

    host = _reachable_host(settings.host)
    base = dict(os.environ)
    base.update(
        {
            "MARQUEE_DATABASE_URL": settings.database_url or "",
            "MARQUEE_CACHE_URL": settings.cache_url,
            "MARQUEE_BROKER_URL": settings.broker_url,
            "MARQUEE_PORT": str(settings.port),
            "MARQUEE_DATA_DIR": str(settings.data_dir.resolve()),
            # Links in emails lead to the gateway, wherever it listens.
            "MARQUEE_PUBLIC_URL": settings.public_url or f"http://{host}:{settings.port}",
        }
    )
    for service in SERVICES:
        base[f"MARQUEE_{service.upper()}_URLS"] = ",".join(
            f"http://{host}:{p.port}" for p in plan if p.name == service
        )
    base.pop("MARQUEE_ADMIN_EMAIL", None)
    base.pop("MARQUEE_ADMIN_PASSWORD", None)
    gateways = sum(1 for p in plan if p.name == "gateway")
    programs = []
    for planned in plan:
        env = dict(base)
        args = ["serve", planned.name, "--port", str(planned.port)]
        if planned.name == "gateway" and gateways > 1:
            args.append("--reuse-port")
        if planned.name == "identity" and settings.admin_email and settings.admin_password:
            env["MARQUEE_ADMIN_EMAIL"] = settings.admin_email
            env["MARQUEE_ADMIN_PASSWORD"] = settings.admin_password
        if planned.name == "catalog":
            env["MARQUEE_DEMO_DATA"] = "1" if demo else "0"
        programs.append(
            Program(
                name=planned.name,
                port=planned.port,
                args=tuple(args),
                env=env,
                output=settings.data_dir / "logs" / f"{planned.name}.log",
                host=host,
            )
        )
    return programs


def cluster_banner(settings: Settings, programs: list[Program]) -> str:
    from marquee.platform.app import redact

    base = f"http://{_reachable_host(settings.host)}:{settings.port}"
    lines = [
        f"\n[bold green]Marquee cluster is up[/] at [link={base}]{base}[/]",
        f"  processes    {', '.join(p.label for p in programs)}",
        f"  database     {redact(settings.database_url or '')}",
        f"  cache        {redact(settings.cache_url)} (keys under {settings.cache_prefix!r})",
        f"  broker       {redact(settings.broker_url)} (prefix {settings.broker_prefix!r})",
    ]
    if settings.admin_email and settings.admin_password:
        lines.append(f"  organiser    {settings.admin_email} / {settings.admin_password}")
    lines += [
        f"  logs         {(settings.data_dir / 'logs').resolve()} (marquee trace REQUEST_ID)",
        "  stop         Ctrl-C\n",
    ]
    return "\n".join(lines)


async def _connection_budget_warning(settings: Settings, plan: list[Planned]) -> str | None:
    """A warning when the processes' pools together could exceed PostgreSQL's limit."""
    url = settings.database_url_for("booking")
    if not url.startswith("postgresql") or settings.db_pooler != "none":
        return None
    import asyncpg

    processes = sum(1 for p in plan if p.name in SERVICES)
    try:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=5)
    except Exception:
        return None  # preflight has already said what is wrong
    try:
        allowed = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
    finally:
        await conn.close()
    return connection_budget(processes, settings.db_pool_size, allowed - reserved)


def connection_budget(processes: int, pool_size: int, available: int) -> str | None:
    """None when ``processes`` pools of ``pool_size`` fit in ``available`` connections, else
    what to do about it."""
    needed = processes * pool_size
    if needed <= available:
        return None
    return (
        f"{processes} processes x MARQUEE_DB_POOL_SIZE={pool_size} = {needed} PostgreSQL"
        f" connections, more than the server allows ({available}): lower"
        " MARQUEE_DB_POOL_SIZE, raise max_connections, or put PgBouncer in front"
        " (docs/capacity.md)"
    )


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
