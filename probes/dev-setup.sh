#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine: the servers the tests run for
# real (iperf3, Prometheus and promtool, Alertmanager and amtool, VictoriaMetrics and vmalert,
# rclone, Chromium with CJK fonts for the Chinese report), a C compiler for the lab's delay line
# and ping, podman, runc and mmdebstrap to build and run the container image
# (tests/test_image.py), as Debian packages (root), and the package with its test extras in ./.venv.
#
# It never touches what it did not start: no service is stopped or killed (the tests start
# their own servers on free loopback ports or inside their own network namespaces, so a
# Prometheus or iperf3 that Debian started on its default port is no obstacle), and the system
# Python is left alone: the venv sees the interpreter's own packages (--system-site-packages)
# and installs only what is missing, into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
packages=(iperf3 prometheus prometheus-alertmanager victoria-metrics rclone shellcheck iproute2
    chromium fonts-noto-cjk systemd libcap2-bin gcc libc6-dev iputils-ping python3-venv
    podman runc mmdebstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "dev-setup: as root, install: apt-get install ${missing[*]}" >&2
        echo "dev-setup: (tests that need them are skipped with the reason)" >&2
    else
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
