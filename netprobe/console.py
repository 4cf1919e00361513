"""What a person sees in the terminal: live progress of a run and the summary after it."""

from __future__ import annotations

import sys

from rich.console import Console

from netprobe.events import Event
from netprobe.results import LineResult
from netprobe.units import format_rate, format_size, mbit


class ProgressSink:
    """Shows one live status line per direction on stderr (the engine's events, rendered)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._status = self.console.status("connecting…") if self.console.is_terminal else None
        self._phase = "warm-up"

    def emit(self, event: Event) -> None:
        if event.kind == "started":
            self._phase = "warm-up"
            if self._status is not None:
                self._status.start()
        elif event.kind == "warmup_done":
            self._phase = "measuring"
        elif event.kind == "sample" and self._status is not None:
            self._status.update(
                f"{event.direction:<8} {self._phase:<9} {event.streams:>2} streams "
                f"{format_rate(event.bytes_per_second or 0):>14}  {format_size(event.total_bytes):>9}"
            )
        elif event.kind in ("finished", "error") and self._status is not None:
            self._status.stop()


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
    console.print(f"server    {result.server.url} ({result.server.protocol})", highlight=False)
    if result.idle_latency_seconds is not None:
        loaded = "".join(
            f", {d.loaded_latency_seconds * 1000:.1f} ms during {d.direction}"
            for d in result.directions()
            if d.loaded_latency_seconds is not None
        )
        console.print(f"latency   {result.idle_latency_seconds * 1000:.2f} ms idle{loaded}")
    for direction in measured:
        rate = direction.bytes_per_second or 0.0
        line = f"{direction.direction:<9} [bold]{mbit(rate):.1f} Mbit/s[/bold]"
        contracted = plan.get(direction.direction)
        if contracted:
            line += f"  ({rate / contracted:.1%} of {mbit(contracted):g} Mbit/s plan)"
        console.print(
            line + f"  {direction.streams} streams, warm-up {direction.warmup_seconds:.1f} s, "
            f"window {direction.window_seconds:.1f} s, {format_size(direction.total_bytes)}",
            highlight=False,
            soft_wrap=True,
        )


def error_line(message: str) -> None:
    """One line on stderr saying what went wrong."""
    print(f"netprobe: error: {message}", file=sys.stderr)
