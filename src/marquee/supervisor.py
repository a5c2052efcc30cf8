"""Marquee processes on one machine: started together, watched, restarted, stopped together.

``marquee cluster`` and the benchmarks (``marquee.bench.stack``) run their processes through
this one supervisor. Each child is ``python -m marquee ARGS`` with its output appended to a
file; it is ready once ``/readyz`` answers 200. A child that exits while the supervisor is
not stopping is reported and, when asked, started again after a doubling delay. Stopping
sends SIGTERM to every child, then SIGKILL to any still running after the grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
POLL_SECONDS = 0.2
ROTATE_BYTES = 10 * 1024 * 1024
ROTATE_KEEP = 3


class SupervisorError(RuntimeError):
    """A child could not be started or did not become ready; the message says which."""


@dataclass(frozen=True)
class Backoff:
    """How long to wait before starting a crashed child again.

    The first restart waits ``first`` seconds, each further one twice as long, up to ``cap``.
    A child that ran for ``stable_after`` seconds before it exited counts as healthy again:
    its next restart waits ``first`` seconds.
    """

    first: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0

    def delay(self, failures: int) -> float:
        """The wait before restart number ``failures`` (1 for the first) in a row."""
        if failures < 1:
            return 0.0
        return min(self.cap, self.first * 2.0 ** min(failures - 1, 62))

    def failures_after(self, failures: int, ran_for: float) -> int:
        """The count of failures in a row once a child that ran ``ran_for`` seconds exits."""
        return 1 if ran_for >= self.stable_after else failures + 1


@dataclass(frozen=True)
class Program:
    """One process to run: ``python -m marquee ARGS``, called ``name``, answering on ``port``."""

    name: str
    port: int
    args: tuple[str, ...]
    env: Mapping[str, str]
    output: Path  # stdout and stderr are appended here
    host: str = "127.0.0.1"
    ready_path: str = "/readyz"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.name}:{self.port}"


@dataclass
class Child:
    """A program and its current process (a new one after each restart)."""

    program: Program
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row without a stable run
    restarts: int = 0
    restart_at: float | None = None  # when a crashed child is due to start again
    exit_code: int | None = None  # the last exit seen

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def port(self) -> int:
        return self.program.port

    @property
    def url(self) -> str:
        return self.program.url

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The last lines the child wrote (its output file is shared with its siblings)."""
        try:
            with self.program.output.open("rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - 64 * 1024))
                text = file.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def rotate(path: Path, max_bytes: int = ROTATE_BYTES, keep: int = ROTATE_KEEP) -> None:
    """Move ``path`` to ``path.1`` (and older copies up to ``path.KEEP``) once it is too big."""
    try:
        if path.stat().st_size < max_bytes:
            return
    except FileNotFoundError:
        return
    for number in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{number + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def answers_ready(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Supervisor:
    """Runs ``programs`` as children of this process; a context manager that stops them all.

    ``restart``: start a crashed child again (after ``backoff``); otherwise a crash before the
    children are ready is a SupervisorError, and one afterwards is only reported.
    ``report`` receives one line for each crash and restart.
    """

    def __init__(
        self,
        programs: Iterable[Program] = (),
        *,
        restart: bool = False,
        backoff: Backoff | None = None,
        report: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(program) for program in programs]
        self.restart = restart
        self.backoff = backoff or Backoff()
        self.report = report
        self.clock = clock
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start every child not started yet (their output files rotated first if too big)."""
        for path in {child.program.output for child in self.children if child.popen is None}:
            path.parent.mkdir(parents=True, exist_ok=True)
            rotate(path)
        for child in self.children:
            if child.popen is None:
                self._spawn(child)

    def add(self, program: Program) -> Child:
        child = Child(program)
        with self._lock:
            self.children.append(child)
        program.output.parent.mkdir(parents=True, exist_ok=True)
        self._spawn(child)
        return child

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to every child, SIGKILL to those still running after ``timeout``."""
        self._stopping.set()
        with self._lock:
            children = list(self.children)
        for child in children:
            if child.running:
                assert child.popen is not None
                child.popen.send_signal(signal.SIGTERM)
        deadline = self.clock() + timeout
        for child in children:
            if child.popen is None:
                continue
            try:
                child.popen.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                self.report(f"{child.program.label} did not stop in {timeout:.0f}s; killed")
                child.popen.kill()
                child.popen.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- watching ----------------------------------------------------------------------------

    def poll(self) -> list[Child]:
        """Notice exits and start crashed children that are due; returns the children that
        exited since the last call."""
        exited: list[Child] = []
        now = self.clock()
        with self._lock:
            children = list(self.children)
        for child in children:
            if self.stopping:
                break
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.restarts += 1
                    self._spawn(child)
                    self.report(
                        f"{child.program.label} restarted (restart {child.restarts},"
                        f" pid {child.pid})"
                    )
                continue
            if child.popen is None or child.popen.poll() is None:
                continue
            if child.exit_code is not None:
                continue  # already reported, not to be restarted
            child.exit_code = child.popen.returncode
            exited.append(child)
            child.failures = self.backoff.failures_after(child.failures, now - child.started_at)
            if self.restart:
                wait = self.backoff.delay(child.failures)
                child.restart_at = now + wait
                self.report(
                    f"{child.program.label} exited with {describe_exit(child.exit_code)};"
                    f" restarting in {wait:.0f}s"
                )
            else:
                self.report(f"{child.program.label} exited with {describe_exit(child.exit_code)}")
        return exited

    def run(self, until: threading.Event, interval: float = POLL_SECONDS) -> None:
        """Watch the children until ``until`` is set (or the supervisor stops)."""
        while not until.wait(interval) and not self.stopping:
            self.poll()

    def wait_ready(
        self, timeout: float = READY_TIMEOUT, *, until: threading.Event | None = None
    ) -> None:
        """Return once every child answers its ready path with 200.

        Without restarts, a child that exits first is a SupervisorError carrying the end of
        its output; so is running out of time. ``until`` being set gives up quietly.
        """
        deadline = self.clock() + timeout
        with self._lock:
            waiting = list(self.children)
        while waiting:
            if until is not None and until.is_set():
                return
            for child in self.poll():
                if not self.restart:
                    raise SupervisorError(
                        f"{child.program.label} exited with {describe_exit(child.exit_code)}"
                        f" before it was ready:\n{child.tail()}"
                    )
            for child in list(waiting):
                if child.running and answers_ready(child.url + child.program.ready_path):
                    waiting.remove(child)
            if waiting and self.clock() > deadline:
                names = ", ".join(child.program.label for child in waiting)
                raise SupervisorError(f"not ready after {timeout:.0f}s: {names}")
            if waiting:
                time.sleep(POLL_SECONDS)

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        program = child.program
        with program.output.open("ab") as sink:
            # Its own session: a Ctrl-C at the terminal reaches the supervisor, which then stops
            # every child itself, instead of each child deciding on its own.
            child.popen = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "marquee", *program.args],
                env=dict(program.env),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child.started_at = self.clock()
        child.exit_code = None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"
