"""The JSON report: verdicts, settings, identities and the full sealed records, for machines."""

from __future__ import annotations

import json

from netprobe.report.document import Report


def render(report: Report) -> str:
    """The report as one JSON document."""
    return json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n"
