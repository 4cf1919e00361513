"""The `netprobe` command line: each command parses its options, calls one function, renders.

Exit codes: 0 success; 1 the measurement or the evidence failed (one line on stderr says why);
2 bad input (options, URL, configuration, a file to read); 3 the line measured below the plan
(`--plan`, `--min-share`); 4 `report verify` found the evidence intact but its signer not
pinned (no trusted key given). Errors become exit codes in one place, `errors.exit_code`, for every
command: a person sees one line, never a traceback or a raw errno.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperOption

from netprobe import __version__
from netprobe.errors import EXIT_BAD_INPUT, EXIT_FAILED, exit_code, one_line
from netprobe.i18n import _, current_language, ngettext, use_language

if TYPE_CHECKING:
    from netprobe.results import LineResult

EXIT_BELOW_PLAN = 3
EXIT_SIGNER_NOT_PINNED = 4

_Command = TypeVar("_Command", bound=Callable[..., Any])
_show_type = TyperOption.display_type_rich


def _no_flag_type(self: TyperOption, ctx: Any) -> str | None:
    # Typer prints "<bool>" beside flags such as --json, as if they took a value; they do not.
    return None if self.is_flag else _show_type(self, ctx)


TyperOption.display_type_rich = _no_flag_type  # type: ignore[method-assign]


def _one_line_errors(command: _Command) -> _Command:
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            from netprobe.console import error_line

            error_line(one_line(exc))
            raise typer.Exit(code) from None

    return run  # type: ignore[return-value]


class _App(typer.Typer):
    """A Typer whose commands all map their errors to exit codes the same way."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[_Command], _Command]:
        register = super().command(*args, **kwargs)
        return lambda command: register(_one_line_errors(command))

    def callback(self, *args: Any, **kwargs: Any) -> Callable[[_Command], _Command]:
        register = super().callback(*args, **kwargs)
        return lambda command: register(_one_line_errors(command))


app = _App(
    add_completion=False,
    no_args_is_help=True,
    help="Measure a broadband line and cloud drives against what was promised.",
    epilog="Examples:  netprobe speed --server http://192.0.2.1:8080 --plan 100M/20M   ·   "
    "netprobe --lang zh_CN report --config agent.yml -o report.html",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"netprobe {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
    lang: Annotated[
        str | None,
        typer.Option(help="Language of the output: en or zh_CN (default: the locale)"),
    ] = None,
) -> None:
    """Measure a broadband line and cloud drives against what was promised."""
    use_language(lang)


@app.command(
    epilog="Examples:  netprobe speed --server http://192.0.2.1:8080   ·   "
    "netprobe speed --server http://192.0.2.1:8080 --plan 100Mbps/20Mbps --json"
)
def speed(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://192.0.2.1:8080")],
    direction: Annotated[str, typer.Option(help="down, up or both")] = "both",
    protocol: Annotated[
        str,
        typer.Option(help="Server protocol: native, ookla, librespeed, cloudflare, ndt7, iperf3"),
    ] = "native",
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
        str | None,
        typer.Option(help="Contracted DOWN/UP rate with units, e.g. 1000M/50M or 100Mbps/20Mbps"),
    ] = None,
    min_share: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Share of the plan that counts as reached")
    ] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Measure download and upload against a server."""
    from netprobe.console import ProgressSink, error_line, print_summary
    from netprobe.measure.engine import EngineOptions
    from netprobe.measure.line import backend_for, directions_named, measure_line
    from netprobe.units import parse_rate_pair, parse_size

    directions = directions_named(direction)
    backend = backend_for(protocol, server)
    plan_rates = parse_rate_pair(plan) if plan else {}
    options = EngineOptions(
        streams=streams,
        duration_seconds=duration,
        max_bytes=parse_size(max_bytes),
        time_limit_seconds=time_limit,
    )
    sink = None if as_json else ProgressSink()
    result = asyncio.run(measure_line(backend, directions, options, sink))
    if as_json:
        typer.echo(json.dumps(_with_plan(result, plan_rates, min_share)))
    else:
        print_summary(result, plan_rates)
    errors = dict.fromkeys(d.error for d in result.directions() if not d.ok)
    for message in errors:
        error_line(str(message))
    if errors:
        raise typer.Exit(EXIT_FAILED)
    if any(_below_plan(result, plan_rates, min_share).values()):
        raise typer.Exit(EXIT_BELOW_PLAN)


def _below_plan(result: LineResult, plan: dict[str, float], min_share: float) -> dict[str, bool]:
    """Per measured direction with a plan: True when it stayed under `min_share` of the plan."""
    return {
        d.direction: (d.bytes_per_second or 0) < min_share * plan[d.direction]
        for d in result.directions()
        if d.ok and plan.get(d.direction)
    }


def _with_plan(result: LineResult, plan: dict[str, float], min_share: float) -> dict[str, Any]:
    """The result's JSON with the plan, and per direction its share of the plan."""
    data = result.to_dict()
    if not plan:
        return data
    below = _below_plan(result, plan, min_share)
    data["plan"] = {
        "download_bytes_per_second": plan["download"],
        "upload_bytes_per_second": plan["upload"],
        "min_share": min_share,
    }
    for measured in result.directions():
        if measured.ok and measured.bytes_per_second is not None:
            part = data[measured.direction]
            part["share_of_plan"] = measured.bytes_per_second / plan[measured.direction]
            part["below_plan"] = below[measured.direction]
    return data


@app.command(epilog="Example:  netprobe serve --port 8080 --rate 100M/20M")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "0.0.0.0",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8080,
    max_tests: Annotated[int, typer.Option(min=1, help="Concurrent tests at most")] = 8,
    max_request_bytes: Annotated[str, typer.Option(help="Bytes per request at most")] = "2GB",
    max_request_seconds: Annotated[
        float, typer.Option(min=1, help="Seconds per request at most")
    ] = 60.0,
    rate: Annotated[
        str | None, typer.Option(help="Act as a line of DOWN/UP, e.g. 100M/20M (default: no cap)")
    ] = None,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Open connections at most (also kept below the fd limit)")
    ] = 512,
    header_timeout: Annotated[
        float, typer.Option(min=0.5, help="Seconds a client has to send a request's headers")
    ] = 10.0,
    idle_timeout: Annotated[
        float, typer.Option(min=0.5, help="Seconds an upload may send nothing before it is cut")
    ] = 10.0,
    access_log: Annotated[
        str | None, typer.Option(help="Append one line per test to this file ('-': stderr)")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Serve Prometheus metrics at HOST:PORT/metrics")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(help="Sign a receipt for every test with this Ed25519 key (made if absent)"),
    ] = None,
    name: Annotated[str, typer.Option(help="The server's name in its receipts")] = "",
) -> None:
    """Run the reference test server."""
    from netprobe.serve.app import serve_forever
    from netprobe.serve.state import ServerLimits
    from netprobe.units import parse_rate_pair, parse_size

    rates = parse_rate_pair(rate, "--rate") if rate else {}
    limits = ServerLimits(
        max_bytes_per_request=parse_size(max_request_bytes),
        max_request_seconds=max_request_seconds,
        max_tests=max_tests,
        max_connections=max_connections,
        header_timeout_seconds=header_timeout,
        idle_body_timeout_seconds=idle_timeout,
        download_rate_bytes_per_second=rates.get("download"),
        upload_rate_bytes_per_second=rates.get("upload"),
    )
    receipts = None
    if key is not None:
        from netprobe.compliance.evidence import ProbeKey
        from netprobe.serve.receipt import ReceiptBook

        signer = ProbeKey.load(key) if key.exists() else ProbeKey.create(key)
        receipts = ReceiptBook(signer, name)
        typer.echo(f"signing receipts with key {signer.fingerprint}", err=True)
    serve_forever(
        host,
        port,
        limits,
        announce=lambda line: typer.echo(line, err=True),
        access_log=access_log,
        metrics=_parse_listen(metrics, "--metrics") if metrics else None,
        receipts=receipts,
    )


def _parse_listen(address: str, option: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option} must be HOST:PORT, e.g. 127.0.0.1:9101, not {address!r}")
    return host.strip("[]"), int(port)


@app.command(epilog="Examples:  netprobe latency 192.0.2.1   ·   netprobe latency host --tcp 443")
def latency(
    host: Annotated[str, typer.Argument(help="Host name or address")],
    icmp: Annotated[bool, typer.Option("--icmp", help="ICMP echo (the default)")] = False,
    tcp: Annotated[
        int | None, typer.Option(min=1, max=65535, help="TCP SYN ping to this port")
    ] = None,
    fallback_port: Annotated[
        int, typer.Option(min=1, max=65535, help="TCP connect port used without CAP_NET_RAW")
    ] = 443,
    count: Annotated[int, typer.Option(min=1, max=1000)] = 5,
    hops: Annotated[
        int, typer.Option(min=0, max=30, help="Traceroute: show the first N hops (needs root)")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Round-trip time, jitter and loss to a host; optionally the first hops of the path."""
    from netprobe.errors import ConfigError, MeasurementError
    from netprobe.measure.latency import latency_report

    if icmp and tcp is not None:
        raise ConfigError("--icmp and --tcp exclude each other")
    try:
        report = asyncio.run(latency_report(host, tcp, fallback_port, count, hops))
    except MeasurementError as exc:
        raise MeasurementError(f"{host}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        from netprobe.console import print_latency

        print_latency(report)
    if not report["received"]:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


config_app = _App(no_args_is_help=True, help="Check agent configuration files.")
app.add_typer(config_app, name="config")
results_app = _App(no_args_is_help=True, help="Read the agent's results store; import others.")
app.add_typer(results_app, name="results")


@app.command(epilog="Example:  netprobe agent --config /etc/netprobe/agent.yml")
def agent(
    config: Annotated[Path, typer.Option("--config", help="Agent configuration (YAML)")],
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for /metrics (overrides exporter.listen)")
    ] = None,
) -> None:
    """Run the agent: scheduled tests, results store, Prometheus exporter."""
    import os
    import sys

    # The agent runs for months: it becomes `python -m netprobe.agent` in this same process
    # (same PID for systemd, procd and signals), which never loads this parser and the
    # pydantic typer converts options with (about 6 MiB of an idle agent's memory).
    sys.stdout.flush()
    sys.stderr.flush()
    arguments = ["--config", str(config), "--lang", current_language()]
    arguments += ["--listen", listen] if listen is not None else []
    os.execv(sys.executable, [sys.executable, "-m", "netprobe.agent", *arguments])


@config_app.command("check", epilog="Example:  netprobe config check agent.yml")
def config_check(file: Annotated[Path, typer.Argument(help="Configuration file to check")]) -> None:
    """Exit 0 when FILE is a valid agent configuration, 2 with the reason when not."""
    from netprobe.config import check_config_file

    check_config_file(file)
    typer.echo(_("{file}: ok").format(file=file))


@config_app.command("render", epilog="Example:  netprobe config render fleet.yml --var SITE=berlin")
def config_render(
    template: Annotated[Path, typer.Argument(help="Fleet template with ${NAME} placeholders")],
    var: Annotated[
        list[str] | None, typer.Option("--var", help="NAME=VALUE, repeatable; else the environment")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (checked first), not stdout")
    ] = None,
) -> None:
    """Render a fleet configuration template for one probe; exit 2 if a value is missing."""
    from netprobe.fleet import parse_assignments, render_checked_config

    rendered = render_checked_config(template, parse_assignments(var or []), output)
    if output is None:
        typer.echo(rendered, nl=False)


@config_app.command("probe-id")
def config_probe_id(
    state_dir: Annotated[Path, typer.Option(help="Where the id is kept")] = Path(
        "/var/lib/netprobe"
    ),
) -> None:
    """Print this probe's stable id, making it on first use."""
    from netprobe.fleet import load_or_create_probe_id

    typer.echo(load_or_create_probe_id(state_dir))


StoreConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Agent configuration naming the store")
]
StorePathOption = Annotated[
    Path | None, typer.Option("--store", help="Results database (instead of --config)")
]
KindOption = Annotated[str | None, typer.Option("--kind", help="Only this kind: line, drive, ...")]
SinceOption = Annotated[str | None, typer.Option("--since", help="ISO 8601 start, e.g. 2026-11-01")]


@results_app.command("list", epilog="Example:  netprobe results list --config agent.yml --limit 20")
def results_list(
    config: StoreConfigOption = None,
    store: StorePathOption = None,
    kind: KindOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N results")] = 50,
) -> None:
    """One line per stored result, oldest first, in the probe's local time."""
    from netprobe.config import open_named_store
    from netprobe.console import results_table

    opened, zone = open_named_store(config, store)
    records = opened.records(kind=kind, since=since)[-limit:]
    opened.close()
    typer.echo(results_table(records, zone))


@results_app.command("export", epilog="Example:  netprobe results export --store r.db --format csv")
def results_export(
    config: StoreConfigOption = None,
    store: StorePathOption = None,
    output_format: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    kind: KindOption = None,
    since: SinceOption = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 end (exclusive)")] = None,
) -> None:
    """Write stored results to stdout: full sealed records (jsonl) or one row per direction (csv)."""
    import sys

    from netprobe.config import open_named_store
    from netprobe.errors import ConfigError
    from netprobe.report.csv import write_csv
    from netprobe.report.verify import export_lines

    if output_format not in ("jsonl", "csv"):
        raise ConfigError(f"--format must be jsonl or csv, not {output_format!r}")
    if output_format == "jsonl" and kind is not None:
        raise ConfigError("--kind is for csv: a sealed export is an unbroken piece of the chain")
    opened, zone = open_named_store(config, store)
    try:
        records = opened.records(kind=kind, since=since, until=until)
        if output_format == "jsonl":
            sys.stdout.write(export_lines(records, opened.sign_head(records)))
        else:
            write_csv(records, sys.stdout, zone)
    finally:
        opened.close()


@results_app.command(
    "import",
    epilog="Examples:  netprobe results import speedtest.csv --store results.db   ·   "
    "netprobe results import tracker.csv --config agent.yml --timezone Europe/Berlin",
)
def results_import(
    file: Annotated[Path, typer.Argument(help="The file another tool wrote")],
    config: StoreConfigOption = None,
    store: StorePathOption = None,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="speedtest-cli-json, speedtest-cli-csv, ookla-json, speedtest-tracker-csv, "
            "netprobe-jsonl or netprobe-csv (default: recognised from the file)",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="Zone of times written without a UTC offset, e.g. Europe/Berlin"),
    ] = None,
) -> None:
    """Store measurements made by other tools, marked as imported (docs/import.md)."""
    from netprobe.config import open_named_store
    from netprobe.results_import import import_records, read_import
    from netprobe.units import time_zone

    zone = time_zone(timezone, "--timezone") if timezone else None
    records = read_import(file.read_text(encoding="utf-8"), input_format, zone, file.name)
    opened, _zone = open_named_store(config, store, create=True)
    try:
        added, known = import_records(opened, records)
    finally:
        opened.close()
    typer.echo(
        ngettext(
            "{file}: imported {added} test ({known} already stored)",
            "{file}: imported {added} tests ({known} already stored)",
            added,
        ).format(file=file, added=added, known=known)
    )


report_app = _App(help="Compliance reports, and checking their evidence.")
app.add_typer(report_app, name="report")


def _policy_help() -> str:
    from netprobe.compliance.config import POLICY_NAMES

    return "Policy to judge by, repeatable (default: the config's): " + ", ".join(POLICY_NAMES)


@report_app.callback(
    invoke_without_command=True,
    epilog="Examples:  netprobe report --config agent.yml -o report.html   ·   "
    "netprobe --lang zh_CN report --input export.jsonl --plan 100M/40M --policy cn-miit",
)
def report(
    ctx: typer.Context,
    policy: Annotated[list[str] | None, typer.Option(help=_policy_help())] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="First day (local) or ISO time")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="Last day (local, inclusive)")] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="`results export` JSON lines (else the store)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Agent configuration: contract, policies, store")
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="html, json or csv")] = "html",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
    plan: Annotated[
        str | None, typer.Option(help="Contracted DOWN/UP rate, e.g. 100M/40M (without --config)")
    ] = None,
    normal: Annotated[str | None, typer.Option(help="Normally available DOWN/UP rate")] = None,
    minimum: Annotated[str | None, typer.Option(help="Contracted minimum DOWN/UP rate")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="The line's time zone, e.g. Europe/Berlin")
    ] = None,
) -> None:
    """Judge stored results by a regulator's rule; write an HTML, JSON or CSV report."""
    if ctx.invoked_subcommand is not None:
        return
    from netprobe.report.render import ReportRequest, make_report

    text = make_report(
        ReportRequest(
            config_path=config,
            input_path=input_file,
            policies=policy or None,
            since=since,
            until=until,
            output_format=output_format,
            plan=plan,
            normal=normal,
            minimum=minimum,
            timezone=timezone,
        )
    )
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@report_app.command("verify", epilog="Example:  netprobe report verify report.html")
def report_verify(
    file: Annotated[Path, typer.Argument(help="An export (JSON lines) or a JSON/HTML report")],
    public_key: Annotated[
        list[str] | None,
        typer.Option(help="A probe public key (base64) to trust, from `netprobe evidence key`"),
    ] = None,
    trust_file: Annotated[
        Path | None, typer.Option(help="File of trusted probe public keys, one a line")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Configuration whose servers[].public_key are pinned")
    ] = None,
    server_key: Annotated[
        list[str] | None, typer.Option(help="NAME=KEY: a server receipt key to trust")
    ] = None,
) -> None:
    """Check the chain, its signed head and the server receipts; exit 1 naming the first
    failure, 4 when all is intact but no trusted key was given (signer not pinned)."""
    from collections import Counter

    from netprobe.compliance.evidence import EvidenceError, SignerNotPinned, key_fingerprint
    from netprobe.compliance.receipts import check_records
    from netprobe.console import error_line
    from netprobe.report.render import pinned_server_keys
    from netprobe.report.verify import load_trust_file, read_evidence, verify_file

    trusted = set(public_key or [])
    if trust_file is not None:
        trusted |= load_trust_file(trust_file)
    servers = []
    if config is not None:
        from netprobe.config import load_config

        servers = load_config(config, measuring=False).servers
    pinned = pinned_server_keys(servers, server_key or [])
    try:
        summary = verify_file(file, trusted)
    except SignerNotPinned as exc:
        error_line(f"{file}: {exc}")
        raise typer.Exit(EXIT_SIGNER_NOT_PINNED) from None
    except EvidenceError as exc:
        raise EvidenceError(f"{file}: {exc}") from None
    records = read_evidence(file.read_bytes().decode("utf-8", errors="replace")).records
    checks = [c for c in check_records(records, pinned) if c[2].status != "none"]
    tally = Counter(c.describe() if c.status == "confirmed" else c.status for _r, _d, c in checks)
    if tally:
        typer.echo("receipts: " + ", ".join(f"{n} {what}" for what, n in sorted(tally.items())))
    for record, direction, check in checks:
        if check.status != "confirmed":
            typer.echo(f"seq {record['evidence']['seq']} {direction}: {check.describe()}")
    if any(check.failed for _r, _d, check in checks):
        raise EvidenceError(f"{file}: a server receipt contradicts its record")
    typer.echo(
        _(
            "{file}: {count} records verified (seq {first}-{last}): unbroken chain, valid "
            "signatures, signed head, signer pinned (key {fingerprint})"
        ).format(
            file=file,
            count=summary.count,
            first=summary.first_seq,
            last=summary.last_seq,
            fingerprint=key_fingerprint(summary.first_key),
        )
    )


evidence_app = _App(no_args_is_help=True, help="The probe's signing key.")
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("key")
def evidence_key(config: StoreConfigOption = None, store: StorePathOption = None) -> None:
    """Print the probe's public key and fingerprint: what a reader pins to trust its reports."""
    from netprobe.config import open_named_store

    opened, _zone = open_named_store(config, store)
    try:
        key = opened.signing_key()
    finally:
        opened.close()
    typer.echo(f"fingerprint {key.fingerprint}")
    typer.echo(f"public key  {key.public_key_b64}")


@evidence_app.command("rotate")
def evidence_rotate(
    config: StoreConfigOption = None,
    store: StorePathOption = None,
    reason: Annotated[str, typer.Option(help="Why, kept in the chain")] = "scheduled rotation",
) -> None:
    """Switch to a new probe key through a chain record signed by the old one."""
    from netprobe.config import open_named_store

    opened, _zone = open_named_store(config, store)
    try:
        opened.rotate_key(reason)
        key = opened.signing_key()
    finally:
        opened.close()
    typer.echo(f"rotated; new fingerprint {key.fingerprint}")
    typer.echo(f"public key  {key.public_key_b64}")


@app.command(
    epilog="Examples:  netprobe drive --config agent.yml   ·   "
    "netprobe drive --url https://example.net/file.bin --kind http"
)
def drive(
    name: Annotated[
        str | None, typer.Argument(help="A drive from the config (default: all)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Configuration file with drives")] = None,
    url: Annotated[
        str | None, typer.Option(help="Ad hoc: the file's URL (or rclone remote:path)")
    ] = None,
    kind: Annotated[str, typer.Option(help="Ad hoc: http, webdav, s3 or rclone")] = "http",
    user: Annotated[str | None, typer.Option(help="Ad hoc: user name (Basic auth)")] = None,
    password_env: Annotated[
        str | None, typer.Option(help="Ad hoc: environment variable holding the password")
    ] = None,
    token_env: Annotated[
        str | None, typer.Option(help="Ad hoc: environment variable holding a bearer token")
    ] = None,
    access_key_id: Annotated[str | None, typer.Option(help="Ad hoc S3: access key id")] = None,
    secret_key_env: Annotated[
        str | None, typer.Option(help="Ad hoc S3: environment variable holding the secret key")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option(help="Ad hoc: extra header 'Name: value' (repeatable)")
    ] = None,
    connections: Annotated[
        int, typer.Option(min=1, max=16, help="Ad hoc: also measure N connections to classify")
    ] = 1,
    duration: Annotated[
        float, typer.Option(min=2, max=600, help="Ad hoc: seconds the steady rate must hold")
    ] = 10.0,
    burst: Annotated[
        float, typer.Option(min=0, max=600, help="Ad hoc: the longest burst to wait out, seconds")
    ] = 25.0,
    upload: Annotated[
        str | None, typer.Option(help="Ad hoc: upload this much fresh data, e.g. 16MiB")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (one object per drive)")
    ] = False,
) -> None:
    """Measure cloud drives: the configured ones, or one file given by --url."""
    from netprobe.config import drives_named
    from netprobe.console import ProgressSink, error_line
    from netprobe.drives.config import Credentials, ad_hoc, ad_hoc_with
    from netprobe.drives.result import describe
    from netprobe.drives.run import probe_drives
    from netprobe.results import new_id
    from netprobe.secrets import Secret
    from netprobe.units import parse_size

    if url is None:
        drives = drives_named(config, name)
    else:
        credentials = Credentials(
            username=user,
            password=Secret(env=password_env) if password_env else None,
            token=Secret(env=token_env) if token_env else None,
            access_key_id=access_key_id,
            secret_access_key=Secret(env=secret_key_env) if secret_key_env else None,
        )
        drives = [
            ad_hoc_with(
                ad_hoc(kind, url),
                credentials=credentials,
                headers=header or [],
                connections=connections,
                duration_seconds=duration,
                burst_seconds=burst,
                upload_bytes=parse_size(upload) if upload is not None else None,
            )
        ]
    sink = None if as_json else ProgressSink()
    results = asyncio.run(probe_drives(drives, line=None, run_id=new_id(), sink=sink))
    failed = False
    for result in results:
        if as_json:
            typer.echo(json.dumps(result.to_dict()))
        for transfer in result.directions():
            if transfer.ok:
                if not as_json:
                    typer.echo(describe(result, transfer))
            else:
                failed = True
                error_line(f"{result.drive} {transfer.direction}: {transfer.error}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Entry point: usage errors become one line and exit 2, like every other bad input."""
    from typer.exceptions import TyperException

    try:
        code = app(standalone_mode=False)
    except TyperException as exc:
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
            typer.echo(context.get_help())
            raise SystemExit(0) from None
        from netprobe.console import error_line

        format_message = getattr(exc, "format_message", None)
        error_line(format_message() if format_message else str(exc))
        raise SystemExit(EXIT_BAD_INPUT) from None
    raise SystemExit(code if isinstance(code, int) else 0)
