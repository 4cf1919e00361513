"""Fleet identity (a stable probe id) and configuration templates rendered per probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from netprobe.cli import app
from netprobe.errors import ConfigError
from netprobe.fleet import load_or_create_probe_id, parse_assignments, render_template

TEMPLATE = Path(__file__).parents[1] / "probes" / "fleet" / "agent.yml.tmpl"
FLEET_VALUES = {
    "PROBE_ID": "0123456789abcdef",
    "operator": "Example Telecom",
    "plan_down": "250Mbit",
    "plan_up": "40Mbit",
    "server_url": "http://192.0.2.10:8080",
    "push_url": "https://mimir.example.net/api/v1/push",
    "site": "berlin-3",
}


def test_probe_id_is_derived_from_machine_id_without_revealing_it_and_kept(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("4f8a1c2e9b3d4e5f8a7b6c5d4e3f2a1b\n")
    state = tmp_path / "state"
    probe_id = load_or_create_probe_id(state, machine_id)
    assert len(probe_id) == 16 and probe_id not in machine_id.read_text()
    machine_id.write_text("a-different-machine-id-after-a-board-swap\n")
    assert load_or_create_probe_id(state, machine_id) == probe_id  # kept, not re-derived
    other = tmp_path / "other-machine-id"
    other.write_text("4f8a1c2e9b3d4e5f8a7b6c5d4e3f2a1c\n")
    assert load_or_create_probe_id(tmp_path / "state2", other) != probe_id


def test_probe_id_is_random_without_machine_id_and_differs_between_probes(tmp_path: Path) -> None:
    missing = tmp_path / "no-machine-id"
    first = load_or_create_probe_id(tmp_path / "a", missing)
    assert first == load_or_create_probe_id(tmp_path / "a", missing)
    assert first != load_or_create_probe_id(tmp_path / "b", missing)
    assert (tmp_path / "a" / "probe-id").read_text().strip() == first


def test_template_takes_vars_then_environment_then_defaults() -> None:
    rendered = render_template(
        "site: ${site}\nzone: ${zone:-Europe/Berlin}\nuser: ${USER}\nliteral: $${site}\n",
        {"site": "berlin-3"},
        {"USER": "probe", "site": "not-this"},
    )
    assert yaml.safe_load(rendered) == {
        "site": "berlin-3",
        "zone": "Europe/Berlin",
        "user": "probe",
        "literal": "${site}",
    }


def test_template_names_every_missing_value() -> None:
    with pytest.raises(ConfigError, match="no value for operator, site"):
        render_template("a: ${site}\nb: ${operator}\nc: ${site}\n", {}, {})


def test_template_that_renders_to_broken_yaml_is_refused() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        render_template("a: ${value}\n", {"value": "[unclosed"}, {})


def test_var_assignments_must_be_name_equals_value() -> None:
    assert parse_assignments(["site=a=b", "empty="]) == {"site": "a=b", "empty": ""}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_assignments(["no-equals"])


def test_cli_renders_the_shipped_fleet_template_into_a_valid_agent_config(tmp_path: Path) -> None:
    output = tmp_path / "agent.yml"
    args = [f"--var={name}={value}" for name, value in FLEET_VALUES.items()]
    result = CliRunner().invoke(app, ["config", "render", str(TEMPLATE), *args, "-o", str(output)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(output.read_text())
    assert config["probe"]["id"] == "0123456789abcdef"
    assert config["push"]["external_labels"] == {"site": "berlin-3", "operator": "Example Telecom"}
    assert CliRunner().invoke(app, ["config", "check", str(output)]).exit_code == 0


def test_cli_render_with_a_missing_value_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "agent.yml"
    args = [f"--var={name}={value}" for name, value in FLEET_VALUES.items() if name != "site"]
    result = CliRunner().invoke(app, ["config", "render", str(TEMPLATE), *args, "-o", str(output)])
    assert result.exit_code == 2
    assert "site" in result.output
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_cli_render_refuses_a_config_the_agent_would_refuse(tmp_path: Path) -> None:
    output = tmp_path / "agent.yml"
    values = {**FLEET_VALUES, "plan_down": "fast"}
    args = [f"--var={name}={value}" for name, value in values.items()]
    result = CliRunner().invoke(app, ["config", "render", str(TEMPLATE), *args, "-o", str(output)])
    assert result.exit_code == 2 and "contract.download" in result.output
    assert not output.exists()


def test_cli_prints_the_same_probe_id_every_time(tmp_path: Path) -> None:
    first = CliRunner().invoke(app, ["config", "probe-id", "--state-dir", str(tmp_path)])
    second = CliRunner().invoke(app, ["config", "probe-id", "--state-dir", str(tmp_path)])
    assert (
        first.exit_code == 0 and first.output == second.output and len(first.output.strip()) == 16
    )
