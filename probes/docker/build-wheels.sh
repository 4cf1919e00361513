#!/bin/sh
# Build netprobe and the dependencies Debian does not provide as wheels, plus pip's own wheel
# (install-venv.sh runs pip from it, so the installed venv needs no pip):
#   build-wheels.sh SOURCE_DIR WHEEL_DIR
# Debian's builds of cffi, psutil and PyYAML (python3-cffi, python3-psutil, python3-yaml; PyPI
# has no armv7 wheel of them) are used as they are when this Python has them, so nothing here
# needs a compiler on any architecture. The Dockerfile's first stage runs it, and
# tests/test_probes.py runs the very same file in a clean folder. PYTHON picks the interpreter
# (default: Debian's /usr/bin/python3, the one the Debian packages are built for).
set -eu
source_dir="$1"
wheel_dir="$2"
python="${PYTHON:-/usr/bin/python3}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" -m venv --system-site-packages "$work/venv"
"$python" "$here/debian-pins.py" >"$work/pins.txt"
# what pip would install next to Debian's packages, and only that, becomes a wheel
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --dry-run \
    --constraint "$work/pins.txt" --report "$work/report.json" "$source_dir"
"$work/venv/bin/python" - "$work/report.json" >"$work/requirements.txt" <<'PY'
import json, sys

for item in json.load(open(sys.argv[1]))["install"]:
    if item["metadata"]["name"] != "netprobe":
        print(f'{item["metadata"]["name"]}=={item["metadata"]["version"]}')
PY
"$work/venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-cache-dir \
    --no-deps --wheel-dir "$wheel_dir" --requirement "$work/requirements.txt" "$source_dir"
"$work/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --dest "$wheel_dir" pip
cp "$work/pins.txt" "$wheel_dir/debian-pins.txt"
