#!/bin/sh
# Install netprobe from a folder of wheels into a new venv, offline: install-venv.sh WHEEL_DIR VENV.
# The venv sees Debian's python3-cffi, python3-psutil and python3-yaml (pinned by the
# debian-pins.txt that build-wheels.sh left beside the wheels). pip runs from its own wheel in
# WHEEL_DIR and is not installed: a probe never installs anything at run time, and Python's venv
# module without pip needs no python3-venv package. The Dockerfile's final stage runs it;
# tests/test_probes.py runs the very same file.
set -eu
wheel_dir="$1"
venv="$2"
python="${PYTHON:-/usr/bin/python3}"
"$python" -m venv --without-pip --system-site-packages "$venv"
set -- "$wheel_dir"/pip-*.whl
"$venv/bin/python" "$1/pip" install --quiet --no-cache-dir --disable-pip-version-check \
    --no-index --find-links "$wheel_dir" --constraint "$wheel_dir/debian-pins.txt" netprobe
"$venv/bin/netprobe" version
