"""``marquee cluster`` as a person runs it: on its own port with the demo shows and the
organiser, ready when it says so, links to itself in e-tickets, a crashed process restarted,
every process gone after SIGTERM, and one line for a busy port.

It runs on a private database, Redis key prefix and NATS prefix, and a port range of its own.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from marquee.bench.stack import (
    clean_environment,
    delete_cache_prefix,
    destroy_stream,
    drop_database,
    unique,
)
from tests import servers

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.nats]

PROCESSES = 7  # two gateways, identity, catalog, two booking, notification


def free_run(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first: int = probe.getsockname()[1]
        if first + count > 65000:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no run of free ports")


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    output: Path
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def said(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.said())) is None:
            assert self.process.poll() is None or found, f"cluster exited:\n{self.said()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.said()}"
            time.sleep(0.2)
        return found


def call(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310
        url, method=method, data=None if body is None else orjson.dumps(body)
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, orjson.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")
    except urllib.error.URLError as exc:
        return 0, str(exc.reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    postgres, redis, nats = (
        servers.require_postgres(),
        servers.require_redis(),
        servers.require_nats(),
    )
    workdir = tmp_path_factory.mktemp("cluster-command")
    database = unique("marquee_cluster_")
    cache_prefix, broker_prefix = unique("mqcluster:") + ":", unique("mqcluster")
    port = free_run(PROCESSES)
    env = clean_environment(
        MARQUEE_PORT=str(port),
        MARQUEE_DATA_DIR=str(workdir / "var"),
        MARQUEE_CACHE_URL=redis,
        MARQUEE_CACHE_PREFIX=cache_prefix,
        MARQUEE_BROKER_URL=nats,
        MARQUEE_BROKER_PREFIX=broker_prefix,
    )
    output = workdir / "cluster.out"
    base = postgres.rsplit("/", 1)[0]
    with output.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "marquee", "cluster", "--gateways", "2", "--database", database],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Running(process, port, output, workdir / "var")
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
                process.wait()
        asyncio.run(drop_database(f"{base}/{database}"))
        asyncio.run(delete_cache_prefix(redis, cache_prefix))
        asyncio.run(destroy_stream(nats, broker_prefix))


def test_the_banner_comes_once_every_process_is_ready_on_the_chosen_port(
    cluster: Running,
) -> None:
    cluster.wait_for(r"Marquee cluster is up")

    status, ready = call("GET", f"{cluster.url}/readyz")
    assert status == 200, ready
    assert all(check == "ok" for check in ready["checks"].values()), ready
    labels = re.search(r"processes\s+(.*?)\n\s+database", cluster.said(), re.S)
    assert labels is not None
    assert labels.group(1).split(", ")[0] == f"gateway:{cluster.port}"
    assert len(re.findall(r"\w+:\d+", labels.group(1))) == PROCESSES


def test_the_seeds_scenario_works_with_demo_data_and_links_to_this_gateway(
    cluster: Running,
) -> None:
    cluster.wait_for(r"Marquee cluster is up")
    organiser = cluster.wait_for(r"organiser\s+(\S+) / (\S+)")
    status, _ = call(
        "POST",
        f"{cluster.url}/api/v1/auth/login",
        {"email": organiser.group(1), "password": organiser.group(2)},
    )
    assert status == 200
    status, sessions = call("GET", f"{cluster.url}/api/v1/shows/show-5678/sessions")
    assert status == 200, sessions
    status, buyer = call(
        "POST",
        f"{cluster.url}/api/v1/auth/register",
        {"email": f"{unique('alice-')}@example.com", "password": "SecurePass123",
         "full_name": "Alice Wang"},
    )  # fmt: skip
    assert status == 201, buyer
    token = buyer["access_token"]
    status, order = call(
        "POST",
        f"{cluster.url}/api/v1/orders",
        {"session_id": "session-001", "seat_area_id": "vip-a", "quantity": 2},
        token,
    )
    assert status == 201, order
    status, paid = call(
        "POST",
        f"{cluster.url}/api/v1/orders/{order['order_id']}/pay",
        {"payment_method": "alipay", "payment_token": "alipay_token_xxx"},
        token,
    )
    assert status == 200, paid

    deadline = time.monotonic() + 60
    while not (tickets := [m for m in mail_texts(cluster.data_dir) if "/api/v1/tickets/" in m]):
        assert time.monotonic() < deadline, "no e-ticket email"
        time.sleep(0.5)
    assert f"http://127.0.0.1:{cluster.port}/api/v1/tickets/" in tickets[0]


def mail_texts(data_dir: Path) -> list[str]:
    """The plain-text part of every email in the outbox."""
    texts = []
    for path in (data_dir / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        if body is not None:
            texts.append(str(body.get_content()))
    return texts


def test_a_crashed_process_is_reported_and_restarted(cluster: Running) -> None:
    cluster.wait_for(r"Marquee cluster is up")
    parent = psutil.Process(cluster.process.pid)
    booking = next(child for child in parent.children() if "booking" in child.cmdline()[3:5])
    port = booking.cmdline()[booking.cmdline().index("--port") + 1]

    booking.kill()

    cluster.wait_for(rf"booking:{port} exited with signal SIGKILL; restarting in \d+s")
    cluster.wait_for(rf"booking:{port} restarted \(restart 1, pid \d+\)")
    deadline = time.monotonic() + 60
    while call("GET", f"http://127.0.0.1:{port}/readyz")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_sigterm_stops_every_process_without_false_warnings(cluster: Running) -> None:
    cluster.wait_for(r"Marquee cluster is up")
    children = psutil.Process(cluster.process.pid).children(recursive=True)
    assert len(children) == PROCESSES

    cluster.process.send_signal(signal.SIGTERM)

    assert cluster.process.wait(timeout=60) == 0, cluster.said()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        sock.bind(("127.0.0.1", cluster.port))  # nobody listens any more
    logs = "".join(p.read_text() for p in (cluster.data_dir / "logs").glob("*.log"))
    assert "disconnected from NATS" not in logs
    assert "Traceback" not in cluster.said()


def test_a_busy_port_is_one_line_before_anything_else_happens(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "marquee", "cluster"],
            env=clean_environment(MARQUEE_PORT=str(port), MARQUEE_DATA_DIR=str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines[0] == f"error: port {port} on 127.0.0.1 is already in use"
    assert len(lines) == 2  # and what to do about it
    assert not (tmp_path / "admin-password").exists()
