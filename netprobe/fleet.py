"""Fleet identity and configuration templates: one template, thousands of probes.

A probe's id must stay the same across restarts, upgrades and re-installs of the package, and
must differ between two probes; it labels every pushed series (`probe_id`) and signs evidence.
It is made once and kept in the state directory:

    probe_id = load_or_create_probe_id("/var/lib/netprobe")

It is derived from /etc/machine-id when there is one (hashed with a netprobe-specific prefix:
machine-id(5) asks that the raw value not be exposed), otherwise random (containers usually
have no machine id). A golden SD-card image must be made without /var/lib/netprobe/probe-id
and with an empty /etc/machine-id, or every card cloned from it shares one id.

A fleet keeps one configuration template with `${NAME}` placeholders (`${NAME:-default}` for a
default, `$${` for a literal `${`) and renders it per probe:

    netprobe fleet render fleet.yml.tmpl --var site=berlin-3 --var plan_down=250Mbit > agent.yml
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from netprobe.errors import ConfigError

PROBE_ID_FILE = "probe-id"
_PROBE_ID_CHARS = 16
_PLACEHOLDER = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_or_create_probe_id(
    state_dir: str | Path, machine_id_path: str | Path = "/etc/machine-id"
) -> str:
    """The probe id kept in `state_dir`, made (and kept) on first use."""
    path = Path(state_dir) / PROBE_ID_FILE
    try:
        kept = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        kept = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the probe id: {exc.strerror}", file=str(path)) from None
    if kept:
        return kept
    probe_id = _derive_probe_id(Path(machine_id_path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{PROBE_ID_FILE}.{os.getpid()}")
        partial.write_text(probe_id + "\n", encoding="ascii")
        os.replace(partial, path)
    except OSError as exc:
        raise ConfigError(f"cannot keep the probe id: {exc.strerror}", file=str(path)) from None
    return probe_id


def _derive_probe_id(machine_id_path: Path) -> str:
    try:
        machine_id = machine_id_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        machine_id = ""
    if machine_id and machine_id != "uninitialized":
        digest = hashlib.sha256(f"netprobe probe id:{machine_id}".encode()).hexdigest()
        return digest[:_PROBE_ID_CHARS]
    return secrets.token_hex(_PROBE_ID_CHARS // 2)


def render_template(
    template: str,
    variables: Mapping[str, str],
    environment: Mapping[str, str] | None = None,
    *,
    file: str = "<template>",
) -> str:
    """`template` with each `${NAME}` replaced from `variables`, then `environment`, then its default.

    The result must be a YAML mapping; a placeholder without a value is an error naming every
    missing name, so a half-rendered configuration never reaches a probe.
    """
    environment = os.environ if environment is None else environment
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match[0][1:]
        if name in variables:
            return variables[name]
        if name in environment:
            return environment[name]
        if default is not None:
            return default
        missing.append(name)
        return match[0]

    rendered = _PLACEHOLDER.sub(substitute, template)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise ConfigError(
            f"no value for {names} (give --var NAME=VALUE or set it in the environment)", file=file
        )
    try:
        parsed = yaml.safe_load(rendered)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"the rendered configuration is not valid YAML: {exc}", file=file
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigError("the rendered configuration is not a YAML mapping", file=file)
    return rendered


def render_checked_config(
    template_path: Path, variables: Mapping[str, str], output: Path | None = None
) -> str:
    """Render a template and check the result as an agent configuration before it is used.

    With `output`, the file is replaced only once the rendered text has loaded cleanly.
    """
    from netprobe.config import load_config  # the agent's schema; fleet.py is imported early

    try:
        template = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(template_path)) from None
    rendered = render_template(template, variables, file=str(template_path))
    try:
        with tempfile.NamedTemporaryFile(
            "w",
            dir=output.parent if output is not None else None,
            prefix=".render-",
            suffix=".yml",
            delete=False,
            encoding="utf-8",
        ) as partial:
            partial.write(rendered)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror}", file=str(output)) from None
    try:
        load_config(Path(partial.name))
        if output is not None:
            os.replace(partial.name, output)
    finally:
        Path(partial.name).unlink(missing_ok=True)
    return rendered


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """{"site": "berlin-3"} from ["site=berlin-3"], as given to `--var`."""
    variables = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"--var expects NAME=VALUE, not {assignment!r}")
        variables[name] = value
    return variables
