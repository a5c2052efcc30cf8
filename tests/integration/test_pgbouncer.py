"""Marquee behind a real PgBouncer in transaction mode (``MARQUEE_DB_POOLER=transaction``).

The test starts its own PgBouncer (Debian's ``pgbouncer``) on a free port in front of the
shared PostgreSQL, with fewer server connections than Marquee's pool has clients, so
consecutive transactions of one client land on different server connections: nothing may
outlive a transaction (asyncpg's prepared statements, a session's search_path).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.exc import DBAPIError

from marquee.catalog.app import MIGRATIONS
from marquee.catalog.app import create_app as catalog_app
from marquee.platform.db import create_engine, ping
from marquee.platform.kernel import Kernel
from marquee.platform.migrations import require_current, upgrade
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport
from tests import servers

pytestmark = pytest.mark.postgres

SERVER_CONNECTIONS = 2  # PgBouncer's pool per database: fewer than Marquee's clients


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("/usr/sbin/pgbouncer")
    if found is None:
        servers.unavailable("PgBouncer", "PATH", "not installed (apt-get install pgbouncer)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    url = asyncio.run(servers.create_postgres_database())
    yield url
    asyncio.run(servers.drop_postgres_database(url))


@pytest.fixture(scope="module")
def pgbouncer(database: str) -> Iterator[str]:
    """A private PgBouncer in transaction mode; yields the database's URL through it."""
    binary = pgbouncer_binary()
    upstream = servers.POSTGRES_URL.replace("+asyncpg", "")
    host, port = upstream.split("@", 1)[1].split("/", 1)[0].split(":")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen = probe.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="marquee-pgbouncer-"))
    (workdir / "userlist.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 100
logfile = {workdir}/pgbouncer.log
"""
    )
    user = None
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        user = "postgres"
        account = pwd.getpwnam(user)
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
    process = subprocess.Popen(  # noqa: S603
        [binary, str(workdir / "pgbouncer.ini")],
        user=user,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while servers.reachable(f"postgresql://127.0.0.1:{listen}", listen) is not None:
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"PgBouncer did not start: {output}", pytrace=False)
            time.sleep(0.1)
        name = database.rsplit("/", 1)[1]
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{listen}/{name}"
    finally:
        process.terminate()
        process.communicate(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pooled(settings: Settings, pgbouncer: str) -> Settings:
    return settings.model_copy(
        update={
            "catalog_database_url": pgbouncer,
            "db_pooler": "transaction",
            "db_pool_size": 4 * SERVER_CONNECTIONS,
            "demo_data": True,
        }
    )


@pytest.fixture
async def catalog(pooled: Settings) -> AsyncIterator[AsyncTransport]:
    app = catalog_app(Kernel.from_settings(pooled), sweep_interval=0.05)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        yield AsgiTransport(app)


AsyncTransport = AsgiTransport


async def test_migrations_run_and_check_through_pgbouncer(pgbouncer: str) -> None:
    engine = create_engine(pgbouncer, schema="catalog", pool_size=2, pooler="transaction")
    try:
        await upgrade(engine, MIGRATIONS, schema="catalog")
        await upgrade(engine, MIGRATIONS, schema="catalog")  # again: nothing to do
        await require_current(engine, MIGRATIONS, schema="catalog")
    finally:
        await engine.dispose()


async def test_the_catalog_serves_many_requests_at_once_through_pgbouncer(
    catalog: AsgiTransport,
) -> None:
    paths = ["/api/v1/shows", "/api/v1/shows/show-5678", "/api/v1/shows/show-5678/sessions"]

    answers = await asyncio.gather(*(catalog.request("GET", paths[i % 3]) for i in range(60)))

    assert {answer.status for answer in answers} == {200}
    assert answers[1].json()["show_id"] == "show-5678"
    ready = await catalog.request("GET", "/readyz")
    assert ready.status == 200, ready.json()


async def test_without_the_pooler_setting_pgbouncer_refuses_the_connection(
    pgbouncer: str,
) -> None:
    # What the setting is for: asyncpg sends search_path at connect, which PgBouncer refuses.
    engine = create_engine(pgbouncer, schema="catalog", pool_size=1)
    try:
        with pytest.raises(DBAPIError, match="search_path"):
            await ping(engine)
    finally:
        await engine.dispose()
