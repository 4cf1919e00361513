#!/bin/sh
# Build netprobe and every dependency as wheels: build-wheels.sh SOURCE_DIR WHEEL_DIR.
# The Dockerfile's first stage runs it (with a compiler: psutil has no linux/arm/v7 wheel on
# PyPI), and tests/test_probes.py runs the very same file in a clean folder.
set -eu
source_dir="$1"
wheel_dir="$2"
python3 -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir "$wheel_dir" "$source_dir"
