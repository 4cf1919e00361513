#!/usr/bin/env bash
# The test command (README): linters, type check, then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check netprobe tests benchmarks
ruff format --check netprobe tests benchmarks
mypy
python3 -m pytest -q -p no:cacheprovider "$@"
