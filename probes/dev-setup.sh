#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine (root): the servers the tests
# run for real (iperf3, Prometheus and promtool, Alertmanager and amtool, rclone, Chromium with
# CJK fonts for the Chinese report), a C compiler for the lab's delay line, ping, and the
# package with its test extras.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(iperf3 prometheus prometheus-alertmanager rclone shellcheck iproute2 chromium fonts-noto-cjk systemd libcap2-bin gcc libc6-dev iputils-ping)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts services on install; the tests start their own.
systemctl stop prometheus prometheus-alertmanager iperf3 2>/dev/null || true
pkill -x prometheus 2>/dev/null || true
pkill -x alertmanager 2>/dev/null || true
python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
