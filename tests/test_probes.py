"""What ships to devices: the systemd unit, the Pi installer, the OpenWrt init script and UCI
file, and the Dockerfile's install steps (no Docker engine runs here, so its two install scripts
run in a clean folder and the installed agent must answer the image's HEALTHCHECK)."""

from __future__ import annotations

import configparser
import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from lab import free_port

ROOT = Path(__file__).parents[1]
PROBES = ROOT / "probes"
UNIT = PROBES / "systemd" / "netprobe.service"
NETPROBE = shutil.which("netprobe") or str(Path(sys.executable).with_name("netprobe"))


def shell_scripts() -> list[Path]:
    return sorted(
        path
        for path in PROBES.rglob("*")
        if path.is_file() and re.match(rb"#!.*\b(ba|)sh\b", path.read_bytes()[:40])
    )


# -- systemd ----------------------------------------------------------------------------------


def unit_settings() -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return {section: dict(parser[section]) for section in parser.sections()}


def test_unit_runs_unprivileged_with_only_cap_net_raw_and_a_read_only_system() -> None:
    service = unit_settings()["Service"]
    assert service["User"] == "netprobe"
    assert service["AmbientCapabilities"] == "CAP_NET_RAW"
    assert service["CapabilityBoundingSet"] == "CAP_NET_RAW"
    for setting, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "netprobe",
        "ConfigurationDirectory": "netprobe",
        "Restart": "on-failure",
        "StandardOutput": "journal",
    }.items():
        assert service[setting] == value, setting
    assert "LogRateLimitBurst" in service and service["LogLevelMax"] == "info"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt systemd)"
)
def test_unit_passes_systemd_analyze_verify_and_security(tmp_path: Path) -> None:
    # verify checks that ExecStart= exists: point it at this environment's netprobe
    unit = tmp_path / "netprobe.service"
    unit.write_text(UNIT.read_text().replace("/opt/netprobe/bin/netprobe", NETPROBE))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr  # unknown keys only warn
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True
    )
    exposure = re.search(r"Overall exposure level for netprobe.service: ([\d.]+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    assert float(exposure[1]) <= 3.0  # systemd's scale: 0-10, "OK" below 5


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck not installed (apt shellcheck)"
)
def test_every_shell_script_under_probes_is_shellcheck_clean() -> None:
    scripts = shell_scripts()
    assert {p.name for p in scripts} >= {
        "install.sh",
        "netprobe.init",
        "build-wheels.sh",
        "install-venv.sh",
    }
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# -- OpenWrt ------------------------------------------------------------------------------------

# OpenWrt's /lib/functions.sh is not on Debian: this stands in for the four functions the init
# script calls, with OpenWrt's semantics (empty option = default, bool words, list iteration).
UCI_SHIM = r"""
config_load() { . "$UCI_VARS"; }
config_get() { eval "$1=\"\${CONFIG_$2_$3:-\$4}\""; }
config_get_bool() {
    config_get "$1" "$2" "$3" "$4"
    eval "case \"\$$1\" in 1|on|true|yes|enabled) $1=1;; *) $1=0;; esac"
}
config_list_foreach() {
    eval "items=\"\${CONFIG_$1_$2_LIST:-}\""
    printf '%s\n' "$items" | while IFS= read -r item; do [ -z "$item" ] || "$3" "$item"; done
}
"""


def uci_to_shell(uci: str, overrides: dict[str, str]) -> str:
    """CONFIG_<section>_<option>=... assignments, as OpenWrt's config_load leaves them."""
    lines, section, lists = [], "", {}  # type: ignore[var-annotated]
    for line in uci.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "config":
            section = words[2]
        elif words[0] == "option":
            value = overrides.get(f"{section}.{words[1]}", words[2])
            lines.append(f"CONFIG_{section}_{words[1]}={shlex.quote(value)}")
        elif words[0] == "list":
            lists.setdefault(f"CONFIG_{section}_{words[1]}_LIST", []).append(words[2])
    lines += [f"{name}={shlex.quote(chr(10).join(items))}" for name, items in lists.items()]
    return "\n".join(lines) + "\n"


def render_openwrt(tmp_path: Path, overrides: dict[str, str]) -> dict[str, object]:
    variables = tmp_path / "uci.sh"
    variables.write_text(uci_to_shell((PROBES / "openwrt" / "netprobe").read_text(), overrides))
    out = tmp_path / "var" / "agent.yml"
    script = f"{UCI_SHIM}\n. {PROBES / 'openwrt' / 'netprobe.init'}\nPROG={NETPROBE}\nnetprobe_render_yaml {out}\n"
    subprocess.run(["sh", "-c", script], check=True, env={**os.environ, "UCI_VARS": str(variables)})
    check = subprocess.run([NETPROBE, "config", "check", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr + out.read_text()
    return yaml.safe_load(out.read_text())  # type: ignore[no-any-return]


def test_openwrt_uci_file_renders_to_a_valid_agent_config(tmp_path: Path) -> None:
    config = render_openwrt(tmp_path, {"main.data_dir": str(tmp_path / "data")})
    assert config["contract"] == {  # type: ignore[comparison-overlap]
        "operator": "Example Telecom",
        "plan": "Fibre 250/40",
        "download": "250Mbit",
        "upload": "40Mbit",
    }
    assert config["servers"] == [{"url": "http://speed.example.net:8080"}]
    assert config["store"] == {"path": f"{tmp_path}/data/results.db"}
    assert "push" not in config
    probe_id = (tmp_path / "data" / "probe-id").read_text().strip()
    assert config["probe"]["id"] == probe_id  # type: ignore[index]


def test_openwrt_push_options_and_awkward_values_survive_quoting(tmp_path: Path) -> None:
    config = render_openwrt(
        tmp_path,
        {
            "main.data_dir": str(tmp_path / "data"),
            "main.probe_id": "router-7",
            "main.operator": 'ISP "Quote" \\ Co: #1',
            "push.url": "https://mimir.example.net/api/v1/push",
            "push.site": "lyon-2",
            "push.bearer_token_file": "/etc/netprobe/token",
        },
    )
    assert config["push"] == {
        "url": "https://mimir.example.net/api/v1/push",
        "interval": "60s",
        "external_labels": {"operator": 'ISP "Quote" \\ Co: #1', "site": "lyon-2"},
        "bearer_token": {"file": "/etc/netprobe/token"},
    }
    assert config["probe"]["id"] == "router-7"  # type: ignore[index]


PROCD_SHIM = r"""
procd_open_instance() { echo "instance $1" >>"$PROCD_LOG"; }
procd_set_param() { echo "param $*" >>"$PROCD_LOG"; }
procd_close_instance() { echo "close" >>"$PROCD_LOG"; }
user_exists() { return 1; }
group_add_next() { echo "group_add_next $*" >>"$PROCD_LOG"; echo 1234; }
user_add() { echo "user_add $*" >>"$PROCD_LOG"; }
"""


def procd_instances(tmp_path: Path, overrides: dict[str, str]) -> tuple[dict[str, list[str]], str]:
    """start_service under stand-ins for procd's shell API: each instance's params, and the log."""
    variables = tmp_path / "uci.sh"
    variables.write_text(uci_to_shell((PROBES / "openwrt" / "netprobe").read_text(), overrides))
    log = tmp_path / "procd.log"
    log.write_text("")
    script = (
        f"{UCI_SHIM}\n{PROCD_SHIM}\n. {PROBES / 'openwrt' / 'netprobe.init'}\n"
        f"PROG={NETPROBE}\nPERSIST={PROBES / 'openwrt' / 'netprobe-persist'}\n"
        f"YAML={tmp_path / 'var' / 'agent.yml'}\nSERVICE_USER=$(id -un)\nstart_service\n"
    )
    subprocess.run(
        ["sh", "-c", script],
        check=True,
        env={**os.environ, "UCI_VARS": str(variables), "PROCD_LOG": str(log)},
    )
    instances: dict[str, list[str]] = {}
    current = ""
    for line in log.read_text().splitlines():
        if line.startswith("instance "):
            current = line.split()[1]
            instances[current] = []
        elif line.startswith("param "):
            instances[current].append(line[len("param ") :])
    return instances, log.read_text()


def test_openwrt_agent_runs_as_its_own_user_with_only_cap_net_raw_and_a_ram_store(
    tmp_path: Path,
) -> None:
    ram, flash = tmp_path / "ram", tmp_path / "flash"
    overrides = {"main.enabled": "1", "main.data_dir": str(ram), "main.persist_dir": str(flash)}
    instances, log = procd_instances(tmp_path, overrides)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    agent = instances["agent"]
    assert f"command {NETPROBE} agent --config {tmp_path / 'var' / 'agent.yml'}" in agent
    assert {f"user {user}", f"group {user}", "no_new_privs 1", "stdout 1", "stderr 1"} <= set(agent)
    assert "capabilities /etc/capabilities/netprobe.json" in agent
    persist = instances["persist"]
    assert f"command {PROBES / 'openwrt' / 'netprobe-persist'} every 6 {ram} {flash}" in persist
    assert f"user {user}" in persist and not any(p.startswith("capabilities") for p in persist)
    assert f"group_add_next {user}" in log and f"user_add {user}  1234" in log  # created once
    capabilities = json.loads((PROBES / "openwrt" / "capabilities.json").read_text())
    assert set(capabilities) == {"bounding", "effective", "ambient", "permitted", "inheritable"}
    assert all(value == ["CAP_NET_RAW"] for value in capabilities.values())
    config = yaml.safe_load((tmp_path / "var" / "agent.yml").read_text())
    assert config["store"]["path"] == f"{ram}/results.db"  # RAM, not flash


def test_openwrt_disabled_service_starts_nothing(tmp_path: Path) -> None:
    instances, _ = procd_instances(tmp_path, {"main.data_dir": str(tmp_path / "ram")})
    assert instances == {}


def sqlite_rows(path: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT n FROM t ORDER BY n")]


def test_openwrt_store_copy_to_flash_is_consistent_bounded_and_restored(tmp_path: Path) -> None:
    persist = PROBES / "openwrt" / "netprobe-persist"
    ram, flash = tmp_path / "ram", tmp_path / "flash"
    ram.mkdir()
    (ram / "probe-id").write_text("router-7\n")
    (ram / "baidu-token.json").write_text("{}")  # a rotated drive token, say
    store = sqlite3.connect(ram / "results.db")
    store.execute("PRAGMA journal_mode=WAL")
    store.execute("CREATE TABLE t (n INTEGER)")
    store.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(100)])
    store.commit()  # still open, with its WAL: the agent keeps the store open
    env = {**os.environ, "NETPROBE_PYTHON": sys.executable}

    def once() -> None:
        subprocess.run(["sh", str(persist), "once", str(ram), str(flash)], check=True, env=env)

    once()
    assert sqlite_rows(flash / "results.db") == list(range(100))
    assert (flash / "probe-id").read_text() == "router-7\n"
    assert (flash / "baidu-token.json").exists() and not (flash / "results.db-wal").exists()
    written = (flash / "results.db").stat().st_mtime_ns
    time.sleep(0.05)
    once()  # nothing changed: nothing written to flash
    assert (flash / "results.db").stat().st_mtime_ns == written
    store.execute("INSERT INTO t VALUES (100)")
    store.commit()
    once()
    assert sqlite_rows(flash / "results.db") == list(range(101))
    assert not list(flash.glob("*.tmp"))
    store.close()

    # boot: RAM is empty, the flash copy comes back; a store already in RAM is never replaced
    fresh = tmp_path / "ram-after-boot"
    subprocess.run(["sh", str(persist), "restore", str(fresh), str(flash)], check=True, env=env)
    assert sqlite_rows(fresh / "results.db") == list(range(101))
    assert (fresh / "probe-id").read_text() == "router-7\n"
    assert sorted(p.name for p in fresh.iterdir()) == ["baidu-token.json", "probe-id", "results.db"]
    (flash / "probe-id").write_text("other\n")
    subprocess.run(["sh", str(persist), "restore", str(fresh), str(flash)], check=True, env=env)
    assert (fresh / "probe-id").read_text() == "router-7\n"


# -- Raspberry Pi installer -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0, reason="install.sh creates the netprobe system user: needs root"
)
def test_pi_installer_installs_renders_enables_and_upgrades_idempotently(
    wheelhouse: Path, tmp_path: Path
) -> None:
    env = {
        **CLEAN_ENV,
        "PIP_NO_INDEX": "1",  # offline, from the wheels the Dockerfile's steps built
        "PIP_FIND_LINKS": str(wheelhouse),
        "NETPROBE_OPT": str(tmp_path / "opt"),
        "NETPROBE_ETC": str(tmp_path / "etc"),
        "NETPROBE_STATE": str(tmp_path / "state"),
        "NETPROBE_UNIT_DIR": str(tmp_path / "units"),
    }
    fleet_vars = [
        "operator=Example Telecom", "plan_down=250Mbit", "plan_up=40Mbit", "site=berlin-3",
        "server_url=http://192.0.2.10:8080", "push_url=https://mimir.example.net/api/v1/push",
    ]  # fmt: skip
    command = [
        str(PROBES / "pi" / "install.sh"),
        "--source",
        "netprobe",
        "--template",
        str(PROBES / "fleet" / "agent.yml.tmpl"),
        "--no-apt",  # the test leaves the machine's Debian packages alone
    ]
    for assignment in fleet_vars:
        command += ["--var", assignment]
    first = subprocess.run(command, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    config_file = tmp_path / "etc" / "agent.yml"
    rendered = config_file.read_text()
    probe_id = (tmp_path / "state" / "probe-id").read_text().strip()
    assert yaml.safe_load(rendered)["probe"]["id"] == probe_id
    assert oct(config_file.stat().st_mode & 0o777) == "0o640"
    wants = tmp_path / "units" / "multi-user.target.wants" / "netprobe.service"
    assert wants.resolve() == (tmp_path / "units" / "netprobe.service")
    assert (
        subprocess.run(
            [str(tmp_path / "opt" / "bin" / "netprobe"), "version"], capture_output=True
        ).returncode
        == 0
    )

    config_file.write_text(rendered + "# edited by the operator\n")
    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert config_file.read_text().endswith("# edited by the operator\n")  # never overwritten
    assert (tmp_path / "state" / "probe-id").read_text().strip() == probe_id
    assert "keeping" in second.stdout


# -- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_is_multi_stage_non_root_with_healthcheck_volumes_and_labels() -> None:
    instructions = dockerfile_instructions()
    froms = [args for kind, args in instructions if kind == "FROM"]
    assert len(froms) == 3 and froms[-1] == "base", "base, wheels, and the image on the base"
    user = [args for kind, args in instructions if kind == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    health = next(args for kind, args in instructions if kind == "HEALTHCHECK")
    assert "healthcheck.py" in health
    assert "NETPROBE_HEALTH_URL=http://127.0.0.1:9469/-/healthy" in " ".join(
        args for kind, args in instructions if kind == "ENV"
    )
    volumes = next(args for kind, args in instructions if kind == "VOLUME")
    assert "/etc/netprobe" in volumes and "/var/lib/netprobe" in volumes
    labels = " ".join(args for kind, args in instructions if kind == "LABEL")
    assert (
        "org.opencontainers.image.title" in labels and "org.opencontainers.image.version" in labels
    )


def copied_sources() -> list[str]:
    sources = []
    for kind, args in dockerfile_instructions():
        if kind == "COPY" and "--from=" not in args:
            words = [w for w in args.split() if not w.startswith("--")]
            sources += words[:-1]
    return sources


def installed_files(context: Path) -> dict[str, Path]:
    """Where each file the Dockerfile COPYs into a directory ends up in the image -> its source."""
    installed = {}
    for kind, args in dockerfile_instructions():
        words = [w for w in args.split() if not w.startswith("--")]
        if kind == "COPY" and "--from=" not in args and words[-1].endswith("/"):
            installed.update({words[-1] + Path(s).name: context / s for s in words[:-1]})
    return installed


@pytest.fixture(scope="module")
def docker_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context the Dockerfile sees: only what it COPYs (and .dockerignore lets through)."""
    context = tmp_path_factory.mktemp("context")
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for source in copied_sources():
        path = ROOT / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
        assert f"!{source.rstrip('/')}" in [i.rstrip("/") for i in ignored] or any(
            f"!{parent}" in [i.rstrip("/") for i in ignored]
            for parent in map(str, Path(source).parents)
        ), f".dockerignore keeps {source} out of the context"
        target = context / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, target)
    return context


CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}


@pytest.fixture(scope="module")
def wheelhouse(docker_context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's first stage: every wheel, built by probes/docker/build-wheels.sh."""
    wheels = tmp_path_factory.mktemp("wheels")
    script = docker_context / "probes" / "docker" / "build-wheels.sh"
    subprocess.run(["sh", str(script), str(docker_context), str(wheels)], check=True, env=CLEAN_ENV)
    return wheels


@pytest.mark.slow
def test_dockerfile_install_steps_build_an_agent_that_passes_the_healthcheck(
    docker_context: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    scripts = docker_context / "probes" / "docker"
    wheels, venv = wheelhouse, tmp_path / "venv"  # build-wheels.sh's output, made once
    clean_env = CLEAN_ENV
    built = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}
    pinned = {
        line.split("==")[0].lower() for line in (wheels / "debian-pins.txt").read_text().split()
    }
    # psutil, cffi and PyYAML: Debian's when the system Python has them, wheels otherwise
    assert {"netprobe", "aiohttp", "cryptography"} <= built
    assert {"psutil", "cffi", "pyyaml"} <= built | pinned and not built & pinned
    subprocess.run(
        ["sh", str(scripts / "install-venv.sh"), str(wheels), str(venv)], check=True, env=clean_env
    )
    assert not (venv / "bin" / "pip").exists()  # pip ran from its wheel and was not kept

    port = free_port()
    config = yaml.safe_load((scripts / "agent.yml").read_text())
    config["exporter"]["listen"] = f"127.0.0.1:{port}"
    config["store"]["path"] = str(tmp_path / "data" / "results.db")
    config_file = tmp_path / "agent.yml"
    config_file.write_text(yaml.safe_dump(config))
    entrypoint = [str(venv / "bin" / "netprobe"), "agent", "--config", str(config_file)]
    agent = subprocess.Popen(entrypoint, env=clean_env, cwd=tmp_path)
    try:
        health = next(args for kind, args in dockerfile_instructions() if kind == "HEALTHCHECK")
        command = json.loads(health.split("CMD", 1)[1])  # the exec form is a JSON list
        command = [str(installed_files(docker_context).get(part, part)) for part in command]
        env = {
            **clean_env,
            "PATH": f"{venv / 'bin'}:{clean_env['PATH']}",
            "NETPROBE_HEALTH_URL": f"http://127.0.0.1:{port}/-/healthy",
        }
        deadline = time.monotonic() + 60
        while subprocess.run(command, env=env, capture_output=True).returncode != 0:
            assert agent.poll() is None, "the installed agent exited"
            assert time.monotonic() < deadline, "HEALTHCHECK never passed"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert b"netprobe_build_info" in response.read()
    finally:
        agent.terminate()
        agent.wait(timeout=30)


# -- the stack's agent configuration --------------------------------------------------------


@pytest.mark.slow
def test_stack_agent_config_produces_a_measured_valid_first_test(tmp_path: Path) -> None:
    """dashboards/netprobe.yml as shipped: its embedded server is paced like the contract, so
    the first test measures near the plan instead of running into the byte budget."""
    config = yaml.safe_load((ROOT / "dashboards" / "netprobe.yml").read_text())
    config["store"]["path"] = str(tmp_path / "results.db")
    config["exporter"] = {"listen": f"127.0.0.1:{free_port()}"}
    config_file = tmp_path / "agent.yml"
    config_file.write_text(yaml.safe_dump(config))
    agent = subprocess.Popen(
        [sys.executable, "-m", "netprobe", "agent", "--config", str(config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[dict[str, str]] = []
    try:
        deadline = time.monotonic() + 90
        while len(rows) < 2:
            assert agent.poll() is None, "the agent exited"
            assert time.monotonic() < deadline, "no line test within 90 s"
            time.sleep(2)
            export = subprocess.run(
                [sys.executable, "-m", "netprobe", "results", "export", "--config",
                 str(config_file), "--format", "csv"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows = list(csv.DictReader(io.StringIO(export.stdout)))
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    plan = {"download": 100e6 / 8, "upload": 20e6 / 8}
    for row in rows[:2]:
        assert row["outcome"] == "ok", row
        assert row["valid"] == "True", row["invalid_reason"]
        assert 0.7 < float(row["bytes_per_second"]) / plan[row["direction"]] < 1.1, row
