"""The `netprobe` command line: parses options, calls one function, renders the outcome.

Exit codes: 0 success; 1 the measurement failed (one line on stderr says why); 2 bad input
(options, URL, configuration); 3 the line measured below the plan (`--plan`, `--min-share`);
4 `report verify` found the evidence intact but its signer not pinned.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netprobe import __version__

if TYPE_CHECKING:
    from netprobe.config import AgentConfig
    from netprobe.drives.config import DriveConfig
    from netprobe.serve.receipt import ReceiptBook
    from netprobe.store import Store

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Measure a broadband line and cloud drives against what was promised.",
)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BELOW_PLAN = 3
EXIT_SIGNER_NOT_PINNED = 4  # `report verify`: intact, but no trusted key says who signed it


def _bad_input(message: str) -> typer.Exit:
    from netprobe.console import error_line

    error_line(message)
    return typer.Exit(EXIT_BAD_INPUT)


@app.command()
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
        str | None, typer.Option(help="Contracted DOWN/UP rate, e.g. 1000M/50M")
    ] = None,
    min_share: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Share of the plan that counts as reached")
    ] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Measure download and upload against a server."""
    from netprobe.console import ProgressSink, error_line, print_summary
    from netprobe.errors import ConfigError
    from netprobe.measure.engine import EngineOptions
    from netprobe.measure.http import Endpoint
    from netprobe.measure.line import backend_for, measure_line
    from netprobe.units import UnitError, parse_size

    directions = {"down": ["download"], "up": ["upload"], "both": ["download", "upload"]}
    if direction not in directions:
        raise _bad_input(f"--direction must be down, up or both, not {direction!r}")
    try:
        if protocol == "native":
            Endpoint.parse(server)
        backend = backend_for(protocol, server)
        budget = parse_size(max_bytes)
        plan_rates = _parse_plan(plan) if plan else {}
    except (ValueError, UnitError) as exc:
        raise _bad_input(str(exc)) from None
    options = EngineOptions(
        streams=streams, duration_seconds=duration, max_bytes=budget, time_limit_seconds=time_limit
    )
    sink = None if as_json else ProgressSink()
    try:
        result = asyncio.run(measure_line(backend, directions[direction], options, sink))  # type: ignore[arg-type]
    except ConfigError as exc:
        raise _bad_input(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        print_summary(result, plan_rates)
    errors = dict.fromkeys(d.error for d in result.directions() if not d.ok)
    for message in errors:
        error_line(str(message))
    if errors:
        raise typer.Exit(EXIT_FAILED)
    for measured in result.directions():
        contracted = plan_rates.get(measured.direction)
        if contracted and (measured.bytes_per_second or 0) < min_share * contracted:
            raise typer.Exit(EXIT_BELOW_PLAN)


def _parse_plan(plan: str, option: str = "--plan") -> dict[str, float]:
    """DOWN/UP rates such as 1000M/50M, as bytes per second by direction."""
    from netprobe.units import parse_rate

    down, sep, up = plan.partition("/")
    if not sep or not down or not up:
        raise ValueError(f"{option} must be DOWN/UP, e.g. 1000M/50M, not {plan!r}")
    return {"download": parse_rate(down), "upload": parse_rate(up)}


@app.command()
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
    key: Annotated[
        Path | None,
        typer.Option(help="Sign a receipt for every test with this Ed25519 key (made if absent)"),
    ] = None,
    name: Annotated[str, typer.Option(help="The server's name in its receipts")] = "",
) -> None:
    """Run the reference test server."""
    from netprobe.serve.app import serve_forever
    from netprobe.serve.state import ServerLimits
    from netprobe.units import UnitError, parse_size

    try:
        request_bytes = parse_size(max_request_bytes)
        rates = _parse_plan(rate, "--rate") if rate else {}
    except (ValueError, UnitError) as exc:
        raise _bad_input(str(exc)) from None
    receipts = _receipt_book(key, name) if key is not None else None
    typer.echo(f"netprobe server {__version__} listening on http://{host}:{port}/", err=True)
    serve_forever(
        host,
        port,
        ServerLimits(
            max_bytes_per_request=request_bytes,
            max_request_seconds=max_request_seconds,
            max_tests=max_tests,
            download_rate_bytes_per_second=rates.get("download"),
            upload_rate_bytes_per_second=rates.get("upload"),
        ),
        receipts,
    )


def _receipt_book(key_path: Path, name: str) -> ReceiptBook:
    from netprobe.compliance.evidence import KeyFileError, ProbeKey
    from netprobe.serve.receipt import ReceiptBook

    try:
        key = ProbeKey.load(key_path) if key_path.exists() else ProbeKey.create(key_path)
    except KeyFileError as exc:
        raise _bad_input(str(exc)) from None
    except OSError as exc:
        raise _bad_input(f"cannot write the key file {key_path}: {exc.strerror}") from None
    typer.echo(
        f"signing receipts with key {key.fingerprint} (public key {key.public_key_b64})", err=True
    )
    return ReceiptBook(key, name)


@app.command()
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
    import dataclasses

    from netprobe.console import error_line
    from netprobe.errors import MeasurementError
    from netprobe.measure.latency import RawSocketDenied, ping, traceroute

    if icmp and tcp is not None:
        raise _bad_input("--icmp and --tcp exclude each other")
    method = "tcp_syn" if tcp is not None else "icmp"
    port = tcp if tcp is not None else fallback_port
    try:
        result = asyncio.run(ping(host, method=method, port=port, count=count))  # type: ignore[arg-type]
    except MeasurementError as exc:
        error_line(f"{host}: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    report = result.to_dict()
    if hops:
        try:
            report["path"] = [dataclasses.asdict(h) for h in traceroute(host, hops)]
        except RawSocketDenied:
            report["path_error"] = "traceroute needs CAP_NET_RAW (run as root)"
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_latency(report)
    if not result.rtts_seconds:
        raise typer.Exit(EXIT_FAILED)


def _print_latency(report: dict[str, object]) -> None:
    def ms(value: object) -> str:
        return "-" if value is None else f"{float(value) * 1000:.2f} ms"  # type: ignore[arg-type]

    port = f" port {report['port']}" if report["port"] else ""
    typer.echo(
        f"{report['host']} {report['method']}{port}: {report['received']}/{report['sent']} answered, "
        f"loss {float(report['loss_ratio']):.0%}, min {ms(report['min_seconds'])}, "  # type: ignore[arg-type]
        f"median {ms(report['median_seconds'])}, jitter {ms(report['jitter_seconds'])}"
    )
    if report["note"]:
        typer.echo(f"note: {report['note']}")
    for hop in report.get("path", []):  # type: ignore[attr-defined]
        typer.echo(f"{hop['ttl']:>3}  {hop['address'] or '*':<40} {ms(hop['rtt_seconds'])}")
    if report.get("path_error"):
        typer.echo(f"path: {report['path_error']}")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


config_app = typer.Typer(no_args_is_help=True, help="Check agent configuration files.")
app.add_typer(config_app, name="config")
results_app = typer.Typer(no_args_is_help=True, help="Read the agent's results store.")
app.add_typer(results_app, name="results")


@app.command()
def agent(
    config: Annotated[Path, typer.Option("--config", help="Agent configuration (YAML)")],
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for /metrics (overrides exporter.listen)")
    ] = None,
) -> None:
    """Run the agent: scheduled tests, results store, Prometheus exporter."""
    import logging

    from netprobe.agent.main import run_agent
    from netprobe.errors import ConfigError, StoreError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(run_agent(config, listen))
    except ConfigError as exc:
        raise _bad_input(str(exc)) from None
    except (StoreError, OSError) as exc:
        from netprobe.console import error_line

        error_line(str(exc))
        raise typer.Exit(EXIT_FAILED) from None


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="Configuration file to check")]) -> None:
    """Exit 0 when FILE is a valid agent configuration, 2 with the reason when not."""
    from netprobe.config import load_config
    from netprobe.errors import ConfigError
    from netprobe.exporter import load_web_config

    try:
        loaded = load_config(file)
        if loaded.exporter.web_config:
            load_web_config(Path(loaded.exporter.web_config))
    except ConfigError as exc:
        raise _bad_input(str(exc)) from None
    typer.echo(f"{file}: ok")


@config_app.command("render")
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
    from netprobe.errors import ConfigError
    from netprobe.fleet import parse_assignments, render_checked_config

    try:
        rendered = render_checked_config(template, parse_assignments(var or []), output)
    except ConfigError as exc:
        raise _bad_input(str(exc)) from None
    if output is None:
        typer.echo(rendered, nl=False)


@config_app.command("probe-id")
def config_probe_id(
    state_dir: Annotated[Path, typer.Option(help="Where the id is kept")] = Path(
        "/var/lib/netprobe"
    ),
) -> None:
    """Print this probe's stable id, making it on first use."""
    from netprobe.errors import ConfigError
    from netprobe.fleet import load_or_create_probe_id

    try:
        typer.echo(load_or_create_probe_id(state_dir))
    except ConfigError as exc:
        raise _bad_input(str(exc)) from None


def _open_store(config: Path | None, store: Path | None) -> Store:
    from netprobe.config import load_config
    from netprobe.errors import ConfigError, StoreError
    from netprobe.store import Store

    try:
        if store is None and config is None:
            raise ConfigError("give --config FILE or --store PATH")
        key_path = None
        if store is not None:
            path = store
        else:
            section = load_config(config).store  # type: ignore[arg-type]
            path, key_path = Path(section.path), section.key_file and Path(section.key_file)
        if not path.exists():
            raise ConfigError(f"no results store at {path}")
        return Store(path, key_path or None)
    except (ConfigError, StoreError) as exc:
        raise _bad_input(str(exc)) from None


StoreConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Agent configuration naming the store")
]
StorePathOption = Annotated[
    Path | None, typer.Option("--store", help="Results database (instead of --config)")
]
KindOption = Annotated[str | None, typer.Option("--kind", help="Only this kind: line, drive, ...")]
SinceOption = Annotated[str | None, typer.Option("--since", help="ISO 8601 start, e.g. 2026-11-01")]


@results_app.command("list")
def results_list(
    config: StoreConfigOption = None,
    store: StorePathOption = None,
    kind: KindOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N results")] = 50,
) -> None:
    """One line per stored result, oldest first."""
    from netprobe.store import summary_line

    opened = _open_store(config, store)
    for record in opened.records(kind=kind, since=since)[-limit:]:
        typer.echo(summary_line(record))
    opened.close()


@results_app.command("export")
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

    from netprobe.errors import StoreError
    from netprobe.report.verify import export_lines
    from netprobe.store import write_csv

    if output_format not in ("jsonl", "csv"):
        raise _bad_input(f"--format must be jsonl or csv, not {output_format!r}")
    if output_format == "jsonl" and kind is not None:
        raise _bad_input("--kind is for csv: a sealed export is an unbroken piece of the chain")
    opened = _open_store(config, store)
    try:
        records = opened.records(kind=kind, since=since, until=until)
        if output_format == "jsonl":
            sys.stdout.write(export_lines(records, opened.sign_head(records)))
        else:
            write_csv(records, sys.stdout)
    except StoreError as exc:
        raise _bad_input(str(exc)) from None
    finally:
        opened.close()


report_app = typer.Typer(help="Compliance reports, and checking their evidence.")
app.add_typer(report_app, name="report")


@report_app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context,
    policy: Annotated[
        list[str] | None, typer.Option(help="Policy to judge by (repeatable; default: config's)")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="First day (local) or ISO time")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="Last day (local, inclusive)")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="`results export` JSON lines (else the store)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Agent configuration: contract, policies, store")
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="html, json or csv")] = "html",
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout)")] = None,
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
    import dataclasses

    from netprobe.compliance.config import POLICY_NAMES, ComplianceConfig
    from netprobe.compliance.contract import Contract
    from netprobe.compliance.evidence import EvidenceError
    from netprobe.errors import ConfigError, StoreError
    from netprobe.report.document import period_bounds
    from netprobe.report.render import FORMATS, render_report
    from netprobe.report.verify import read_evidence
    from netprobe.units import UnitError

    if output_format not in FORMATS:
        raise _bad_input(f"--format must be html, json or csv, not {output_format!r}")
    for name in policy or []:
        if name not in POLICY_NAMES:
            raise _bad_input(f"--policy {name!r} is unknown (known: {', '.join(POLICY_NAMES)})")
    try:
        agent_config = None
        if config is not None:
            from netprobe.config import load_config

            agent_config = load_config(config)
        compliance = agent_config.compliance if agent_config else ComplianceConfig()
        if timezone is not None:
            compliance = dataclasses.replace(compliance, timezone=timezone)
        compliance = compliance.located(agent_config.probe.timezone if agent_config else None)
        if plan is not None:
            rates = {
                k: _parse_plan(v) if v else {}
                for k, v in (("plan", plan), ("normal", normal), ("minimum", minimum))
            }
            contract = Contract.from_rates(
                download=rates["plan"]["download"],
                upload=rates["plan"]["upload"],
                download_normal=rates["normal"].get("download"),
                upload_normal=rates["normal"].get("upload"),
                download_minimum=rates["minimum"].get("download"),
                upload_minimum=rates["minimum"].get("upload"),
            )
        elif agent_config is not None:
            contract = Contract.from_config(agent_config.contract)
        else:
            raise ConfigError("give --config FILE or --plan DOWN/UP: the report needs the contract")
        if input_file is not None:
            carried = read_evidence(input_file.read_text(encoding="utf-8"))
            records, head = carried.records, carried.head
        else:
            start, end = period_bounds(since, until, compliance.zone())
            store = _open_store(config, None)
            try:
                records = store.records(
                    since=start.isoformat() if start else None,
                    until=end.isoformat() if end else None,
                )
                head = store.sign_head(records) if records else None
            finally:
                store.close()
        text = render_report(
            records,
            contract,
            compliance,
            output_format,
            policy or None,
            since,
            until,
            head=head,
            server_keys=_server_keys(agent_config, []),
        )
    except (ConfigError, UnitError, EvidenceError, StoreError, ValueError, OSError) as exc:
        raise _bad_input(str(exc)) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@report_app.command("verify")
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
    from netprobe.compliance.evidence import EvidenceError, SignerNotPinned, key_fingerprint
    from netprobe.compliance.receipts import check_records
    from netprobe.console import error_line
    from netprobe.errors import ConfigError
    from netprobe.report.verify import load_trust_file, read_evidence, verify_file

    try:
        trusted = set(public_key or [])
        if trust_file is not None:
            trusted |= load_trust_file(trust_file)
        agent_config = None
        if config is not None:
            from netprobe.config import load_config

            agent_config = load_config(config)
        pinned = _server_keys(agent_config, server_key or [])
        summary = verify_file(file, trusted)
        records = read_evidence(file.read_text(encoding="utf-8", errors="replace")).records
    except (OSError, ConfigError, ValueError) as exc:
        raise _bad_input(str(exc)) from None
    except SignerNotPinned as exc:
        error_line(f"{file}: {exc}")
        raise typer.Exit(EXIT_SIGNER_NOT_PINNED) from None
    except EvidenceError as exc:
        error_line(f"{file}: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    failed = False
    for record, direction, check in check_records(records, pinned):
        if check.status == "none":
            continue
        seq = record["evidence"]["seq"]
        typer.echo(f"seq {seq} {direction}: {check.describe()}")
        failed = failed or check.failed
    if failed:
        error_line(f"{file}: a server receipt contradicts its record")
        raise typer.Exit(EXIT_FAILED)
    typer.echo(
        f"{file}: {summary.count} records verified (seq {summary.first_seq}-{summary.last_seq}): "
        f"unbroken chain, valid signatures, signed head, signer pinned "
        f"(key {key_fingerprint(summary.first_key)})"
    )


def _server_keys(agent_config: AgentConfig | None, given: list[str]) -> dict[str, str]:
    """Pinned server receipt keys (key -> name): the config's servers, then NAME=KEY options."""
    pinned = {
        server.public_key: server.name or server.url
        for server in (agent_config.servers if agent_config else [])
        if server.public_key
    }
    for item in given:
        name, sep, key = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--server-key must be NAME=KEY, not {item!r}")
        pinned[key] = name
    return pinned


evidence_app = typer.Typer(no_args_is_help=True, help="The probe's signing key.")
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("key")
def evidence_key(config: StoreConfigOption = None, store: StorePathOption = None) -> None:
    """Print the probe's public key and fingerprint: what a reader pins to trust its reports."""
    from netprobe.errors import StoreError

    opened = _open_store(config, store)
    try:
        key = opened.signing_key()
    except StoreError as exc:
        raise _bad_input(str(exc)) from None
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
    from netprobe.errors import StoreError

    opened = _open_store(config, store)
    try:
        opened.rotate_key(reason)
        key = opened.signing_key()
    except StoreError as exc:
        raise _bad_input(str(exc)) from None
    finally:
        opened.close()
    typer.echo(f"rotated; new fingerprint {key.fingerprint}")
    typer.echo(f"public key  {key.public_key_b64}")


@app.command()
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
        float, typer.Option(min=2, max=600, help="Ad hoc: download seconds")
    ] = 10.0,
    upload: Annotated[
        str | None, typer.Option(help="Ad hoc: upload this much fresh data, e.g. 16MiB")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (one object per drive)")
    ] = False,
) -> None:
    """Measure cloud drives: the configured ones, or one file given by --url."""
    from netprobe.console import error_line
    from netprobe.drives.result import describe
    from netprobe.drives.run import probe_drives
    from netprobe.errors import ConfigError
    from netprobe.results import new_id

    try:
        if url is not None:
            drives = [
                _ad_hoc_drive(
                    url,
                    kind,
                    user,
                    password_env,
                    token_env,
                    access_key_id,
                    secret_key_env,
                    header or [],
                    connections,
                    duration,
                    upload,
                )
            ]
        elif config is not None:
            from netprobe.config import load_config

            drives = [d for d in load_config(config).drives if name in (None, d.name)]
            if not drives:
                raise ConfigError(
                    f"no drive named {name!r}" if name else "no drives configured", file=str(config)
                )
        else:
            raise ConfigError("give --url URL --kind KIND, or --config FILE [NAME]")
    except (ConfigError, ValueError) as exc:
        raise _bad_input(str(exc)) from None
    results = asyncio.run(probe_drives(drives, line=None, run_id=new_id()))
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


def _ad_hoc_drive(
    url: str,
    kind: str,
    user: str | None,
    password_env: str | None,
    token_env: str | None,
    access_key_id: str | None,
    secret_key_env: str | None,
    headers: list[str],
    connections: int,
    duration: float,
    upload: str | None,
) -> DriveConfig:
    from netprobe.drives.config import ad_hoc
    from netprobe.secrets import Secret
    from netprobe.units import parse_size

    drive = ad_hoc(kind, url)
    credentials = drive.credentials
    credentials.username = user
    credentials.password = Secret(env=password_env) if password_env else None
    credentials.token = Secret(env=token_env) if token_env else None
    credentials.access_key_id = access_key_id
    credentials.secret_access_key = Secret(env=secret_key_env) if secret_key_env else None
    for line in headers:
        field_name, sep, value = line.partition(":")
        if not sep or not field_name.strip():
            raise ValueError(f"--header must be 'Name: value', not {line!r}")
        drive.headers[field_name.strip()] = value.strip()
    drive.connections = connections
    drive.duration = duration
    drive.burst = min(drive.burst, duration / 2)
    if upload is not None:
        drive.upload.enabled = True
        drive.upload.size = parse_size(upload)
    drive.__post_init__()
    return drive


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
