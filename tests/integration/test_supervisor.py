"""The supervisor with real child processes (hello-world servers of the benchmark)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from marquee.bench.stack import clean_environment, free_port, program
from marquee.supervisor import Backoff, Program, Supervisor, SupervisorError


def hello(tmp_path: Path, name: str = "hello") -> Program:
    """A hello-world server of the benchmark on a free port."""
    port = free_port()
    args = ["bench", "hello-server", "asgi", "--port", str(port)]
    return program(name, port, args, clean_environment(), tmp_path / f"{name}.log")


def restarting(child: Program, lines: list[str], first_delay: float) -> Supervisor:
    return Supervisor(
        [child], restart=True, backoff=Backoff(first=first_delay), report=lines.append
    )


def eventually(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_children_become_ready_and_all_stop_together(tmp_path: Path) -> None:
    programs = [hello(tmp_path, f"hello-{n}") for n in range(2)]
    with Supervisor(programs) as supervisor:
        supervisor.wait_ready()
        pids = [child.pid for child in supervisor.children]
        assert all(child.running for child in supervisor.children)

    assert all(
        child.popen is not None and child.popen.returncode is not None
        for child in supervisor.children
    )
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_crashed_child_is_reported_and_started_again(tmp_path: Path) -> None:
    server = hello(tmp_path)
    port = server.port
    lines: list[str] = []
    supervisor = restarting(server, lines, first_delay=0.2)
    with supervisor:
        supervisor.wait_ready()
        (child,) = supervisor.children
        first = child.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)

        def back() -> bool:
            supervisor.poll()
            return child.restarts == 1 and child.running

        eventually(back)
        supervisor.wait_ready()

    assert child.pid != first
    assert lines[0] == f"hello:{port} exited with signal SIGKILL; restarting in 0s"
    assert lines[1].startswith(f"hello:{port} restarted (restart 1, pid ")


def test_a_child_that_dies_before_it_is_ready_is_an_error_with_its_last_words(
    tmp_path: Path,
) -> None:
    broken = program(
        "broken", free_port(), ["serve", "no-such-service"], clean_environment(), tmp_path / "b.log"
    )
    with Supervisor([broken]) as supervisor, pytest.raises(SupervisorError) as raised:
        supervisor.wait_ready()

    assert f"broken:{broken.port} exited with status 1 before it was ready" in str(raised.value)
    assert "unknown service 'no-such-service'" in str(raised.value)


def test_nothing_is_restarted_once_stopping(tmp_path: Path) -> None:
    lines: list[str] = []
    supervisor = restarting(hello(tmp_path), lines, first_delay=0.0)
    with supervisor:
        supervisor.wait_ready()
    supervisor.poll()

    assert lines == []
    assert not supervisor.children[0].running
