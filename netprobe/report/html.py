"""The HTML report: one self-contained file a user can attach to a complaint.

Plots are inline SVG drawn here, styles and the one small script are inline, and a Content
Security Policy forbids every fetch, so the file opens the same offline, years later. The
sealed records travel inside the file (a JSON script block), which is what
`netprobe report verify report.html` checks.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any

from netprobe.compliance.config import PeakWindow
from netprobe.compliance.series import parse_utc
from netprobe.compliance.verdict import Criterion, Verdict
from netprobe.report.document import Report
from netprobe.report.verify import EVIDENCE_SCRIPT_ID
from netprobe.results import DIRECTIONS, Direction
from netprobe.units import format_rate, format_size, mbit

COLOURS = {"download": "#1f6fb4", "upload": "#2c9c4a"}
CONTRACT_STYLE = {"theoretical": "", "normal": "6 4", "minimum": "2 3"}

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.num{text-align:right}
.tests{font-size:12px}.tests tr.decided{background:#fff3b0}.muted{color:#777}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-weight:600}
.compliant{background:#2c8a3c}.deviation{background:#c0392b}.undecided{background:#888}
.verdict{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:10px 0}
.pass{color:#2c8a3c}.fail{color:#c0392b}.open{color:#888}
svg{display:block;margin:8px 0;font:11px system-ui,sans-serif}button{font-size:12px}
"""

SCRIPT = """
document.querySelectorAll("button[data-tests]").forEach(function (button) {
  button.addEventListener("click", function () {
    var ids = button.getAttribute("data-tests").split(" ");
    document.querySelectorAll("tr.decided").forEach(function (row) {
      row.classList.remove("decided");
    });
    ids.forEach(function (id) {
      var row = document.getElementById("test-" + id);
      if (row) { row.classList.add("decided"); }
    });
    var first = document.getElementById("test-" + ids[0]);
    if (first) { first.scrollIntoView({block: "center"}); }
  });
});
document.documentElement.setAttribute("data-ready", "1");
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def render(report: Report) -> str:
    """The whole report as one HTML document."""
    since, until = report.period
    period = f"{_local(report, since) if since else 'first test'} – {_local(report, until) if until else 'last test'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<link rel="icon" href="data:,">',
        f"<title>netprobe compliance report — {escape(', '.join(report.probe_ids()) or 'probe')}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Broadband line compliance report</h1>",
        f'<p class="muted">Period {escape(period)} · local time {escape(report.zone.key)} · '
        f"generated {escape(_local(report, report.generated_at))} · "
        f"policies {escape(', '.join(report.policies))}</p>",
        _identity(report),
        _contract(report),
        "<h2>Verdicts</h2>",
        *(_verdict(report, v) for v in report.verdicts),
        _campaign(report),
        "<h2>Speed over time</h2>",
        '<p class="muted">Filled dots: valid tests; open grey dots: invalid tests (not counted); '
        "red crosses: failed tests (no rate). Lines: the contracted rates.</p>",
        *(_time_plot(report, d) for d in DIRECTIONS if _has(report, d)),
        "<h2>Distribution by hour of day</h2>",
        '<p class="muted">Median of valid tests per local hour, bars from the slowest to the '
        "fastest test; shaded hours are the policies' peak windows; n = tests.</p>",
        *(_hour_plot(report, d) for d in DIRECTIONS if _has(report, d)),
        _tests_table(report),
        _evidence(report),
        _records_block(report),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _local(report: Report, moment: datetime) -> str:
    return moment.astimezone(report.zone).strftime("%Y-%m-%d %H:%M %Z")


def _has(report: Report, direction: Direction) -> bool:
    return any(isinstance(r.get(direction), dict) for r in report.line_records())


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><tr>{head}</tr>{body}</table>'


def _identity(report: Report) -> str:
    servers = _table(
        ("server", "URL", "protocol", "version"),
        (
            [escape(s["name"]), escape(s["url"]), escape(s["protocol"]), escape(s["version"])]
            for s in report.servers()
        ),
    )
    keys = "<br>".join(
        f"<code>{escape(k)}</code> (fingerprint <code>{escape(f)}</code>)"
        for k, f in zip(report.evidence.public_keys, report.evidence.fingerprints, strict=True)
    )
    return (
        "<h2>Probe and servers</h2>"
        f"<p>Probe: <b>{escape(', '.join(report.probe_ids()) or 'unnamed')}</b> · "
        f'Ed25519 public key: <span id="probe-key">'
        f"{keys or '<i>none (records are not sealed)</i>'}</span></p>{servers}"
    )


def _contract(report: Report) -> str:
    rows = []
    for direction in DIRECTIONS:
        promised = report.contract.direction(direction)
        rows.append(
            [
                direction,
                *(
                    escape(format_rate(rate))
                    if rate is not None
                    else '<span class="muted">—</span>'
                    for rate in (promised.theoretical, promised.normal, promised.minimum)
                ),
            ]
        )
    return "<h2>Contract</h2>" + _table(
        ("direction", "theoretical (advertised)", "normally available", "minimum"), rows
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _figure(value: float, unit: str) -> str:
    return _percent(value) if unit == "share" else f"{value:g} {unit}"


def _criterion(c: Criterion) -> str:
    mark, css = {True: ("✔ met", "pass"), False: ("✘ not met", "fail"), None: ("… open", "open")}[
        c.passed
    ]
    value = ""
    if c.value is not None and c.required is not None:
        value = f" — measured {_figure(c.value, c.unit)}, required {_figure(c.required, c.unit)}"
    note = f' <span class="muted">({escape(c.note)})</span>' if c.note else ""
    button = ""
    if c.deciding:
        ids = escape(" ".join(c.deciding))
        button = f' <button data-tests="{ids}">show the {len(c.deciding)} deciding tests</button>'
    return (
        f'<li><span class="{css}">{mark}</span> {escape(c.description)}{value}{note}{button}</li>'
    )


def _verdict(report: Report, v: Verdict) -> str:
    failures = ", ".join(f"{escape(k)} × {n}" for k, n in sorted(v.failures.items()))
    invalid = ", ".join(f"{escape(k)} × {n}" for k, n in sorted(v.invalid.items()))
    return (
        f'<div class="verdict" data-policy="{escape(v.policy)}" data-direction="{v.direction}">'
        f'<b>{escape(v.policy)}</b> · {v.direction} · <span class="badge {v.status}">{v.status}</span>'
        f" · headline share {_percent(v.share)}"
        f"<ul>{''.join(_criterion(c) for c in v.criteria)}</ul>"
        f'<p class="muted">{v.valid_tests} valid tests counted; {v.failed_tests} failed'
        f"{f' ({failures})' if failures else ''}; {v.invalid_tests} invalid, not counted"
        f"{f' ({invalid})' if invalid else ''}.</p></div>"
    )


def _campaign(report: Report) -> str:
    plan = report.campaign
    if plan is None:
        return ""
    days = ", ".join(f"{d.day.isoformat()}: {len(d.measurements)}" for d in plan.days) or "none yet"
    state = (
        "complete"
        if plan.complete
        else f"next conforming measurement from {_local(report, plan.next_slot)}"
        if plan.next_slot
        else ""
    )
    deadline = f"; all days by {plan.deadline.isoformat()}" if plan.deadline else ""
    return (
        "<h2>BNetzA measurement campaign</h2>"
        f'<p id="campaign">{plan.done} of {plan.required} measurements ({days}); {escape(state)}'
        f"{deadline}; {plan.completed_campaigns} complete campaign(s) in the period.</p>"
    )


def _nice_step(span: float) -> float:
    raw = span / 5 or 1.0
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _y_axis(top: float, x0: float, x1: float, y_of: Any) -> list[str]:
    step = _nice_step(top)
    out = []
    tick = 0.0
    while tick <= top + 1e-9:
        y = y_of(tick)
        out.append(
            f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
        tick += step
    return out


def _rate_of(record: dict[str, Any], direction: Direction) -> float | None:
    result = record.get(direction) or {}
    rate = result.get("bytes_per_second")
    return float(rate) if result.get("ok") and rate is not None else None


def _contract_lines(
    report: Report, direction: Direction, x0: float, x1: float, y_of: Any
) -> list[str]:
    out = []
    promised = report.contract.direction(direction)
    for kind in ("theoretical", "normal", "minimum"):
        rate = getattr(promised, kind)
        if rate is None:
            continue
        y = y_of(mbit(rate))
        out.append(
            f'<line class="contract" data-kind="{kind}" x1="{x0}" x2="{x1}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#555" stroke-dasharray="{CONTRACT_STYLE[kind]}"/>'
            f'<text x="{x1 + 4}" y="{y + 4:.1f}">{kind} {mbit(rate):g} Mbit/s</text>'
        )
    return out


def _time_plot(report: Report, direction: Direction) -> str:
    width, height, left, right, top, bottom = 960, 300, 56, 170, 24, 44
    records = [r for r in report.line_records() if isinstance(r.get(direction), dict)]
    times = [parse_utc(r["started_at"]).timestamp() for r in records]
    t0, t1 = min(times), max(times)
    if t1 - t0 < 3600:
        t0, t1 = t0 - 1800, t1 + 1800
    rates = [mbit(r) for r in (_rate_of(rec, direction) for rec in records) if r is not None]
    ceiling = max([mbit(report.contract.direction(direction).theoretical), *rates]) * 1.1
    x1, y1 = width - right, height - bottom

    def x_of(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (x1 - left)

    def y_of(v: float) -> float:
        return y1 - v / ceiling * (y1 - top)

    parts = [
        f'<svg class="plot time-plot" data-direction="{direction}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{direction} speed over time">',
        f'<text x="{left}" y="14" font-weight="600">{direction} (Mbit/s) over local time</text>',
        *_y_axis(ceiling, left, x1, y_of),
    ]
    for k in range(6):
        t = t0 + (t1 - t0) * k / 5
        label = datetime.fromtimestamp(t, report.zone).strftime("%m-%d %H:%M")
        parts.append(f'<text x="{x_of(t):.1f}" y="{y1 + 16}" text-anchor="middle">{label}</text>')
    parts.append(f'<line x1="{left}" x2="{x1}" y1="{y1}" y2="{y1}" stroke="#999"/>')
    parts += _contract_lines(report, direction, left, x1, y_of)
    for record, t in zip(records, times, strict=True):
        rate = _rate_of(record, direction)
        x = x_of(t)
        ident = escape(str(record.get("id", "")))
        when = _local(report, parse_utc(record["started_at"]))
        if rate is None:
            reason = escape(str((record.get(direction) or {}).get("reason") or "failed"))
            mark = (
                f'<path class="pt failed" d="M{x - 4:.1f},{y1 - 8} l8,8 m0,-8 l-8,8" '
                f'stroke="#c0392b" stroke-width="2"><title>{when}: failed ({reason})</title></path>'
            )
        elif not record.get("valid", True):
            reason = escape(str(record.get("invalid_reason") or "invalid"))
            mark = (
                f'<circle class="pt invalid" cx="{x:.1f}" cy="{y_of(mbit(rate)):.1f}" r="3.5" '
                f'fill="none" stroke="#999"><title>{when}: {mbit(rate):.1f} Mbit/s, invalid '
                f"({reason})</title></circle>"
            )
        else:
            mark = (
                f'<circle class="pt valid" cx="{x:.1f}" cy="{y_of(mbit(rate)):.1f}" r="3.5" '
                f'fill="{COLOURS[direction]}"><title>{when}: {mbit(rate):.1f} Mbit/s</title></circle>'
            )
        parts.append(f'<a href="#test-{ident}">{mark}</a>')
    parts.append("</svg>")
    return "".join(parts)


def _peak_windows(report: Report) -> list[PeakWindow]:
    config = report.config
    windows = {
        "cn-miit": config.cn_miit.peak,
        "us-fcc": config.us_fcc.peak,
        "eu-berec": config.eu_berec.peak,
        "au-accc": config.au_accc.busy,
    }
    chosen = [windows[p] for p in report.policies if p in windows]
    return [w for i, w in enumerate(chosen) if w not in chosen[:i]]


def _hour_plot(report: Report, direction: Direction) -> str:
    width, height, left, right, top, bottom = 960, 240, 56, 170, 24, 40
    by_hour: dict[int, list[float]] = {h: [] for h in range(24)}
    for record in report.line_records():
        rate = _rate_of(record, direction)
        if rate is not None and record.get("valid", True):
            local = parse_utc(record["started_at"]).astimezone(report.zone)
            by_hour[local.hour].append(mbit(rate))
    values = [v for hour in by_hour.values() for v in hour]
    ceiling = max([mbit(report.contract.direction(direction).theoretical), *values]) * 1.1
    x1, y1 = width - right, height - bottom
    slot = (x1 - left) / 24

    def y_of(v: float) -> float:
        return y1 - v / ceiling * (y1 - top)

    parts = [
        f'<svg class="plot hour-plot" data-direction="{direction}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{direction} speed by hour of day">',
        f'<text x="{left}" y="14" font-weight="600">{direction} (Mbit/s) by local hour</text>',
    ]
    for window in _peak_windows(report):
        parts.append(
            f'<rect class="peak" x="{left + window.start_hour * slot:.1f}" y="{top}" '
            f'width="{(window.end_hour - window.start_hour) * slot:.1f}" height="{y1 - top}" '
            f'fill="#f6e7c8" opacity="0.6"><title>peak {window.start_hour:02d}–'
            f"{window.end_hour:02d} h ({window.days})</title></rect>"
        )
    parts += _y_axis(ceiling, left, x1, y_of)
    parts += _contract_lines(report, direction, left, x1, y_of)
    for hour, rates in by_hour.items():
        x = left + hour * slot
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{y1 + 14}" text-anchor="middle">{hour}</text>'
        )
        if not rates:
            continue
        median = statistics.median(rates)
        parts.append(
            f'<rect class="bar" x="{x + slot * 0.2:.1f}" y="{y_of(median):.1f}" '
            f'width="{slot * 0.6:.1f}" height="{y1 - y_of(median):.1f}" '
            f'fill="{COLOURS[direction]}" opacity="0.75"><title>{hour:02d} h: median '
            f"{median:.1f} Mbit/s over {len(rates)} tests</title></rect>"
            f'<line x1="{x + slot / 2:.1f}" x2="{x + slot / 2:.1f}" y1="{y_of(min(rates)):.1f}" '
            f'y2="{y_of(max(rates)):.1f}" stroke="#333"/>'
            f'<text x="{x + slot / 2:.1f}" y="{y1 + 28}" text-anchor="middle" '
            f'class="muted">n={len(rates)}</text>'
        )
    parts.append(f'<line x1="{left}" x2="{x1}" y1="{y1}" y2="{y1}" stroke="#999"/></svg>')
    return "".join(parts)


def _direction_cell(record: dict[str, Any], direction: Direction) -> str:
    result = record.get(direction)
    if not isinstance(result, dict):
        return '<span class="muted">—</span>'
    if not result.get("ok"):
        return f'<span class="fail">failed: {escape(str(result.get("reason") or "unknown"))}</span>'
    method = result.get("method") or {}
    rate = float(result["bytes_per_second"])
    return (
        f'<b>{mbit(rate):.1f}</b> Mbit/s<br><span class="muted">{result.get("streams", 0)} '
        f"streams, {float(result.get('window_seconds') or 0):.1f} s window, "
        f"{escape(format_size(float(result.get('bytes') or 0)))}; "
        f"{escape(str(method.get('protocol', '')))}, {escape(str(method.get('aggregate', '')))}, "
        f"warm-up {escape(str(method.get('warmup_rule', '')))}, "
        f"window {escape(str(method.get('window_rule', '')))}</span>"
    )


def _conditions_cell(record: dict[str, Any]) -> str:
    c = record.get("conditions") or {}
    parts = []
    if c.get("link_type"):
        parts.append(escape(str(c["link_type"])))
    if c.get("link_speed_bytes_per_second"):
        parts.append(f"link {escape(format_rate(float(c['link_speed_bytes_per_second'])))}")
    if c.get("cross_traffic_bytes_per_second") is not None:
        parts.append(
            f"cross-traffic {escape(format_rate(float(c['cross_traffic_bytes_per_second'])))}"
        )
    if c.get("cpu_percent") is not None:
        parts.append(f"CPU {float(c['cpu_percent']):.0f} %")
    if record.get("idle_latency_seconds") is not None:
        parts.append(f"idle RTT {float(record['idle_latency_seconds']) * 1000:.1f} ms")
    if c.get("held_seconds"):
        parts.append(f"held {float(c['held_seconds']):.0f} s")
    return ", ".join(parts) or '<span class="muted">—</span>'


def _tests_table(report: Report) -> str:
    rows = []
    for record in report.line_records():
        started = parse_utc(record["started_at"])
        evidence = record.get("evidence") or {}
        server = record.get("server") or {}
        validity = (
            "valid"
            if record.get("valid", True)
            else f'<span class="fail">invalid: {escape(str(record.get("invalid_reason") or ""))}</span>'
        )
        rows.append(
            f'<tr id="test-{escape(str(record.get("id", "")))}">'
            f"<td>{escape(str(evidence.get('seq', '')))}</td>"
            f'<td>{escape(_local(report, started))}<br><span class="muted">'
            f"{escape(started.isoformat(timespec='seconds'))}</span></td>"
            f"<td>{_direction_cell(record, 'download')}</td>"
            f"<td>{_direction_cell(record, 'upload')}</td>"
            f"<td>{validity}</td><td>{_conditions_cell(record)}</td>"
            f"<td>{escape(str(server.get('name') or server.get('url') or ''))}"
            f"{_receipt_cell(report, record)}</td>"
            f"<td><code>{escape(str(evidence.get('hash', ''))[:16])}</code></td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "seq",
            "started (local / UTC)",
            "download",
            "upload",
            "validity",
            "conditions",
            "server",
            "evidence hash",
        )
    )
    return (
        f"<h2>Tests ({len(rows)})</h2>"
        f'<table class="tests" id="tests"><tr>{head}</tr>{"".join(rows)}</table>'
    )


def _receipt_cell(report: Report, record: dict[str, Any]) -> str:
    """Per direction, whether the server's signed receipt confirms the figure."""
    lines = []
    for direction in ("download", "upload"):
        check = report.receipt(record, direction)
        if check.status == "none":
            continue
        css = "pass" if check.status == "confirmed" else "fail" if check.failed else "muted"
        lines.append(
            f'<br><span class="{css} receipt">{direction}: {escape(check.describe())}</span>'
        )
    return "".join(lines)


def _evidence(report: Report) -> str:
    state = report.evidence
    if state.verified:
        status = (
            f'<span class="pass">✔ {state.checked} records form an unbroken chain signed by the '
            "probe's key</span>"
        )
    else:
        status = f'<span class="fail">✘ not verified: {escape(state.problem or "")}</span>'
    return (
        "<h2>Evidence</h2>"
        f'<p id="evidence-state">{status}. Every record is chained by SHA-256 to the one before '
        "it and signed with Ed25519; the records are embedded in this file. Check them with "
        "<code>netprobe report verify THIS_FILE</code>; the verdicts above are recomputed from "
        "them with <code>netprobe report --input</code>.</p>"
    )


def _records_block(report: Report) -> str:
    carried = {"export_head": report.export_head, "records": report.records}
    payload = json.dumps(carried, separators=(",", ":"), ensure_ascii=False)
    # "<" never appears raw, so no record can close the script element early.
    payload = payload.replace("<", "\\u003c")
    return f'<script type="application/json" id="{EVIDENCE_SCRIPT_ID}">{payload}</script>'
