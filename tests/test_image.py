"""The container image, built and run for real: probes/docker/build-image.sh builds it with podman
(linux/amd64, from a Debian base it makes with mmdebstrap), then the container runs as its
non-root user with CAP_NET_RAW only, its HEALTHCHECK passes, the netprobe in it is this
checkout's, the agent in it measures a netprobe server across a shaped lab link, and a real
Prometheus scrapes it.

Runs wherever it can (root, podman, runc and mmdebstrap, which probes/dev-setup.sh installs):
about 4 minutes from nothing here, 2 with the base and the build cache that build-image.sh keeps
in its own podman storage (docs/fleet.md has the figures). NETPROBE_IMAGE_TEST=0 skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from lab import Lab, free_port

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("NETPROBE_IMAGE_WORK", "/var/tmp/netprobe-image"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("NETPROBE_IMAGE_TEST") == "0", reason="NETPROBE_IMAGE_TEST=0 skips it"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (podman storage, mmdebstrap, lab)"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("podman", "runc", "mmdebstrap")),
        reason="needs podman, runc and mmdebstrap (apt; probes/dev-setup.sh installs them)",
    ),
]
BUILD_TIMEOUT_SECONDS = 1800  # 3 minutes from nothing here; 12 were seen at load average 10


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """podman as build-image.sh runs it: its own storage, vfs, runc, no default ulimits."""
    command = [
        "podman", "--root", str(WORK / "storage"), "--runroot", str(WORK / "run"),
        "--storage-driver", "vfs", "--runtime", "runc", *args,
    ]  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(WORK / "containers.conf")}
    return subprocess.run(command, capture_output=True, text=True, check=check, env=env)


def package_digest(files: list[tuple[str, bytes]]) -> str:
    """One hash over netprobe's Python files: (path inside the package, content), sorted."""
    digest = hashlib.sha256()
    for name, content in sorted(files):
        digest.update(name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


# the same hash, computed by the image's Python over the netprobe it installed
IMAGE_DIGEST = """
import hashlib, pathlib, netprobe
root = pathlib.Path(netprobe.__file__).parent
digest = hashlib.sha256()
for path in sorted(root.rglob("*.py"), key=lambda p: str(p.relative_to(root))):
    digest.update(str(path.relative_to(root)).encode() + b"\\0" + path.read_bytes() + b"\\0")
print(digest.hexdigest())
"""


def http_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_image_runs_non_root_healthy_measures_a_lab_link_and_prometheus_scrapes_it(
    make_lab: Callable[..., Lab], tmp_path: Path
) -> None:
    try:
        built = subprocess.run(
            ["bash", str(ROOT / "probes" / "docker" / "build-image.sh"), "amd64"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as slow:
        pytest.fail(f"build-image.sh took more than {BUILD_TIMEOUT_SECONDS} s: {slow.stdout!r}")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print("\n".join(line for line in built.stdout.splitlines() if line.startswith("build-image")))
    image = built.stdout.split("build-image[amd64]: image id ")[-1].split()[0]

    lab = make_lab(down="50Mbit", up="10Mbit")
    lab.start_netprobe_server()
    port = free_port()
    config = {
        "probe": {"id": "image", "interface": lab.client_if},
        "contract": {"operator": "Lab Telecom", "download": "50Mbit", "upload": "10Mbit"},
        "servers": [{"url": lab.netprobe_url}],
        "schedule": {
            "mean_interval": "5s", "min_interval": "5s", "max_interval": "5s",
            "startup_delay": "1s",
        },
        "measurement": {"duration": "2s", "streams": 2, "max_bytes": "100MB", "time_limit": "10s"},
        "gates": {"cross_traffic_threshold": None, "cpu_threshold_percent": None,
                  "require_wired": False},
        "exporter": {"listen": f"127.0.0.1:{port}"},
        "store": {"path": "/var/lib/netprobe/results.db"},
    }  # fmt: skip
    config_file = tmp_path / "agent.yml"
    config_file.write_text(yaml.safe_dump(config))
    config_file.chmod(0o644)
    name = f"netprobe-image-test-{os.getpid()}"
    podman(
        "run", "-d", "--name", name, "--network", "host", "--cap-drop", "all",
        "--cap-add", "NET_RAW", "-e", f"NETPROBE_HEALTH_URL=http://127.0.0.1:{port}/-/healthy",
        "-v", f"{config_file}:/etc/netprobe/agent.yml:ro", image,
    )  # fmt: skip
    prometheus_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "netprobe", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                ],
            }
        )
    )
    prometheus_bin = shutil.which("prometheus")
    assert prometheus_bin is not None, "prometheus is not installed (apt prometheus)"
    prometheus = subprocess.Popen(
        [prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        checkout = ROOT / "netprobe"
        expected = package_digest(
            [(str(p.relative_to(checkout)), p.read_bytes()) for p in checkout.rglob("*.py")]
        )
        in_image = podman("exec", name, "python", "-c", IMAGE_DIGEST).stdout.strip()
        assert in_image == expected, "the image holds another netprobe than this checkout's"
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        status = podman("exec", name, "grep", "^Cap", "/proc/1/status").stdout
        effective = int(
            next(line for line in status.splitlines() if "CapEff" in line).split()[1], 16
        )
        assert effective in (0, 1 << 13), status  # nothing, or CAP_NET_RAW (bit 13) alone
        deadline = time.monotonic() + 120
        while podman("healthcheck", "run", name, check=False).returncode != 0:
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-2000:]
            time.sleep(1)
        query = urllib.parse.urlencode(
            {"query": 'netprobe_line_rate_bytes_per_second{job="netprobe", direction="download"}'}
        )
        rates: list[float] = []
        while not rates:
            assert time.monotonic() < deadline, "Prometheus never scraped a measured rate"
            time.sleep(2)
            answer = http_json(f"http://127.0.0.1:{prometheus_port}/api/v1/query?{query}")
            rates = [float(s["value"][1]) for s in answer["data"]["result"]]  # type: ignore[index]
        assert 0.6 < rates[0] * 8 / 50e6 < 1.05, rates  # the shaped link's rate, measured inside
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        podman("rm", "-f", name, check=False)
