#!/bin/sh
# Install netprobe from a folder of wheels into a new venv, offline: install-venv.sh WHEEL_DIR VENV.
# The Dockerfile's final stage runs it; tests/test_probes.py runs the very same file.
set -eu
wheel_dir="$1"
venv="$2"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --no-index \
    --find-links "$wheel_dir" netprobe
"$venv/bin/netprobe" version
