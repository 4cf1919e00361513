"""What a person sees in the terminal: live progress of a run, the summary after it, and the
tables of `latency` and `results list`. Every word goes through `netprobe.i18n`."""

from __future__ import annotations

import sys
from datetime import tzinfo
from typing import Any

from rich.console import Console

from netprobe.compliance.series import parse_utc
from netprobe.events import Event
from netprobe.i18n import N_, _
from netprobe.results import LineResult
from netprobe.units import format_rate, format_size, mbit

RECORD_KINDS = (N_("line"), N_("drive"))


def direction_name(direction: str) -> str:
    """ "download" or "upload" in the language in use."""
    return {"download": _("download"), "upload": _("upload")}.get(direction, direction)


class ProgressSink:
    """Shows one live status line per direction on stderr (the engine's events, rendered).

    An upload's rate is shown only once warm-up is over: before that the sender counts what it
    wrote into its socket buffers, which on a slow line is many times what the line carries.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._status = self.console.status(_("connecting…")) if self.console.is_terminal else None
        self._measuring = False

    def emit(self, event: Event) -> None:
        if event.kind == "started":
            self._measuring = False
            if self._status is not None:
                self._status.start()
        elif event.kind == "warmup_done":
            self._measuring = True
        if self._status is None:
            return
        if event.kind == "sample":
            self._status.update(self.sample_line(event))
        elif event.kind == "finishing":
            waiting = _("stopping; waiting up to {seconds:g} s for the server's count of the bytes")
            self._status.update(
                f"{direction_name(event.direction)}: {waiting.format(seconds=event.detail)}"
            )
        elif event.kind in ("finished", "error"):
            self._status.stop()

    def sample_line(self, event: Event) -> str:
        """The status line for one sample: direction, phase, streams, rate (when true), bytes."""
        phase = _("measuring") if self._measuring else _("warm-up")
        if self._measuring or event.direction != "upload":
            rate = format_rate(event.bytes_per_second or 0)
        else:
            rate = _("(rate after warm-up)")
        streams = _("{count} streams").format(count=event.streams)
        return (
            f"{direction_name(event.direction):<8} {phase:<9} {streams:>10} "
            f"{rate:>20}  {format_size(event.total_bytes):>9}"
        )


def print_summary(
    result: LineResult, plan: dict[str, float], console: Console | None = None
) -> None:
    """The summary of what was measured, in Mbit/s, with the share of the plan when given.

    Failed directions are not shown here: the caller reports them as error lines.
    """
    measured = [d for d in result.directions() if d.ok]
    if not measured:
        return
    console = console or Console()
    server_label = _("server")
    console.print(
        f"{server_label:<9} {result.server.url} ({result.server.protocol})", highlight=False
    )
    if result.idle_latency_seconds is not None:
        loaded = "".join(
            _(", {ms:.1f} ms during {direction}").format(
                ms=d.loaded_latency_seconds * 1000, direction=direction_name(d.direction)
            )
            for d in result.directions()
            if d.loaded_latency_seconds is not None
        )
        idle = _("{ms:.2f} ms idle").format(ms=result.idle_latency_seconds * 1000)
        label = _("latency")
        console.print(f"{label:<9} {idle}{loaded}", highlight=False)
    for direction in measured:
        rate = direction.bytes_per_second or 0.0
        line = f"{direction_name(direction.direction):<9} [bold]{mbit(rate):.1f} Mbit/s[/bold]"
        contracted = plan.get(direction.direction)
        if contracted:
            line += "  " + _("({share:.1%} of {plan} plan)").format(
                share=rate / contracted, plan=format_rate(contracted)
            )
        details = _("{streams} streams, warm-up {warmup:.1f} s, window {window:.1f} s, {size}")
        console.print(
            line
            + "  "
            + details.format(
                streams=direction.streams,
                warmup=direction.warmup_seconds,
                window=direction.window_seconds,
                size=format_size(direction.total_bytes),
            ),
            highlight=False,
            soft_wrap=True,
        )


def print_latency(report: dict[str, Any]) -> None:
    """`netprobe latency`'s human output: one summary line, then the path when asked for."""

    def ms(value: object) -> str:
        return "-" if value is None else f"{float(value) * 1000:.2f} ms"  # type: ignore[arg-type]

    port = f" port {report['port']}" if report["port"] else ""
    print(
        f"{report['host']} {report['method']}{port}: "
        + _(
            "{received}/{sent} answered, loss {loss:.0%}, min {min}, median {median}, jitter {jitter}"
        ).format(
            received=report["received"],
            sent=report["sent"],
            loss=float(report["loss_ratio"]),
            min=ms(report["min_seconds"]),
            median=ms(report["median_seconds"]),
            jitter=ms(report["jitter_seconds"]),
        )
    )
    if report["note"]:
        print(_("note: {note}").format(note=report["note"]))
    for hop in report.get("path", []):
        print(f"{hop['ttl']:>3}  {hop['address'] or '*':<40} {ms(hop['rtt_seconds'])}")
    if report.get("path_error"):
        print(_("path: {error}").format(error=report["path_error"]))


def _direction_cell(part: Any) -> str:
    if not isinstance(part, dict):
        return "—"
    if part.get("ok") and part.get("bytes_per_second") is not None:
        return format_rate(float(part["bytes_per_second"]))
    return _("failed: {reason}").format(reason=part.get("reason") or _("unknown"))


def _validity(record: dict[str, Any]) -> str:
    if record.get("outcome") == "failed":
        return _("failed")
    if record.get("valid") is False:
        return _("invalid: {reason}").format(reason=record.get("invalid_reason") or "?")
    return _("valid")


def results_table(records: list[dict[str, Any]], zone: tzinfo) -> str:
    """`netprobe results list`: a header, then one row per record in local time."""
    zone_name = getattr(zone, "key", None) or str(zone)
    header = [
        _("started ({zone})").format(zone=zone_name),
        _("kind"),
        _("download"),
        _("upload"),
        _("result"),
        _("server"),
        _("id"),
    ]
    rows = []
    for record in records:
        started = record.get("started_at")
        local = (
            parse_utc(started).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if started else "?"
        )
        server = record.get("server")
        server_name = (
            (server.get("name") or server.get("url") or "") if isinstance(server, dict) else server
        )
        source = record.get("source")
        if isinstance(source, dict):
            server_name = _("imported from {tool}").format(tool=source.get("tool", "?"))
        rows.append(
            [
                local,
                _(str(record.get("kind", "?"))),
                _direction_cell(record.get("download", record.get("transfer"))),
                _direction_cell(record.get("upload")),
                _validity(record),
                str(server_name or record.get("drive") or ""),
                str(record.get("id", ""))[:8],
            ]
        )
    if not rows:
        return _("no results")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def error_line(message: str) -> None:
    """One line on stderr saying what went wrong."""
    print(_("netprobe: error: {message}").format(message=message), file=sys.stderr)
