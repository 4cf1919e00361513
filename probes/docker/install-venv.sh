#!/bin/sh
# Install netprobe from a folder of wheels into a new venv, offline: install-venv.sh WHEEL_DIR VENV.
# The venv sees Debian's python3-cffi, python3-psutil and python3-yaml (pinned by the
# debian-pins.txt that build-wheels.sh left beside the wheels); pip and setuptools are removed
# afterwards: a probe never installs anything at run time. The Dockerfile's final stage runs it;
# tests/test_probes.py runs the very same file.
set -eu
wheel_dir="$1"
venv="$2"
python="${PYTHON:-/usr/bin/python3}"
"$python" -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check --no-index \
    --find-links "$wheel_dir" --constraint "$wheel_dir/debian-pins.txt" netprobe
"$venv/bin/python" -m pip uninstall --quiet --yes pip setuptools
"$venv/bin/netprobe" version
