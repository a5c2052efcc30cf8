"""The hot-sale benchmark, small, as a correctness test in both shapes: never timed.

Marquee runs as real processes (``marquee up``, or every service on its own with two booking
instances on PostgreSQL, Redis and NATS); buyers rush one area through the gateway; then a
share is paid, the rest lapse in a ten-second payment window and their seats are sold again.
The benchmark's own checks must all pass: exactly as many orders as seats, nothing oversold,
no 5xx, nothing unanswered, every unpaid seat back and sold again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from marquee.bench.flashsale import Plan, Report, run_flash_sale
from tests import servers


def assert_sold_exactly(report: Report, tickets: int) -> None:
    failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed, failed
    rush = report.rush
    assert rush.orders_created == tickets
    assert report.oversold == 0
    assert report.area["reserved"] + report.area["sold"] == tickets
    assert rush.statuses["201"] == tickets
    assert rush.server_errors == 0
    assert rush.unanswered == 0
    assert rush.attempts == sum(rush.statuses.values())
    assert set(rush.refusals) <= {"409 insufficient_inventory", "429 rate_limited"}


def test_embedded_sells_exactly_the_tickets_and_resells_the_lapsed_ones(tmp_path: Path) -> None:
    plan = Plan(
        mode="embedded",
        tickets=20,
        buyers=100,
        attempts=5,
        concurrency=50,
        payments=0.5,
        payment_window=10,  # long enough to pay after the rush on a loaded machine
    )

    report = run_flash_sale(plan, workdir=tmp_path)

    assert_sold_exactly(report, 20)
    assert report.payments is not None
    assert (report.payments["paid"], report.payments["resold"]) == (10, 10)
    assert report.payments["area_after_resale"]["sold"] == 10


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.nats
def test_distributed_with_two_booking_instances_sells_exactly_the_tickets(
    tmp_path: Path,
) -> None:
    plan = Plan(
        mode="distributed",
        tickets=20,
        buyers=100,
        attempts=5,
        concurrency=50,
        booking=2,
        payments=0.5,
        payment_window=10,  # long enough to pay after the rush on a loaded machine
        postgres_url=servers.require_postgres(),
        redis_url=servers.require_redis(),
        nats_url=servers.require_nats(),
    )

    report = run_flash_sale(plan, workdir=tmp_path)

    assert_sold_exactly(report, 20)
    measured = set(report.rush.server_cpu_seconds)
    assert {"booking-1", "booking-2", "gateway-1", "gateway-2", "postgres", "redis"} <= measured
    assert report.payments is not None
    assert (report.payments["paid"], report.payments["resold"]) == (10, 10)


def test_the_command_writes_its_results_as_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "marquee",
            "bench",
            "flash-sale",
            "--tickets",
            "5",
            "--buyers",
            "20",
            "--attempts",
            "3",
            "--concurrency",
            "10",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["ok"] is True
    assert results["rush"]["orders_created"] == 5
    assert results["oversold"] == 0
    assert "oversold" in done.stdout
    assert "attempts/s" in done.stdout


def test_the_command_explains_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "marquee", "bench", "flash-sale", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0
    for option in ("--mode", "--tickets", "--buyers", "--payments", "--baseline", "--json"):
        assert option in done.stdout
