"""The `compliance:` section: policy thresholds from YAML, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from netprobe.compliance.config import ComplianceConfig
from netprobe.configschema import build
from netprobe.errors import ConfigError
from netprobe.peak import system_zone


def test_policy_settings_are_read_from_the_section() -> None:
    config = build(
        ComplianceConfig,
        {
            "policies": ["de-bnetza", "cn-miit"],
            "timezone": "Europe/Berlin",
            "cn_miit": {"reach_share": 0.8, "peak": {"start_hour": 20, "end_hour": 22}},
            "de_bnetza": {"campaign": {"enabled": True, "days_between": 0}},
            "us_fcc": {"peak": {"days": "all"}},
        },
        file="agent.yml",
        key="compliance",
    )
    assert config.cn_miit.reach_share == 0.8
    assert (config.cn_miit.peak.start_hour, config.cn_miit.peak.end_hour) == (20, 22)
    assert config.cn_miit.required_share == 0.9  # the documented default stays
    assert config.de_bnetza.campaign.enabled and config.de_bnetza.campaign.required == 30
    assert config.us_fcc.peak.days == "all"
    assert config.zone().key == "Europe/Berlin"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"policies": ["uk-ofcom"]}, "compliance: unknown policy 'uk-ofcom'"),
        ({"timezone": "Mars/Base"}, "compliance: unknown time zone 'Mars/Base'"),
        ({"cn_miit": {"reach_share": 1.5}}, "compliance.cn_miit: reach_share must be a share"),
        ({"au_accc": {"busy": {"start_hour": 23, "end_hour": 19}}}, "compliance.au_accc.busy"),
        ({"us_fcc": {"peak": {"days": "weekends"}}}, "compliance.us_fcc.peak.days"),
        ({"eu_berec": {"rule": "hourly"}}, "compliance.eu_berec.rule"),
    ],
    ids=["unknown policy", "unknown zone", "share above 1", "window backwards", "days", "rule"],
)
def test_bad_settings_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(ComplianceConfig, section, file="agent.yml", key="compliance")
    assert str(caught.value).startswith("agent.yml: ")
    assert message in str(caught.value)


def test_the_system_zone_is_a_named_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Asia/Shanghai")
    assert system_zone(link).key == "Asia/Shanghai"
    monkeypatch.setenv("TZ", "America/New_York")
    assert system_zone(link).key == "America/New_York"
    monkeypatch.delenv("TZ")
    assert system_zone(tmp_path / "absent").key == "UTC"
