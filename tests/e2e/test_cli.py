"""The ``marquee`` command as a person runs it: start-up, health, and one-line errors."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from marquee.platform.settings import SERVICES
from tests import servers

MARQUEE = [sys.executable, "-m", "marquee"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env["MARQUEE_DATA_DIR"] = str(tmp_path / "var")
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [*MARQUEE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def running_up(tmp_path: Path) -> Iterator[tuple[int, float]]:
    port = free_port()
    env = clean_env(tmp_path, MARQUEE_PORT=str(port))
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603
        [*MARQUEE, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = started + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield port, time.monotonic() - started
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_marquee_up_answers_health_within_twenty_seconds(running_up: tuple[int, float]) -> None:
    port, elapsed = running_up
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
        assert answer.status == 200
        assert answer.headers["X-Request-ID"]
    assert elapsed < 20
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
        assert answer.status == 200
    status = run_cli("status", "--url", f"http://127.0.0.1:{port}", env=os.environ.copy())
    assert status.returncode == 0, status.stdout + status.stderr
    assert "gateway" in status.stdout
    assert "yes" in status.stdout


def test_status_fails_when_the_gateway_is_down(tmp_path: Path) -> None:
    result = run_cli("status", "--url", f"http://127.0.0.1:{free_port()}", env=clean_env(tmp_path))
    assert result.returncode == 1
    assert "refused" in result.stdout


@pytest.mark.parametrize(
    "command",
    [[], ["up"], ["serve"], ["migrate"], ["cluster"], ["status"], ["trace"], ["admin"]],
)
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = run_cli(*command, "--help", env=clean_env(tmp_path))
    assert result.returncode == 0
    assert "Usage" in result.stdout


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    first = output.strip().splitlines()[0]
    for needle in needles:
        assert needle in first, output


def test_a_mistyped_setting_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_cli("up", env=clean_env(tmp_path, MARQUEE_PORT="eighty"))
    assert_one_clear_line(result, "MARQUEE_PORT")


def test_an_unreachable_postgres_fails_with_one_clear_line(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/marquee"
    result = run_cli("up", env=clean_env(tmp_path, MARQUEE_DATABASE_URL=url))
    assert_one_clear_line(result, "database unreachable")


def test_an_unreachable_redis_fails_with_one_clear_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli("up", env=clean_env(tmp_path, MARQUEE_CACHE_URL=url))
    assert_one_clear_line(result, "cache unreachable")


def test_an_unreachable_nats_fails_with_one_clear_line(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = run_cli("up", env=clean_env(tmp_path, MARQUEE_BROKER_URL=url))
    assert_one_clear_line(result, "broker unreachable")


def test_an_unknown_service_is_named_with_the_choices(tmp_path: Path) -> None:
    result = run_cli("serve", "ticketing", "--port", "9", env=clean_env(tmp_path))
    assert_one_clear_line(result, "unknown service")
    assert "identity" in result.stderr


def test_migrate_is_safe_to_run_concurrently_on_postgres(tmp_path: Path) -> None:
    url = asyncio.run(servers.create_postgres_database())
    try:
        env = clean_env(tmp_path, MARQUEE_DATABASE_URL=url)
        processes = [
            subprocess.Popen(  # noqa: S603
                [*MARQUEE, "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(3)
        ]
        for process in processes:
            _out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err.decode()
        again = run_cli("migrate", env=env)
        assert again.returncode == 0, again.stderr
    finally:
        asyncio.run(servers.drop_postgres_database(url))


def test_serve_refuses_an_unmigrated_database_with_one_line(tmp_path: Path) -> None:
    url = asyncio.run(servers.create_postgres_database())
    try:
        env = clean_env(tmp_path, MARQUEE_DATABASE_URL=url)
        refused = run_cli("serve", "catalog", "--port", str(free_port()), env=env)
        checked = run_cli("migrate", "--check", "catalog", env=env)
        migrated = run_cli("migrate", "catalog", env=env)
        checked_again = run_cli("migrate", "--check", "catalog", env=env)
    finally:
        asyncio.run(servers.drop_postgres_database(url))

    assert_one_clear_line(refused, "catalog database is not migrated", "marquee migrate catalog")
    assert_one_clear_line(checked, "catalog database is not migrated")
    assert migrated.returncode == 0, migrated.stderr
    assert checked_again.returncode == 0, checked_again.stderr


def test_serve_logs_to_stdout_and_keeps_no_log_files(tmp_path: Path) -> None:
    port = free_port()
    upstreams = {f"MARQUEE_{s.upper()}_URLS": "http://127.0.0.1:9" for s in SERVICES}
    env = clean_env(tmp_path, **upstreams)
    process = subprocess.Popen(  # noqa: S603
        [*MARQUEE, "serve", "gateway", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)

    assert "GET /healthz status=200" in out.decode()
    assert "Application startup complete" in out.decode()
    assert not (tmp_path / "var" / "logs").exists()


def test_two_gateways_share_a_port_with_reuse_port(tmp_path: Path) -> None:
    port = free_port()
    upstreams = {f"MARQUEE_{s.upper()}_URLS": "http://127.0.0.1:9" for s in SERVICES}
    env = clean_env(tmp_path, **upstreams)
    command = [*MARQUEE, "serve", "gateway", "--port", str(port), "--reuse-port"]
    processes = []
    try:
        for _ in range(2):  # one after the other: the second binds a port already listened on
            process = subprocess.Popen(  # noqa: S603
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            processes.append(process)
            deadline = time.monotonic() + 60
            assert process.stdout is not None
            for line in process.stdout:
                if b"Application startup complete" in line:
                    break
                assert time.monotonic() < deadline
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
        assert [p.poll() for p in processes] == [None, None]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=30)
