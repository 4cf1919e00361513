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
from datetime import date, datetime
from html import escape
from typing import Any

from netprobe.compliance.config import PeakWindow
from netprobe.compliance.series import parse_utc
from netprobe.compliance.verdict import Criterion, Verdict
from netprobe.i18n import N_, _, current_language, html_lang, ngettext
from netprobe.report.document import Report
from netprobe.report.verify import EVIDENCE_SCRIPT_ID
from netprobe.results import DIRECTIONS, Direction
from netprobe.units import format_rate, format_size, mbit

# Words the report translates that come from the data (statuses, rate kinds, units, days).
RUNTIME_MESSAGES = (
    N_("compliant"),
    N_("deviation"),
    N_("undecided"),
    N_("theoretical"),
    N_("normal"),
    N_("minimum"),
    N_("days"),
    N_("all"),
    N_("weekdays"),
    N_("ok"),
    N_("failed"),
    N_("aborted"),
    N_("free"),
    N_("paid"),
    N_("critical"),
    N_("warning"),
)

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
    """The whole report as one HTML document, in the language in use."""
    since, until = report.shown_period()
    period = _("{start} to {end}").format(
        start=_local(report, since) if since else "—", end=_local(report, until) if until else "—"
    )
    probe = ", ".join(report.probe_ids()) or _("probe")
    title, heading = _("netprobe compliance report"), _("Broadband line compliance report")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{html_lang()}"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<link rel="icon" href="data:,">',
        f"<title>{escape(title)} — {escape(probe)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f'<h1 id="title">{escape(heading)}</h1>',
        '<p class="muted" id="period">'
        + escape(
            _("Period {period} · time zone {zone} · as of {as_of} · generated {generated}").format(
                period=period,
                zone=report.zone.key,
                as_of=_local(report, report.as_of),
                generated=_local(report, report.generated_at),
            )
        )
        + "</p>",
        _subscriber(report),
        _identity(report),
        _contract(report),
        _warnings(report),
        _h2("verdicts", _("Verdicts")),
        *(_verdict(report, v) for v in report.verdicts),
        _accounts(report),
        _campaign(report),
        _h2("over-time", _("Speed over time")),
        _muted(
            _(
                "Filled dots: valid tests; open grey dots: invalid tests (not counted); "
                "red crosses: failed tests (no rate). Lines: the contracted rates."
            )
        ),
        *(_time_plot(report, d) for d in DIRECTIONS if _has(report, d)),
        _h2("by-hour", _("Distribution by hour of day")),
        _muted(
            _(
                "Median of valid tests per local hour, bars from the slowest to the fastest "
                "test; shaded hours are the policies' peak windows; n = tests."
            )
        ),
        *(_hour_plot(report, d) for d in DIRECTIONS if _has(report, d)),
        _tests_table(report),
        _drives(report),
        _evidence(report),
        _records_block(report),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _local(report: Report, moment: datetime) -> str:
    """A local time as people of the language write it (Chinese: 2026年3月2日 10:00)."""
    local = moment.astimezone(report.zone)
    if current_language() == "zh_CN":
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M} {local:%Z}"
    return local.strftime("%Y-%m-%d %H:%M %Z")


def _subscriber(report: Report) -> str:
    subscriber = report.subscriber
    rows = [
        [escape(label), escape(value)]
        for label, value in (
            (_("operator"), subscriber.operator),
            (_("plan"), subscriber.plan),
            (_("account or contract number"), subscriber.account),
            (_("service address"), subscriber.service_address),
        )
        if value
    ]
    if not rows:
        return ""
    return _h2("subscriber", _("Line and contract")) + _table((_("field"), _("value")), rows)


def _warnings(report: Report) -> str:
    if not report.warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in report.warnings)
    return _h2("warnings", _("What the contract lacks")) + f'<ul class="warnings">{items}</ul>'


def _accounts(report: Report) -> str:
    started = {str(r.get("id")): r["started_at"] for r in report.line_records()}
    imported = set(report.imported_ids())
    parts = [_h2("accounts", _("Which tests each policy counted"))]
    for account in report.accounts:
        rows = [
            [
                f'<a href="#test-{escape(ident)}">{escape(_local(report, parse_utc(started[ident])))}</a>'
                + (
                    ' <span class="muted">(' + escape(_("imported")) + ")</span>"
                    if ident in imported
                    else ""
                ),
                escape(why),
            ]
            for ident, why in sorted(account.not_counted.items(), key=lambda kv: started[kv[0]])
        ]
        summary = ngettext(
            "{policy}: {counted} test counted, {other} not counted",
            "{policy}: {counted} tests counted, {other} not counted",
            len(account.counted),
        ).format(policy=account.policy, counted=len(account.counted), other=len(rows))
        note = f" ({escape(account.note)})" if account.note else ""
        table = _table((_("test"), _("why it was not counted")), rows) if rows else ""
        parts.append(
            f'<div class="account" data-policy="{escape(account.policy)}"><p><b>'
            f"{escape(summary)}</b>{note}</p>{table}</div>"
        )
    if imported:
        parts.append(
            _muted(
                _(
                    "{count} tests were imported from other tools (not measured by this "
                    "probe); they are marked in the tests table."
                ).format(count=len(imported))
            )
        )
    return "".join(parts)


def _h2(anchor: str, text: str) -> str:
    return f'<h2 id="{anchor}">{escape(text)}</h2>'


def _muted(text: str) -> str:
    return f'<p class="muted">{escape(text)}</p>'


def _has(report: Report, direction: Direction) -> bool:
    return any(isinstance(r.get(direction), dict) for r in report.line_records())


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><tr>{head}</tr>{body}</table>'


def _identity(report: Report) -> str:
    servers = _table(
        (_("server"), _("URL"), _("protocol"), _("version")),
        (
            [escape(s["name"]), escape(s["url"]), escape(s["protocol"]), escape(s["version"])]
            for s in report.servers()
        ),
    )
    keys = "<br>".join(
        f"<code>{escape(k)}</code> ({escape(_('fingerprint'))} <code>{escape(f)}</code>)"
        for k, f in zip(report.evidence.public_keys, report.evidence.fingerprints, strict=True)
    )
    unsealed = "<i>" + escape(_("none (records are not sealed)")) + "</i>"
    probe = escape(", ".join(report.probe_ids()) or _("unnamed"))
    probe_label, key_label = escape(_("Probe:")), escape(_("Ed25519 public key:"))
    return (
        _h2("probe", _("Probe and servers"))
        + f"<p>{probe_label} <b>{probe}</b> · {key_label} {keys or unsealed}</p>{servers}"
    )


def _contract(report: Report) -> str:
    rows = []
    for direction in DIRECTIONS:
        promised = report.contract.direction(direction)
        rows.append(
            [
                escape(_(direction)),
                *(
                    escape(format_rate(rate))
                    if rate is not None
                    else '<span class="muted">—</span>'
                    for rate in (promised.theoretical, promised.normal, promised.minimum)
                ),
            ]
        )
    return _h2("contract", _("Contract")) + _table(
        (_("direction"), _("theoretical (advertised)"), _("normally available"), _("minimum")),
        rows,
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _figure(value: float, unit: str) -> str:
    return _percent(value) if unit == "share" else f"{value:g} {_(unit)}"


def _criterion(c: Criterion) -> str:
    mark, css = {
        True: ("✔ " + _("met"), "pass"),
        False: ("✘ " + _("not met"), "fail"),
        None: ("… " + _("open"), "open"),
    }[c.passed]
    value = ""
    if c.value is not None and c.required is not None:
        value = " — " + _("measured {value}, required {required}").format(
            value=_figure(c.value, c.unit), required=_figure(c.required, c.unit)
        )
    note = f' <span class="muted">({escape(_(c.note))})</span>' if c.note else ""
    button = ""
    if c.deciding:
        ids = escape(" ".join(c.deciding))
        label = _("show the {count} deciding tests").format(count=len(c.deciding))
        button = f' <button data-tests="{ids}">{escape(label)}</button>'
    return (
        f'<li><span class="{css}">{escape(mark)}</span> {escape(_(c.description))}'
        f"{escape(value)}{note}{button}</li>"
    )


def _verdict(report: Report, v: Verdict) -> str:
    failures = ", ".join(f"{escape(k)} × {n}" for k, n in sorted(v.failures.items()))
    invalid = ", ".join(f"{escape(k)} × {n}" for k, n in sorted(v.invalid.items()))
    counts = _(
        "{valid} valid tests counted; {failed} failed{failures}; {invalid} invalid, not counted{why}."
    ).format(
        valid=v.valid_tests,
        failed=v.failed_tests,
        failures=f" ({failures})" if failures else "",
        invalid=v.invalid_tests,
        why=f" ({invalid})" if invalid else "",
    )
    headline = _("headline share {share}").format(share=_percent(v.share))
    return (
        f'<div class="verdict" data-policy="{escape(v.policy)}" data-direction="{v.direction}">'
        f"<b>{escape(v.policy)}</b> · {escape(_(v.direction))} · "
        f'<span class="badge {v.status}">{escape(_(v.status))}</span> · {escape(headline)}'
        f"<ul>{''.join(_criterion(c) for c in v.criteria)}</ul>"
        f'<p class="muted">{counts}</p></div>'
    )


def _campaign(report: Report) -> str:
    plan = report.campaign
    if plan is None:
        return ""
    days = ", ".join(f"{_day(d.day)}: {len(d.measurements)}" for d in plan.days) or _("none yet")
    state = (
        _("complete")
        if plan.complete
        else _("next conforming measurement from {time}").format(
            time=_local(report, plan.next_slot)
        )
        if plan.next_slot
        else ""
    )
    deadline = (
        "; " + _("all days by {day}").format(day=_day(plan.deadline)) if plan.deadline else ""
    )
    text = _(
        "As of {as_of}: {done} of {required} measurements ({days}); {state}{deadline}; "
        "{complete} complete campaign(s) in the period."
    ).format(
        as_of=_local(report, report.as_of),
        done=plan.done,
        required=plan.required,
        days=days,
        state=state,
        deadline=deadline,
        complete=plan.completed_campaigns,
    )
    return (
        _h2("campaign-head", _("BNetzA measurement campaign"))
        + f'<p id="campaign">{escape(text)}</p>'
    )


def _day(day: date) -> str:
    if current_language() == "zh_CN":
        return f"{day.year}年{day.month}月{day.day}日"
    return day.isoformat()


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
            f'<text x="{x1 + 4}" y="{y + 4:.1f}">{escape(_(kind))} {mbit(rate):g} Mbit/s</text>'
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
        f'<text x="{left}" y="14" font-weight="600">'
        + escape(_("{direction} (Mbit/s) over local time").format(direction=_(direction)))
        + "</text>",
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
            reason = str((record.get(direction) or {}).get("reason") or _("failed"))
            title = escape(_("{time}: failed ({reason})").format(time=when, reason=reason))
            mark = (
                f'<path class="pt failed" d="M{x - 4:.1f},{y1 - 8} l8,8 m0,-8 l-8,8" '
                f'stroke="#c0392b" stroke-width="2"><title>{title}</title></path>'
            )
        elif not record.get("valid", True):
            reason = str(record.get("invalid_reason") or _("invalid"))
            title = escape(
                _("{time}: {rate:.1f} Mbit/s, invalid ({reason})").format(
                    time=when, rate=mbit(rate), reason=reason
                )
            )
            mark = (
                f'<circle class="pt invalid" cx="{x:.1f}" cy="{y_of(mbit(rate)):.1f}" r="3.5" '
                f'fill="none" stroke="#999"><title>{title}</title></circle>'
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
        f'<text x="{left}" y="14" font-weight="600">'
        + escape(_("{direction} (Mbit/s) by local hour").format(direction=_(direction)))
        + "</text>",
    ]
    peak = _("peak")
    for window in _peak_windows(report):
        parts.append(
            f'<rect class="peak" x="{left + window.start_hour * slot:.1f}" y="{top}" '
            f'width="{(window.end_hour - window.start_hour) * slot:.1f}" height="{y1 - top}" '
            f'fill="#f6e7c8" opacity="0.6"><title>{escape(peak)} {window.start_hour:02d}–'
            f"{window.end_hour:02d} h ({escape(_(window.days))})</title></rect>"
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
            f'fill="{COLOURS[direction]}" opacity="0.75"><title>'
            + escape(
                _("{hour:02d} h: median {rate:.1f} Mbit/s over {count} tests").format(
                    hour=hour, rate=median, count=len(rates)
                )
            )
            + "</title></rect>"
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
        failed = _("failed: {reason}").format(reason=result.get("reason") or _("unknown"))
        return f'<span class="fail">{escape(failed)}</span>'
    method = result.get("method") or {}
    rate = float(result["bytes_per_second"])
    details = _(
        "{streams} streams, {window:.1f} s window, {size}; {protocol}, {aggregate}, "
        "warm-up {warmup}, window {rule}"
    ).format(
        streams=result.get("streams", 0),
        window=float(result.get("window_seconds") or 0),
        size=format_size(float(result.get("bytes") or 0)),
        protocol=method.get("protocol", ""),
        aggregate=method.get("aggregate", ""),
        warmup=method.get("warmup_rule", ""),
        rule=method.get("window_rule", ""),
    )
    return f'<b>{mbit(rate):.1f}</b> Mbit/s<br><span class="muted">{escape(details)}</span>'


def _conditions_cell(record: dict[str, Any]) -> str:
    c = record.get("conditions") or {}
    parts = []
    if c.get("link_type"):
        parts.append(escape(str(c["link_type"])))
    if c.get("link_speed_bytes_per_second"):
        link = format_rate(float(c["link_speed_bytes_per_second"]))
        parts.append(escape(_("link {rate}").format(rate=link)))
    if c.get("cross_traffic_bytes_per_second") is not None:
        cross = format_rate(float(c["cross_traffic_bytes_per_second"]))
        parts.append(escape(_("cross-traffic {rate}").format(rate=cross)))
    if c.get("cpu_percent") is not None:
        parts.append(f"CPU {float(c['cpu_percent']):.0f} %")
    if record.get("idle_latency_seconds") is not None:
        rtt_ms = float(record["idle_latency_seconds"]) * 1000
        parts.append(escape(_("idle RTT {ms:.1f} ms").format(ms=rtt_ms)))
    if c.get("held_seconds"):
        parts.append(escape(_("held {seconds:.0f} s").format(seconds=float(c["held_seconds"]))))
    return ", ".join(parts) or '<span class="muted">—</span>'


def _server_cell(record: dict[str, Any]) -> str:
    source = record.get("source")
    if isinstance(source, dict):
        imported = _("imported from {tool}").format(tool=source.get("tool", "?"))
        return f'<span class="muted">{escape(imported)}</span> {escape(str(source.get("server") or ""))}'
    server = record.get("server") or {}
    return escape(str(server.get("name") or server.get("url") or ""))


def _tests_table(report: Report) -> str:
    rows = []
    for record in report.line_records():
        started = parse_utc(record["started_at"])
        evidence = record.get("evidence") or {}
        invalid = _("invalid: {reason}").format(reason=record.get("invalid_reason") or "")
        validity = (
            escape(_("valid"))
            if record.get("valid", True)
            else f'<span class="fail">{escape(invalid)}</span>'
        )
        rows.append(
            f'<tr id="test-{escape(str(record.get("id", "")))}">'
            f"<td>{escape(str(evidence.get('seq', '')))}</td>"
            f'<td>{escape(_local(report, started))}<br><span class="muted">'
            f"{escape(started.isoformat(timespec='seconds'))}</span></td>"
            f"<td>{_direction_cell(record, 'download')}</td>"
            f"<td>{_direction_cell(record, 'upload')}</td>"
            f"<td>{validity}</td><td>{_conditions_cell(record)}</td>"
            f"<td>{_server_cell(record)}{_receipt_cell(report, record)}</td>"
            f"<td><code>{escape(str(evidence.get('hash', ''))[:16])}</code></td></tr>"
        )
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (
            _("seq"),
            _("started (local / UTC)"),
            _("download"),
            _("upload"),
            _("validity"),
            _("conditions"),
            _("server"),
            _("evidence hash"),
        )
    )
    title = _("Tests ({count})").format(count=len(rows))
    return (
        f'<h2 id="tests-head">{escape(title)}</h2>'
        f'<table class="tests" id="tests"><tr>{head}</tr>{"".join(rows)}</table>'
    )


def _drives(report: Report) -> str:
    """The cloud-drive probes: the steady rate one connection of the account got."""
    rows = []
    for record in report.records:
        if record.get("kind") != "drive":
            continue
        when = escape(_local(report, parse_utc(record["started_at"])))
        for direction in DIRECTIONS:
            part = record.get(direction)
            if not isinstance(part, dict):
                continue
            if part.get("ok") and part.get("bytes_per_second") is not None:
                rate = escape(format_rate(float(part["bytes_per_second"])))
            else:
                failed = _("failed: {reason}").format(reason=part.get("reason") or _("unknown"))
                rate = f'<span class="fail">{escape(failed)}</span>'
            floor = part.get("floor")
            rows.append(
                [
                    when,
                    escape(str(record.get("drive", ""))),
                    escape(_(str(record.get("tier") or "unknown"))),
                    escape(_(direction)),
                    rate,
                    f'<span class="fail">{escape(_(floor))}</span>' if floor else escape(_("no")),
                ]
            )
    if not rows:
        return ""
    return (
        _h2("drives", _("Cloud drives: the rate one connection of the account got"))
        + _muted(
            _(
                "Free accounts are judged by the rate a single connection gets; below the "
                "minimum floor the drive is unusable (critical) or poor (warning)."
            )
        )
        + _table(
            (
                _("started"),
                _("drive"),
                _("tier"),
                _("direction"),
                _("steady rate"),
                _("below the minimum floor"),
            ),
            rows,
        )
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
        text = _(
            "{count} records form an unbroken chain signed by the probe's key {fingerprint}"
        ).format(count=state.checked, fingerprint=", ".join(state.fingerprints))
        status = f'<span class="pass">✔ {escape(text)}</span>'
    else:
        text = _("not verified: {problem}").format(problem=state.problem or "")
        status = f'<span class="fail">✘ {escape(text)}</span>'
    how = _(
        "Every record is chained by SHA-256 to the one before it and signed with Ed25519; the "
        "records are embedded in this file. Check them with {verify}; the verdicts above are "
        "recomputed from them with {report}."
    ).format(
        verify="<code>netprobe report verify THIS_FILE --public-key KEY</code>",
        report="<code>netprobe report --input</code>",
    )
    return _h2("evidence", _("Evidence")) + f'<p id="evidence-state">{status}. {how}</p>'


def _records_block(report: Report) -> str:
    carried = {"export_head": report.export_head, "records": report.records}
    payload = json.dumps(carried, separators=(",", ":"), ensure_ascii=False)
    # "<" never appears raw, so no record can close the script element early.
    payload = payload.replace("<", "\\u003c")
    return f'<script type="application/json" id="{EVIDENCE_SCRIPT_ID}">{payload}</script>'
