"""The `netprobe` command line: parses options, calls one function, renders the outcome.

Exit codes: 0 success; 1 the measurement failed (one line on stderr says why); 2 bad input
(options, URL, configuration); 3 the line measured below the plan (`--plan`, `--min-share`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from netprobe import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Measure a broadband line and cloud drives against what was promised.",
)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BELOW_PLAN = 3


def _bad_input(message: str) -> typer.Exit:
    from netprobe.console import error_line

    error_line(message)
    return typer.Exit(EXIT_BAD_INPUT)


@app.command()
def speed(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://192.0.2.1:8080")],
    direction: Annotated[str, typer.Option(help="down, up or both")] = "both",
    protocol: Annotated[str, typer.Option(help="Server protocol")] = "native",
    streams: Annotated[
        int | None, typer.Option(min=1, max=64, help="Fixed stream count (default: adaptive)")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.5, max=120, help="Window seconds (default: adaptive stop)")
    ] = None,
    max_bytes: Annotated[str, typer.Option(help="Byte budget per direction, e.g. 1.5GB")] = "3GB",
    time_limit: Annotated[
        float, typer.Option(min=2, max=600, help="Seconds per direction, at most")
    ] = 30.0,
    plan: Annotated[
        str | None, typer.Option(help="Contracted DOWN/UP rate, e.g. 1000M/50M")
    ] = None,
    min_share: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Share of the plan that counts as reached")
    ] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Measure download and upload against a server."""
    from netprobe.console import ProgressSink, error_line, print_summary
    from netprobe.measure.engine import EngineOptions
    from netprobe.measure.http import Endpoint
    from netprobe.measure.line import backend_for, measure_line
    from netprobe.units import UnitError, parse_rate, parse_size

    directions = {"down": ["download"], "up": ["upload"], "both": ["download", "upload"]}
    if direction not in directions:
        raise _bad_input(f"--direction must be down, up or both, not {direction!r}")
    try:
        Endpoint.parse(server)
        backend = backend_for(protocol, server)
        budget = parse_size(max_bytes)
        plan_rates = _parse_plan(plan, parse_rate) if plan else {}
    except (ValueError, UnitError) as exc:
        raise _bad_input(str(exc)) from None
    options = EngineOptions(
        streams=streams, duration_seconds=duration, max_bytes=budget, time_limit_seconds=time_limit
    )
    sink = None if as_json else ProgressSink()
    result = asyncio.run(measure_line(backend, directions[direction], options, sink))  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        print_summary(result, plan_rates)
    failure = next((d for d in result.directions() if not d.ok), None)
    if failure is not None:
        if as_json:
            error_line(f"{failure.direction}: {failure.error}")
        raise typer.Exit(EXIT_FAILED)
    for measured in result.directions():
        contracted = plan_rates.get(measured.direction)
        if contracted and (measured.bytes_per_second or 0) < min_share * contracted:
            raise typer.Exit(EXIT_BELOW_PLAN)


def _parse_plan(plan: str, parse_rate: object) -> dict[str, float]:
    down, sep, up = plan.partition("/")
    if not sep or not down or not up:
        raise ValueError(f"--plan must be DOWN/UP, e.g. 1000M/50M, not {plan!r}")
    return {"download": parse_rate(down), "upload": parse_rate(up)}  # type: ignore[operator]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "0.0.0.0",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8080,
    max_tests: Annotated[int, typer.Option(min=1, help="Concurrent tests at most")] = 8,
    max_request_bytes: Annotated[str, typer.Option(help="Bytes per request at most")] = "2GB",
    max_request_seconds: Annotated[
        float, typer.Option(min=1, help="Seconds per request at most")
    ] = 60.0,
) -> None:
    """Run the reference test server."""
    from netprobe.serve.app import serve_forever
    from netprobe.serve.state import ServerLimits
    from netprobe.units import UnitError, parse_size

    try:
        request_bytes = parse_size(max_request_bytes)
    except UnitError as exc:
        raise _bad_input(str(exc)) from None
    typer.echo(f"netprobe server {__version__} listening on http://{host}:{port}/", err=True)
    serve_forever(
        host,
        port,
        ServerLimits(
            max_bytes_per_request=request_bytes,
            max_request_seconds=max_request_seconds,
            max_tests=max_tests,
        ),
    )


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
