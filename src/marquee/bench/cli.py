"""``marquee bench``: load benchmarks against Marquee started as real processes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from marquee.bench import hello
from marquee.bench.flashsale import Mode, Plan, Report, order_calls, run_flash_sale

app = typer.Typer(
    help="Load benchmarks: Marquee started as real processes and measured from outside.",
    no_args_is_help=True,
)
console = Console(stderr=True)

PHASES = {
    "start": "starting Marquee",
    "register": "registering buyers",
    "rush": "the rush",
    "expire": "waiting for unpaid seats",
}


@app.command("flash-sale")
def flash_sale(
    mode: Annotated[
        str,
        typer.Option(
            help="embedded: `marquee up` on SQLite in one process; distributed: every service"
            " its own process on PostgreSQL, Redis and NATS."
        ),
    ] = "embedded",
    tickets: Annotated[int, typer.Option(min=1, help="Tickets in the one area on sale.")] = 100,
    buyers: Annotated[int, typer.Option(min=1, help="Buyers registered before the rush.")] = 1000,
    attempts: Annotated[int, typer.Option(min=1, help="Purchase attempts per buyer.")] = 10,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 200,
    booking: Annotated[int, typer.Option(min=1, help="Booking instances (distributed).")] = 2,
    gateways: Annotated[
        int, typer.Option(min=1, help="Gateway processes (distributed); attempts alternate.")
    ] = 2,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Rushes, each on a new show by the same buyers; the median one is reported.",
        ),
    ] = 1,
    payments: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Pay this share of the orders, let the rest lapse, check their seats come"
            " back and sell them again.",
        ),
    ] = None,
    payment_window: Annotated[
        int, typer.Option(min=1, help="Payment window in seconds when --payments is given.")
    ] = 20,
    baseline: Annotated[
        bool,
        typer.Option(
            help="Also send the same requests to hello-world apps on the same server stack"
            " (bare ASGI, Starlette, FastAPI) and report the ratio."
        ),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
    postgres_url: Annotated[
        str, typer.Option(help="PostgreSQL server (distributed); a private database is made.")
    ] = Plan.postgres_url,
    redis_url: Annotated[str, typer.Option(help="Redis (distributed).")] = Plan.redis_url,
    nats_url: Annotated[
        str, typer.Option(help="NATS with JetStream (distributed).")
    ] = Plan.nats_url,
) -> None:
    """The hot sale: BUYERS × ATTEMPTS purchase attempts for TICKETS tickets, through the gateway.

    Exits non-zero if any correctness check fails (an oversold seat, a missing order, a 5xx,
    an unanswered request).
    """
    try:
        import psutil  # noqa: F401
    except ImportError:
        console.print("[bold red]error:[/] the benchmark measures CPU time with psutil")
        console.print("[dim]Install the bench extra: pip install 'marquee[bench]' (make bench).[/]")
        raise typer.Exit(code=1) from None
    if mode not in ("embedded", "distributed"):
        console.print(f"[bold red]error:[/] --mode must be embedded or distributed, not {mode!r}")
        raise typer.Exit(code=2)
    chosen: Mode = "embedded" if mode == "embedded" else "distributed"
    plan = Plan(
        mode=chosen,
        tickets=tickets,
        buyers=buyers,
        attempts=attempts,
        concurrency=concurrency,
        booking=booking,
        gateways=gateways,
        payments=payments,
        payment_window=payment_window,
        rounds=rounds,
        postgres_url=postgres_url,
        redis_url=redis_url,
        nats_url=nats_url,
    )
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        try:
            report = run_flash_sale(plan, progress=progress)
        except (RuntimeError, OSError) as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            console.print(
                "[dim]For --mode distributed, PostgreSQL, Redis and NATS (JetStream) must be"
                " reachable at the URLs given (see --help).[/]"
            )
            raise typer.Exit(code=1) from None
        if baseline:
            report.baseline = _baseline(plan, report, progress)
    Console().print(render(report))
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
        console.print(f"results written to {json_out}")
    if not report.ok:
        raise typer.Exit(code=1)


@app.command("hello-server", hidden=True)
def hello_server(
    kind: Annotated[str, typer.Argument(help="asgi, starlette or fastapi.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8099,
) -> None:
    """Serve a hello-world app on Marquee's server stack (the baseline's other side)."""
    from marquee.cli import listen, serve_asgi

    if kind not in hello.KINDS:
        console.print(f"[bold red]error:[/] kind must be one of {', '.join(hello.KINDS)}")
        raise typer.Exit(code=2)
    serve_asgi(hello.app_of(kind), listen("127.0.0.1", port), None)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _baseline(plan: Plan, report: Report, progress: Any) -> dict[str, Any]:
    from marquee.bench.flashsale import Buyer, Stage, client_address

    stage = Stage("", "show", "session", "area")
    fake = [Buyer(i, client_address(i), "x") for i in range(plan.buyers)]
    calls = list(order_calls("http://127.0.0.1", stage, fake, plan.attempts))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="marquee-hello-") as workdir:
        steps = len(hello.KINDS) * plan.rounds
        measured: dict[str, list[dict[str, Any]]] = {kind: [] for kind in hello.KINDS}
        for step in range(steps):  # kinds in turn, round after round
            progress("baseline", step, steps)
            turn = hello.KINDS[step % len(hello.KINDS)]
            measured[turn].append(
                hello.measure(turn, calls, concurrency=plan.concurrency, workdir=Path(workdir))
            )
        progress("baseline", steps, steps)
        for name, runs in measured.items():
            ranked = sorted(runs, key=lambda r: float(r["requests_per_second"]))
            results[name] = ranked[len(ranked) // 2]  # the median round
    ours = report.rush.attempts_per_second
    refusals = report.rush.sold_out_refusals_per_second
    fastapi = results["fastapi"]["requests_per_second"]
    results["ratio_to_fastapi"] = ours / fastapi if fastapi else None
    results["sold_out_refusals_to_fastapi"] = refusals / fastapi if refusals and fastapi else None
    results["ratio_to_asgi"] = (
        ours / results["asgi"]["requests_per_second"]
        if results["asgi"]["requests_per_second"]
        else None
    )
    return results


def _n(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(report: Report) -> Table:
    rush = report.rush
    plan = report.plan
    shape = (
        "all-in-one (embedded)"
        if plan["mode"] == "embedded"
        else f"distributed, {plan['booking']} booking, {plan['gateways']} gateway"
        + ("s" if plan["gateways"] > 1 else "")
    )
    table = Table(
        title=f"Flash sale: {plan['tickets']} tickets, {plan['buyers']} buyers × "
        f"{plan['attempts']} attempts, concurrency {plan['concurrency']} — {shape}",
        show_header=True,
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("attempts (median round)" if len(report.rounds) > 1 else "attempts", _n(rush.attempts)),
        ("orders created", _n(rush.orders_created)),
        ("tickets held or sold", _n(report.area["reserved"] + report.area["sold"])),
        ("oversold (reserved + sold − capacity)", _n(report.oversold)),
        *((f"answers {code}", _n(count)) for code, count in rush.statuses.items()),
        *((f"  {code}", _n(count)) for code, count in rush.refusals.items()),
        ("5xx", _n(rush.server_errors)),
        ("unanswered", _n(rush.unanswered)),
        ("drain time (s)", _n(rush.drain_seconds, 2)),
        ("attempts/s", _n(rush.attempts_per_second)),
        ("last ticket sold at (s)", _n(rush.last_sale_seconds, 2)),
        ("sold-out refusals/s", _n(rush.sold_out_refusals_per_second)),
        *((f"latency {k} (ms)", _n(v, 1)) for k, v in rush.latency_ms.items() if k != "mean"),
        ("server CPU (s)", _n(rush.server_cpu_total, 2)),
        *(
            (f"  {name}", _n(seconds, 2))
            for name, seconds in rush.server_cpu_seconds.items()
            if len(rush.server_cpu_seconds) > 1
        ),
        (
            "server CPU per attempt (ms)",
            _n(1000 * rush.server_cpu_total / max(1, rush.attempts), 2),
        ),
        ("load generator CPU (s)", _n(rush.client_cpu_seconds, 2)),
    ]
    if len(report.rounds) > 1:
        for number, summary in enumerate(report.rounds, 1):
            rows.append(
                (
                    f"round {number}: drain s · attempts/s · p99 ms",
                    f"{summary['drain_seconds']:.2f} · {summary['attempts_per_second']:,.0f}"
                    f" · {summary['p99_ms']:,.0f}",
                )
            )
    if report.payments:
        pay = report.payments
        rows += [
            ("paid", _n(pay["paid"])),
            ("lapsed unpaid", _n(pay["lapsed"])),
            ("unpaid seats back after (s)", _n(pay["seats_back_after_seconds"], 1)),
            ("resold", _n(pay["resold"])),
        ]
    if report.baseline:
        for kind in hello.KINDS:
            rows.append(
                (f"hello world, {kind} (req/s)", _n(report.baseline[kind]["requests_per_second"]))
            )
        rows.append(("attempts/s ÷ FastAPI hello", _n(report.baseline["ratio_to_fastapi"], 2)))
        rows.append(
            (
                "sold-out refusals/s ÷ FastAPI hello",
                _n(report.baseline["sold_out_refusals_to_fastapi"], 2),
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    for check in report.checks:
        mark = "[green]ok[/]" if check.ok else "[bold red]FAILED[/]"
        table.add_row(f"check: {check.name}", f"{mark} ({check.detail})")
    for error in rush.errors:
        table.add_row("[red]error[/]", error)
    return table
