"""A report that stands alone: real dates, the subscriber, warnings where the contract lacks
what a policy judges, which tests each policy counted and why not, all as of the period's end."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta

from compliance_records import campaign, record

from netprobe.compliance.config import ComplianceConfig
from netprobe.compliance.contract import Contract
from netprobe.report.document import Subscriber
from netprobe.report.render import render_report

CONTRACT = Contract.from_rates(download=100e6 / 8, upload=40e6 / 8)
BERLIN = ComplianceConfig(policies=["de-bnetza", "cn-miit"], timezone="Europe/Berlin")


def report(records: list[dict], fmt: str = "json", **options: object) -> dict | str:
    text = render_report(records, CONTRACT, BERLIN, fmt, **options)  # type: ignore[arg-type]
    return json.loads(text) if fmt == "json" else text


def test_the_same_input_gives_the_same_report_months_later() -> None:
    records = campaign(datetime(2026, 3, 2, tzinfo=UTC), days=2, per_day=12, rng=random.Random(3))
    soon = datetime(2026, 3, 5, tzinfo=UTC)
    later = soon + timedelta(days=60)
    first = report(records, "html", now=soon)
    again = report(records, "html", now=later)
    assert isinstance(first, str) and isinstance(again, str)

    def without_generated(html: str) -> str:
        return re.sub(r"generated [^<]*", "", html)

    assert first != again  # the "generated" date differs ...
    assert without_generated(first) == without_generated(again)  # ... and nothing else
    as_json = report(records, now=later)
    assert isinstance(as_json, dict)
    assert as_json["as_of"].startswith("2026-03-03")  # just after the newest test
    assert as_json["campaign"]["done"] > 0


def test_the_period_shows_real_dates_the_subscriber_and_the_servers() -> None:
    records = [record("2026-03-02T10:00", tz="Europe/Berlin"), record("2026-03-04T21:30")]
    subscriber = Subscriber("Example Telecom", "Fibre 100/40", "K-4711", "Hauptstr. 1, Berlin")
    html = report(records, "html", subscriber=subscriber, since="2026-03-01", until="2026-03-31")
    assert isinstance(html, str)
    assert "Period 2026-03-01 00:00 CET to 2026-04-01 00:00 CEST · time zone Europe/Berlin" in html
    assert "first test" not in html
    for value in ("Example Telecom", "Fibre 100/40", "K-4711", "Hauptstr. 1, Berlin"):
        assert f"<td>{value}</td>" in html
    assert "<td>lab</td>" in html  # the server's name, in the servers and the tests tables


def test_missing_contract_figures_are_warned_about() -> None:
    data = report([record("2026-03-02T10:00")])
    assert isinstance(data, dict)
    assert any("no normally available rate" in w for w in data["warnings"])
    assert any("no minimum rate" in w for w in data["warnings"])
    full = Contract.from_rates(
        download=100e6 / 8,
        upload=40e6 / 8,
        download_normal=80e6 / 8,
        upload_normal=32e6 / 8,
        download_minimum=50e6 / 8,
        upload_minimum=20e6 / 8,
    )
    text = render_report([record("2026-03-02T10:00")], full, BERLIN, "json")
    assert json.loads(text)["warnings"] == []


def test_every_test_a_policy_did_not_count_says_why() -> None:
    # One BNetzA day of 12 conforming tests: 5 in the morning, 3 h break, 7 in the evening.
    day = datetime(2026, 3, 2, 8, 0)
    times = [day + timedelta(minutes=10 * k) for k in range(5)]
    times += [day + timedelta(hours=4, minutes=10 * k) for k in range(7)]
    records = [record(t, tz="Europe/Berlin", ident=f"t{k:02d}") for k, t in enumerate(times)]
    records.append(record("2026-03-02T20:00", tz="Europe/Berlin", down="fail:timeout", ident="f"))
    data = report(records)
    assert isinstance(data, dict)
    accounts = {a["policy"]: a for a in data["accounts"]}
    bnetza = accounts["de-bnetza"]
    assert bnetza["counted"] == []  # no complete campaign (3 days) yet
    assert "no complete campaign yet" in bnetza["note"]
    reasons = bnetza["not_counted"]
    assert set(reasons) == {r["id"] for r in records}
    beyond = sorted(i for i, why in reasons.items() if "beyond the day's 10" in why)
    assert beyond == ["t10", "t11"]
    assert all("still in progress" in reasons[f"t{k:02d}"] for k in range(10))
    assert reasons["f"] == "download failed: timeout"
    assert set(accounts["cn-miit"]["counted"]) == {f"t{k:02d}" for k in range(12)}
    assert accounts["cn-miit"]["not_counted"] == {"f": "download failed: timeout"}
    html = report(records, "html")
    assert isinstance(html, str)
    assert "beyond the day&#x27;s 10 campaign measurements" in html


def test_cloud_drive_probes_are_shown_with_the_free_tier_floor_in_chinese() -> None:
    from netprobe.drives.result import DriveResult, DriveTransfer
    from netprobe.i18n import use_language

    drive = DriveResult(drive="baidu-free", access="api", tier="free")
    drive.download = DriveTransfer("download", True, bytes_per_second=60e3, floor="critical")
    drive.started_at = "2026-03-02T12:00:00+00:00"
    records = [record("2026-03-02T10:00"), drive.to_dict()]
    english = report(records, "html")
    assert isinstance(english, str)
    assert "baidu-free" in english and "480.0 kbit/s" in english and ">critical<" in english
    try:
        use_language("zh_CN")
        chinese = report(records, "html")
    finally:
        use_language("en")
    assert isinstance(chinese, str)
    assert "网盘：账户单连接实际获得的速率" in chinese
    assert "免费用户" in chinese and "严重（不可用）" in chinese
    assert '<html lang="zh-CN">' in chinese
