#!/usr/bin/env bash
# The test command (README): linters, type check, then the whole suite. Uses ./.venv when
# probes/dev-setup.sh made one, so the checkout's own code and tools are the ones that run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then
    export PATH="$PWD/.venv/bin:$PATH"
fi
ruff check netprobe tests benchmarks
ruff format --check netprobe tests benchmarks
mypy
python3 -m pytest -q -p no:cacheprovider "$@"
